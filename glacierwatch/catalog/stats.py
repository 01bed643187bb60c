"""Statistics of one scene file inside the glacier's box, computed from the raster itself.

The box is the whole file (scene files are already clipped to the glacier grid) or, when an
inventory is given, the window of the glacier grid's bounds (transformed into the file's CRS when
the CRS differs; parts of the box outside the file count as fill), by :func:`glacierwatch.grid.raster_window`
as the imagery sources' reads are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from glacierwatch.grid import GlacierGrid, clip_window, raster_window
from glacierwatch.landsat import (
    FILL_DN,
    QA,
    QA_BAND,
    SCENE_BANDS,
    SENSORS,
    band_names,
    qa_bits,
    qa_fill_mask,
    qa_invalid_mask,
)


class StatusError(Exception):
    """A problem with a file that gives its catalog row a non-ok ``status``."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def box_key(grid: GlacierGrid) -> str:
    """The glacier's box as text for a catalog row's signature: CRS and bounds (left, bottom, right,
    top, CRS units) exactly as written since catalog schema 1, so existing rows keep their signature."""
    left, bottom, right, top = grid.bounds
    return f"{grid.crs}|{left!r}|{bottom!r}|{right!r}|{top!r}"


def _crs_string(crs: Any) -> str:
    try:
        epsg = crs.to_epsg()
    except Exception:  # noqa: BLE001 - unusual CRS objects
        epsg = None
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def _band_names(src: Any, satellite: str | None) -> list[str]:
    """Common names of the file's bands (from descriptions; sensor file order when none are set)."""
    sensor = SENSORS.get(satellite or "")
    expected = len(sensor.file_bands) if sensor else None
    descriptions = [d or "" for d in src.descriptions]
    # named bands may omit the optional coastal band of L8/L9 (imported files often lack it)
    allowed = {expected, len(SCENE_BANDS)} if any(descriptions) else {expected}
    if expected is not None and src.count not in allowed:
        raise StatusError("bad_band_count", f"{src.count} bands, a {satellite} scene has {expected}")
    if not any(descriptions):
        if sensor is None:
            raise StatusError("missing_band", "no band descriptions and no sensor to infer the band order from")
        return list(sensor.file_bands)
    names = band_names(descriptions)
    missing = [b for b in SCENE_BANDS if b not in names]
    if missing:
        raise StatusError("missing_band", f"missing band(s) {missing}; has {names}")
    return names


def _window(src: Any, box: GlacierGrid) -> tuple[Window, Window]:
    """(window of the box in file pixels, possibly partly outside the file; its part inside the file).

    The box's edges are rounded to the nearest file pixel (``snap="nearest"``): a file on the glacier's
    lattice gives the box exactly, and a file on another lattice is counted over the box's own size."""
    full = raster_window(box, src.transform, src.shape, crs=src.crs, snap="nearest", clip=False)
    inner = clip_window(full, src.shape) if full is not None else None
    if full is None or inner is None:
        raise StatusError("outside_box", "the glacier's box does not overlap the file")
    return full, inner


def _pct(num: int, den: int) -> float | None:
    return 100.0 * num / den if den else None


#: Largest block of a file read at once (bytes): statistics are sums, accumulated block by block,
#: so memory is bounded whatever the file's size.
MAX_READ_BYTES = 64 * 2**20
#: GDAL's block cache while a file is summarised, MB: each block is read once, so a cache only
#: holds memory (GDAL's default, 5 % of RAM, grew a 1 GB scan to 1.3 GB of resident memory).
GDAL_CACHE_MB = 64


