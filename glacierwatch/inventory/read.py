"""Read glacier outline files into one normalised table.

Recognised schemas (by their columns, case-insensitive):

``glims``  GLIMS Glacier Viewer downloads (``glims_polygons.shp``) and the synthetic world's
           ``outlines.gpkg``: ``glac_id, anlys_id, glac_name, geog_area, line_type, src_date,
           anlys_time, db_area`` (``area`` if ``db_area`` is empty), ``gtng_o1reg, gtng_o2reg``.
``rgi7``   RGI 7 (``rgi_id, glims_id, anlys_id, glac_name, o1region, o2region, src_date, area_km2``);
           the glacier-complex product (no ``glims_id``) reads too.
``rgi6``   RGI 5 / 6 (``RGIId, GLIMSId, Name, O1Region, O2Region, BgnDate, Area``); ``BgnDate``
           is ``YYYYMMDD`` with ``99`` for an unknown month/day and ``-9999999`` for unknown.
``custom`` anything else, with a column map (see :data:`MAP_KEYS`): e.g. the Swiss inventory
           ``{"source_id": "SGI", "inventory_area_m2": "Shape_Area", "src_date": "=2010-09-01",
           "geog_area": "=Swiss Alps"}``. A value starting with ``=`` is a constant for every row.
           The column map applies to custom files only; GLIMS and RGI files always use the maps above.

Every record is kept (one row per file row) with a ``geometry_status``: ``ok``, ``repaired``
(invalid polygon made valid, or polygons taken out of a geometry collection), ``empty``,
``not_polygon`` or ``unrepairable``; the selection removes and reports the last three. A file with no
CRS (a shapefile without ``.prj``) is read as EPSG:4326 when its coordinates are within lon/lat
range (GLIMS downloads are WGS 84), with a note; otherwise it is an error.
Records without a valid GLIMS id get one derived from the centroid of their glacier (all records
sharing the source id), see :func:`glacierwatch.ids.glims_id_from_lonlat`; ``id_derived`` says so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from glacierwatch.config import InventoryConfig
from glacierwatch.errors import ConfigError, DatasetNotFoundError, InputError
from glacierwatch.ids import GLIMS_ID_PATTERN, glims_id_from_lonlat

log = logging.getLogger(__name__)

#: Normalised columns of :func:`read_outlines` (plus ``geometry``, EPSG:4326).
OUTLINE_COLUMNS = (
    "glims_id", "id_derived", "source_id", "anlys_id", "name", "geog_area", "o1region", "o2region",
    "line_type", "src_date", "anlys_time", "inventory_area_km2", "source", "source_schema",
    "source_row", "geometry_status", "geometry_note",
)

#: Keys a column map may set (aliases: id -> source_id, date -> src_date, area_km2, area_m2).
MAP_KEYS = ("glims_id", "source_id", "anlys_id", "name", "geog_area", "o1region", "o2region",
            "line_type", "src_date", "anlys_time", "inventory_area_km2", "inventory_area_m2")
_ALIASES = {"id": "source_id", "date": "src_date", "area_km2": "inventory_area_km2",
            "area_m2": "inventory_area_m2", "region": "geog_area"}

SCHEMA_MAPS: dict[str, dict[str, str | tuple[str, ...]]] = {
    "glims": {"glims_id": "glac_id", "source_id": "glac_id", "anlys_id": "anlys_id", "name": "glac_name",
              "geog_area": "geog_area", "o1region": "gtng_o1reg", "o2region": "gtng_o2reg",
              "line_type": "line_type", "src_date": "src_date", "anlys_time": "anlys_time",
              "inventory_area_km2": ("db_area", "area")},
    "rgi7": {"glims_id": "glims_id", "source_id": "rgi_id", "anlys_id": "anlys_id", "name": "glac_name",
             "o1region": "o1region", "o2region": "o2region", "src_date": "src_date",
             "inventory_area_km2": "area_km2"},
    "rgi6": {"glims_id": "glimsid", "source_id": "rgiid", "name": "name", "o1region": "o1region",
             "o2region": "o2region", "src_date": "bgndate", "inventory_area_km2": "area"},
}
SCHEMA_NAMES = {"glims": "GLIMS", "rgi7": "RGI 7", "rgi6": "RGI 5/6", "custom": "custom (column map)"}
UNUSABLE_STATUSES = ("empty", "not_polygon", "unrepairable")
_VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json", ".parquet", ".geoparquet", ".fgb", ".gml", ".kml")


# ------------------------------------------------------------------ column maps

def parse_column_map(spec: str | os.PathLike[str] | Mapping[str, str] | list[str] | None) -> dict[str, str]:
    """A column map from a dict, ``KEY=VALUE`` strings, or a TOML / JSON file of ``key = "column"``
    (a TOML file may hold them in a ``[columns]`` table). Keys are checked against :data:`MAP_KEYS`."""
    if spec is None:
        return {}
    raw: dict[str, Any]
    if isinstance(spec, Mapping):
        raw = dict(spec)
    elif isinstance(spec, (list, tuple)):
        if len(spec) == 1 and "=" not in str(spec[0]):
            return parse_column_map(Path(spec[0]))
        raw = {}
        for item in spec:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise InputError(f"column map entry must be KEY=VALUE, got {item!r}")
            raw[key.strip()] = value.strip()
    else:
        path = Path(spec)
        if not path.exists():
            raise DatasetNotFoundError(f"column map file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
            raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable column map ({exc})") from exc
        if isinstance(raw.get("columns"), dict):
            raw = raw["columns"]
    out: dict[str, str] = {}
    for key, value in raw.items():
        norm = _ALIASES.get(str(key).strip().lower(), str(key).strip().lower())
        if norm not in MAP_KEYS:
            raise InputError(f"unknown column map key {key!r}; known: {', '.join(MAP_KEYS)}")
        if not isinstance(value, str) or not value:
            raise InputError(f"column map {key!r}: expected a column name or '=constant', got {value!r}")
        out[norm] = value
    if "inventory_area_km2" in out and "inventory_area_m2" in out:
        raise InputError("column map: give inventory_area_km2 or inventory_area_m2, not both")
    return out


def detect_schema(columns: list[str]) -> str:
    """``glims``, ``rgi7``, ``rgi6`` or ``custom`` from a file's column names."""
    cols = {c.lower() for c in columns}
    if "glac_id" in cols:
        return "glims"
    if "rgi_id" in cols:
        return "rgi7"
    if "rgiid" in cols:
        return "rgi6"
    return "custom"


