"""Relative area change per glacier and per region (the paper's Appendix A, Figure 18 and Table II).

Every rate is the slope of ln(area) against the decimal year, i.e. a *fraction per year*:
-0.01 means the area shrinks by about 1 % per year.

* Per glacier: ordinary least squares of ln(area_km2) on t (classical standard error).
* Per region (and ``Total``), three estimates over the glaciers that pass the ``min_obs`` filter:

  1. ``rel_change_per_year`` / ``se``: the mean of the glacier slopes weighted by their number of
     observations; its standard error is that of the intercept of a weighted least squares
     regression of the slopes on a constant (spread between glaciers, as in the paper's Table II).
  2. ``geomean_rel_change_per_year`` / ``geomean_se``: per calendar year the mean of ln(area) over all
     observations (a geometric mean) at the mean decimal year, fitted by WLS on t with weights = the
     number of observations in the year (the paper's second method).
  3. ``panel_rel_change_per_year`` / ``panel_se``: glacier fixed effects, ln(area) = a_glacier + b t,
     with standard errors clustered by glacier.

Beside the paper's columns (kept as they are), every glacier gets an interval that is honest about
serially correlated residuals and systematic error (see :class:`TrendOptions` and docs/trends.md):

* ``rel_change_se_hac``: Newey-West (HAC) standard error of the OLS slope, lag tied to the data
  spacing (``hac_lag_years`` of observations), small-sample corrected;
* ``rel_change_se_ar1``: the OLS SE scaled by sqrt((1 + rho) / (1 - rho)), rho the lag-1
  autocorrelation of the residuals clipped to 0..0.99 (AR(1) effective sample size);
* ``rel_change_se_sys``: the slope error implied by the per-observation intervals
  (``area_km2_low`` .. ``area_km2_high``). By default (``systematic = "bound_slopes"``) the slopes of
  ln(low) and ln(high) are fitted like the area's, and the larger distance of either from the slope is
  read as a 95 % range: what the slope would be if the glacier's pixels between the interval's two
  thresholds (and its unobserved part) were glacier in every scene, or in none. A relative offset that
  stays the same cancels in that slope; one that grows or shrinks over the record does not.
  ``independent``: each interval read as an independent 95 % error of ln(area), propagated through the
  OLS weights and inflated by the residuals' correlated/OLS variance ratio;
* ``rel_change_se_total`` = sqrt(max(hac, ar1)² + sys²) and the 95 % interval ``rel_change_ci95_low/high``
  (Student t with n - 2 degrees of freedom).

Regional rows add ``se_glaciers`` (the weighted mean's error from the glaciers' own total SEs),
``se_combined`` = sqrt(se² + se_glaciers²) and its 95 % interval, and ``sign_disagrees`` (the
geometric-mean slope has the other sign than the glacier-weighted mean: a warning is logged).

All fits use statsmodels.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from glacierwatch.errors import InputError

log = logging.getLogger(__name__)

#: Columns an areas table must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("glims_id", "region", "date", "area_km2")
#: Name of the row over all glaciers in the regional table.
TOTAL = "Total"
#: Two-sided 95 % normal quantile used for ``ci95_low`` / ``ci95_high``.
Z95 = 1.96

GLACIER_COLUMNS: tuple[str, ...] = (
    "glims_id", "region", "n_obs", "first_date", "last_date", "rel_change_per_year", "rel_change_se",
    "intercept", "r2", "flagged", "flag_reason",
    # ours (docs/trends.md): fraction per year like rel_change_per_year
    "rel_change_se_hac", "rel_change_se_ar1", "rel_change_se_sys", "rel_change_se_total", "rel_change_ci95_low",
    "rel_change_ci95_high", "hac_lag", "residual_lag1_autocorr", "span_years", "n_years",
    "poor_scene_share",
)
REGION_STAT_COLUMNS: tuple[str, ...] = (
    "n_glaciers", "n_obs", "rel_change_per_year", "se", "rel_se", "ci95_low", "ci95_high",
    "geomean_rel_change_per_year", "geomean_se", "panel_rel_change_per_year", "panel_se",
    "n_glaciers_flagged", "n_years",
    # ours (docs/trends.md)
    "se_glaciers", "se_combined", "ci95_low_combined", "ci95_high_combined", "sign_disagrees",
)

#: Optional numeric columns of an areas table carried to the fits.
OPTIONAL_COLUMNS: tuple[str, ...] = ("area_km2_low", "area_km2_high", "model_error_fraction", "valid_fraction",
                                     "n_scenes")


@dataclass(frozen=True)
class TrendOptions:
    """Quality rules and interval settings of the per-glacier fits (defaults: the paper's rules, no
    extra flags; :meth:`from_config` gives glacierwatch's defaults from ``[trends]``).

    ``min_span_years``: flag a glacier whose first and last observation are closer (years).
    ``min_years``: flag a glacier with fewer calendar years holding an area.
    ``min_r2``: flag a glacier whose fit explains less (0 = off).
    ``max_poor_share`` / ``min_valid_fraction``: flag a glacier more than this share of whose scenes
    (or annual areas) have ``valid_fraction`` below ``min_valid_fraction`` (needs that column).
    ``hac_lag_years``: the Newey-West lag covers this many years of observations (at least 1 lag).
    ``systematic``: how the observations' intervals give the slope's systematic SE: ``bound_slopes``
    (default) or ``independent`` (module docstring; docs/trends.md has the measurement behind the
    default).
    ``model_error_in_slope``: whether the intervals' widening by the model's held-out relative error
    (column ``model_error_fraction``) enters the slope's systematic SE. False (default): it is taken
    out again. A relative bias that stays the same from scene to scene cancels in the slope of
    ln(area), and one that varies from scene to scene is in the residuals, which the HAC and AR(1)
    errors measure; counted again as independent per-scene error it widened the demo's 95 % intervals
    from a median half-width of 0.28 to 0.64 %/yr with no glacier's truth outside either.
    """

    min_span_years: float = 0.0
    min_years: int = 0
    min_r2: float = 0.0
    max_poor_share: float = 1.0
    min_valid_fraction: float = 0.5
    hac_lag_years: float = 2.0
    model_error_in_slope: bool = False
    systematic: str = "bound_slopes"

    @classmethod
    def from_config(cls, config: Any) -> TrendOptions:
        """From a :class:`~glacierwatch.config.TrendsConfig`."""
        return cls(min_span_years=float(config.min_span_years), min_years=int(config.min_years),
                   min_r2=float(config.min_r2), max_poor_share=float(config.max_poor_share),
                   min_valid_fraction=float(config.min_valid_fraction),
                   hac_lag_years=float(config.hac_lag_years),
                   model_error_in_slope=bool(config.model_error_in_slope),
                   systematic=str(config.systematic))


PAPER_OPTIONS = TrendOptions()


# ---------------------------------------------------------------- time

def decimal_year(dates: Any) -> Any:
    """Decimal year of each date: ``year + (day_of_year - 1) / days_in_year`` (time of day ignored).

    Accepts anything :func:`pandas.to_datetime` accepts (strings, ``datetime.date``, datetime64, a
    Series or a scalar); returns a float64 array (NaN for missing dates), or a float for a scalar.
    """
    scalar = np.ndim(dates) == 0 and not isinstance(dates, (pd.Series, pd.Index))
    values = pd.Series([dates] if scalar else dates)
    if pd.api.types.is_datetime64_any_dtype(values):
        idx = pd.DatetimeIndex(values)
    else:
        idx = pd.DatetimeIndex(pd.to_datetime(values, format="ISO8601", utc=True))
    if idx.tz is not None:
        idx = idx.tz_convert(None)
    year = idx.year.to_numpy(dtype="float64", na_value=np.nan)
    doy = idx.day_of_year.to_numpy(dtype="float64", na_value=np.nan)
    days = np.where(idx.is_leap_year, 366.0, 365.0)
    out = year + (doy - 1.0) / days
    return float(out[0]) if scalar else out


# ---------------------------------------------------------------- input checks

@dataclass
class AreaCounts:
    """How many rows of the areas table were read, dropped and kept."""

    n_rows: int
    n_dropped_missing: int
    n_dropped_nonpositive: int

    @property
    def n_valid(self) -> int:
        return self.n_rows - self.n_dropped_missing - self.n_dropped_nonpositive


def _row_error(source: str, frame: pd.DataFrame, bad: np.ndarray,
               problem: str | Callable[[int], str], first_line: int | None = None) -> InputError:
    """An InputError naming the first bad row (counted from 1, header excluded; with the file line
    when ``first_line``, the line of row 1, is given) and how many more rows have the problem."""
    positions = np.flatnonzero(bad)
    pos = int(positions[0])
    where = [f"line {pos + first_line}"] if first_line is not None else []
    gid = frame["glims_id"].iloc[pos] if "glims_id" in frame.columns else None
    if gid is not None and not pd.isna(gid) and str(gid).strip():
        where.append(f"glims_id {gid}")
    where_text = f" ({', '.join(where)})" if where else ""
    more = f"; {len(positions) - 1} more row(s) like it" if len(positions) > 1 else ""
    text = problem(pos) if callable(problem) else problem
    return InputError(f"{source}: row {pos + 1}{where_text}: {text}{more}")


def _is_blank(series: pd.Series) -> np.ndarray:
    blank = series.isna().to_numpy()
    text = series.astype(str).str.strip()
    return blank | (text == "").to_numpy()


def prepare_areas(areas: pd.DataFrame, *, by: str = "region", source: str = "areas table",
                  first_line: int | None = None) -> tuple[pd.DataFrame, AreaCounts]:
    """Check an areas table and return its valid rows with ``t`` (decimal year) and ``ln_area``.

    Raises :class:`InputError` naming the problem and the first bad row (rows counted from 1, header
    excluded) for: a missing column, an empty table, a missing ``glims_id`` / ``region`` / ``by``
    value, a missing or unparseable date, a non-numeric or infinite area, a glacier listed in two
    regions, or a region named ``Total``. ``first_line``: the file line of row 1 (2 for a CSV with a
    header), added to the messages. Rows with a missing or non-positive area are dropped and
    counted (the counts are returned and logged).
    """
    if not isinstance(areas, pd.DataFrame):
        raise InputError(f"{source}: expected a table, got {type(areas).__name__}")
    required = list(REQUIRED_COLUMNS) + ([by] if by not in REQUIRED_COLUMNS else [])
    missing = [c for c in required if c not in areas.columns]
    if missing:
        found = [str(c)[:40] for c in areas.columns[:20]] + (["..."] if len(areas.columns) > 20 else [])
        raise InputError(f"{source}: missing column(s) {missing}; found {found}")
    frame = areas.reset_index(drop=True)

    def row_error(bad: np.ndarray, problem: str | Callable[[int], str]) -> InputError:
        return _row_error(source, frame, bad, problem, first_line)

    if len(frame) == 0:
        raise InputError(f"{source}: the table has no rows")

    for column in dict.fromkeys(["glims_id", "region", by]):
        blank = _is_blank(frame[column])
        if blank.any():
            raise row_error(blank, f"missing {column}")

    raw_dates = frame["date"]
    if pd.api.types.is_numeric_dtype(raw_dates) and not pd.api.types.is_bool_dtype(raw_dates):
        raise row_error(np.ones(len(frame), dtype=bool),
                        lambda i: f"date {raw_dates.iloc[i]} is a number; dates must be ISO dates, YYYY-MM-DD")
    dates = pd.to_datetime(raw_dates, errors="coerce", format="ISO8601", utc=True)
    bad = dates.isna().to_numpy()
    if bad.any():
        raise row_error(bad, lambda i: ("missing date" if pd.isna(raw_dates.iloc[i]) else
                                        f"unparseable date {raw_dates.iloc[i]!r} (use an ISO date, YYYY-MM-DD)"))
    dates = dates.dt.tz_convert(None).dt.normalize()

    raw_area = frame["area_km2"]
    if raw_area.dtype == bool:
        raise InputError(f"{source}: column area_km2 holds true/false values, not areas in km²")
    area = pd.to_numeric(raw_area, errors="coerce").astype("float64")
    bad = (area.isna() & ~_is_blank(raw_area)).to_numpy()
    if bad.any():
        raise row_error(bad, lambda i: f"area_km2 {raw_area.iloc[i]!r} is not a number")
    bad = np.isposinf(area.to_numpy())
    if bad.any():
        raise row_error(bad, "area_km2 is infinite")

    clean = pd.DataFrame({
        "glims_id": frame["glims_id"].astype(str).str.strip(),
        "region": frame["region"].astype(str).str.strip(),
        "date": dates,
        "area_km2": area,
    })
    if by != "region":
        clean[by] = frame[by].astype(str).str.strip()
    for column in OPTIONAL_COLUMNS:
        if column in frame.columns:
            clean[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    reserved = (clean[by] == TOTAL).to_numpy()
    if reserved.any():
        raise row_error(reserved, f"{by} {TOTAL!r} is reserved for the row over all glaciers")
    for column in dict.fromkeys(["region", by]):
        first = clean.groupby("glims_id", sort=False)[column].transform("first")
        bad = (clean[column] != first).to_numpy()
        if bad.any():
            def why(i: int, c: str = column, f: pd.Series = first) -> str:
                return f"glacier is in {c} {clean[c].iloc[i]!r} here but {f.iloc[i]!r} on an earlier row"

            raise row_error(bad, why)

    missing_area = clean["area_km2"].isna().to_numpy()
    nonpositive = ~missing_area & (clean["area_km2"].to_numpy() <= 0)
    counts = AreaCounts(n_rows=len(clean), n_dropped_missing=int(missing_area.sum()),
                        n_dropped_nonpositive=int(nonpositive.sum()))
    if counts.n_dropped_missing or counts.n_dropped_nonpositive:
        log.info("%s: dropped %d row(s) with a missing area and %d with a non-positive area; %d of %d rows kept",
                 source, counts.n_dropped_missing, counts.n_dropped_nonpositive, counts.n_valid, counts.n_rows)
    clean = clean.loc[~(missing_area | nonpositive)].reset_index(drop=True)
    if clean.empty:
        raise InputError(f"{source}: no row has a positive area_km2 ({counts.n_rows} rows read)")
    clean["t"] = decimal_year(clean["date"])
    clean["year"] = clean["date"].dt.year.astype("int64")
    clean["ln_area"] = np.log(clean["area_km2"].to_numpy())
    return clean, counts


def _ensure_clean(areas: pd.DataFrame, by: str) -> pd.DataFrame:
    needed = {"t", "ln_area", "year", by, *REQUIRED_COLUMNS}
    needed |= {c for c in OPTIONAL_COLUMNS if c in areas.columns}
    if needed.issubset(areas.columns) and pd.api.types.is_datetime64_any_dtype(areas["date"]):
        return areas
    return prepare_areas(areas, by=by)[0]


# ---------------------------------------------------------------- per glacier

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy/statsmodels warnings about zero degrees of freedom (we return NaN instead)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _fit_glacier(t: np.ndarray, ln_area: np.ndarray) -> tuple[float, float, float, float]:
    """OLS of ln(area) on t: (slope, classical SE of the slope, intercept, R²); NaN where undefined."""
    nan = float("nan")
    if np.unique(t).size < 2:
        return nan, nan, nan, nan
    with _quiet():
        res = sm.OLS(ln_area, sm.add_constant(t, has_constant="add")).fit()
        slope, intercept = float(res.params[1]), float(res.params[0])
        se = float(res.bse[1]) if res.df_resid > 0 else nan
        r2 = float(res.rsquared) if np.ptp(ln_area) > 0 else nan
    return slope, se, intercept, r2


#: Ways of reading the observations' intervals as the slope's systematic error (``TrendOptions.systematic``).
SYSTEMATIC_ERRORS = ("bound_slopes", "independent")


def _interval_fit(t: np.ndarray, ln_area: np.ndarray, low: np.ndarray | None, high: np.ndarray | None,
                  lag_years: float, systematic: str = "bound_slopes") -> dict[str, float]:
    """HAC and systematic standard errors of the OLS slope of ln(area) on t (``t`` sorted)."""
    if systematic not in SYSTEMATIC_ERRORS:
        raise ValueError(f"unknown systematic {systematic!r}; choose one of {', '.join(SYSTEMATIC_ERRORS)}")
    nan = float("nan")
    out = {"rel_change_se_hac": nan, "rel_change_se_ar1": nan, "rel_change_se_sys": nan, "hac_lag": nan,
           "residual_lag1_autocorr": nan}
    n = t.size
    if np.unique(t).size < 2 or n < 3:
        return out
    span = float(t[-1] - t[0])
    per_year = (n - 1) / span if span > 0 else float(n)
    lag = int(min(max(1, int(np.ceil(lag_years * per_year))), n - 2))
    with _quiet():
        x = sm.add_constant(t, has_constant="add")
        ols = sm.OLS(ln_area, x).fit()
        hac = sm.OLS(ln_area, x).fit(cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": True})
        resid = ols.resid
        exact = np.std(resid) < 1e-10  # a perfect fit: residuals are rounding noise, not data
        rho = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if n > 3 and not exact else nan
    se_ols, se_hac = float(ols.bse[1]), float(hac.bse[1])
    # AR(1) effective sample size (Santer et al. 2000): n_eff = n (1 - rho) / (1 + rho); a Bartlett HAC
    # with a short lag cannot see residuals that stay correlated for many observations (rho ~ 0.9+
    # after temporal smoothing), this can.
    r = min(max(rho, 0.0), 0.99) if np.isfinite(rho) else 0.0
    se_ar1 = se_ols * float(np.sqrt((1 + r) / (1 - r)))
    out.update(rel_change_se_hac=se_hac, rel_change_se_ar1=se_ar1, hac_lag=float(lag), residual_lag1_autocorr=rho)
    if low is not None and high is not None:
        ok = np.isfinite(low) & np.isfinite(high) & (low > 0) & (high > 0)
        if ok.all() and systematic == "bound_slopes":
            # the slope if the interval's lower (upper) bound were the area in every observation: a
            # lasting relative offset cancels, one that changes over the record moves the slope
            slope = float(ols.params[1])
            reach = max(abs(float(np.polyfit(t, np.log(b), 1)[0]) - slope) for b in (low, high))
            out["rel_change_se_sys"] = reach / Z95
        elif ok.all():
            sigma = (np.log(high) - np.log(low)) / 2.0 / Z95  # 95 % interval -> 1 sigma of ln(area)
            w = (t - t.mean()) / np.sum((t - t.mean()) ** 2)
            se_corr = max(se_hac, se_ar1)
            inflation = (max(1.0, (se_corr / se_ols) ** 2)
                         if not exact and se_ols > 0 and np.isfinite(se_corr) else 1.0)
            out["rel_change_se_sys"] = float(np.sqrt(np.sum((w * sigma) ** 2) * inflation))
    return out


def _slope_intervals(g: pd.DataFrame, options: TrendOptions) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The observations' interval bounds (km²) the slope's systematic SE reads: ``area_km2_low/high``,
    without the model's held-out relative error unless ``options.model_error_in_slope``."""
    if "area_km2_low" not in g.columns or "area_km2_high" not in g.columns:
        return None, None
    low, high = g["area_km2_low"].to_numpy(float), g["area_km2_high"].to_numpy(float)
    if options.model_error_in_slope or "model_error_fraction" not in g.columns:
        return low, high
    error = np.nan_to_num(g["model_error_fraction"].to_numpy(float), nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(1.0 - error > 0, low / (1.0 - error), low)
    return low, high / (1.0 + error)


def _glacier_table(clean: pd.DataFrame, *, min_obs: int, by: str,
                   options: TrendOptions = PAPER_OPTIONS) -> pd.DataFrame:
    rows = []
    for gid, g in clean.groupby("glims_id", sort=True):
        g = g.sort_values("t", kind="stable")
        t = g["t"].to_numpy()
        slope, se, intercept, r2 = _fit_glacier(t, g["ln_area"].to_numpy())
        n_obs = len(g)
        low, high = _slope_intervals(g, options)
        extra = _interval_fit(t, g["ln_area"].to_numpy(), low, high, options.hac_lag_years, options.systematic)
        se_hac, se_sys = extra["rel_change_se_hac"], extra["rel_change_se_sys"]
        se_corr = float(np.fmax(se_hac, extra["rel_change_se_ar1"]))
        se_total = float(np.hypot(se_corr, se_sys)) if np.isfinite(se_sys) else se_corr
        q = float(stats.t.ppf(0.975, n_obs - 2)) if n_obs > 2 else float("nan")
        span = float(t[-1] - t[0]) if n_obs else 0.0
        n_years = int(g["year"].nunique())
        poor = float("nan")
        if "valid_fraction" in g.columns and g["valid_fraction"].notna().any():
            poor = float((g["valid_fraction"] < options.min_valid_fraction).mean())
        reasons = []
        if np.unique(t).size < 2:
            reasons.append("single date")
        if n_obs < min_obs:
            reasons.append(f"fewer than {min_obs} observations")
        if np.unique(t).size >= 2 and span < options.min_span_years:
            reasons.append(f"record spans {span:.1f} years (< {options.min_span_years:g})")
        if n_years < options.min_years:
            reasons.append(f"areas in {n_years} year(s) (< {options.min_years})")
        if options.min_r2 > 0 and np.isfinite(r2) and r2 < options.min_r2:
            reasons.append(f"r² {r2:.3f} (< {options.min_r2:g})")
        if np.isfinite(poor) and poor > options.max_poor_share:
            reasons.append(f"{poor:.0%} of observations with valid_fraction < {options.min_valid_fraction:g}")
        row = {"glims_id": gid, "region": g["region"].iloc[0]}
        if by != "region":
            row[by] = g[by].iloc[0]
        row.update(n_obs=n_obs, first_date=g["date"].min(), last_date=g["date"].max(),
                   rel_change_per_year=slope, rel_change_se=se, intercept=intercept, r2=r2,
                   flagged=bool(reasons), flag_reason="; ".join(reasons),
                   rel_change_se_hac=se_hac, rel_change_se_ar1=extra["rel_change_se_ar1"], rel_change_se_sys=se_sys, rel_change_se_total=se_total,
                   rel_change_ci95_low=slope - q * se_total, rel_change_ci95_high=slope + q * se_total,
                   hac_lag=extra["hac_lag"], residual_lag1_autocorr=extra["residual_lag1_autocorr"],
                   span_years=span, n_years=n_years, poor_scene_share=poor)
        rows.append(row)
    columns = list(GLACIER_COLUMNS)
    if by != "region":
        columns.insert(2, by)
    table = pd.DataFrame(rows, columns=columns)
    table["n_obs"] = table["n_obs"].astype("int64")
    table["n_years"] = table["n_years"].astype("int64")
    table["flagged"] = table["flagged"].astype(bool)
    table["first_date"] = pd.to_datetime(table["first_date"])
    table["last_date"] = pd.to_datetime(table["last_date"])
    return table


def _check_min_obs(min_obs: int) -> int:
    if isinstance(min_obs, bool) or not isinstance(min_obs, (int, np.integer)) or min_obs < 1:
        raise InputError(f"min_obs must be a whole number >= 1, got {min_obs!r}")
    return int(min_obs)


def glacier_trends(areas: pd.DataFrame, *, min_obs: int = 10, by: str = "region",
                   options: TrendOptions = PAPER_OPTIONS) -> pd.DataFrame:
    """One row per glacier: ``glims_id, region, n_obs, first_date, last_date, rel_change_per_year,
    rel_change_se, intercept, r2, flagged, flag_reason`` (plus the ``by`` column if not ``region``).

    ``rel_change_per_year`` is the OLS slope of ln(area_km2) on the decimal year (fraction per year),
    ``rel_change_se`` its classical standard error (NaN with fewer than 3 observations), ``intercept``
    ln(area_km2) at t = 0 (year 0; the fitted area in year T is ``exp(intercept + slope * T)``).
    A glacier is ``flagged`` (and left out of every regional estimate) when it has fewer than
    ``min_obs`` valid observations or a single date, or breaks a rule of ``options``
    (:class:`TrendOptions`; ``flag_reason`` names every rule broken). The interval columns that
    follow are described in the module docstring and docs/trends.md.
    """
    min_obs = _check_min_obs(min_obs)
    return _glacier_table(_ensure_clean(areas, by), min_obs=min_obs, by=by, options=options)


# ---------------------------------------------------------------- per region

def _included(glaciers: pd.DataFrame) -> pd.DataFrame:
    return glaciers.loc[~glaciers["flagged"].astype(bool) & np.isfinite(glaciers["rel_change_per_year"])]


def weighted_mean_rate(slopes: np.ndarray, n_obs: np.ndarray) -> tuple[float, float]:
    """Mean of glacier slopes weighted by ``n_obs`` and its standard error (WLS on a constant).

    The standard error is NaN for a single glacier.
    """
    slopes = np.asarray(slopes, dtype="float64")
    weights = np.asarray(n_obs, dtype="float64")
    if slopes.size == 0:
        return float("nan"), float("nan")
    with _quiet():
        res = sm.WLS(slopes, np.ones((slopes.size, 1)), weights=weights).fit()
        mean = float(res.params[0])
        se = float(res.bse[0]) if slopes.size > 1 else float("nan")
    return mean, se


def annual_geomean(observations: pd.DataFrame) -> pd.DataFrame:
    """Per calendar year: ``year, t`` (mean decimal year), ``n_obs``, ``n_glaciers``, ``mean_ln_area``
    (mean of ln(area) over all observations in the year) and ``geomean_area_km2`` = exp(mean_ln_area)."""
    if observations.empty:
        # typed, so that concatenating an empty region keeps the numeric columns numeric
        return pd.DataFrame({"year": pd.Series(dtype="int64"), "t": pd.Series(dtype="float64"),
                             "n_obs": pd.Series(dtype="int64"), "n_glaciers": pd.Series(dtype="int64"),
                             "mean_ln_area": pd.Series(dtype="float64"),
                             "geomean_area_km2": pd.Series(dtype="float64")})
    annual = (observations.groupby("year", sort=True)
              .agg(t=("t", "mean"), n_obs=("ln_area", "size"), n_glaciers=("glims_id", "nunique"),
                   mean_ln_area=("ln_area", "mean"))
              .reset_index())
    annual["geomean_area_km2"] = np.exp(annual["mean_ln_area"])
    return annual


def geomean_rate(annual: pd.DataFrame) -> tuple[float, float, float]:
    """WLS of the annual mean ln(area) on t with weights = observations per year:
    (slope, its SE, intercept); NaN where undefined (SE needs 3 years)."""
    nan = float("nan")
    if len(annual) < 2:
        return nan, nan, nan
    with _quiet():
        res = sm.WLS(annual["mean_ln_area"].to_numpy(dtype="float64"),
                     sm.add_constant(annual["t"].to_numpy(dtype="float64"), has_constant="add"),
                     weights=annual["n_obs"].to_numpy(dtype="float64")).fit()
        se = float(res.bse[1]) if res.df_resid > 0 else nan
        return float(res.params[1]), se, float(res.params[0])


def panel_rate(observations: pd.DataFrame) -> tuple[float, float]:
    """Glacier fixed-effects slope of ln(area) on t and its glacier-clustered standard error.

    Fitted as the within estimator (ln(area) and t demeaned per glacier, OLS without a constant),
    which gives the same slope as a regression with one dummy per glacier. The clustered covariance is
    statsmodels' CR1: sandwich x G/(G-1) x (N-1)/(N-1), the fixed effects being absorbed and nested in
    the clusters (as Stata's ``xtreg, fe vce(cluster glacier)``). The SE is NaN with one glacier.
    """
    nan = float("nan")
    if observations.empty:
        return nan, nan
    codes, _ = pd.factorize(observations["glims_id"], sort=True)
    t = observations["t"].to_numpy(dtype="float64")
    y = observations["ln_area"].to_numpy(dtype="float64")
    t_dm = t - pd.Series(t).groupby(codes).transform("mean").to_numpy()
    y_dm = y - pd.Series(y).groupby(codes).transform("mean").to_numpy()
    if not np.any(np.abs(t_dm) > 0):
        return nan, nan
    n_groups = int(codes.max()) + 1
    with _quiet():
        model = sm.OLS(y_dm, t_dm[:, None])
        if n_groups < 2:
            return float(model.fit().params[0]), nan
        res = model.fit(cov_type="cluster", cov_kwds={"groups": codes})
        return float(res.params[0]), float(res.bse[0])


def _region_row(name: str, gl_all: pd.DataFrame, obs: pd.DataFrame, by: str,
                notes: list[str], singles: list[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    gl = _included(gl_all)
    k = len(gl)
    label = f"{TOTAL} (all {by}s)" if name == TOTAL else f"{by} {name!r}"
    obs = obs.loc[obs["glims_id"].isin(gl["glims_id"])]
    annual = annual_geomean(obs)
    row: dict[str, Any] = {by: name, "n_glaciers": k, "n_obs": int(gl["n_obs"].sum()),
                           "n_glaciers_flagged": int(len(gl_all) - k), "n_years": int(len(annual))}
    nan = float("nan")
    if k == 0:
        notes.append(f"{label}: no glacier passes the observation filter ({len(gl_all)} flagged); "
                     "no regional estimate")
        row.update({c: nan for c in REGION_STAT_COLUMNS if c not in row})
        row["sign_disagrees"] = False
        return row, annual
    mean, se = weighted_mean_rate(gl["rel_change_per_year"].to_numpy(), gl["n_obs"].to_numpy())
    if k == 1:  # one note for all such regions (a demo or a small study has several)
        singles.append(f"{label} has a single glacier ({gl['glims_id'].iloc[0]})")
    g_slope, g_se, _ = geomean_rate(annual)
    if k > 1 and len(annual) < 3:
        notes.append(f"{label}: only {len(annual)} calendar year(s); the geometric-mean fit has no standard error")
    p_slope, p_se = panel_rate(obs)
    rel_se = se / abs(mean) if np.isfinite(se) and mean != 0 else nan
    weights = gl["n_obs"].to_numpy(dtype="float64")
    own = gl["rel_change_se_total"].to_numpy(dtype="float64") if "rel_change_se_total" in gl.columns \
        else np.full(k, nan)
    se_glaciers = float(np.sqrt(np.sum((weights * own) ** 2)) / weights.sum()) if np.isfinite(own).all() else nan
    se_combined = float(np.hypot(se, se_glaciers)) if np.isfinite(se) else se_glaciers
    q = float(stats.t.ppf(0.975, k - 1)) if k > 1 else Z95
    disagree = bool(np.isfinite(g_slope) and np.isfinite(mean) and g_slope * mean < 0)
    if disagree:
        notes.append(f"WARNING {label}: the geometric-mean slope {g_slope:+.5f}/yr has the other sign than the "
                     f"glacier-weighted mean {mean:+.5f}/yr (the geometric mean mixes glaciers entering and "
                     "leaving the record); do not quote it as the region's change")
    row.update(rel_change_per_year=mean, se=se, rel_se=rel_se,
               ci95_low=mean - Z95 * se, ci95_high=mean + Z95 * se,
               geomean_rel_change_per_year=g_slope, geomean_se=g_se,
               panel_rel_change_per_year=p_slope, panel_se=p_se,
               se_glaciers=se_glaciers, se_combined=se_combined,
               ci95_low_combined=mean - q * se_combined, ci95_high_combined=mean + q * se_combined,
               sign_disagrees=disagree)
    return row, annual


def _region_tables(clean: pd.DataFrame, glaciers: pd.DataFrame, by: str
                   ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    if by not in glaciers.columns:
        raise InputError(f"glacier trends table has no column {by!r}")
    notes: list[str] = []
    singles: list[str] = []
    rows, annuals = [], []
    names = sorted(set(clean[by]) | set(glaciers[by].astype(str)))
    for name in [*names, TOTAL]:
        gl = glaciers if name == TOTAL else glaciers.loc[glaciers[by].astype(str) == name]
        obs = clean if name == TOTAL else clean.loc[clean[by] == name]
        row, annual = _region_row(name, gl, obs, by, notes, singles)
        rows.append(row)
        annuals.append(annual.assign(**{by: name}))
    if singles:
        what = "its mean is that glacier's rate" if len(singles) == 1 else "each one's mean is its glacier's rate"
        notes.insert(0, "; ".join(singles) + f": {what} and it has no standard error between glaciers")
    regions = pd.DataFrame(rows, columns=[by, *REGION_STAT_COLUMNS])
    for column in ("n_glaciers", "n_obs", "n_glaciers_flagged", "n_years"):
        regions[column] = regions[column].astype("int64")
    regions["sign_disagrees"] = regions["sign_disagrees"].astype(bool)
    annual = pd.concat(annuals, ignore_index=True)
    annual = annual[[by, "year", "t", "n_obs", "n_glaciers", "mean_ln_area", "geomean_area_km2"]]
    annual = annual.astype({"year": "int64", "n_obs": "int64", "n_glaciers": "int64", "t": "float64",
                            "mean_ln_area": "float64", "geomean_area_km2": "float64"})
    return regions, annual, notes


def region_trends(areas: pd.DataFrame, glacier_trends: pd.DataFrame, *, by: str = "region") -> pd.DataFrame:
    """One row per value of ``by`` plus a row ``Total`` over all glaciers.

    Columns: ``<by>, n_glaciers, n_obs, rel_change_per_year, se, rel_se, ci95_low, ci95_high,
    geomean_rel_change_per_year, geomean_se, panel_rel_change_per_year, panel_se, n_glaciers_flagged,
    n_years``. Only glaciers not ``flagged`` in ``glacier_trends`` count. Problems that are not errors
    (a single glacier, no glacier) are logged as warnings and leave NaN.
    """
    regions, _, notes = _region_tables(_ensure_clean(areas, by), glacier_trends, by)
    for note in notes:
        log.warning(note)
    return regions


# ---------------------------------------------------------------- Table II

TABLE2_HEADER = ("Region", "Relative area change", "Standard error", "Relative std. error")


def table2(regions: pd.DataFrame, *, by: str = "region") -> pd.DataFrame:
    """The paper's Table II: ``region, rel_change_per_year, se, rel_se`` (one row per region and Total)."""
    out = regions[[by, "rel_change_per_year", "se", "rel_se"]].rename(columns={by: "region"})
    return out.reset_index(drop=True)


def _fmt(value: float, digits: int) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def table2_markdown(regions: pd.DataFrame, *, by: str = "region") -> str:
    """Table II as Markdown in the paper's layout (5, 5 and 3 decimals; empty where undefined)."""
    tab = table2(regions, by=by)
    lines = ["| " + " | ".join(TABLE2_HEADER) + " |", "|:---|---:|---:|---:|"]
    for row in tab.itertuples(index=False):
        name = str(row.region).replace("|", "\\|")
        lines.append(f"| {name} | {_fmt(row.rel_change_per_year, 5)} | {_fmt(row.se, 5)} | {_fmt(row.rel_se, 3)} |")
    lines += ["", "Table II: relative area change per year by region (slope of ln(area) on the decimal "
                  "year, mean of the glacier slopes weighted by their number of observations), its standard "
                  "error (spread between glaciers) and the relative standard error (standard error divided "
                  "by the absolute change). -0.00256 means -0.256 % per year."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- everything at once

@dataclass
class TrendResult:
    """All trend tables of one areas table."""

    glaciers: pd.DataFrame
    regions: pd.DataFrame
    annual: pd.DataFrame
    observations: pd.DataFrame
    by: str
    min_obs: int
    counts: AreaCounts
    warnings: list[str] = field(default_factory=list)
    source: str = "areas table"
    options: TrendOptions = PAPER_OPTIONS
    fit_on: str = "scenes"
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def table2(self) -> pd.DataFrame:
        return table2(self.regions, by=self.by)

    def table2_markdown(self) -> str:
        return table2_markdown(self.regions, by=self.by)

    def summary(self) -> dict[str, Any]:
        """Counts and settings as plain JSON-able values."""
        total = self.regions.loc[self.regions[self.by] == TOTAL].iloc[0]
        return {
            "source": self.source, "by": self.by, "min_obs": self.min_obs, "fit_on": self.fit_on,
            "options": dict(self.options.__dict__),
            "n_rows": self.counts.n_rows, "n_dropped_missing_area": self.counts.n_dropped_missing,
            "n_dropped_nonpositive_area": self.counts.n_dropped_nonpositive,
            "n_valid_rows": self.counts.n_valid,
            "n_glaciers": int(len(self.glaciers)), "n_glaciers_flagged": int(self.glaciers["flagged"].sum()),
            "n_regions": int(len(self.regions) - 1),
            "total_rel_change_per_year": _json_float(total["rel_change_per_year"]),
            "total_se": _json_float(total["se"]),
            "total_se_combined": _json_float(total["se_combined"]),
            "total_ci95_combined": [_json_float(total["ci95_low_combined"]), _json_float(total["ci95_high_combined"])],
            "flagged_glaciers": {str(r.glims_id): str(r.flag_reason)
                                 for r in self.glaciers.loc[self.glaciers["flagged"]].itertuples()},
            "sign_disagrees": [str(r) for r in self.regions.loc[self.regions["sign_disagrees"], self.by]],
            "warnings": list(self.warnings),
        }


def _json_float(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def compute_trends(areas: pd.DataFrame, *, min_obs: int = 10, by: str = "region",
                   source: str = "areas table", first_line: int | None = None,
                   options: TrendOptions = PAPER_OPTIONS, fit_on: str = "scenes") -> TrendResult:
    """Check ``areas`` and compute the glacier, regional and annual tables (nothing is written).

    ``areas`` is a per-scene or an annual table (``glims_id, region, date, area_km2`` and optionally
    ``area_km2_low``, ``area_km2_high``, ``valid_fraction``); ``fit_on`` only labels which one it is.
    ``options``: quality rules and HAC lag (:class:`TrendOptions`; default the paper's: no extra flags).
    ``source`` and ``first_line`` only label error messages (see :func:`prepare_areas`).
    """
    min_obs = _check_min_obs(min_obs)
    clean, counts = prepare_areas(areas, by=by, source=source, first_line=first_line)
    glaciers = _glacier_table(clean, min_obs=min_obs, by=by, options=options)
    notes: list[str] = []
    n_flagged = int(glaciers["flagged"].sum())
    if n_flagged:
        reasons = glaciers.loc[glaciers["flagged"], "flag_reason"].value_counts()
        notes.append(f"{n_flagged} of {len(glaciers)} glacier(s) flagged and left out of the regional "
                     "estimates (" + ", ".join(f"{r}: {n}" for r, n in reasons.items()) + ")")
        for r in glaciers.loc[glaciers["flagged"]].head(20).itertuples():
            notes.append(f"flagged {r.glims_id} ({r.region}): {r.flag_reason}; its rate "
                         f"{r.rel_change_per_year * 100:+.2f} %/yr is not a headline figure")
        if n_flagged > 20:
            notes.append(f"... and {n_flagged - 20} more flagged glacier(s): see flag_reason in glacier_trends.csv")
    regions, annual, region_notes = _region_tables(clean, glaciers, by)
    notes += region_notes
    for note in notes:
        log.warning(note)
    return TrendResult(glaciers=glaciers, regions=regions, annual=annual, observations=clean, by=by,
                       min_obs=min_obs, counts=counts, warnings=notes, source=source, options=options,
                       fit_on=fit_on)
