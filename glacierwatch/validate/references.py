"""Readers of dated reference areas: each turns one file into rows of a :class:`ReferenceSet`.

Kinds (detected from the file's name and columns, see :func:`read_reference`):

* ``glims``  — the inventory's validation outlines (``inventory_validation.parquet``) or any
  GeoParquet/GeoPackage/shapefile of outlines with ``glims_id`` and a date; matched by ``glims_id``.
* ``sgi_outlines`` — Swiss Glacier Inventory 2010 outlines (``SGI_2010.shp``, column ``SGI``, LV95):
  parts of one SGI id are summed; matched to GLIMS ids by location.
* ``sgi_table`` — SGI area table by SGI id (``sgi_area_by_inventory.csv``: ``sgi_id``,
  ``area_<year>_km2``...): one reference per inventory year; located through SGI outlines or the SGI
  2016 label points (found beside the table, or given as ``--reference`` in the same run).
* ``wgms`` — the WGMS Fluctuations of Glaciers ``state`` table (``area`` in m²) or its km² excerpt
  (``area_km2``); matched through the WGMS→GLIMS link table (``WGMS_ID, GLIMS_ID, CenLon, CenLat``)
  or by name (and location where the link table gives one).
* ``table`` — any CSV/Parquet with ``glims_id, date, area_km2`` (optional ``area_unc_km2``, ``source``).

Each reference row keeps the file and row it came from (``reference_file``, ``reference_row``: the
row counted from 1, header excluded) and the inventory's conventions (``conventions``), which are
recorded, not corrected.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glacierwatch.errors import DatasetNotFoundError, InputError

#: Columns of :attr:`ReferenceSet.rows`.
REFERENCE_COLUMNS: tuple[str, ...] = (
    "source", "reference_file", "reference_row", "reference_id", "reference_name", "glims_id",
    "country", "reference_date", "reference_date_unc_days", "reference_area_km2",
    "reference_area_unc_km2", "conventions",
)

#: Half-width (days) given to a reference known only by its year (WGMS writes such dates as -07-02
#: with ``date_unc`` 182).
YEAR_ONLY_DAYS = 182.0

SGI_CONVENTIONS = ("SGI: debris-covered ice included; glaciers split at SGI ice divides; "
                   "aerial imagery {span}")
WGMS_CONVENTIONS = "WGMS FoG state: area as reported by the investigators (method/platform vary)"
GLIMS_CONVENTIONS = "GLIMS outline as submitted by its analyst (debris and divides by that analysis)"

#: SGI inventories in the area table: year -> (date, half-width of the date in days, imagery span).
SGI_INVENTORIES: dict[int, tuple[str, float, str]] = {
    1850: ("1850-07-01", YEAR_ONLY_DAYS, "reconstructed Little Ice Age maximum"),
    1973: ("1973-07-01", YEAR_ONLY_DAYS, "1973"),
    2010: ("2010-01-01", 730.0, "2008-2011"),
    2016: ("2016-07-01", YEAR_ONLY_DAYS, "2013-2018 (year_acq per glacier)"),
}


@dataclass
class SgiLocations:
    """Where SGI glaciers are: outlines (LV95 polygons by SGI id) and/or label points, and names."""

    outlines: Any = None  # GeoDataFrame: sgi_id, geometry (EPSG:2056), dissolved by id
    points: Any = None    # GeoDataFrame: sgi_id, name, geometry (EPSG:2056)
    names: dict[str, str] = field(default_factory=dict)

    def add(self, other: SgiLocations) -> None:
        """Take ``other``'s outlines, points and names too."""
        for attr in ("outlines", "points"):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            if theirs is not None:
                setattr(self, attr, theirs if mine is None else
                        type(theirs)(pd.concat([mine, theirs], ignore_index=True), crs=theirs.crs))
        self.names.update(other.names)

    @property
    def empty(self) -> bool:
        return self.outlines is None and self.points is None


