"""Trend tables with their geometry, as GeoParquet (EPSG:4326), for GIS users.

``glacier_trends_geo.parquet``: every row of the glacier trends table with the glacier's outline
from the inventory. ``region_trends_geo.parquet``: every row of the region trends table with a region
geometry drawn from its glaciers' outlines: their union (``region_geometry = "union"``, default; a
MultiPolygon of the outlines) or its convex hull (``"convex_hull"``, one light polygon); the
``Total`` row gets all glaciers. Both open in QGIS, GDAL >= 3.5, DuckDB spatial and
``geopandas.read_parquet``. Date columns are datetime64 (:func:`glacierwatch.io.datetime64_dates`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from glacierwatch.errors import InputError
from glacierwatch.io import atomic_path, datetime64_dates, read_table
from glacierwatch.trends.core import TOTAL

log = logging.getLogger(__name__)

GLACIER_GEO_TABLE = "glacier_trends_geo.parquet"
REGION_GEO_TABLE = "region_trends_geo.parquet"
REGION_GEOMETRIES = ("union", "convex_hull")
OUTPUT_CRS = "EPSG:4326"


def _outlines(inventory_path: str | os.PathLike[str]) -> gpd.GeoSeries:
    """glims_id -> outline (EPSG:4326) from the inventory GeoParquet."""
    path = Path(inventory_path)
    try:
        inventory = gpd.read_parquet(path, columns=["glims_id", "geometry"])
    except (ValueError, OSError) as exc:  # no geo metadata, missing file, not Parquet
        raise InputError(f"{path}: not an inventory GeoParquet with glims_id and geometry ({exc})") from exc
    if inventory.crs is None:
        raise InputError(f"{path}: the inventory geometry has no CRS")
    inventory = inventory.to_crs(OUTPUT_CRS)
    return inventory.set_index("glims_id").geometry


def _dates_from_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A CSV's ``date`` / ``*_date`` columns of ISO text as datetime64 (others, and text that is not
    all dates, unchanged)."""
    out = frame.copy()
    for name in frame.columns:
        if (name == "date" or str(name).endswith("_date")) and not pd.api.types.is_datetime64_any_dtype(frame[name]):
            parsed = pd.to_datetime(frame[name], format="ISO8601", errors="coerce")
            if parsed.notna().sum() == frame[name].notna().sum():
                out[name] = parsed
    return out


def write_trends_geoparquet(glacier_trends: str | os.PathLike[str] | pd.DataFrame, region_trends: pd.DataFrame,
                            inventory_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                            by: str = "region", region_geometry: str = "union") -> dict[str, Path]:
    """Write :data:`GLACIER_GEO_TABLE` and :data:`REGION_GEO_TABLE` into ``out_dir`` (atomically).

    ``glacier_trends``: the glacier trends table (or its CSV/Parquet file), one row per glacier with
    ``glims_id`` and the grouping column ``by``; ``region_trends``: the region table (column ``by``,
    incl. the ``Total`` row). A glacier missing from the inventory keeps its row with no geometry
    (a warning says how many). Returns ``{"glaciers": path, "regions": path}``.
    """
    if region_geometry not in REGION_GEOMETRIES:
        raise InputError(f"region_geometry {region_geometry!r}; expected one of {', '.join(REGION_GEOMETRIES)}")
    glaciers = glacier_trends if isinstance(glacier_trends, pd.DataFrame) else _dates_from_text(read_table(glacier_trends))
    for frame, name in ((glaciers, "glacier trends"), (region_trends, "region trends")):
        need = ["glims_id", by] if frame is glaciers else [by]
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise InputError(f"the {name} table lacks column(s) {missing}")
    outlines = _outlines(inventory_path)
    geometry = glaciers["glims_id"].map(outlines)
    unmatched = int(geometry.isna().sum())
    if unmatched:
        log.warning("%d of %d glacier(s) of the trends table are not in %s: written without geometry",
                    unmatched, len(glaciers), inventory_path)
    glacier_geo = gpd.GeoDataFrame(datetime64_dates(glaciers.reset_index(drop=True)),
                                   geometry=gpd.GeoSeries(list(geometry), crs=OUTPUT_CRS))

    def region_shape(name: object) -> object:
        members = glacier_geo if name == TOTAL else glacier_geo[glacier_geo[by] == name]
        shapes = [g for g in members.geometry if g is not None and not g.is_empty]
        if not shapes:
            return None
        merged = shapely.union_all(shapes)
        return merged.convex_hull if region_geometry == "convex_hull" else merged

    regions = region_trends.reset_index(drop=True)
    region_geo = gpd.GeoDataFrame(datetime64_dates(regions),
                                  geometry=gpd.GeoSeries([region_shape(n) for n in regions[by]], crs=OUTPUT_CRS))
    out = Path(out_dir)
    paths = {"glaciers": out / GLACIER_GEO_TABLE, "regions": out / REGION_GEO_TABLE}
    for key, frame in (("glaciers", glacier_geo), ("regions", region_geo)):
        with atomic_path(paths[key]) as tmp:
            frame.to_parquet(tmp, index=False)
    return paths


__all__ = ["GLACIER_GEO_TABLE", "REGION_GEO_TABLE", "REGION_GEOMETRIES", "write_trends_geoparquet"]
