"""Trends stage: the numbers against an independent numpy implementation of the formulas, hand-made
cases with known answers, edge cases, bad inputs and the files written."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from checks import nonempty

from glacierwatch.cli import main
from glacierwatch.errors import InputError
from glacierwatch.trends import TOTAL, compute_trends, decimal_year, glacier_trends, region_trends, write_trends

RTOL = 1e-6  # the issue asks for 1e-4; the formulas agree far more closely than that

REGION_RATES = {"Europe": -0.0026, "Asia": -0.0016, "Caucasus": -0.0017, "North America": -0.0015,
                "South America": -0.0026}


# ---------------------------------------------------------------- data

def make_areas(seed: int = 0, *, regions: dict[str, float] | None = None, per_region: int = 6,
               obs: tuple[int, int] = (12, 45), noise: float = 0.02) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A realistic areas table: glaciers of 0.5-40 km² shrinking exponentially at a known rate
    (region mean + glacier scatter), irregular summer dates 1984-2023, lognormal noise.
    Returns (areas, truth) with truth = glims_id, region, true_rel_change_per_year."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    k = 0
    for region, mean_rate in (regions or REGION_RATES).items():
        for _ in range(per_region):
            k += 1
            gid = f"G{6000 + 97 * k:06d}E{40000 + 131 * k:05d}N"
            rate = mean_rate + rng.normal(0, 0.0015)
            area0 = float(np.exp(rng.uniform(np.log(0.5), np.log(40))))
            n = int(rng.integers(*obs))
            years = rng.integers(1984, 2024, n)
            days = rng.integers(120, 300, n)
            for year, day in zip(years, days, strict=False):
                date = dt.date(int(year), 1, 1) + dt.timedelta(days=int(day))
                t = np_decimal_year(date)
                rows.append({"glims_id": gid, "region": region, "date": date.isoformat(),
                             "satellite": "L5" if year < 1999 else "L7",
                             "area_km2": area0 * np.exp(rate * (t - 2000) + rng.normal(0, noise))})
            truth.append({"glims_id": gid, "region": region, "true_rel_change_per_year": rate})
    areas = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return areas, pd.DataFrame(truth)


def exact_glacier(gid: str, region: str, rate: float, dates: list[dt.date], area0: float = 5.0) -> list[dict]:
    """Rows of a glacier whose area is exactly area0 * exp(rate * (t - 2000))."""
    return [{"glims_id": gid, "region": region, "date": d.isoformat(),
             "area_km2": area0 * np.exp(rate * (np_decimal_year(d) - 2000))} for d in dates]


@pytest.fixture(scope="module")
def areas_truth() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_areas()


# ---------------------------------------------------------------- independent implementation (numpy)

def np_decimal_year(d: dt.date) -> float:
    return d.year + (d.timetuple().tm_yday - 1) / (366 if calendar.isleap(d.year) else 365)


def np_ols(t: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Closed-form simple regression: slope, classical SE, intercept, R²."""
    tc = t - t.mean()
    sxx = tc @ tc
    slope = tc @ (y - y.mean()) / sxx
    intercept = y.mean() - slope * t.mean()
    resid = y - intercept - slope * t
    se = np.sqrt(resid @ resid / (len(t) - 2) / sxx) if len(t) > 2 else np.nan
    r2 = 1 - (resid @ resid) / ((y - y.mean()) @ (y - y.mean()))
    return slope, se, intercept, r2