# ------------------------------------------------------------------ dates

_DATE_RE = re.compile(r"^\s*(\d{4})(?:-?(\d{2})(?:-?(\d{2}))?)?(?:[T\s].*)?$")


def parse_date(value: Any) -> pd.Timestamp:
    """One outline date: ISO text, ``YYYYMMDD`` (RGI; ``99``/``00`` = unknown month or day), a year,
    or a date/datetime. An unknown day becomes the 15th, an unknown month 1 July. Else NaT."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return pd.NaT
    if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "year"):
        ts = pd.Timestamp(value)
        return ts.tz_localize(None).normalize() if ts.tzinfo else ts.normalize()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    m = _DATE_RE.match(text)
    if m:
        year = int(m.group(1))
        month = int(m.group(2)) if m.group(2) else 0
        day = int(m.group(3)) if m.group(3) else 0
        if year < 1000:
            return pd.NaT
        if not 1 <= month <= 12:
            return pd.Timestamp(year=year, month=7, day=1)
        try:
            return pd.Timestamp(year=year, month=month, day=day)
        except ValueError:
            return pd.Timestamp(year=year, month=month, day=15)
    try:
        ts = pd.to_datetime(text)
    except (ValueError, OverflowError, TypeError):
        return pd.NaT
    return pd.NaT if pd.isna(ts) else parse_date(ts)


def parse_dates(values: pd.Series) -> pd.Series:
    """:func:`parse_date` over a column (each distinct value parsed once); dtype datetime64[us]."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) is not None else values
        return out.dt.normalize().astype("datetime64[us]")
    uniq = {v: parse_date(v) for v in pd.unique(values.astype(object))}
    mapped = [uniq[v] for v in values.astype(object)]
    return pd.Series(pd.to_datetime(mapped), index=values.index).astype("datetime64[us]")


# ------------------------------------------------------------------ reading

def _resolve_path(path: Path) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"outline file not found: {path}")
    if path.is_dir():
        if (path / "glims_polygons.shp").exists():
            return path / "glims_polygons.shp"
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in _VECTOR_SUFFIXES)
        if len(found) == 1:
            return found[0]
        raise InputError(f"{path}: a folder; name the outline file in it "
                         f"({', '.join(p.name for p in found) or 'no vector files found'})")
    return path


