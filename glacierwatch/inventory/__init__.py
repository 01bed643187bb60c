"""Inventory: GLIMS, RGI and national glacier outlines in; the glaciers to measure out.

``glacierwatch inventory select OUTLINES... --out inventory.parquet`` (or :func:`read_outlines`,
:func:`select_glaciers`, :func:`write_inventory`) reproduces the seed's selection: outlines drawn on
or after 2005-01-01, no polar regions, 1-50 km², optionally sampled per region with a bias towards
larger glaciers.

Steps, each counted in the selection report (records, outlines or glaciers removed):

1. only glacier-ice outlines: GLIMS ``line_type == "glac_bound"`` (debris, rock, lakes, basins and
   centerlines are dropped; ``intrnl_rock`` polygons of the same analysis are cut out of it);
2. records whose geometry is empty, not a polygon or cannot be repaired are removed and listed one by
   one; invalid polygons (self-intersections, bow-ties) are made valid and kept;
3. records of one outline (same GLIMS id and analysis id, or same source id) are merged: multi-part
   rows are unioned, exact duplicates collapsed;
4. **the rule**: per glacier (GLIMS id), the chosen outline is the one with the latest date
   (``date_field``: ``src_date``, the source-image date, or ``anlys_time``) on or after ``after``;
   ties go to the latest other date, then the highest ``anlys_id``, then GLIMS before RGI 7,
   RGI 5/6 and other files. A glacier with no outline passing the date filter is removed. All its
   other outlines, of any date, are written to the validation file;
5. region from the region table (:mod:`glacierwatch.inventory.regions`); rows marked
   ``include = no`` (polar) and ``exclude_regions`` are removed; glaciers matching no row are kept as
   ``Unknown`` and listed;
6. area (equal-area, EPSG:6933) between ``min_area_km2`` and ``max_area_km2`` (inclusive);
7. at most ``per_region`` glaciers per region, drawn without replacement with probability
   proportional to area (seeded; each region has its own generator, so adding a region does not change
   the others' sample).

Outputs (``write_inventory(selection, "DIR/inventory.parquet")``):

``inventory.parquet`` (GeoParquet, EPSG:4326), one row per glacier:
    ``glims_id`` (GLIMS id; derived from the centroid when the file has none, ``id_derived``),
    ``name``, ``region``, ``geog_area``, ``outline_date`` (the ``date_field`` date of the chosen
    outline), ``area_km2`` (equal-area), ``inventory_area_km2`` (the file's own area: GLIMS
    ``db_area``, RGI ``Area``/``area_km2``), ``area_ratio`` and ``area_flag`` (differs by more than
    5 % and 0.001 km²), ``hemisphere`` (N/S of the centroid), ``centroid_lon/lat``, ``utm_epsg`` (UTM
    zone of the centroid), ``grid`` (:class:`~glacierwatch.grid.GlacierGrid` JSON: the outline's
    bounding box + max(``box_margin`` x size, ``box_margin_m``) on each side, in that UTM zone,
    ``resolution_m`` pixels; :func:`glacierwatch.grid.inventory_grid`), ``territory_wkb`` (WKB of the
    part of that box nearer to this outline than to any other outline read, minus the other outlines,
    in the grid's CRS, m; :mod:`glacierwatch.inventory.territory`),
    ``box_lon_min/lat_min/lon_max/lat_max`` (the same box + margin, in degrees), ``source`` (file),
    ``source_schema``, ``source_id`` (the file's own id: GLIMS glac_id, RGIId, SGI code...),
    ``anlys_id``, ``src_date``, ``anlys_time``, ``date_field``, ``region_matched_by``,
    ``n_outlines``, ``n_validation_outlines``, ``chosen_reason``, ``geometry``.
``inventory_validation.parquet``: the selected glaciers' other outlines, same columns (glacier-level
    ``region``, ``grid``, ``utm_epsg`` are the glacier's, so they rasterise on the same pixels) plus
    ``chosen_anlys_id`` and ``passes_date_filter``.
``inventory_report.json``: :class:`SelectionReport` (inputs and their notes, per-filter counts,
    repaired and removed records, unknown regions, area flags, overlaps, settings, rule).
"""

from glacierwatch.inventory.read import (
    MAP_KEYS,
    OUTLINE_COLUMNS,
    detect_schema,
    parse_column_map,
    parse_date,
    read_inventory_outlines,
    read_outlines,
)
from glacierwatch.inventory.regions import (
    UNKNOWN_REGION,
    RegionMatch,
    RegionRule,
    RegionTable,
    default_region_table_text,
    load_region_table,
)
from glacierwatch.inventory.select import (
    EQUAL_AREA_CRS,
    INVENTORY_COLUMNS,
    FilterStep,
    Selection,
    SelectionReport,
    output_paths,
    select_glaciers,
    selection_rule,
    write_inventory,
)

__all__ = [
    "EQUAL_AREA_CRS", "INVENTORY_COLUMNS", "MAP_KEYS", "OUTLINE_COLUMNS", "UNKNOWN_REGION",
    "FilterStep", "RegionMatch", "RegionRule", "RegionTable", "Selection", "SelectionReport",
    "default_region_table_text", "detect_schema", "load_region_table", "output_paths",
    "parse_column_map", "parse_date", "read_inventory_outlines", "read_outlines", "select_glaciers", "selection_rule",
    "write_inventory",
]