@dataclass
class ReferenceSet:
    """Reference rows of one file (:data:`REFERENCE_COLUMNS`) and what is needed to match them."""

    kind: str
    path: Path
    rows: pd.DataFrame
    sgi: SgiLocations | None = None        # sgi_outlines / sgi_table: locations of the SGI ids
    wgms_links: pd.DataFrame | None = None  # wgms: WGMS_ID, GLIMS_ID, lon, lat


def _frame(**columns: Any) -> pd.DataFrame:
    out = pd.DataFrame(columns)
    for name in REFERENCE_COLUMNS:
        if name not in out.columns:
            out[name] = np.nan
    return out[list(REFERENCE_COLUMNS)]


def _row_error(path: Path, positions: np.ndarray, problem: str) -> InputError:
    first = int(np.flatnonzero(positions)[0])
    more = int(positions.sum()) - 1
    tail = f"; {more} more row(s) like it" if more else ""
    return InputError(f"{path}: row {first + 1}: {problem}{tail}")


def _numeric(path: Path, frame: pd.DataFrame, column: str, *, allow_missing: bool = True) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise _row_error(path, bad.to_numpy(), f"{column} {raw.iloc[i]!r} is not a number")
    if not allow_missing and values.isna().any():
        raise _row_error(path, values.isna().to_numpy(), f"missing {column}")
    if (values < 0).any() or np.isinf(values).any():
        bad = ((values < 0) | np.isinf(values)).to_numpy()
        raise _row_error(path, bad, f"{column} {values.iloc[int(np.flatnonzero(bad)[0])]} is negative or infinite")
    return values.to_numpy()


def _dates(path: Path, raw: pd.Series, column: str = "date") -> pd.Series:
    dates = pd.to_datetime(raw, errors="coerce", format="ISO8601")
    bad = dates.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "missing date" if pd.isna(raw.iloc[i]) else f"unparseable {column} {raw.iloc[i]!r} (use YYYY-MM-DD)"
        raise _row_error(path, bad, what)
    return dates


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, low_memory=False)
    except Exception as exc:  # pandas raises many types for a non-CSV file
        raise InputError(f"{path}: not a readable CSV ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc


def _read_vector(path: Path) -> Any:
    import geopandas as gpd

    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return gpd.read_parquet(path)
        return gpd.read_file(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable outline file ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]})") from exc


# ---------------------------------------------------------------- names

_GENERIC_NAME_WORDS = {
    "glacier", "glaciers", "gletscher", "glatscher", "vadret", "vadrec", "ghiacciaio", "vedretta",
    "ferner", "kees", "firn", "du", "de", "des", "la", "le", "les", "dal", "da", "d", "l", "of", "the",
    "mer", "glace",
}


def name_key(name: Any) -> str:
    """A glacier name reduced for matching: accents and case dropped, generic words (glacier,
    gletscher, vadret, ferner, du, de ...) removed, remaining words sorted. '' for no name."""
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return ""
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"\(.*?\)", " ", text)  # SGI qualifiers such as "(Gurtnellen)"
    words = [w for w in re.split(r"[^a-z0-9]+", text) if w and w not in _GENERIC_NAME_WORDS]
    return " ".join(sorted(words))


# ---------------------------------------------------------------- kinds

def _read_glims(path: Path) -> ReferenceSet:
    outlines = _read_vector(path)
    if "glims_id" not in outlines.columns:
        raise InputError(f"{path}: outline file has no glims_id column")
    date_column = next((c for c in ("outline_date", "src_date", "anlys_time", "date") if c in outlines.columns), None)
    if date_column is None:
        raise InputError(f"{path}: outline file has no date column (outline_date, src_date, anlys_time or date)")
    if "area_km2" in outlines.columns:
        area = _numeric(path, outlines, "area_km2", allow_missing=False)
    else:
        area = outlines.geometry.to_crs(outlines.geometry.estimate_utm_crs()).area.to_numpy() / 1e6
    blank = outlines["glims_id"].isna().to_numpy()
    if blank.any():
        raise _row_error(path, blank, "missing glims_id")
    dates = _dates(path, outlines[date_column].astype(str).where(outlines[date_column].notna()), date_column)
    rows = _frame(source="GLIMS", reference_file=str(path), reference_row=np.arange(1, len(outlines) + 1),
                  reference_id=outlines["anlys_id"].astype(str) if "anlys_id" in outlines.columns else "",
                  reference_name=outlines["name"] if "name" in outlines.columns else "",
                  glims_id=outlines["glims_id"].astype(str), reference_date=dates.to_numpy(),
                  reference_date_unc_days=0.0, reference_area_km2=area, conventions=GLIMS_CONVENTIONS)
    return ReferenceSet("glims", path, rows)


