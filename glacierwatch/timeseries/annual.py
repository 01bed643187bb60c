"""Annual areas: one area per glacier and year from its counted end-of-season scenes.

Glaciologists map outlines at the end of the ablation season, when seasonal snow is at its minimum.
Each scene of ``areas.parquet`` says whether it counts (``use``: in the season window of
:func:`glacierwatch.timeseries.areas.season_months`, at least ``min_valid_fraction`` of the outline
observed, the sun at least ``min_sun_elevation`` degrees high, read and placed on the grid); the annual area of a glacier and year is a robust statistic
of its counted scenes (``TimeseriesConfig.annual_statistic``), and its interval the same statistic
of the scenes' interval bounds. The trends are fitted on this table by default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from glacierwatch.config import AnnualStatistic, choices
from glacierwatch.errors import InputError

#: the statistics of ``TimeseriesConfig.annual_statistic``, from its Literal type (one list to keep)
ANNUAL_STATISTICS = choices(AnnualStatistic)

ANNUAL_COLUMNS = (
    "glims_id", "region", "year", "date", "area_km2", "area_km2_low", "area_km2_high", "model_error_fraction",
    "n_scenes",
    "n_candidates", "valid_fraction", "snow_fraction", "statistic",
)


def season_year(dates: pd.Series, latitude: pd.Series | float) -> pd.Series:
    """The ablation-season year of each scene: the calendar year, except that southern scenes from
    July on belong to the season ending the next year (so Nov-Apr is one season)."""
    stamps = pd.to_datetime(dates)
    south = np.asarray(latitude, dtype=float) < 0
    return (stamps.dt.year + (south & (stamps.dt.month >= 7)).astype(int)).astype(int)


def _pick(group: pd.DataFrame, statistic: str) -> dict[str, float]:
    a = group["area_km2"].to_numpy(float)
    lo = group["area_km2_low"].to_numpy(float)
    hi = group["area_km2_high"].to_numpy(float)
    if statistic in ("min", "least_snow"):
        if statistic == "min":
            i = int(np.nanargmin(a))
        else:  # least snow off the glacier; ties (or no measure) broken by the better-observed scene
            snow = np.nan_to_num(group["snow_fraction"].to_numpy(float), nan=np.inf)
            order = np.lexsort((-group["valid_fraction"].to_numpy(float), snow))
            i = int(order[0])
        return {"area_km2": a[i], "area_km2_low": lo[i], "area_km2_high": hi[i]}
    reducers: dict[str, Callable[[np.ndarray], Any]] = {
        "median": np.nanmedian, "mean": np.nanmean, "q25": lambda v: np.nanquantile(v, 0.25)}
    reduce = reducers[statistic]
    return {"area_km2": float(reduce(a)), "area_km2_low": float(reduce(lo)), "area_km2_high": float(reduce(hi))}


def annual_areas(areas: pd.DataFrame, *, statistic: str = "median", latitude: dict[str, float] | None = None
                 ) -> pd.DataFrame:
    """The annual table (columns :data:`ANNUAL_COLUMNS`) of a per-scene areas table.

    ``areas`` needs ``glims_id, region, date, area_km2`` and, when present, uses ``use`` (else every
    scene with a finite area counts), ``area_km2_low/high`` (else the area), ``valid_fraction`` and
    ``snow_fraction``. ``latitude``: per glacier (degrees) for the southern season year (None: all
    northern). ``date`` of a year: the median date of its counted scenes (the lower middle one of an even
    number; the x of the trend fit);
    ``n_candidates``: scenes of that year before the ``use`` rule.
    """
    if statistic not in ANNUAL_STATISTICS:
        raise InputError(f"unknown annual_statistic {statistic!r}; choose one of {', '.join(ANNUAL_STATISTICS)}")
    missing = [c for c in ("glims_id", "region", "date", "area_km2") if c not in areas.columns]
    if missing:
        raise InputError(f"areas table lacks column(s) {missing}")
    df = areas.copy()
    df["date"] = pd.to_datetime(df["date"])
    for col in ("area_km2_low", "area_km2_high"):
        if col not in df:
            df[col] = df["area_km2"]
    for col in ("valid_fraction", "snow_fraction"):
        if col not in df:
            df[col] = np.nan
    if "model_error_fraction" not in df:  # an areas table from before the column, or anyone's
        df["model_error_fraction"] = 0.0
    if "use" not in df:
        df["use"] = np.isfinite(df["area_km2"].to_numpy(float))
    lat = df["glims_id"].map(latitude or {}).fillna(1.0).to_numpy(float)
    df["year"] = season_year(df["date"], lat).to_numpy()
    candidates = df.groupby(["glims_id", "year"]).size()
    rows = []
    for (gid, year), group in df[df["use"].astype(bool)].groupby(["glims_id", "year"], sort=True):
        picked = _pick(group, statistic)
        dates = group["date"].sort_values()
        rows.append({
            "glims_id": gid, "region": group["region"].iloc[0], "year": int(year),
            "date": dates.iloc[(len(dates) - 1) // 2], **picked,
            # the intervals' widening by the model's held-out error (the same for every scene of a run)
            "model_error_fraction": float(group["model_error_fraction"].max()),
            "n_scenes": int(len(group)), "n_candidates": int(candidates.loc[(gid, year)]),
            "valid_fraction": float(group["valid_fraction"].mean()),
            "snow_fraction": float(group["snow_fraction"].mean()) if group["snow_fraction"].notna().any() else np.nan,
            "statistic": statistic,
        })
    out = pd.DataFrame(rows, columns=list(ANNUAL_COLUMNS))
    out["date"] = pd.to_datetime(out["date"]).astype("datetime64[us]")
    return out.astype({"year": "int64", "n_scenes": "int64", "n_candidates": "int64"})
