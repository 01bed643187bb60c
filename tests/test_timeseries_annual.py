"""End-of-season annual areas, season windows and smoothing over dates."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from glacierwatch.config import TimeseriesConfig
from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.timeseries.annual import annual_areas, season_year
from glacierwatch.timeseries.areas import season_months
from glacierwatch.timeseries.stack import SceneStack, smooth_stack, time_kernel_rows


def _areas(rows: list[tuple[str, str, float, bool, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"glims_id": g, "region": "Europe", "date": pd.Timestamp(d), "area_km2": a,
                          "area_km2_low": a - 0.1, "area_km2_high": a + 0.2, "use": u, "valid_fraction": 1.0,
                          "snow_fraction": s} for g, d, a, u, s in rows])


def test_annual_statistics_pick_from_the_counted_scenes_only() -> None:
    areas = _areas([
        ("G1", "2000-08-10", 5.0, True, 0.30), ("G1", "2000-09-10", 4.0, True, 0.05),
        ("G1", "2000-10-01", 4.4, True, 0.10), ("G1", "2000-06-01", 9.0, False, 0.9),
        ("G1", "2001-09-01", 3.9, True, np.nan), ("G1", "2002-06-01", 9.9, False, 0.9),
    ])
    median = annual_areas(areas, statistic="median")
    assert list(median["year"]) == [2000, 2001]  # 2002 has no counted scene
    first = median.iloc[0]
    assert first["area_km2"] == pytest.approx(4.4) and first["area_km2_low"] == pytest.approx(4.3)
    assert first["area_km2_high"] == pytest.approx(4.6)
    assert first["n_scenes"] == 3 and first["n_candidates"] == 4
    assert first["date"] == pd.Timestamp("2000-09-10")  # the middle counted scene
    assert annual_areas(areas, statistic="min").iloc[0]["area_km2"] == pytest.approx(4.0)
    assert annual_areas(areas, statistic="least_snow").iloc[0]["area_km2"] == pytest.approx(4.0)
    assert annual_areas(areas, statistic="q25").iloc[0]["area_km2"] == pytest.approx(4.2)
    assert median["date"].dtype.kind == "M"
    with pytest.raises(InputError, match="annual_statistic"):
        annual_areas(areas, statistic="mode")


def test_southern_seasons_run_across_the_new_year() -> None:
    dates = pd.Series(pd.to_datetime(["2000-12-15", "2001-03-01", "2001-08-01"]))
    assert list(season_year(dates, -45.0)) == [2001, 2001, 2002]
    assert list(season_year(dates, 45.0)) == [2000, 2001, 2001]


def test_season_windows_by_hemisphere_and_latitude() -> None:
    cfg = TimeseriesConfig()
    assert season_months(cfg, 46.0) == frozenset({8, 9, 10})
    assert season_months(cfg, -40.0) == frozenset({2, 3, 4})
    assert season_months(cfg, 5.0) == frozenset(range(1, 13))  # tropics: no single season
    seed = TimeseriesConfig(season="seed")
    assert season_months(seed, 46.0) == frozenset(range(5, 11))
    assert season_months(TimeseriesConfig(season="all"), 46.0) == frozenset(range(1, 13))


def test_time_kernel_depends_on_dates_not_on_image_counts() -> None:
    """A dense burst of images does not widen the kernel in time, and nothing is reflected at the ends."""
    days = np.array([0.0, 1.0, 2.0, 3.0, 200.0, 400.0])
    lo, hi, w = time_kernel_rows(days, 0, 6, 10.0)
    assert (lo, hi) == (0, 6)
    assert w[0, 4] == 0.0 and w[4, 5] == 0.0  # 200 days apart: beyond 4 sigma
    assert w[4, 4] == 1.0 and w[0, 3] == pytest.approx(np.exp(-0.5 * 0.09))
    grid = GlacierGrid("EPSG:32632", 0.0, 0.0, 30.0, 2, 2)
    values = np.arange(6, dtype=np.float32)[:, None, None, None] * np.ones((6, 1, 2, 2), np.float32)
    stack = SceneStack(("blue",), values, None, np.ones((6, 2, 2), np.float32), np.ones(6), grid)
    smoothed, support = smooth_stack(stack, mode="time", sigma=10.0, days=days)
    assert smoothed[4, 0, 0, 0] == pytest.approx(4.0) and smoothed[5, 0, 0, 0] == pytest.approx(5.0)
    assert smoothed[0, 0, 0, 0] == pytest.approx(np.average([0, 1, 2, 3], weights=w[0, :4]))
    # an unobserved scene takes its value from observed neighbours only (weights renormalised)
    stack.weight[1] = 0.0
    stack.bands[1] = np.nan
    smoothed, _ = smooth_stack(stack, mode="time", sigma=10.0, days=days)
    assert smoothed[1, 0, 0, 0] == pytest.approx(np.average([0, 2, 3], weights=w[1, [0, 2, 3]]))
    with pytest.raises(InputError, match="dates"):
        smooth_stack(stack, mode="time", sigma=10.0)


def test_seed_season_and_dates_are_typed_options() -> None:
    assert dt.date(2000, 9, 1).month in season_months(TimeseriesConfig(), 46.5)


def test_ndsi_baseline_never_counts_open_water() -> None:
    from glacierwatch.features import ndsi_mask

    # ice, snow, a lake (NDSI > 0.4 too) and rock, as surface reflectance
    bands = {"green": np.array([0.75, 0.9, 0.08, 0.15]), "swir16": np.array([0.05, 0.1, 0.01, 0.3]),
             "nir08": np.array([0.55, 0.8, 0.02, 0.25])}
    assert list(ndsi_mask(bands)) == [True, True, False, False]
    assert list(ndsi_mask(bands, exclude_water=False)) == [True, True, True, False]