@dataclass
class _Counts:
    """Running sums of one file's statistics (pixels are 2-D positions, values are band values)."""

    n_fill: int = 0
    zero_values: int = 0
    cloud: int = 0
    shadow: int = 0
    snow: int = 0
    valid: int = 0

    def add(self, data: np.ndarray, qa_index: int, nodata: float) -> None:
        """Add a (bands, rows, cols) block. Float files: NaN and +-inf are no data (the fill of
        float exports); the QA band is read as its integer bit field."""
        other = [i for i in range(data.shape[0]) if i != qa_index]
        qa_raw = data[qa_index]
        if np.issubdtype(data.dtype, np.floating):
            finite = np.isfinite(data)
            nodata_value = nodata if nodata is not None and np.isfinite(nodata) else None
            missing = ~finite if nodata_value is None else (~finite | (data == nodata_value))
            qa = qa_bits(qa_raw)
            fill = qa_fill_mask(qa)
            if other:
                fill |= np.all(missing[other], axis=0)
            # fill values count as zero values, as DN 0 does in integer files
            self.zero_values += int(np.count_nonzero((data == 0) | ~finite))
        else:
            qa = qa_bits(qa_raw)
            fill = qa_fill_mask(qa)
            if other:
                fill |= np.all(data[other] == nodata, axis=0)
            self.zero_values += int(data.size - np.count_nonzero(data))
        seen = ~fill
        self.n_fill += int(np.count_nonzero(fill))
        self.cloud += int(np.count_nonzero(((qa & np.uint16(int(QA.CLOUD))) != 0) & seen))
        self.shadow += int(np.count_nonzero(((qa & np.uint16(int(QA.CLOUD_SHADOW))) != 0) & seen))
        self.snow += int(np.count_nonzero(((qa & np.uint16(int(QA.SNOW))) != 0) & seen))
        self.valid += int(np.count_nonzero(seen & ~qa_invalid_mask(qa)))


def _row_blocks(src: Any, window: Window) -> list[Window]:
    """``window`` cut into row strips of at most :data:`MAX_READ_BYTES` (whole internal blocks of
    rows when they fit; at least one row)."""
    itemsize = np.dtype(src.dtypes[0]).itemsize
    row_bytes = max(1, int(window.width) * src.count * itemsize)
    block_rows = max(1, src.block_shapes[0][0] if src.block_shapes else 1)
    rows = max(1, MAX_READ_BYTES // row_bytes)
    if rows >= block_rows:  # whole internal blocks when they fit (each block is decoded once)
        rows = rows // block_rows * block_rows
    top, height = int(window.row_off), int(window.height)
    return [Window(int(window.col_off), r, int(window.width), min(rows, top + height - r))
            for r in range(top, top + height, rows)]


def scene_stats(path: str, *, satellite: str | None, box: GlacierGrid | None = None) -> dict[str, Any]:
    """Raster statistics of a scene file as catalog columns (see :mod:`glacierwatch.catalog.schema`).

    The file (or the box's window of it) is read in row strips of at most :data:`MAX_READ_BYTES`,
    so a file of any size is summarised in bounded memory. Raises :class:`StatusError` with the
    catalog status for an unusable file.
    """
    counts = _Counts()
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(path) as src:
            if src.crs is None:
                raise StatusError("no_crs", "the GeoTIFF has no CRS")
            names = _band_names(src, satellite)
            qa_index = names.index(QA_BAND)
            nodata = src.nodata if src.nodata is not None else FILL_DN
            if box is None:
                full = inner = Window(0, 0, src.width, src.height)
                box_source = "file"
            else:
                full, inner = _window(src, box)
                box_source = "inventory"
            for block in _row_blocks(src, inner):
                counts.add(src.read(window=block), qa_index, nodata)
            bands = src.count
            crs = _crs_string(src.crs)
    except StatusError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise StatusError("unreadable", f"unreadable GeoTIFF ({exc}{cause})") from exc

    height, width = int(full.height), int(full.width)
    n2d = height * width
    # the part of the box outside the file is fill: nodata in every band, the QA fill bit set
    outside = n2d - int(inner.height) * int(inner.width)
    counts.n_fill += outside
    if outside and bands > 1 and (nodata == 0 or (isinstance(nodata, float) and not math.isfinite(nodata))):
        counts.zero_values += outside * (bands - 1)
    n_seen = n2d - counts.n_fill
    n_values = bands * n2d
    return {
        "box_source": box_source, "crs": crs, "width": width, "height": height, "bands": bands,
        "n_pixels": n_values, "n_pixels_2d": n2d, "nodata_pixels": counts.n_fill, "zero_values": counts.zero_values,
        "zero_pixel_pct": _pct(counts.zero_values, n_values), "box_fill_fraction": _pct(counts.n_fill, n2d),
        "box_cloud_fraction": _pct(counts.cloud, n_seen), "box_shadow_fraction": _pct(counts.shadow, n_seen),
        "box_snow_fraction": _pct(counts.snow, n_seen),
        "box_valid_fraction": _pct(counts.valid, n2d),
    }