def _read_sgi_outlines(path: Path, outlines: Any | None = None) -> ReferenceSet:
    outlines = _read_vector(path) if outlines is None else outlines
    if outlines.crs is None:
        raise InputError(f"{path}: SGI outlines have no CRS (.prj missing)")
    blank = outlines["SGI"].isna().to_numpy()
    if blank.any():
        raise _row_error(path, blank, "missing SGI id")
    lv95 = outlines.to_crs(2056)
    lv95 = lv95.assign(sgi_id=lv95["SGI"].astype(str).str.strip(), area_km2=lv95.geometry.area / 1e6,
                       first_row=np.arange(1, len(lv95) + 1))
    dissolved = lv95[["sgi_id", "geometry"]].dissolve(by="sgi_id").reset_index()
    per_id = lv95.groupby("sgi_id", sort=True).agg(area_km2=("area_km2", "sum"), first_row=("first_row", "min"),
                                                   n_parts=("area_km2", "size")).reset_index()
    date, unc, span = SGI_INVENTORIES[2010]
    rows = _frame(source="SGI 2010", reference_file=str(path), reference_row=per_id["first_row"],
                  reference_id=per_id["sgi_id"], reference_name="",
                  country="CH", reference_date=pd.Timestamp(date), reference_date_unc_days=unc,
                  reference_area_km2=per_id["area_km2"],
                  conventions=SGI_CONVENTIONS.format(span=span) + "; outline parts summed per SGI id")
    return ReferenceSet("sgi_outlines", path, rows, sgi=SgiLocations(outlines=dissolved))


def _read_sgi_points(path: Path, points: Any) -> SgiLocations:
    id_col = "sgi-id" if "sgi-id" in points.columns else "sgi_id"
    pts = points.to_crs(2056).rename(columns={id_col: "sgi_id"})
    pts["sgi_id"] = pts["sgi_id"].astype(str).str.strip()
    names = dict(zip(pts["sgi_id"], pts["name"].astype(str), strict=False)) if "name" in pts.columns else {}
    return SgiLocations(points=pts[["sgi_id", "geometry"]], names=names)


def _find_sgi_locations(path: Path) -> SgiLocations:
    """SGI outlines / label points in the SGI data layout around an area table (its folder and parent)."""
    found = SgiLocations()
    for base in (path.parent, path.parent.parent):
        for pattern, reader in (("**/SGI_2010.shp", "outlines"), ("**/SGI_2016_glacier_locations.shp", "points")):
            hits = sorted(base.glob(pattern))
            if hits and getattr(found, reader) is None:
                vec = _read_vector(hits[0])
                part = _read_sgi_outlines(hits[0], vec).sgi if reader == "outlines" else _read_sgi_points(hits[0], vec)
                if part is not None:
                    found.add(part)
    return found