def _read_vector(path: Path, layer: str | None) -> tuple[gpd.GeoDataFrame, str | None]:
    """Read one layer with pyogrio (or GeoParquet); one-line InputError for an unreadable file."""
    if path.suffix.lower() in {".parquet", ".geoparquet"}:
        try:
            return gpd.read_parquet(path), None
        except Exception as exc:  # pyarrow / geopandas raise many types for a non-GeoParquet file
            raise InputError(f"{path}: not a readable GeoParquet file ({type(exc).__name__}: {exc})") from exc
    import pyogrio

    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:  # pyogrio.errors.DataSourceError and friends
        raise InputError(f"{path}: not a readable vector file ({_first_line(exc)})") from exc
    names = [str(n) for n, _ in layers]
    if layer is None and len(names) > 1:
        polygon_layers = [str(n) for n, t in layers if t and "polygon" in str(t).lower()]
        if "glims_polygons" in names:
            layer = "glims_polygons"
        elif len(polygon_layers) == 1:
            layer = polygon_layers[0]
        else:
            raise InputError(f"{path}: holds several layers ({', '.join(names)}); choose one with layer=")
    if layer is not None and layer not in names:
        raise InputError(f"{path}: no layer {layer!r} (layers: {', '.join(names)})")
    try:
        gdf = pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:
        raise InputError(f"{path}: cannot read features ({_first_line(exc)})") from exc
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf.columns:
        raise InputError(f"{path}: has no geometry column (a table, not outlines)")
    return gdf, layer


def read_inventory_outlines(config: InventoryConfig) -> list[gpd.GeoDataFrame]:
    """Every ``[inventory] outlines`` file read with the section's ``column_map`` (what
    ``glacierwatch run`` selects from); the map is checked once, before any file is read."""
    try:
        column_map = parse_column_map(config.column_map) if config.column_map else None
    except InputError as exc:
        raise ConfigError(f"inventory.column_map: {exc}") from exc
    return [read_outlines(path, column_map=column_map) for path in config.outlines]


