"""docs/tutorial/trient.py runs, as a user would run it, on the real Trient exports and SGI outlines,
and each step leaves a sane output: the inventory row, the imported scenes and DEM, the catalog, the
areas, the overlay PNG, the flagged short-record trend with its interval, the SGI 2010 validation row.
Skipped when ../shared/data is not there (about 20 s otherwise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "docs" / "tutorial" / "trient.py"
SHARED = REPO.parent / "shared" / "data"
TRIENT = SHARED / "glacierview_trient_l5_toa_timeseries"
REGION = SHARED / "sgi2010_trient_region" / "SGI_2010_trient_region_lv95.shp"
SGI_2010 = SHARED / "sgi_multitemporal_switzerland" / "sgi2010_outlines" / "SGI_2010.shp"

pytestmark = pytest.mark.slow


def _git_status() -> str:
    done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO, capture_output=True,
                          text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The tutorial run once in a temp folder from an empty working directory: its paths and output."""
    missing = [p for p in (TRIENT, REGION, SGI_2010) if not p.exists()]
    if missing:
        pytest.skip(f"the tutorial's real data is not in ../shared/data: {', '.join(map(str, missing))}")
    root = tmp_path_factory.mktemp("tutorial")
    work, cwd = root / "work", root / "cwd"
    cwd.mkdir()
    repo_before = _git_status()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(work), "--shared", str(SHARED)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return {"work": work, "cwd": cwd, "stdout": done.stdout, "repo_before": repo_before,
            "repo_after": _git_status()}


def _trient_id(work: Path) -> str:
    inv = gpd.read_parquet(work / "inventory.parquet")
    return str(inv.loc[inv["source_id"] == "B90-02", "glims_id"].iloc[0])


def test_writes_only_into_the_work_folder(tutorial: dict[str, object]) -> None:
    assert list(Path(tutorial["cwd"]).iterdir()) == []
    assert tutorial["repo_after"] == tutorial["repo_before"]
    for name in ("trient.toml", "inventory.parquet", "catalog.parquet", "areas.parquet"):
        assert (Path(tutorial["work"]) / name).is_file(), name
    assert "$ glacierwatch inventory select" in str(tutorial["stdout"])  # each step shows its command


def test_inventory_has_trient_with_its_sgi_area_and_its_neighbours(tutorial: dict[str, object]) -> None:
    inv = gpd.read_parquet(Path(tutorial["work"]) / "inventory.parquet")
    sgi = gpd.read_file(REGION)
    trient = inv.loc[inv["source_id"] == "B90-02"]
    assert len(trient) == 1
    sgi_km2 = sgi.loc[sgi["SGI"] == "B90-02", "Shape_Area"].sum() / 1e6
    assert trient["area_km2"].iloc[0] == pytest.approx(sgi_km2, rel=0.01)
    assert len(inv) > 1  # the region's other large glaciers stay in the inventory


def test_every_export_is_imported_with_the_dem(tutorial: dict[str, object]) -> None:
    work = Path(tutorial["work"])
    trient = _trient_id(work)
    exports = sorted((TRIENT / "landsat5_c01_toa").glob("*.tif"))
    scenes = sorted((work / "scenes" / trient).glob("*.tif"))
    assert len(scenes) == len(exports) > 0
    assert (work / "dem" / f"{trient}.tif").is_file()
    catalog = pd.read_parquet(work / "catalog.parquet")
    assert len(catalog) == len(scenes) and (catalog["status"] == "ok").all()


def test_areas_are_sane_and_none_is_counted(tutorial: dict[str, object]) -> None:
    work = Path(tutorial["work"])
    areas = pd.read_parquet(work / "areas.parquet")
    catalog = pd.read_parquet(work / "catalog.parquet")
    assert len(areas) == len(catalog)  # the relaxed inference filter keeps every scene
    assert (areas["glims_id"] == _trient_id(work)).all()
    assert (areas["area_km2"] > 0).all()
    assert ((areas["area_km2_low"] <= areas["area_km2"]) & (areas["area_km2"] <= areas["area_km2_high"])).all()
    assert areas["valid_fraction"].between(0, 1).all()
    assert set(areas["date"].dt.year) <= {1990, 1991}
    # the premise of '--fit-on scenes' in the tutorial: no scene has 90 % of the outline observed
    assert not areas["use"].any()
    annual = work / "areas.annual.parquet"
    assert not annual.exists() or pd.read_parquet(annual).empty


def test_overlay_png(tutorial: dict[str, object]) -> None:
    from PIL import Image

    pngs = sorted((Path(tutorial["work"]) / "overlays").glob("overlay_*_1990-09-01_*.png"))
    assert len(pngs) == 1
    with Image.open(pngs[0]) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert min(pixels.shape[:2]) > 200
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a picture, not a blank


def test_trend_is_flagged_for_the_short_record_with_its_interval(tutorial: dict[str, object]) -> None:
    work = Path(tutorial["work"])
    areas = pd.read_parquet(work / "areas.parquet")
    trends = pd.read_csv(work / "trends" / "glacier_trends.csv")
    assert len(trends) == 1
    row = trends.iloc[0]
    assert row["glims_id"] == _trient_id(work) and bool(row["flagged"])
    span = (areas["date"].max() - areas["date"].min()).days / 365.25
    assert row["span_years"] == pytest.approx(span, abs=0.01)
    assert f"record spans {span:.1f} years" in row["flag_reason"]
    assert row["n_obs"] == len(areas)
    assert np.isfinite([row["rel_change_ci95_low"], row["rel_change_ci95_high"]]).all()
    assert row["rel_change_ci95_low"] < row["rel_change_per_year"] < row["rel_change_ci95_high"]
    summary = json.loads((work / "trends" / "trends_summary.json").read_text(encoding="utf-8"))
    assert summary["fit_on"] == "scenes"
    assert (work / "trends" / "figures" / f"glacier_{_trient_id(work)}.png").is_file()


def test_validation_row_for_trient_against_sgi_2010(tutorial: dict[str, object]) -> None:
    work = Path(tutorial["work"])
    sgi = gpd.read_file(REGION)
    sgi_km2 = sgi.loc[sgi["SGI"] == "B90-02", "Shape_Area"].sum() / 1e6
    late = pd.read_csv(work / "areas_late_summer.csv", parse_dates=["date"])
    assert len(late) > 0 and late["date"].dt.month.isin([8, 9, 10]).all() and (late["valid_fraction"] >= 0.8).all()

    same_years = pd.read_csv(work / "validation" / "validation.csv")
    since_1990 = pd.read_csv(work / "validation_since_1990" / "validation.csv")
    for table in (same_years, since_1990):
        row = table.loc[table["glims_id"] == _trient_id(work)]
        assert len(row) == 1
        row = row.iloc[0]
        assert row["source"] == "SGI 2010" and row["reference_id"] == "B90-02"
        assert row["match_method"].startswith("location: inside")
        assert row["reference_area_km2"] == pytest.approx(sgi_km2, rel=0.01)
    # within SGI 2010's own ± 730 days there is no area of ours: the row says so
    row = same_years.iloc[0]
    assert row["our_n"] == 0 and "no area of ours" in row["note"]
    # across the 19 years: every late-summer area, and the ratio is theirs over SGI's
    row = since_1990.iloc[0]
    assert row["our_n"] == len(late)
    assert row["our_area_km2"] == pytest.approx(late["area_km2"].mean(), rel=1e-6)
    assert row["ratio"] == pytest.approx(row["our_area_km2"] / row["reference_area_km2"], rel=1e-6)