def _read_sgi_table(path: Path, table: pd.DataFrame) -> ReferenceSet:
    parts = []
    for year, (date, unc, span) in SGI_INVENTORIES.items():
        column = f"area_{year}_km2"
        if column not in table.columns:
            continue
        area = _numeric(path, table, column)
        dates = pd.Series(pd.Timestamp(date), index=table.index)
        if year == 2016 and "year_acq_2016" in table.columns:
            acq = _numeric(path, table, "year_acq_2016")
            ok = np.isfinite(acq)
            dates[ok] = pd.to_datetime([f"{int(y)}-07-01" for y in acq[ok]])
        keep = np.isfinite(area) & (area > 0)
        names = table["name_2016"] if "name_2016" in table.columns else pd.Series("", index=table.index)
        parts.append(_frame(source=f"SGI {year}", reference_file=str(path),
                            reference_row=np.arange(1, len(table) + 1)[keep],
                            reference_id=table["sgi_id"].astype(str).str.strip()[keep].to_numpy(),
                            reference_name=names[keep].to_numpy(), country="CH",
                            reference_date=dates[keep].to_numpy(), reference_date_unc_days=unc,
                            reference_area_km2=area[keep],
                            conventions=SGI_CONVENTIONS.format(span=span) + "; parts summed per SGI id"))
    if not parts:
        raise InputError(f"{path}: SGI area table has no area_<year>_km2 column "
                         f"({', '.join(f'area_{y}_km2' for y in SGI_INVENTORIES)})")
    blank = table["sgi_id"].isna().to_numpy()
    if blank.any():
        raise _row_error(path, blank, "missing sgi_id")
    rows = pd.concat(parts, ignore_index=True)
    names = {}
    if "name_2016" in table.columns:
        named = table.loc[table["name_2016"].notna()]
        names = dict(zip(named["sgi_id"].astype(str).str.strip(), named["name_2016"].astype(str), strict=False))
    sgi = _find_sgi_locations(path)
    sgi.names.update(names)
    return ReferenceSet("sgi_table", path, rows, sgi=sgi)


