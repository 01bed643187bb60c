"""Match reference areas to our glaciers and compare them with our areas at the reference dates.

Outputs (:func:`write_validation`): ``validation.csv|.parquet`` (one row per matched reference row,
:data:`VALIDATION_COLUMNS`) and ``validation_summary.csv`` (one row per source and file,
:data:`SUMMARY_COLUMNS`). Columns are documented in docs/validation.md.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glacierwatch.errors import InputError
from glacierwatch.io import read_table, write_table
from glacierwatch.validate.references import REFERENCE_COLUMNS, ReferenceSet, SgiLocations, name_key, read_reference

log = logging.getLogger(__name__)

VALIDATION_TABLE = "validation"
SUMMARY_TABLE = "validation_summary.csv"

VALIDATION_COLUMNS: tuple[str, ...] = (
    *REFERENCE_COLUMNS, "match_method", "match_distance_m", "our_n", "our_first_date", "our_last_date",
    "our_area_km2", "our_area_km2_low", "our_area_km2_high", "ratio", "difference_km2",
    "rel_difference", "in_interval", "note",
)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "source", "reference_file", "n_reference_rows", "n_matched", "n_compared", "n_glaciers",
    "median_ratio", "median_abs_error_km2", "median_abs_rel_error", "n_with_interval", "coverage",
    "conventions",
)

_GLIMS_ID = re.compile(r"^G(\d{6})E(\d{5})([NS])$")


def glims_id_location(glims_id: str) -> tuple[float, float]:
    """(lon, lat) in degrees encoded in a GLIMS id (``G007026E45991N`` -> 7.026, 45.991; longitudes
    above 180 are west, as GLIMS writes them 0-360 E). NaN for an id of another form."""
    match = _GLIMS_ID.match(str(glims_id).strip())
    if not match:
        return float("nan"), float("nan")
    lon = int(match.group(1)) / 1000.0
    lon = lon - 360.0 if lon > 180.0 else lon
    lat = int(match.group(2)) / 1000.0 * (1 if match.group(3) == "N" else -1)
    return lon, lat


# ---------------------------------------------------------------- our areas

AREA_COLUMNS = ("glims_id", "date", "area_km2")


def _from_wide(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """The seed authors' wide layout: a date column (``Dates`` / ``Dates.1``) and one column per GLIMS id."""
    date_col = "Dates.1" if "Dates.1" in table.columns else "Dates"
    ids = [c for c in table.columns if _GLIMS_ID.match(str(c))]
    long = table[[date_col, *ids]].melt(id_vars=date_col, var_name="glims_id", value_name="area_km2")
    long = long.rename(columns={date_col: "date"}).dropna(subset=["area_km2"])
    log.info("%s: wide table of %d glaciers read as %d dated areas", source, len(ids), len(long))
    return long