def _first_line(exc: Exception) -> str:
    """The first sentence of a GDAL error, without its advice on drivers."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.split("; It might help")[0]
    return text.replace(" not recognized as being in a supported file format.", " is not in a supported vector format")


def _column_lookup(columns: list[str]) -> dict[str, str]:
    return {c.lower(): c for c in columns}


def _text(series: pd.Series) -> pd.Series:
    def clean(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        s = str(v).strip()
        return s or None
    return pd.Series([clean(v) for v in series.astype(object)], index=series.index, dtype=object)


def _name(series: pd.Series) -> pd.Series:
    return _text(series).map(lambda s: s.strip().rstrip(",").strip() if isinstance(s, str) else s)


def _o2(series: pd.Series) -> pd.Series:
    """Second-order region number from ``1``, ``1.0`` or ``11-01``."""
    def conv(v: Any) -> Any:
        if v is None:
            return pd.NA
        s = str(v).strip()
        s = s.split("-")[-1] if "-" in s else s
        try:
            return int(float(s))
        except ValueError:
            return pd.NA
    return pd.Series([conv(v) for v in _text(series)], index=series.index, dtype="Int64")


def _int(series: pd.Series) -> pd.Series:
    return pd.to_numeric(_text(series), errors="coerce").round().astype("Int64")


def _area(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce").astype(float)
    return values.where(values > 0)


def _apply_map(gdf: gpd.GeoDataFrame, schema: str, cmap: Mapping[str, Any], path: Path,
               notes: list[str]) -> pd.DataFrame:
    lookup = _column_lookup([c for c in gdf.columns if c != gdf.geometry.name])
    n = len(gdf)
    out = pd.DataFrame(index=gdf.index)

    def get(key: str) -> pd.Series | None:
        spec = cmap.get(key)
        if spec is None:
            return None
        candidates = spec if isinstance(spec, tuple) else (spec,)
        if schema == "custom" and isinstance(spec, str) and spec.startswith("="):
            return pd.Series([spec[1:]] * n, index=gdf.index, dtype=object)
        for cand in candidates:
            col = lookup.get(cand.lower())
            if col is not None:
                return gdf[col]
        if schema == "custom":
            raise InputError(f"{path}: column map {key}={spec!r}: no such column "
                             f"(columns: {', '.join(lookup.values())})")
        return None

    area_km2 = get("inventory_area_km2")
    if schema == "glims" and "area" in lookup and "db_area" in lookup:
        # GLIMS db_area is the database's own area; the submitted 'area' fills its gaps.
        area_km2 = _area(gdf[lookup["db_area"]]).fillna(_area(gdf[lookup["area"]]))
    if area_km2 is None and get("inventory_area_m2") is not None:
        area_km2 = pd.to_numeric(get("inventory_area_m2"), errors="coerce") / 1e6
    out["glims_id"] = _text(get("glims_id")) if get("glims_id") is not None else pd.Series(None, index=gdf.index, dtype=object)
    src = get("source_id")
    out["source_id"] = _text(src) if src is not None else pd.Series(
        [f"{path.stem}#{i}" for i in range(n)], index=gdf.index, dtype=object)
    out["source_id"] = out["source_id"].where(out["source_id"].notna(),
                                              pd.Series([f"{path.stem}#{i}" for i in range(n)], index=gdf.index))
    out["anlys_id"] = _int(get("anlys_id")) if get("anlys_id") is not None else pd.Series(pd.NA, index=gdf.index, dtype="Int64")
    out["name"] = _name(get("name")) if get("name") is not None else pd.Series(None, index=gdf.index, dtype=object)
    out["geog_area"] = _text(get("geog_area")) if get("geog_area") is not None else pd.Series(None, index=gdf.index, dtype=object)
    out["o1region"] = _int(get("o1region")) if get("o1region") is not None else pd.Series(pd.NA, index=gdf.index, dtype="Int64")
    out["o2region"] = _o2(get("o2region")) if get("o2region") is not None else pd.Series(pd.NA, index=gdf.index, dtype="Int64")
    lt = get("line_type")
    out["line_type"] = (_text(lt).fillna("glac_bound").str.lower() if lt is not None
                        else pd.Series("glac_bound", index=gdf.index, dtype=object))
    for key in ("src_date", "anlys_time"):
        col = get(key)
        out[key] = parse_dates(col) if col is not None else pd.Series(pd.NaT, index=gdf.index, dtype="datetime64[us]")
    out["inventory_area_km2"] = _area(area_km2) if area_km2 is not None else pd.Series(np.nan, index=gdf.index)
    if out["src_date"].isna().all() and out["anlys_time"].isna().all():
        notes.append("no outline dates in this file (the date filter will remove its outlines)")
    if schema == "rgi6":
        notes.append("RGI 5/6: outline date from BgnDate (unknown day -> 15th, unknown month -> 1 July)")
    return out


def read_outlines(path: str | os.PathLike[str], *, column_map: Mapping[str, str] | None = None,
                  layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a GLIMS, RGI or other polygon file into the normalised columns :data:`OUTLINE_COLUMNS`
    (geometry in EPSG:4326, every file row kept with its ``geometry_status``).

    ``column_map`` maps normalised names (:data:`MAP_KEYS`) to the file's columns (or ``=constant``)
    for files that are neither GLIMS nor RGI. A folder holding ``glims_polygons.shp`` may be given.
    What was assumed or repaired is in ``result.attrs["load"]`` (path, schema, crs, notes, counts).
    Raises DatasetNotFoundError for a missing file and InputError for an unusable one.
    """
    path = _resolve_path(Path(path))
    gdf, layer = _read_vector(path, layer)
    notes: list[str] = []
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    schema = detect_schema(columns)
    cmap: Mapping[str, Any]
    if schema == "custom":
        cmap = parse_column_map(column_map) if column_map else {}
        if not cmap:
            notes.append("no column map: each polygon is a glacier; no names, dates or inventory areas")
    else:
        cmap = SCHEMA_MAPS[schema]
        if column_map:
            notes.append(f"{SCHEMA_NAMES[schema]} schema recognised: the column map is not applied")
    if len(gdf) == 0:
        raise InputError(f"{path}: holds no features")

    # --- CRS
    crs_assumed = False
    if gdf.crs is None:
        bounds = shapely.bounds(np.asarray(gdf.geometry.values))
        finite = bounds[np.all(np.isfinite(bounds), axis=1)]
        if len(finite) and (finite[:, 0].min() >= -180 and finite[:, 2].max() <= 360
                            and finite[:, 1].min() >= -90 and finite[:, 3].max() <= 90):
            gdf = gdf.set_crs("EPSG:4326")
            crs_assumed = True
            notes.append("no CRS (missing .prj): coordinates are within lon/lat range, read as EPSG:4326 "
                         "(GLIMS downloads are WGS 84)")
        else:
            rng = (f"x {finite[:, 0].min():.6g}..{finite[:, 2].max():.6g}, y {finite[:, 1].min():.6g}.."
                   f"{finite[:, 3].max():.6g}") if len(finite) else "no coordinates"
            raise InputError(f"{path}: no CRS (missing .prj?) and the coordinates ({rng}) are not lon/lat; "
                             "add the .prj or reproject the file")
    src_crs = CRS.from_user_input(gdf.crs)

    # --- geometry repair (in the source CRS), then reprojection
    geoms = shapely.force_2d(np.asarray(gdf.geometry.values))
    geoms, status, note = _repair(geoms)
    if not src_crs.equals(CRS.from_epsg(4326)):
        notes.append(f"reprojected from {src_crs.to_string()} to EPSG:4326")
        reproj = gpd.GeoSeries(geoms, crs=src_crs).to_crs("EPSG:4326")
        geoms = np.asarray(reproj.values)
        bad = ~shapely.is_valid(geoms) & (status != "empty") & (status != "not_polygon") & (status != "unrepairable")
        if bad.any():
            fixed, st2, _ = _repair(geoms[bad])
            geoms[bad] = fixed
            status[bad] = np.where(st2 == "ok", status[bad], st2)
            note[bad] = "invalid after reprojection, made valid"
    if (status == "not_polygon").all():
        kinds = pd.Series(shapely.get_type_id(np.asarray(gdf.geometry.values))).map(
            {0: "Point", 1: "LineString", 2: "LinearRing", 4: "MultiPoint", 5: "MultiLineString"}).fillna("other")
        raise InputError(f"{path}: holds no polygons ({', '.join(f'{k} x{v}' for k, v in kinds.value_counts().items())}); "
                         "glacier outlines must be polygons")

    out = _apply_map(gdf, schema, cmap, path, notes)
    out["source"] = str(path.resolve())
    out["source_schema"] = schema
    out["source_row"] = np.arange(len(gdf))
    out["geometry_status"] = status
    out["geometry_note"] = note
    result = gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(geoms, index=gdf.index, crs="EPSG:4326"))
    result = _assign_ids(result, schema, notes)
    result = result[[*OUTLINE_COLUMNS, "geometry"]].reset_index(drop=True)

    counts = {s: int((result["geometry_status"] == s).sum()) for s in ("ok", "repaired", *UNUSABLE_STATUSES)}
    for s in ("repaired", *UNUSABLE_STATUSES):
        if counts[s]:
            notes.append(f"{counts[s]} record(s) with geometry {s}")
    result.attrs["load"] = {
        "path": str(path.resolve()), "layer": layer, "schema": schema, "records": len(result),
        "crs": src_crs.to_string(), "crs_assumed": crs_assumed, "geometry": counts, "notes": notes,
    }
    for msg in notes:
        log.info("%s: %s", path.name, msg)
    return result