def _read_wgms_links(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    links = pd.DataFrame({
        "wgms_id": pd.to_numeric(table["WGMS_ID"], errors="coerce"),
        "glims_id": table["GLIMS_ID"].astype("string"),
        "lon": pd.to_numeric(table.get("CenLon"), errors="coerce") if "CenLon" in table.columns else np.nan,
        "lat": pd.to_numeric(table.get("CenLat"), errors="coerce") if "CenLat" in table.columns else np.nan,
    })
    bad = links["wgms_id"].isna().to_numpy()
    if bad.any():
        raise _row_error(path, bad, "WGMS_ID is missing or not a number")
    return links


def _read_wgms(path: Path, table: pd.DataFrame) -> ReferenceSet:
    for column in ("glacier_name", "glacier_id", "date"):
        if column not in table.columns:
            raise InputError(f"{path}: WGMS state table has no column {column!r}")
    if "area_km2" in table.columns:
        area = _numeric(path, table, "area_km2")
        unc = _numeric(path, table, "area_unc") if "area_unc" in table.columns else np.full(len(table), np.nan)
    elif "area" in table.columns:
        area = _numeric(path, table, "area") / 1e6
        unc = _numeric(path, table, "area_unc") / 1e6 if "area_unc" in table.columns else np.full(len(table), np.nan)
    else:
        raise InputError(f"{path}: WGMS state table has no area (m²) or area_km2 column")
    keep = np.isfinite(area) & (area > 0)
    sub = table.loc[keep]
    dates = _dates_at(path, table["date"], keep)
    wid = pd.to_numeric(sub["glacier_id"], errors="coerce")
    if wid.isna().any():
        raise _row_error(path, (pd.to_numeric(table["glacier_id"], errors="coerce").isna() & keep).to_numpy(),
                         "glacier_id is not a number")
    date_unc = (_numeric(path, table, "date_unc")[keep] if "date_unc" in table.columns
                else np.zeros(int(keep.sum())))
    rows = _frame(source="WGMS FoG", reference_file=str(path), reference_row=np.flatnonzero(keep) + 1,
                  reference_id=wid.astype("int64").astype(str).to_numpy(),
                  reference_name=sub["glacier_name"].astype(str).to_numpy(),
                  country=sub["country"].astype(str).to_numpy() if "country" in sub.columns else "",
                  reference_date=dates, reference_date_unc_days=np.nan_to_num(date_unc, nan=0.0),
                  reference_area_km2=area[keep], reference_area_unc_km2=unc[keep],
                  conventions=WGMS_CONVENTIONS)
    links = None
    for candidate in sorted(path.parent.glob("*wgms_links*.csv")) + sorted(path.parent.glob("*WGMS_links*.csv")):
        links = _read_wgms_links(candidate, _read_csv(candidate))
        break
    return ReferenceSet("wgms", path, rows, wgms_links=links)


def _dates_at(path: Path, raw: pd.Series, keep: np.ndarray) -> np.ndarray:
    dates = pd.to_datetime(raw, errors="coerce", format="ISO8601")
    bad = (dates.isna() & pd.Series(keep, index=raw.index)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "missing date" if pd.isna(raw.iloc[i]) else f"unparseable date {raw.iloc[i]!r} (use YYYY-MM-DD)"
        raise _row_error(path, bad, what)
    return dates[keep].to_numpy()


def _read_dated_table(path: Path, table: pd.DataFrame) -> ReferenceSet:
    blank = table["glims_id"].isna().to_numpy()
    if blank.any():
        raise _row_error(path, blank, "missing glims_id")
    area = _numeric(path, table, "area_km2", allow_missing=False)
    dates = _dates(path, table["date"])
    rows = _frame(source=table["source"].astype(str) if "source" in table.columns else path.stem,
                  reference_file=str(path), reference_row=np.arange(1, len(table) + 1),
                  reference_id=table["reference_id"].astype(str) if "reference_id" in table.columns else "",
                  reference_name=table["name"] if "name" in table.columns else "",
                  glims_id=table["glims_id"].astype(str).str.strip(), reference_date=dates.to_numpy(),
                  reference_date_unc_days=(_numeric(path, table, "date_unc_days")
                                           if "date_unc_days" in table.columns else 0.0),
                  reference_area_km2=area,
                  reference_area_unc_km2=(_numeric(path, table, "area_unc_km2")
                                          if "area_unc_km2" in table.columns else np.nan),
                  conventions=table["conventions"] if "conventions" in table.columns else "")
    return ReferenceSet("table", path, rows)


def read_reference(path: str | os.PathLike[str]) -> ReferenceSet:
    """Read one reference file, detecting its kind (module docstring); bad files raise a one-line
    :class:`InputError` naming the file and the first bad row."""
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"reference not found: {path}")
    suffix = path.suffix.lower()
    if suffix in {".shp", ".gpkg", ".geojson", ".json", ".parquet", ".pq"}:
        if suffix in {".parquet", ".pq"}:
            try:
                columns = pd.read_parquet(path).columns
            except Exception as exc:
                raise InputError(f"{path}: not a readable table ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:200]})") from exc
            if "geometry" not in columns:
                return _dispatch_table(path, pd.read_parquet(path))
        vec = _read_vector(path)
        if "SGI" in vec.columns:
            return _read_sgi_outlines(path, vec)
        if "sgi-id" in vec.columns or "sgi_id" in vec.columns:
            sgi = _read_sgi_points(path, vec)
            return ReferenceSet("sgi_points", path, _frame(), sgi=sgi)
        return _read_glims(path)
    if suffix in {".csv", ".txt"}:
        return _dispatch_table(path, _read_csv(path))
    raise InputError(f"{path}: unknown reference format (use .csv, .parquet, .shp, .gpkg or .geojson)")


def _dispatch_table(path: Path, table: pd.DataFrame) -> ReferenceSet:
    if table.empty:
        raise InputError(f"{path}: the reference table has no rows")
    columns = set(table.columns)
    if "sgi_id" in columns:
        return _read_sgi_table(path, table)
    if "WGMS_ID" in columns and "GLIMS_ID" in columns:
        return ReferenceSet("wgms_links", path, _frame(), wgms_links=_read_wgms_links(path, table))
    if {"glacier_name", "glacier_id"} <= columns:
        return _read_wgms(path, table)
    if {"glims_id", "date", "area_km2"} <= columns:
        return _read_dated_table(path, table)
    found = [str(c)[:40] for c in list(table.columns)[:15]]
    raise InputError(f"{path}: not a known reference table (need glims_id, date, area_km2; an SGI table with "
                     f"sgi_id; or a WGMS state table with glacier_name, glacier_id, date, area); found {found}")