def read_our_areas(areas: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Our areas as ``glims_id, date, area_km2`` (+ ``area_km2_low/high``, ``name`` when present).

    Accepts a per-scene or annual areas table (Parquet/CSV) or the seed authors' wide CSV (a
    ``Dates`` column and one column per GLIMS id). Rows with a missing or non-positive area are dropped.
    """
    source = "areas table" if isinstance(areas, pd.DataFrame) else str(areas)
    table = areas if isinstance(areas, pd.DataFrame) else read_table(areas)
    if "glims_id" not in table.columns and ("Dates" in table.columns or "Dates.1" in table.columns):
        table = _from_wide(table, source)
    missing = [c for c in AREA_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; found {[str(c)[:40] for c in table.columns[:15]]}")
    counted_only = "use" in table.columns
    if counted_only:  # per-scene table: only scenes counted in the annual areas
        n_rows = len(table)
        table = table.loc[table["use"].astype(bool)]
        if table.empty:
            raise InputError(f"{source}: none of its {n_rows} scenes counts (use is false everywhere: outside the "
                             "end-of-season window or too little of the outline observed); validate its annual "
                             "table, or a table of the scenes you want compared")
    out = pd.DataFrame({"glims_id": table["glims_id"].astype(str).str.strip(),
                        "date": pd.to_datetime(table["date"], errors="coerce", format="ISO8601"),
                        "area_km2": pd.to_numeric(table["area_km2"], errors="coerce")})
    if out["date"].isna().any():
        bad = out["date"].isna().to_numpy()
        raise InputError(f"{source}: row {int(np.flatnonzero(bad)[0]) + 1}: missing or unparseable date")
    if getattr(out["date"].dt, "tz", None) is not None:
        out["date"] = out["date"].dt.tz_convert(None)
    for column in ("area_km2_low", "area_km2_high"):
        out[column] = pd.to_numeric(table[column], errors="coerce") if column in table.columns else np.nan
    for column in ("name", "region"):
        if column in table.columns:
            out[column] = table[column].to_numpy()
    out = out.loc[np.isfinite(out["area_km2"]) & (out["area_km2"] > 0)].reset_index(drop=True)
    if out.empty:
        raise InputError(f"{source}: no row has a positive area_km2")
    return out


@dataclass
class Glaciers:
    """Our glaciers: id, location (degrees) and name, one row each."""

    table: pd.DataFrame  # glims_id, lon, lat, name

    @classmethod
    def from_areas(cls, areas: pd.DataFrame, inventory: pd.DataFrame | None = None) -> Glaciers:
        ids = pd.Series(sorted(areas["glims_id"].unique()), name="glims_id")
        loc = np.array([glims_id_location(g) for g in ids]).reshape(-1, 2)
        table = pd.DataFrame({"glims_id": ids, "lon": loc[:, 0], "lat": loc[:, 1], "name": ""})
        if "name" in areas.columns:
            names = areas.groupby("glims_id")["name"].first()
            table["name"] = table["glims_id"].map(names).fillna("").astype(str)
        if inventory is not None:
            inv = inventory.drop_duplicates("glims_id").set_index("glims_id")
            for column, target in (("centroid_lon", "lon"), ("centroid_lat", "lat"), ("name", "name")):
                if column in inv.columns:
                    mapped = table["glims_id"].map(inv[column])
                    table[target] = mapped.where(mapped.notna(), table[target])
        return cls(table)


# ---------------------------------------------------------------- matching

def _match_sgi(glaciers: Glaciers, sgi: SgiLocations, max_distance_m: float) -> pd.DataFrame:
    """glims_id -> sgi_id: the SGI outline containing the glacier's point, else the nearest outline
    or label point within ``max_distance_m``. Columns ``glims_id, sgi_id, match_method, match_distance_m``."""
    import geopandas as gpd

    pts = glaciers.table.dropna(subset=["lon", "lat"])
    empty = pd.DataFrame(columns=["glims_id", "sgi_id", "match_method", "match_distance_m"])
    if pts.empty or sgi.empty:
        return empty
    points = gpd.GeoDataFrame(pts[["glims_id"]], geometry=gpd.points_from_xy(pts["lon"], pts["lat"]),
                              crs=4326).to_crs(2056)
    matches = []
    remaining = points
    if sgi.outlines is not None:
        inside = gpd.sjoin(points, sgi.outlines, predicate="within", how="inner")
        inside = inside.drop_duplicates("glims_id")
        matches.append(pd.DataFrame({"glims_id": inside["glims_id"], "sgi_id": inside["sgi_id"],
                                     "match_method": "location: inside SGI outline", "match_distance_m": 0.0}))
        remaining = points.loc[~points["glims_id"].isin(inside["glims_id"])]
        if not remaining.empty:
            near = gpd.sjoin_nearest(remaining, sgi.outlines, how="inner", max_distance=max_distance_m,
                                     distance_col="d").drop_duplicates("glims_id")
            matches.append(pd.DataFrame({"glims_id": near["glims_id"], "sgi_id": near["sgi_id"],
                                         "match_method": "location: nearest SGI outline",
                                         "match_distance_m": near["d"].round(1)}))
            remaining = remaining.loc[~remaining["glims_id"].isin(near["glims_id"])]
    if sgi.points is not None and not remaining.empty:
        near = gpd.sjoin_nearest(remaining, sgi.points, how="inner", max_distance=max_distance_m,
                                 distance_col="d").drop_duplicates("glims_id")
        matches.append(pd.DataFrame({"glims_id": near["glims_id"], "sgi_id": near["sgi_id"],
                                     "match_method": "location: nearest SGI 2016 label point",
                                     "match_distance_m": near["d"].round(1)}))
    out = pd.concat([m for m in matches if not m.empty], ignore_index=True) if any(
        not m.empty for m in matches) else empty
    shared = out["sgi_id"].duplicated(keep=False)
    out.loc[shared, "match_method"] = out.loc[shared, "match_method"] + " (SGI id shared by several glaciers)"
    return out


def _match_wgms(ref: ReferenceSet, glaciers: Glaciers, names: dict[str, tuple[str, str]],
                max_distance_m: float, ambiguous: frozenset[str] = frozenset()) -> pd.DataFrame:
    """WGMS id -> glims_id, by (1) the link table's GLIMS id, (2) its coordinates within
    ``max_distance_m`` of our glacier with the same name, (3) the same name (our name, or the name
    of the SGI glacier it was matched to) in the same country (CH for SGI names). A name whose key
    (:func:`name_key`) belongs to several SGI glaciers (``ambiguous``) is matched only with coordinates."""
    rows = []
    ours = set(glaciers.table["glims_id"])
    links = ref.wgms_links
    linked: set[str] = set()
    if links is not None:
        direct = links.loc[links["glims_id"].isin(ours)]
        for r in direct.itertuples():
            rows.append((str(int(r.wgms_id)), r.glims_id, "WGMS-GLIMS link table", 0.0))
            linked.add(str(int(r.wgms_id)))
    ref_names = ref.rows.drop_duplicates("reference_id")[["reference_id", "reference_name", "country"]]
    ref_names = ref_names.assign(key=ref_names["reference_name"].map(name_key))
    ref_names = ref_names.loc[~ref_names["reference_id"].isin(linked) & (ref_names["key"] != "")]
    our_keys: dict[str, list[tuple[str, str]]] = {}
    for gid, (name, origin) in names.items():
        key = name_key(name)
        if key:
            our_keys.setdefault(key, []).append((gid, origin))
    link_xy = {}
    if links is not None:
        link_xy = {str(int(r.wgms_id)): (r.lon, r.lat) for r in links.itertuples() if np.isfinite(r.lon)}
    loc = glaciers.table.set_index("glims_id")[["lon", "lat"]]
    for r in ref_names.itertuples():
        candidates = our_keys.get(r.key, [])
        for gid, origin in candidates:
            if origin == "SGI" and str(r.country) != "CH":
                continue
            xy = link_xy.get(r.reference_id)
            if xy is not None and gid in loc.index:
                d = _distance_m(xy, tuple(loc.loc[gid]))
                if d > max_distance_m:
                    continue
                rows.append((r.reference_id, gid, f"name + location ({origin} name)", round(d, 1)))
            elif not (origin == "SGI" and r.key in ambiguous):
                rows.append((r.reference_id, gid, f"name only ({origin} name; no WGMS coordinates)", np.nan))
    return pd.DataFrame(rows, columns=["reference_id", "glims_id", "match_method", "match_distance_m"])


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lon1, lat1, lon2, lat2 = map(np.radians, (a[0], a[1], b[0], b[1]))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return float(2 * 6371000.0 * np.arcsin(np.sqrt(h)))


# ---------------------------------------------------------------- comparison

def _is_annual(areas: pd.DataFrame) -> bool:
    per_year = areas.groupby(["glims_id", areas["date"].dt.year]).size()
    return bool(per_year.max() <= 1)


def _our_area(ours: pd.DataFrame, date: pd.Timestamp, half_width_days: float,
              annual: bool) -> dict[str, Any]:
    delta = (ours["date"] - date).dt.days.abs()
    rows = ours.loc[delta <= half_width_days]
    note = ""
    if rows.empty and annual:
        rows = ours.loc[ours["date"].dt.year == date.year]
        note = "annual area of the reference year"
    if rows.empty:
        return {"our_n": 0, "note": f"no area of ours within {half_width_days:.0f} days"}
    return {"our_n": int(len(rows)), "our_first_date": rows["date"].min(), "our_last_date": rows["date"].max(),
            "our_area_km2": float(rows["area_km2"].mean()),
            "our_area_km2_low": float(rows["area_km2_low"].mean()),
            "our_area_km2_high": float(rows["area_km2_high"].mean()), "note": note}


def compare(areas: pd.DataFrame, references: Sequence[ReferenceSet], *, window_days: float = 60.0,
            max_match_distance_m: float = 500.0, inventory: pd.DataFrame | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match every reference to our glaciers and compare; returns (validation, summary) tables.

    Our area at a reference date is the mean of our rows within ``max(window_days, the reference's
    date uncertainty)`` days of it (for an annual table with none in that window: the reference
    year's annual area). ``ratio`` = ours / reference; ``difference_km2`` = ours - reference;
    ``in_interval``: the reference lies within our mean ``area_km2_low .. area_km2_high``.
    """
    glaciers = Glaciers.from_areas(areas, inventory)
    annual = _is_annual(areas)
    by_glacier = {gid: g.sort_values("date") for gid, g in areas.groupby("glims_id")}
    sgi = SgiLocations()
    for ref in references:
        if ref.sgi is not None:
            sgi.add(ref.sgi)
    links = [r.wgms_links for r in references if r.wgms_links is not None]
    sgi_match = _match_sgi(glaciers, sgi, max_match_distance_m) if not sgi.empty else None
    sgi_keys = pd.Series([name_key(n) for n in sgi.names.values()], dtype=object)
    ambiguous_names = frozenset(sgi_keys[sgi_keys.duplicated() & (sgi_keys != "")])
    names = {r.glims_id: (r.name, "our") for r in glaciers.table.itertuples() if r.name}
    if sgi_match is not None:
        for r in sgi_match.itertuples():
            if r.glims_id not in names and sgi.names.get(r.sgi_id):
                names[r.glims_id] = (sgi.names[r.sgi_id], "SGI")

    matched_parts, summaries = [], []
    for ref in references:
        rows = ref.rows
        if rows.empty:
            continue
        if ref.kind in {"glims", "table"}:
            m = rows.loc[rows["glims_id"].isin(by_glacier)].assign(match_method="glims_id", match_distance_m=0.0)
        elif ref.kind in {"sgi_outlines", "sgi_table"}:
            if sgi_match is None or sgi_match.empty:
                m = rows.iloc[0:0].assign(match_method="", match_distance_m=np.nan)
            else:
                m = rows.drop(columns="glims_id").merge(sgi_match.rename(columns={"sgi_id": "reference_id"}),
                                                        on="reference_id", how="inner")
        else:  # wgms
            if ref.wgms_links is None and links:
                ref.wgms_links = pd.concat(links, ignore_index=True)
            wm = _match_wgms(ref, glaciers, names, max_match_distance_m * 4, ambiguous_names)
            m = rows.drop(columns="glims_id").merge(wm, on="reference_id", how="inner")
        results = []
        for r in m.itertuples(index=False):
            half = max(window_days, float(r.reference_date_unc_days or 0.0))
            results.append(_our_area(by_glacier[r.glims_id], pd.Timestamp(r.reference_date), half, annual))
        m = m.reset_index(drop=True)
        extra = pd.DataFrame(results, index=m.index) if results else pd.DataFrame(index=m.index)
        m = pd.concat([m, extra], axis=1)
        for column in VALIDATION_COLUMNS:
            if column not in m.columns:
                m[column] = np.nan
        m["ratio"] = m["our_area_km2"] / m["reference_area_km2"]
        m["difference_km2"] = m["our_area_km2"] - m["reference_area_km2"]
        m["rel_difference"] = m["difference_km2"] / m["reference_area_km2"]
        has_interval = np.isfinite(m["our_area_km2_low"].astype(float)) & np.isfinite(m["our_area_km2_high"].astype(float))
        inside = (m["our_area_km2_low"] <= m["reference_area_km2"]) & (m["reference_area_km2"] <= m["our_area_km2_high"])
        m["in_interval"] = pd.array(np.where(has_interval, inside, pd.NA), dtype="boolean")
        m = m[list(VALIDATION_COLUMNS)]
        matched_parts.append(m)
        for source, group in rows.groupby("source", sort=True):
            summaries.append(_summary_row(source, str(ref.path), group, m.loc[m["source"] == source]))
    validation = (pd.concat(matched_parts, ignore_index=True) if matched_parts
                  else pd.DataFrame(columns=list(VALIDATION_COLUMNS)))
    validation["our_n"] = validation["our_n"].fillna(0).astype("int64")
    summary = pd.DataFrame(summaries, columns=list(SUMMARY_COLUMNS))
    return validation, summary


