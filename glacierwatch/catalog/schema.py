"""The scene catalog's columns: name, type, unit and meaning, in one place.

Every column of ``catalog.parquet`` is listed in :data:`COLUMNS`, in file order. The Arrow schema
the catalog is written with (:func:`arrow_schema`) and the column table of ``docs/catalog.md``
(:func:`markdown_table`; regenerate with ``python -m glacierwatch.catalog.schema``) both come from it.

Units: percentages are 0-100 (the USGS convention for ``CLOUD_COVER``), angles are degrees.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

#: Bumped whenever a column's meaning or computation changes; an incremental rebuild of a
#: catalog written with another version reads every file again.
SCHEMA_VERSION: Final = 1

#: ``status`` values, most serious first. Only ``ok`` rows are selected by the named selections.
STATUS_VALUES: Final[dict[str, str]] = {
    "ok": "the file was read, has the bands and CRS a scene must have, and its provider metadata parsed",
    "bad_name": "the file name does not follow <GLIMS_ID>_<YYYY-MM-DD>_<L5|L7|L8|L9>_C02_T1_L2_SR.tif "
                "(or its folder is not its GLIMS id)",
    "unreadable": "GDAL cannot open or decode the file (corrupt or truncated)",
    "no_crs": "the GeoTIFF has no coordinate reference system",
    "bad_band_count": "the file has a band count other than its sensor's (8 for L5/L7, 9 for L8/L9; 8 named bands without coastal also pass)",
    "missing_band": "band descriptions are set but a standard band (common name) is missing",
    "outside_box": "the glacier's box (from --inventory) does not overlap the file",
    "bad_metadata": "a metadata file beside the scene could not be parsed",
    "metadata_mismatch": "the provider metadata's date or satellite differs from the file name",
    "no_metadata": "no provider metadata file (EE JSON, MTL JSON/XML/TXT, STAC item) beside the scene",
    "error": "an unexpected error while reading the file (see the error column)",
}


@dataclass(frozen=True)
class Column:
    """One catalog column."""

    name: str
    type: pa.DataType
    unit: str
    doc: str
    group: str


def _c(name: str, type_: pa.DataType, unit: str, doc: str, group: str) -> Column:
    return Column(name, type_, unit, doc, group)


_ID, _META, _RASTER, _BUILD = "identity", "provider metadata", "raster statistics", "build"

COLUMNS: Final[tuple[Column, ...]] = (
    # ---- identity (from the path)
    _c("glims_id", pa.string(), "", "GLIMS glacier id (from the file name, validated against G\\d{6}E\\d{5}[NS]); "
       "null when the name does not parse", _ID),
    _c("path", pa.string(), "", "absolute path of the scene file; the catalog's key", _ID),
    _c("file_name", pa.string(), "", "file name of the scene", _ID),
    _c("date", pa.date32(), "", "acquisition date (from the file name)", _ID),
    _c("satellite", pa.string(), "", "L5, L7, L8 or L9 (from the file name)", _ID),
    _c("collection", pa.string(), "", "Landsat collection number, e.g. 02 (metadata, else file name)", _ID),
    _c("tier", pa.string(), "", "collection category / tier: T1, T2 or RT (metadata, else file name)", _ID),
    _c("wrs_path", pa.int16(), "", "WRS-2 path (metadata)", _ID),
    _c("wrs_row", pa.int16(), "", "WRS-2 row (metadata)", _ID),
    _c("hemisphere", pa.string(), "", "N or S: the inventory's hemisphere column if given, "
       "else the last letter of the GLIMS id", _ID),
    _c("region", pa.string(), "", "the glacier's region from the inventory (null without one)", _ID),
    _c("slc_off", pa.bool_(), "", "true for Landsat 7 scenes after the Scan Line Corrector failure (2003-05-31)", _ID),
    # ---- provider metadata (Earth Engine properties, USGS MTL or STAC item beside the file)
    _c("metadata_source", pa.string(), "", "where the kept provider record came from: ee, mtl_json, mtl_xml, "
       "mtl_txt or stac; null if none", _META),
    _c("metadata_path", pa.string(), "", "the metadata file the kept record came from", _META),
    _c("metadata_records", pa.int16(), "count", "provider records found for this file (all metadata files "
       "beside it, every record of an EE list)", _META),
    _c("duplicate_records", pa.int16(), "count", "records dropped by deduplication (metadata_records - 1, "
       "or 0). The kept record is the one with the largest cloud_cover, ties broken by source (ee, "
       "mtl_json, mtl_xml, mtl_txt, stac) then by the record's canonical JSON; fields it lacks are "
       "filled from the other records in the same order", _META),
    _c("product_id", pa.string(), "", "LANDSAT_PRODUCT_ID (or the STAC item id)", _META),
    _c("spacecraft_id", pa.string(), "", "SPACECRAFT_ID, e.g. LANDSAT_8", _META),
    _c("sensor_id", pa.string(), "", "SENSOR_ID, e.g. TM, ETM, OLI_TIRS", _META),
    _c("acquired", pa.timestamp("ms", tz="UTC"), "UTC", "scene centre time (system:time_start, "
       "DATE_ACQUIRED + SCENE_CENTER_TIME, or the STAC datetime)", _META),
    _c("cloud_cover", pa.float64(), "%", "CLOUD_COVER: scene-wide cloud cover, 0-100; negative "
       "provider values (-1 = not computed) become null", _META),
    _c("cloud_cover_land", pa.float64(), "%", "CLOUD_COVER_LAND: cloud cover over land, 0-100 (null as above)", _META),
    _c("image_quality", pa.int16(), "0-9", "IMAGE_QUALITY (L5/L7) or IMAGE_QUALITY_OLI (L8/L9); 9 is best; "
       "null for STAC items, which do not carry it", _META),
    _c("image_quality_tirs", pa.int16(), "0-9", "IMAGE_QUALITY_TIRS (L8/L9 thermal)", _META),
    _c("sun_elevation", pa.float64(), "degree", "SUN_ELEVATION at scene centre", _META),
    _c("sun_azimuth", pa.float64(), "degree", "SUN_AZIMUTH at scene centre", _META),
    _c("processing_level", pa.string(), "", "PROCESSING_LEVEL, e.g. L2SP (SR + ST) or L2SR (SR only)", _META),
    # ---- raster statistics (inside the glacier's box)
    _c("box_source", pa.string(), "", "file: statistics over the whole file (scenes already clipped to the "
       "box); inventory: over the window of the glacier grid's bounds from --inventory", _RASTER),
    _c("crs", pa.string(), "", "CRS of the file, e.g. EPSG:32632", _RASTER),
    _c("width", pa.int32(), "pixel", "columns of the box window", _RASTER),
    _c("height", pa.int32(), "pixel", "rows of the box window", _RASTER),
    _c("bands", pa.int16(), "count", "bands in the file (8 for L5/L7, 9 for L8/L9 standard scenes)", _RASTER),
    _c("n_pixels", pa.int64(), "values", "height x width x bands: the number of values, as the seed's "
       "num_pixels (the inference filter's 'more than 50,000 pixels' is on this)", _RASTER),
    _c("n_pixels_2d", pa.int64(), "pixel", "height x width: pixel locations in the box", _RASTER),
    _c("nodata_pixels", pa.int64(), "pixel", "pixel locations that are fill: QA_PIXEL fill bit set, or every "
       "non-QA band equal to the nodata value (0 when the file sets none); box parts outside the file "
       "count as fill", _RASTER),
    _c("zero_values", pa.int64(), "values", "values equal to 0 over all bands (the seed's zero_pixel_count)", _RASTER),
    _c("zero_pixel_pct", pa.float64(), "%", "100 x zero_values / n_pixels (the seed's percentage_zero_pixels x 100)",
       _RASTER),
    _c("box_fill_fraction", pa.float64(), "%", "share of the box's pixel locations that are fill (nodata_pixels / "
       "n_pixels_2d x 100)", _RASTER),
    _c("box_cloud_fraction", pa.float64(), "%", "share of the box's non-fill pixels with the QA_PIXEL cloud bit "
       "(bit 3), 0-100 - the USGS CLOUD_COVER definition applied to the box; null if all fill", _RASTER),
    _c("box_shadow_fraction", pa.float64(), "%", "share of non-fill box pixels with the cloud-shadow bit (bit 4)",
       _RASTER),
    _c("box_snow_fraction", pa.float64(), "%", "share of non-fill box pixels with the snow bit (bit 5)", _RASTER),
    _c("box_valid_fraction", pa.float64(), "%", "share of all box pixels whose surface was seen: not fill, cloud, "
       "dilated cloud, cirrus or shadow (landsat.qa_invalid_mask)", _RASTER),
    # ---- build bookkeeping
    _c("status", pa.string(), "", "ok for a good file, else one of the values listed below", _BUILD),
    _c("error", pa.string(), "", "what went wrong (null when status is ok)", _BUILD),
    _c("file_size", pa.int64(), "byte", "size of the scene file when read", _BUILD),
    _c("file_mtime_ns", pa.int64(), "ns", "modification time of the scene file when read (ns since 1970)", _BUILD),
    _c("signature", pa.string(), "", "hash of schema version, file size/mtime, metadata files' names/sizes/"
       "mtimes and the box; an incremental rebuild reads a file again only when it changes", _BUILD),
)

COLUMN_NAMES: Final[tuple[str, ...]] = tuple(c.name for c in COLUMNS)

#: Columns the stage contract (docs/CONTRACTS.md) guarantees.
REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    "glims_id", "path", "date", "satellite", "cloud_cover", "cloud_cover_land", "image_quality",
    "n_pixels", "nodata_pixels", "zero_pixel_pct", "box_cloud_fraction", "status",
)


def arrow_schema() -> pa.Schema:
    """The Arrow schema catalog.parquet is written with (schema version in the file metadata)."""
    return pa.schema([pa.field(c.name, c.type) for c in COLUMNS],
                     metadata={b"glacierwatch.catalog.schema_version": str(SCHEMA_VERSION).encode()})


def _sql_type(type_: pa.DataType) -> str:
    return {
        pa.string(): "VARCHAR", pa.date32(): "DATE", pa.int16(): "SMALLINT", pa.int32(): "INTEGER",
        pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN",
    }.get(type_, "TIMESTAMP WITH TIME ZONE" if pa.types.is_timestamp(type_) else str(type_))


def markdown_table() -> str:
    """The column documentation as a Markdown table (the table in docs/catalog.md)."""
    lines = ["| column | SQL type | unit | meaning |", "|---|---|---|---|"]
    group = None
    for c in COLUMNS:
        if c.group != group:
            group = c.group
            lines.append(f"| **{group}** | | | |")
        doc = c.doc.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {_sql_type(c.type)} | {c.unit} | {doc} |")
    lines += ["", "`status` values:", ""]
    lines += [f"- `{k}`: {v}" for k, v in STATUS_VALUES.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown_table())