def np_weighted_mean(y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    m = (w * y).sum() / w.sum()
    se = np.sqrt((w * (y - m) ** 2).sum() / ((len(y) - 1) * w.sum())) if len(y) > 1 else np.nan
    return m, se


def np_wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    xm, ym = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    sxx = (w * (x - xm) ** 2).sum()
    slope = (w * (x - xm) * (y - ym)).sum() / sxx
    resid = y - ym - slope * (x - xm)
    se = np.sqrt((w * resid ** 2).sum() / (len(x) - 2) / sxx) if len(x) > 2 else np.nan
    return slope, se


def np_panel(gid: np.ndarray, t: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Within estimator; CR1 cluster SE, G/(G-1) (fixed effects absorbed, k = 1)."""
    df = pd.DataFrame({"g": gid, "t": t, "y": y})
    td = df["t"] - df.groupby("g")["t"].transform("mean")
    yd = df["y"] - df.groupby("g")["y"].transform("mean")
    sxx = (td * td).sum()
    slope = (td * yd).sum() / sxx
    score = (td * (yd - slope * td)).groupby(df["g"]).sum()
    n_groups = score.size
    var = (score ** 2).sum() / sxx ** 2 * n_groups / (n_groups - 1)
    return slope, float(np.sqrt(var))


def np_expected(areas: pd.DataFrame, min_obs: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Glacier and region tables computed from the formulas in the issue, with numpy only."""
    a = areas.copy()
    a = a[a["area_km2"].notna() & (a["area_km2"] > 0)]
    dates = [dt.date.fromisoformat(str(d)[:10]) for d in a["date"]]
    a["t"] = [np_decimal_year(d) for d in dates]
    a["year"] = [d.year for d in dates]
    a["y"] = np.log(a["area_km2"].to_numpy(float))
    glaciers = []
    for gid, g in a.groupby("glims_id"):
        slope, se, intercept, r2 = np_ols(g["t"].to_numpy(), g["y"].to_numpy())
        glaciers.append({"glims_id": gid, "region": g["region"].iloc[0], "n_obs": len(g),
                         "rel_change_per_year": slope, "rel_change_se": se, "intercept": intercept, "r2": r2})
    glaciers = pd.DataFrame(glaciers)
    used = glaciers[glaciers["n_obs"] >= min_obs]
    regions = []
    for name in [*sorted(used["region"].unique()), TOTAL]:
        gl = used if name == TOTAL else used[used["region"] == name]
        obs = a[a["glims_id"].isin(gl["glims_id"])]
        mean, se = np_weighted_mean(gl["rel_change_per_year"].to_numpy(), gl["n_obs"].to_numpy(float))
        annual = obs.groupby("year").agg(t=("t", "mean"), y=("y", "mean"), n=("y", "size"))
        g_slope, g_se = np_wls(annual["t"].to_numpy(), annual["y"].to_numpy(), annual["n"].to_numpy(float))
        p_slope, p_se = np_panel(obs["glims_id"].to_numpy(), obs["t"].to_numpy(), obs["y"].to_numpy())
        regions.append({"region": name, "n_glaciers": len(gl), "n_obs": int(gl["n_obs"].sum()),
                        "rel_change_per_year": mean, "se": se, "rel_se": se / abs(mean),
                        "ci95_low": mean - 1.96 * se, "ci95_high": mean + 1.96 * se,
                        "geomean_rel_change_per_year": g_slope, "geomean_se": g_se,
                        "panel_rel_change_per_year": p_slope, "panel_se": p_se})
    return glaciers, pd.DataFrame(regions)


# ---------------------------------------------------------------- decimal year

def test_decimal_year_known_values() -> None:
    dates = ["2000-01-01", "2000-12-31", "2001-01-01", "2001-07-02", "2023-12-31"]
    expected = [2000.0, 2000 + 365 / 366, 2001.0, 2001 + 182 / 365, 2023 + 364 / 365]
    np.testing.assert_allclose(decimal_year(dates), expected, rtol=0, atol=1e-12)


def test_decimal_year_accepts_dates_timestamps_and_scalars() -> None:
    assert decimal_year("2004-03-01") == pytest.approx(2004 + 60 / 366)
    assert decimal_year(dt.date(2004, 3, 1)) == pytest.approx(2004 + 60 / 366)
    series = pd.Series(pd.to_datetime(["2004-03-01 23:59", "1999-12-31"], format="ISO8601"))
    np.testing.assert_allclose(decimal_year(series), [2004 + 60 / 366, 1999 + 364 / 365])
    assert np.isnan(decimal_year([None, "2001-01-01"])[0])


# ---------------------------------------------------------------- per glacier

def test_glacier_slopes_match_closed_form_ols(areas_truth) -> None:
    areas, _ = areas_truth
    got = glacier_trends(areas, min_obs=10).set_index("glims_id")
    exp, _ = np_expected(areas, 10)
    exp = exp.set_index("glims_id")
    assert list(got.index) == sorted(exp.index)
    for column in ("rel_change_per_year", "rel_change_se", "intercept", "r2"):
        np.testing.assert_allclose(got[column], exp.loc[got.index, column], rtol=RTOL, err_msg=column)
    assert (got["n_obs"] == exp.loc[got.index, "n_obs"]).all()


def test_exact_exponential_gives_the_rate_with_zero_error() -> None:
    dates = [dt.date(y, m, 15) for y in range(1990, 2021) for m in (6, 8)]
    rows = exact_glacier("G001000E45000N", "Europe", -0.0125, dates, area0=7.5)
    got = glacier_trends(pd.DataFrame(rows), min_obs=10).iloc[0]
    assert got["rel_change_per_year"] == pytest.approx(-0.0125, rel=1e-9)
    assert got["rel_change_se"] == pytest.approx(0.0, abs=1e-10)
    assert got["r2"] == pytest.approx(1.0, abs=1e-12)
    assert got["intercept"] == pytest.approx(np.log(7.5) + 0.0125 * 2000, rel=1e-9)
    assert got["first_date"] == pd.Timestamp("1990-06-15") and got["last_date"] == pd.Timestamp("2020-08-15")
    assert got["n_obs"] == len(dates) and not got["flagged"]


def test_flags_for_few_observations_and_a_single_date(caplog) -> None:
    areas, _ = make_areas(1, regions={"Europe": -0.002}, per_region=3, obs=(20, 30))
    few = exact_glacier("G002000E46000N", "Europe", -0.5, [dt.date(2000 + i, 7, 1) for i in range(4)])
    single = exact_glacier("G003000E46000N", "Europe", 0.0, [dt.date(2005, 7, 1)] * 3)
    table = pd.concat([areas, pd.DataFrame(few + single)], ignore_index=True)
    with caplog.at_level(logging.WARNING):
        result = compute_trends(table, min_obs=5)
    gl = result.glaciers.set_index("glims_id")
    assert gl.loc["G002000E46000N", "flagged"]
    assert gl.loc["G002000E46000N", "flag_reason"] == "fewer than 5 observations"
    assert gl.loc["G002000E46000N", "rel_change_per_year"] == pytest.approx(-0.5)  # still reported
    assert gl.loc["G003000E46000N", "flagged"]
    assert "single date" in gl.loc["G003000E46000N", "flag_reason"]
    assert np.isnan(gl.loc["G003000E46000N", "rel_change_per_year"])
    assert gl["flagged"].sum() == 2
    europe = result.regions.set_index("region").loc["Europe"]
    assert europe["n_glaciers"] == 3 and europe["n_glaciers_flagged"] == 2
    unflagged = gl[~gl["flagged"]]
    expected = np.average(unflagged["rel_change_per_year"], weights=unflagged["n_obs"])
    assert europe["rel_change_per_year"] == pytest.approx(expected, rel=1e-12)
    assert europe["n_obs"] == unflagged["n_obs"].sum()
    assert "2 of 5 glacier(s) flagged" in caplog.text


def test_one_observation_glacier_is_flagged_not_crashed() -> None:
    rows = exact_glacier("G004000E46000N", "Asia", -0.01, [dt.date(2001, 7, 1)])
    result = compute_trends(pd.DataFrame(rows), min_obs=1)
    g = result.glaciers.iloc[0]
    assert g["flagged"] and g["flag_reason"] == "single date" and g["n_obs"] == 1
    assert result.regions.set_index("region").loc["Asia", "n_glaciers"] == 0


# ---------------------------------------------------------------- per region

def test_region_weighted_mean_hand_case() -> None:
    """Slopes -0.01 (10 obs) and -0.02 (30 obs): mean -0.0175, SE sqrt(0.00075 / 40)."""
    a = exact_glacier("G001000E45000N", "Alps", -0.01, [dt.date(1990 + i, 7, 1) for i in range(10)])
    b = exact_glacier("G001001E45000N", "Alps", -0.02, [dt.date(1990 + i // 3, 5 + i % 3, 1) for i in range(30)])
    result = compute_trends(pd.DataFrame(a + b), min_obs=10)
    row = result.regions.set_index("region").loc["Alps"]
    se = np.sqrt((10 * 0.0075 ** 2 + 30 * 0.0025 ** 2) / (1 * 40))
    assert row["rel_change_per_year"] == pytest.approx(-0.0175, rel=1e-9)
    assert row["se"] == pytest.approx(se, rel=1e-9)
    assert row["rel_se"] == pytest.approx(se / 0.0175, rel=1e-9)
    assert row["ci95_low"] == pytest.approx(-0.0175 - 1.96 * se, rel=1e-9)
    assert row["ci95_high"] == pytest.approx(-0.0175 + 1.96 * se, rel=1e-9)
    assert row["n_glaciers"] == 2 and row["n_obs"] == 40


def test_geomean_and_panel_hand_case() -> None:
    """Two exact glaciers sharing dates (one a year): every estimate is the mean slope -0.02."""
    dates = [dt.date(y, 7, 1) for y in range(2000, 2020)]
    rows = (exact_glacier("G001000E45000N", "Alps", -0.01, dates, area0=2.0)
            + exact_glacier("G001001E45000N", "Alps", -0.03, dates, area0=30.0))
    row = compute_trends(pd.DataFrame(rows), min_obs=10).regions.set_index("region").loc["Alps"]
    assert row["rel_change_per_year"] == pytest.approx(-0.02, rel=1e-9)
    assert row["se"] == pytest.approx(0.01, rel=1e-9)  # sqrt((20e-4 + 20e-4) / 40)
    assert row["geomean_rel_change_per_year"] == pytest.approx(-0.02, rel=1e-9)
    assert row["geomean_se"] == pytest.approx(0.0, abs=1e-10)
    assert row["panel_rel_change_per_year"] == pytest.approx(-0.02, rel=1e-9)
    assert row["n_years"] == 20


def test_region_estimates_match_closed_form(areas_truth) -> None:
    areas, _ = areas_truth
    result = compute_trends(areas, min_obs=15)
    _, exp = np_expected(areas, 15)
    got = result.regions.set_index("region")
    exp = exp.set_index("region")
    assert list(got.index) == [*sorted(REGION_RATES), TOTAL]
    assert result.glaciers["flagged"].any() and (~result.glaciers["flagged"]).any()
    for column in exp.columns:
        np.testing.assert_allclose(got.loc[exp.index, column].astype(float), exp[column].astype(float),
                                   rtol=RTOL, err_msg=column)


def test_region_trends_function_equals_compute_trends(areas_truth) -> None:
    areas, _ = areas_truth
    gl = glacier_trends(areas, min_obs=12)
    pd.testing.assert_frame_equal(region_trends(areas, gl), compute_trends(areas, min_obs=12).regions)


def test_panel_slope_equals_dummy_variable_regression(areas_truth) -> None:
    """statsmodels with one dummy per glacier: same slope; clustered SE differs only by the
    documented small-sample factor (N-1)/(N-K) with K = glaciers + 1."""
    areas, _ = areas_truth
    sub = areas[areas["region"].isin(["Europe", "Asia"])].copy()
    result = compute_trends(sub, min_obs=1)
    obs = result.observations
    fit = smf.ols("ln_area ~ C(glims_id) + t", data=obs).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(obs["glims_id"])[0]})
    total = result.regions.set_index("region").loc[TOTAL]
    assert total["panel_rel_change_per_year"] == pytest.approx(fit.params["t"], rel=1e-8)
    n, k = len(obs), obs["glims_id"].nunique() + 1
    assert total["panel_se"] == pytest.approx(fit.bse["t"] * np.sqrt((n - k) / (n - 1)), rel=1e-8)


def test_estimates_recover_the_true_rates() -> None:
    areas, truth = make_areas(3, per_region=25, obs=(30, 60), noise=0.01)
    result = compute_trends(areas, min_obs=10)
    merged = result.glaciers.merge(truth, on="glims_id")
    z = (merged["rel_change_per_year"] - merged["true_rel_change_per_year"]) / merged["rel_change_se"]
    assert (z.abs() < 2).mean() > 0.85
    total = result.regions.set_index("region").loc[TOTAL]
    true_mean = np.average(merged["true_rel_change_per_year"], weights=merged["n_obs"])
    assert abs(total["rel_change_per_year"] - true_mean) < 3 * total["se"]
    assert total["ci95_low"] < total["rel_change_per_year"] < total["ci95_high"] < 0


def test_single_glacier_region_gets_mean_without_se(caplog) -> None:
    areas, _ = make_areas(2, regions={"Asia": -0.002}, per_region=4, obs=(20, 30))
    lone = exact_glacier("G009000E30000N", "Andes", -0.004, [dt.date(1990 + i, 1, 20) for i in range(12)])
    with caplog.at_level(logging.WARNING):
        result = compute_trends(pd.concat([areas, pd.DataFrame(lone)]), min_obs=10)
    andes = result.regions.set_index("region").loc["Andes"]
    assert andes["rel_change_per_year"] == pytest.approx(-0.004, rel=1e-9)
    assert andes["panel_rel_change_per_year"] == pytest.approx(-0.004, rel=1e-9)
    for column in ("se", "rel_se", "ci95_low", "ci95_high", "panel_se"):
        assert np.isnan(andes[column]), column
    assert "region 'Andes' has a single glacier" in caplog.text
    assert any("single glacier" in w for w in result.warnings)
    assert "| Andes | -0.00400 |  |  |" in result.table2_markdown()


def test_several_single_glacier_regions_make_one_warning(caplog) -> None:
    areas, _ = make_areas(2, regions={"Asia": -0.002}, per_region=4, obs=(20, 30))
    dates = [dt.date(1990 + i, 1, 20) for i in range(12)]
    lone = [pd.DataFrame(exact_glacier(gid, region, -0.004, dates))
            for gid, region in (("G009000E30000N", "Andes"), ("G010000E31000N", "Alps"))]
    with caplog.at_level(logging.WARNING):
        result = compute_trends(pd.concat([areas, *lone]), min_obs=10)
    lines = [r.getMessage() for r in caplog.records if "single glacier" in r.getMessage()]
    assert len(lines) == 1
    assert "region 'Alps' has a single glacier (G010000E31000N)" in lines[0]
    assert "region 'Andes' has a single glacier (G009000E30000N)" in lines[0]
    assert sum("single glacier" in w for w in result.warnings) == 1


def test_region_with_every_glacier_flagged(caplog) -> None:
    areas, _ = make_areas(4, regions={"Europe": -0.002, "Caucasus": -0.001}, per_region=2, obs=(20, 25))
    areas = areas[~((areas["region"] == "Caucasus") & (areas.groupby("glims_id").cumcount() >= 5))]
    with caplog.at_level(logging.WARNING):
        result = compute_trends(areas, min_obs=10)
    caucasus = result.regions.set_index("region").loc["Caucasus"]
    assert caucasus["n_glaciers"] == 0 and caucasus["n_glaciers_flagged"] == 2
    assert np.isnan(caucasus["rel_change_per_year"]) and np.isnan(caucasus["se"])
    assert "no glacier passes" in caplog.text


def test_missing_and_nonpositive_areas_are_dropped_and_counted(caplog, areas_truth) -> None:
    areas = areas_truth[0].copy()
    areas.loc[[0, 5], "area_km2"] = np.nan
    areas.loc[[7], "area_km2"] = 0.0
    areas.loc[[9], "area_km2"] = -3.0
    with caplog.at_level(logging.INFO):
        result = compute_trends(areas, min_obs=10)
    assert (result.counts.n_dropped_missing, result.counts.n_dropped_nonpositive) == (2, 2)
    assert result.counts.n_valid == len(areas) - 4 == result.glaciers["n_obs"].sum()
    assert "dropped 2 row(s) with a missing area and 2 with a non-positive area" in caplog.text
    _, exp = np_expected(areas, 10)
    np.testing.assert_allclose(result.regions["rel_change_per_year"], exp["rel_change_per_year"], rtol=RTOL)


def test_group_by_another_column(areas_truth) -> None:
    areas = areas_truth[0].copy()
    areas["hemisphere"] = np.where(areas["region"] == "South America", "S", "N")
    result = compute_trends(areas, min_obs=10, by="hemisphere")
    assert list(result.regions["hemisphere"]) == ["N", "S", TOTAL]
    assert "hemisphere" in result.glaciers.columns
    south = result.glaciers[result.glaciers["hemisphere"] == "S"]
    assert set(south["region"]) == {"South America"}
    assert list(result.table2.columns) == ["region", "rel_change_per_year", "se", "rel_se"]


# ---------------------------------------------------------------- files and CLI

def test_write_trends_writes_every_output(tmp_path, areas_truth) -> None:
    areas = areas_truth[0]
    src = tmp_path / "areas.parquet"
    parquet = areas.assign(date=pd.to_datetime(areas["date"]).dt.date)  # date32, as the time-series stage writes
    parquet.to_parquet(src, index=False)
    out = tmp_path / "trends"
    result = write_trends(src, out, min_obs=15, max_glacier_figures=3)
    for name in ("glacier_trends.csv", "glacier_trends.parquet", "region_trends.csv", "region_trends.parquet",
                 "region_annual.csv", "table2.csv", "table2.md", "trends_summary.json"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # staging folder removed
    for stem in ("glacier_trends", "region_trends"):
        csv = pd.read_csv(out / f"{stem}.csv")
        pq = pd.read_parquet(out / f"{stem}.parquet")
        assert list(csv.columns) == list(pq.columns)
        num = csv.select_dtypes("number").columns
        np.testing.assert_allclose(csv[num].to_numpy(float), pq[num].to_numpy(float), rtol=1e-12)
    gl = pd.read_csv(out / "glacier_trends.csv")
    assert list(gl.columns[:9]) == ["glims_id", "region", "n_obs", "first_date", "last_date",
                                    "rel_change_per_year", "rel_change_se", "intercept", "r2"]
    assert gl["first_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    md = (out / "table2.md").read_text()
    assert md.startswith("| Region | Relative area change | Standard error | Relative std. error |")
    assert md.count("\n| ") == len(REGION_RATES) + 1  # one line per region and Total
    t2 = pd.read_csv(out / "table2.csv")
    assert list(t2["region"]) == [*sorted(REGION_RATES), TOTAL]
    manifest = json.loads((out / "figures" / "figures.json").read_text())
    kinds = pd.Series([m["kind"] for m in manifest]).value_counts().to_dict()
    assert kinds == {"inventory": 1, "region": len(REGION_RATES) + 1, "glacier": 3}
    for m in nonempty(manifest):
        assert (out / "figures" / m["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "trends_summary.json").read_text())
    assert summary["min_obs"] == 15 and summary["n_glaciers"] == len(result.glaciers)


def test_rerun_replaces_old_figures(tmp_path, areas_truth) -> None:
    out = tmp_path / "trends"
    write_trends(areas_truth[0], out, min_obs=10, max_glacier_figures=2)
    (out / "notes.txt").write_text("mine")
    write_trends(areas_truth[0], out, min_obs=10, max_glacier_figures=1)
    assert len(list((out / "figures").glob("glacier_*.png"))) == 1
    assert (out / "notes.txt").read_text() == "mine"


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch, areas_truth) -> None:
    import glacierwatch.trends.stage as stage

    def broken(result, out_dir, **kwargs):
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "half.png").write_bytes(b"x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(stage, "make_figures", broken)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        write_trends(areas_truth[0], fresh, min_obs=10)
    assert not fresh.exists()

    monkeypatch.undo()
    old = tmp_path / "old"
    write_trends(areas_truth[0], old, min_obs=10, figures=False)
    before = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    monkeypatch.setattr(stage, "make_figures", broken)
    with pytest.raises(RuntimeError):
        write_trends(areas_truth[0], old, min_obs=3)
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == before


def test_cli_trends(tmp_path, capsys, areas_truth) -> None:
    src = tmp_path / "areas.csv"
    areas_truth[0].to_csv(src, index=False)
    out = tmp_path / "out"
    rc = main(["trends", str(src), "--out", str(out), "--min-obs", "12", "--glacier-figures", "0"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| Region | Relative area change |" in printed and "| Total |" in printed
    assert not list((out / "figures").glob("glacier_*.png"))
    assert json.loads((out / "trends_summary.json").read_text())["min_obs"] == 12


BAD_INPUTS = {
    "missing column": ("glims_id,region,date\nG1,Europe,2001-07-01\n",
                       "missing column(s) ['area_km2']"),
    "unparseable date": ("glims_id,region,date,area_km2\nG1,Europe,2001-07-01,1.0\nG1,Europe,2001-13-45,1.0\n",
                         "row 2 (line 3, glims_id G1): unparseable date '2001-13-45'"),
    "missing date": ("glims_id,region,date,area_km2\nG1,Europe,2001-07-01,1.0\nG1,Europe,,1.0\n",
                     "row 2 (line 3, glims_id G1): missing date"),
    "area not a number": ("glims_id,region,date,area_km2\nG1,Europe,2001-07-01,1.0\nG2,Asia,2001-07-01,big\n",
                          "row 2 (line 3, glims_id G2): area_km2 'big' is not a number"),
    "missing id": ("glims_id,region,date,area_km2\nG1,Europe,2001-07-01,1.0\n,Asia,2001-07-01,2\n",
                   "row 2 (line 3): missing glims_id"),
    "two regions": ("glims_id,region,date,area_km2\nG1,Europe,2001-07-01,1\nG1,Asia,2002-07-01,1\n",
                    "row 2 (line 3, glims_id G1): glacier is in region 'Asia' here but 'Europe'"),
    "reserved region": ("glims_id,region,date,area_km2\nG1,Total,2001-07-01,1\n", "'Total' is reserved"),
    "no valid area": ("glims_id,region,date,area_km2\nG1,Europe,2001-07-01,0\n", "no row has a positive area_km2"),
    "empty file": ("", "not a readable table"),
    "no rows": ("glims_id,region,date,area_km2\n", "the table has no rows"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_csv_gives_one_line_error_and_no_output(case, tmp_path, capsys) -> None:
    text, fragment = BAD_INPUTS[case]
    src = tmp_path / "areas.csv"
    src.write_text(text)
    out = tmp_path / "out"
    assert main(["trends", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith(("INFO", "WARNING"))]
    assert len(err) == 1 and err[0].startswith("glacierwatch: error: "), err
    assert fragment in err[0]
    assert "Traceback" not in err[0]
    assert not out.exists()


@pytest.mark.parametrize("name,content,fragment", [
    ("areas.parquet", b"this is not parquet at all", "not a readable table"),
    ("areas.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a readable table"),
    ("areas.xlsx", b"PK\x03\x04", "unknown table format"),
])
def test_file_that_is_not_a_table(name, content, fragment, tmp_path, capsys) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    out = tmp_path / "out"
    assert main(["trends", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
    assert not out.exists()


def test_missing_file_and_bad_options(tmp_path, capsys) -> None:
    assert main(["trends", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["trends", "x.csv", "--out", str(tmp_path / "o"), "--min-obs", "0"])
    with pytest.raises(InputError, match="min_obs"):
        compute_trends(pd.DataFrame(exact_glacier("G1", "A", 0.0, [dt.date(2000, 1, 1)])), min_obs=0)
    assert not (tmp_path / "o").exists()


def test_numeric_dates_are_rejected() -> None:
    frame = pd.DataFrame({"glims_id": ["G1"], "region": ["A"], "date": [20010701], "area_km2": [1.0]})
    with pytest.raises(InputError, match=r"row 1 \(glims_id G1\): date 20010701 is a number"):
        compute_trends(frame)


def test_region_whose_glaciers_are_all_flagged_still_gets_figures(tmp_path) -> None:
    """A region with only a short series (flagged) next to a normal one: outputs and figures, no crash."""
    import numpy as np
    import pandas as pd

    from glacierwatch.trends import write_trends

    dates = pd.date_range("2000-07-01", periods=15, freq="365D")
    long = pd.DataFrame({"glims_id": "G007000E46000N", "region": "Europe", "date": dates,
                         "area_km2": 5.0 * np.exp(-0.01 * np.arange(15))})
    short = pd.DataFrame({"glims_id": "G043000E43000N", "region": "Caucasus", "date": dates[:3],
                          "area_km2": [2.0, 2.0, 1.9]})
    result = write_trends(pd.concat([long, short]), tmp_path / "out", min_obs=10)
    assert (tmp_path / "out" / "figures" / "region_caucasus.png").exists()
    assert result.annual["mean_ln_area"].dtype == "float64"


# ---------------------------------------------------------------- intervals, quality flags (issue 13)

from glacierwatch.trends import PAPER_OPTIONS, TrendOptions, annual_table_path  # noqa: E402


def test_hac_se_is_statsmodels_newey_west_with_the_lag_of_two_years_of_data() -> None:
    """AR(1) residuals (rho 0.8), 4 scenes a year: the HAC SE is statsmodels' Newey-West with
    lag = ceil(2 years x observations per year), and it exceeds the classical SE."""
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    dates = [dt.date(1990 + i // 4, 4 + 2 * (i % 4), 10) for i in range(80)]
    e = np.zeros(len(dates))
    for i in range(1, len(e)):
        e[i] = 0.8 * e[i - 1] + rng.normal(0, 0.01)
    rows = [{"glims_id": "G001000E45000N", "region": "Alps", "date": d.isoformat(),
             "area_km2": 5.0 * np.exp(-0.01 * (np_decimal_year(d) - 2000) + e[i])} for i, d in enumerate(dates)]
    g = glacier_trends(pd.DataFrame(rows), min_obs=10).iloc[0]
    t = np.array([np_decimal_year(d) for d in dates])
    y = np.log([r["area_km2"] for r in rows])
    lag = int(np.ceil(2.0 * (len(t) - 1) / (t[-1] - t[0])))
    ref = sm.OLS(y, sm.add_constant(t)).fit(cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": True})
    assert g["hac_lag"] == lag
    assert g["rel_change_se_hac"] == pytest.approx(float(ref.bse[1]), rel=1e-9)
    assert g["rel_change_se_hac"] > 1.5 * g["rel_change_se"]
    resid = y - np.polyval(np.polyfit(t, y, 1), t)
    assert g["residual_lag1_autocorr"] == pytest.approx(np.corrcoef(resid[:-1], resid[1:])[0, 1], rel=1e-9)
    assert g["residual_lag1_autocorr"] > 0.5
    assert g["rel_change_se_ar1"] == pytest.approx(
        g["rel_change_se"] * np.sqrt((1 + g["residual_lag1_autocorr"]) / (1 - g["residual_lag1_autocorr"])), rel=1e-9)
    q = float(__import__("scipy").stats.t.ppf(0.975, len(t) - 2))
    total = max(g["rel_change_se_hac"], g["rel_change_se_ar1"])
    assert g["rel_change_se_total"] == pytest.approx(total, rel=1e-12)  # no interval columns: no systematic term
    assert g["rel_change_ci95_low"] == pytest.approx(g["rel_change_per_year"] - q * total, rel=1e-12)


def test_independent_systematic_term_closed_form() -> None:
    """``systematic = "independent"``: exact exponential, intervals +-h in ln(area): residuals vanish,
    so the systematic SE is (h / 1.96) / sqrt(sum (t - mean t)²) and it is the whole error bar."""
    from glacierwatch.trends.core import TrendOptions

    dates = [dt.date(y, 8, 1) for y in range(1990, 2021)]
    rows = exact_glacier("G001000E45000N", "Alps", -0.005, dates)
    h = 0.05
    for r in rows:
        r["area_km2_low"], r["area_km2_high"] = r["area_km2"] * np.exp(-h), r["area_km2"] * np.exp(h)
    g = glacier_trends(pd.DataFrame(rows), min_obs=10, options=TrendOptions(systematic="independent")).iloc[0]
    t = np.array([np_decimal_year(d) for d in dates])
    expected = (h / 1.96) / np.sqrt(((t - t.mean()) ** 2).sum())
    assert g["rel_change_se_sys"] == pytest.approx(expected, rel=1e-9)
    assert g["rel_change_se_total"] == pytest.approx(expected, rel=1e-6)
    assert g["rel_change_ci95_low"] < -0.005 < g["rel_change_ci95_high"]


def test_bound_slopes_systematic_term_closed_form() -> None:
    """Default ``systematic = "bound_slopes"``: an interval of constant relative width moves no slope
    (SE 0); an upper bound whose ln grows by c per year beyond the area's gives an SE of c / 1.96, and
    a lower bound moving less does not change it. The slope itself is the area's."""
    dates = [dt.date(y, 8, 1) for y in range(1990, 2021)]
    t = np.array([np_decimal_year(d) for d in dates])
    rows = exact_glacier("G001000E45000N", "Alps", -0.005, dates)
    h, c = 0.05, 0.002
    for r in rows:
        r["area_km2_low"], r["area_km2_high"] = r["area_km2"] * np.exp(-h), r["area_km2"] * np.exp(h)
    steady = glacier_trends(pd.DataFrame(rows), min_obs=10, options=TrendOptions()).iloc[0]
    assert abs(steady["rel_change_se_sys"]) < 1e-12
    for r, ti in zip(rows, t, strict=True):
        r["area_km2_high"] = r["area_km2"] * np.exp(h + c * (ti - t[0]))
        r["area_km2_low"] = r["area_km2"] * np.exp(-h - 0.5 * c * (ti - t[0]))
    g = glacier_trends(pd.DataFrame(rows), min_obs=10, options=TrendOptions()).iloc[0]
    assert g["rel_change_per_year"] == pytest.approx(-0.005, rel=1e-6)
    assert g["rel_change_se_sys"] == pytest.approx(c / 1.96, rel=1e-4)
    assert g["rel_change_ci95_low"] < -0.005 - c < -0.005 + c < g["rel_change_ci95_high"]


def test_unknown_systematic_is_refused() -> None:
    from glacierwatch.trends.core import TrendOptions

    dates = [dt.date(y, 8, 1) for y in range(1990, 2001)]
    rows = pd.DataFrame(exact_glacier("G001000E45000N", "Alps", -0.005, dates)).assign(area_km2_low=1.0,
                                                                                       area_km2_high=9.0)
    with pytest.raises(ValueError, match="unknown systematic 'bogus'"):
        glacier_trends(rows, min_obs=5, options=TrendOptions(systematic="bogus"))


def test_model_error_widening_stays_out_of_the_slope_unless_asked() -> None:
    """Intervals widened by the model's held-out error e (low x (1 - e), high x (1 + e), recorded in
    ``model_error_fraction``): with ``systematic = "independent"`` the slope's systematic SE is that of
    the unwidened intervals by default, and larger with ``model_error_in_slope``. With the default
    ``bound_slopes`` a constant widening cannot move a slope, counted or not."""
    dates = [dt.date(y, 8, 1) for y in range(1990, 2021)]
    rows = exact_glacier("G001000E45000N", "Alps", -0.005, dates)
    h, e = 0.05, 0.2
    for i, r in enumerate(rows):
        r["area_km2_low"], r["area_km2_high"] = r["area_km2"] * np.exp(-h), r["area_km2"] * np.exp(h + 0.001 * i)
    widened = pd.DataFrame(rows).assign(model_error_fraction=e)
    widened["area_km2_low"] *= 1 - e
    widened["area_km2_high"] *= 1 + e
    for kind in ("independent", "bound_slopes"):
        plain = glacier_trends(pd.DataFrame(rows), min_obs=10, options=TrendOptions(systematic=kind)).iloc[0]
        default = glacier_trends(widened, min_obs=10, options=TrendOptions(systematic=kind)).iloc[0]
        counted = glacier_trends(widened, min_obs=10,
                                 options=TrendOptions(model_error_in_slope=True, systematic=kind)).iloc[0]
        assert default["rel_change_se_sys"] == pytest.approx(plain["rel_change_se_sys"], rel=1e-9)
        if kind == "independent":
            assert counted["rel_change_se_sys"] > 3 * plain["rel_change_se_sys"]
        else:
            assert plain["rel_change_se_sys"] > 0
            assert counted["rel_change_se_sys"] == pytest.approx(plain["rel_change_se_sys"], rel=1e-9)


def trient_like(poor: bool = True) -> pd.DataFrame:
    """1.7 years of scenes (1990-05 .. 1991-12), one observing 2.5 % of the outline at a high area."""
    dates = [dt.date(1990, 5, 1) + dt.timedelta(days=21 * i) for i in range(29)]
    rows = exact_glacier("G007026E45991N", "Europe", -0.01, dates, area0=6.4)
    for i, r in enumerate(rows):
        r["valid_fraction"] = 0.025 if (poor and i % 2 == 0) else 0.9
    rows[3]["area_km2"] = 0.947
    return pd.DataFrame(rows)


def test_short_poorly_observed_record_is_flagged_by_the_config_defaults_not_by_the_paper() -> None:
    from glacierwatch.config import TrendsConfig

    options = TrendOptions.from_config(TrendsConfig())
    g = compute_trends(trient_like(), min_obs=10, options=options).glaciers.iloc[0]
    assert g["flagged"]
    assert "record spans 1.6 years (< 5)" in g["flag_reason"]
    assert "areas in 2 year(s) (< 5)" in g["flag_reason"]
    assert "of observations with valid_fraction < 0.5" in g["flag_reason"]
    assert g["span_years"] == pytest.approx(1.6, abs=0.05) and g["n_years"] == 2
    assert g["poor_scene_share"] == pytest.approx(15 / 29)
    paper = compute_trends(trient_like(), min_obs=10, options=PAPER_OPTIONS).glaciers.iloc[0]
    assert not paper["flagged"] and paper["flag_reason"] == ""


def test_min_r2_rule_and_flag_reason_in_the_csv(tmp_path, caplog) -> None:
    areas, _ = make_areas(5, regions={"Europe": -0.002}, per_region=4, obs=(20, 30), noise=0.05)
    options = TrendOptions(min_r2=0.99)
    with caplog.at_level(logging.WARNING):
        result = write_trends(areas, tmp_path / "out", min_obs=5, options=options, fit_on="scenes", figures=False)
    gl = result.glaciers
    assert gl["flagged"].all() and gl["flag_reason"].str.contains("r² ").all()
    csv = pd.read_csv(tmp_path / "out" / "glacier_trends.csv")
    assert csv["flag_reason"].str.contains("< 0.99").all()
    assert "flagged G" in caplog.text and "not a headline figure" in caplog.text


def test_geometric_mean_sign_disagreement_is_warned(caplog) -> None:
    """A small glacier seen only early and a large one only late, both shrinking: the geometric mean
    of the year grows while every glacier shrinks."""
    early = exact_glacier("G001000E45000N", "Alps", -0.01, [dt.date(y, 7, 1) for y in range(1990, 2000)], area0=1.0)
    late = exact_glacier("G001001E45000N", "Alps", -0.01, [dt.date(y, 7, 1) for y in range(2000, 2010)], area0=20.0)
    with caplog.at_level(logging.WARNING):
        result = compute_trends(pd.DataFrame(early + late), min_obs=5)
    alps = result.regions.set_index("region").loc["Alps"]
    assert alps["rel_change_per_year"] < 0 < alps["geomean_rel_change_per_year"]
    assert alps["sign_disagrees"]
    assert "has the other sign than the glacier-weighted mean" in caplog.text
    assert result.summary()["sign_disagrees"] == ["Alps", TOTAL]


def test_regional_combined_se_adds_the_glaciers_own_errors(areas_truth) -> None:
    areas, _ = areas_truth
    result = compute_trends(areas, min_obs=15)
    gl = result.glaciers[~result.glaciers["flagged"]]
    europe = result.regions.set_index("region").loc["Europe"]
    e = gl[gl["region"] == "Europe"]
    w = e["n_obs"].to_numpy(float)
    own = np.sqrt(((w * e["rel_change_se_total"]) ** 2).sum()) / w.sum()
    assert europe["se_glaciers"] == pytest.approx(own, rel=1e-9)
    assert europe["se_combined"] == pytest.approx(np.hypot(europe["se"], own), rel=1e-9)
    assert europe["ci95_low_combined"] < europe["ci95_low"] < europe["rel_change_per_year"]


def test_fit_on_annual_uses_the_annual_table_beside_the_areas(tmp_path) -> None:
    """A generated annual table next to areas.parquet (``areas.annual.parquet``) is what is fitted."""
    areas, _ = make_areas(2, regions={"Europe": -0.003}, per_region=3, obs=(30, 40))
    areas_path = tmp_path / "areas.parquet"
    areas.to_parquet(areas_path)
    a = areas.assign(year=pd.to_datetime(areas["date"]).dt.year)
    annual = (a.groupby(["glims_id", "region", "year"], as_index=False)
              .agg(area_km2=("area_km2", "mean"), n_scenes=("area_km2", "size")))
    annual["date"] = pd.to_datetime(annual["year"].astype(str) + "-07-01")
    annual["area_km2_low"], annual["area_km2_high"] = annual["area_km2"] * 0.97, annual["area_km2"] * 1.03
    annual["valid_fraction"] = 0.95
    annual.to_parquet(annual_table_path(areas_path))
    assert annual_table_path(areas_path).name == "areas.annual.parquet"
    result = write_trends(areas_path, tmp_path / "out", min_obs=5, figures=False)
    assert result.fit_on == "annual"
    n_years = annual.groupby("glims_id").size()
    assert result.glaciers.set_index("glims_id")["n_obs"].to_dict() == n_years.to_dict()
    assert result.glaciers["rel_change_se_sys"].notna().all()
    scenes = write_trends(areas_path, tmp_path / "out2", min_obs=5, figures=False, fit_on="scenes")
    assert scenes.fit_on == "scenes" and scenes.glaciers["n_obs"].sum() == len(areas)
    summary = json.loads((tmp_path / "out" / "trends_summary.json").read_text())
    assert summary["fit_on"] == "annual" and summary["options"]["min_span_years"] == 5.0


def test_bad_fit_on_is_a_config_error(tmp_path) -> None:
    from glacierwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="fit_on"):
        write_trends(trient_like(), tmp_path / "o", fit_on="monthly")
    assert not (tmp_path / "o").exists()