def _summary_row(source: str, path: str, rows: pd.DataFrame, matched: pd.DataFrame) -> dict[str, Any]:
    compared = matched.loc[matched["our_n"].fillna(0) > 0]
    with_interval = compared.loc[compared["in_interval"].notna()]
    conventions = "; ".join(sorted({str(c) for c in rows["conventions"].dropna() if str(c)}))
    nan = float("nan")
    return {
        "source": source, "reference_file": path, "n_reference_rows": int(len(rows)),
        "n_matched": int(len(matched)), "n_compared": int(len(compared)),
        "n_glaciers": int(compared["glims_id"].nunique()),
        "median_ratio": float(compared["ratio"].median()) if len(compared) else nan,
        "median_abs_error_km2": float(compared["difference_km2"].abs().median()) if len(compared) else nan,
        "median_abs_rel_error": float(compared["rel_difference"].abs().median()) if len(compared) else nan,
        "n_with_interval": int(len(with_interval)),
        "coverage": float(with_interval["in_interval"].astype(bool).mean()) if len(with_interval) else nan,
        "conventions": conventions,
    }


# ---------------------------------------------------------------- files

@dataclass
class ValidationResult:
    validation: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path]


def write_validation(areas: str | os.PathLike[str] | pd.DataFrame, references: Sequence[str | os.PathLike[str]],
                     out_dir: str | os.PathLike[str], *, window_days: float = 60.0,
                     max_match_distance_m: float = 500.0,
                     inventory: str | os.PathLike[str] | None = None) -> ValidationResult:
    """Read ``areas`` and every reference, compare, and write ``validation.csv``, ``validation.parquet``
    and ``validation_summary.csv`` into ``out_dir`` (each atomically; nothing is written when an
    input is bad)."""
    if not references:
        raise InputError("validate: give at least one --reference file")
    ours = read_our_areas(areas)
    refs = [read_reference(p) for p in references]
    inv = read_table(inventory) if inventory else None
    validation, summary = compare(ours, refs, window_days=window_days,
                                  max_match_distance_m=max_match_distance_m, inventory=inv)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    csv_view = validation.copy()
    for column in ("reference_date", "our_first_date", "our_last_date"):
        csv_view[column] = pd.to_datetime(csv_view[column]).dt.strftime("%Y-%m-%d")
    files = [write_table(validation, out / f"{VALIDATION_TABLE}.parquet"),
             write_table(csv_view, out / f"{VALIDATION_TABLE}.csv"),
             write_table(summary, out / SUMMARY_TABLE)]
    for row in summary.itertuples():
        log.info("%s (%s): %d of %d reference rows compared on %d glacier(s); median ratio %.3f",
                 row.source, Path(row.reference_file).name, row.n_compared, row.n_reference_rows,
                 row.n_glaciers, row.median_ratio)
    return ValidationResult(validation, summary, files)