def _repair(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make geometries valid polygons: (geometries, status, note) arrays."""
    geoms = np.array(geoms, dtype=object)
    n = len(geoms)
    status = np.full(n, "ok", dtype=object)
    note = np.full(n, "", dtype=object)
    missing = shapely.is_missing(geoms)
    empty = missing.copy()
    empty[~missing] = shapely.is_empty(geoms[~missing])
    status[empty] = "empty"
    note[missing] = "no geometry"
    note[empty & ~missing] = "empty geometry"
    types = shapely.get_type_id(geoms)
    polygonal = np.isin(types, (3, 6))
    collection = types == 7
    other = ~empty & ~polygonal & ~collection
    names = {0: "Point", 1: "LineString", 2: "LinearRing", 4: "MultiPoint", 5: "MultiLineString"}
    status[other] = "not_polygon"
    for i in np.flatnonzero(other):
        note[i] = f"geometry is a {names.get(int(types[i]), 'non-polygon')}"
    check = ~empty & (polygonal | collection)
    valid = np.zeros(n, dtype=bool)
    valid[check] = shapely.is_valid(geoms[check])
    for i in np.flatnonzero(check & (~valid | collection)):
        g = geoms[i]
        reason = "geometry collection" if types[i] == 7 and shapely.is_valid(g) else shapely.is_valid_reason(g)
        fixed = g if shapely.is_valid(g) else shapely.make_valid(g, method="structure", keep_collapsed=False)
        polys = polygonal_part(fixed)
        if polys is None:
            status[i], note[i] = "unrepairable", f"invalid ({reason}); nothing polygonal after repair"
            geoms[i] = None
        else:
            status[i], note[i], geoms[i] = "repaired", f"made valid ({reason})", polys
    return geoms, status, note


def polygonal_part(geom: Any) -> Any:
    """The polygonal part of ``geom`` (Polygon or MultiPolygon), or None."""
    if geom is None or shapely.is_empty(geom):
        return None
    tid = shapely.get_type_id(geom)
    if tid in (3, 6):
        return geom
    parts = [p for p in shapely.get_parts(geom) if shapely.get_type_id(p) in (3, 6) and not p.is_empty]
    if not parts:
        return None
    merged = shapely.union_all(parts)
    return merged if shapely.get_type_id(merged) in (3, 6) else polygonal_part(merged)


def _assign_ids(df: gpd.GeoDataFrame, schema: str, notes: list[str]) -> gpd.GeoDataFrame:
    """Validate GLIMS ids; derive missing, invalid or ambiguous ones from glacier centroids."""
    ids = df["glims_id"].astype(object)
    valid = ids.map(lambda s: isinstance(s, str) and bool(GLIMS_ID_PATTERN.match(s))).astype(bool)
    n_missing = int(ids.isna().sum())
    n_invalid = int((~valid & ids.notna()).sum())
    need = ~valid
    if schema != "glims":
        # In a one-outline-per-glacier inventory, a GLIMS id shared by several source ids is ambiguous.
        per_id = df.loc[valid].groupby(ids[valid].astype(str))["source_id"].nunique()
        shared = set(per_id.index[per_id > 1])
        if shared:
            amb = ids.isin(shared)
            notes.append(f"{int(amb.sum())} record(s) share a GLIMS id with another glacier; their ids are derived")
            need = need | amb
    if n_missing and schema in ("glims", "rgi6", "rgi7") and n_missing < len(df):
        notes.append(f"{n_missing} record(s) without a GLIMS id; ids derived from the centroid")
    if n_invalid:
        examples = ", ".join(sorted(set(map(str, ids[~valid & ids.notna()])))[:3])
        notes.append(f"{n_invalid} record(s) with an invalid GLIMS id (e.g. {examples}); ids derived from the centroid")
    df["id_derived"] = need.to_numpy()
    if not need.any():
        return df
    if n_missing == len(df):
        notes.append("no GLIMS ids in this file: ids derived from the glacier centroids "
                     "(the file's own id is kept as source_id)")
    taken = set(ids[valid & ~need].astype(str))
    usable = ~df["geometry_status"].isin(UNUSABLE_STATUSES)
    new_ids = ids.copy()
    sub = df.loc[need]
    collisions = 0
    for _source_id, group in sub.groupby("source_id", sort=True):
        geoms = group.geometry[usable[group.index]].to_numpy()
        if len(geoms) == 0:
            continue  # no geometry to derive from: stays without id, reported by the selection
        union = shapely.union_all(geoms) if len(geoms) > 1 else geoms[0]
        c = union.centroid
        gid = glims_id_from_lonlat(c.x, c.y)
        if gid in taken:
            p = union.representative_point()
            gid = glims_id_from_lonlat(p.x, p.y)
            lat, step = p.y, 0
            while gid in taken and step < 1000:
                step += 1
                lat += 0.001 if p.y >= 0 else -0.001
                gid = glims_id_from_lonlat(p.x, lat)
            collisions += 1
        taken.add(gid)
        new_ids.loc[group.index] = gid
    if collisions:
        notes.append(f"{collisions} derived id(s) collided with another glacier's and were moved "
                     "(representative point, then 0.001° poleward steps)")
    df["glims_id"] = new_ids.where(new_ids.map(lambda s: isinstance(s, str) and bool(GLIMS_ID_PATTERN.match(s))), None)
    return df
