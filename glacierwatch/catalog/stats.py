"""Statistics of one scene file inside the glacier's box, computed from the raster itself.

The box is the whole file (scene files are already clipped to the glacier grid) or, when an
inventory is given, the window of the glacier grid's bounds (transformed into the file's CRS when
the CRS differs; parts of the box outside the file count as fill).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from glacierwatch.landsat import FILL_DN, QA, QA_BAND, SCENE_BANDS, SENSORS, common_band_name, qa_invalid_mask


class StatusError(Exception):
    """A problem with a file that gives its catalog row a non-ok ``status``."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Box:
    """The glacier's box: bounds (left, bottom, right, top) in ``crs``."""

    crs: str
    left: float
    bottom: float
    right: float
    top: float

    def key(self) -> str:
        return f"{self.crs}|{self.left!r}|{self.bottom!r}|{self.right!r}|{self.top!r}"


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
    names = [common_band_name(d) if d else "" for d in descriptions]
    missing = [b for b in SCENE_BANDS if b not in names]
    if missing:
        raise StatusError("missing_band", f"missing band(s) {missing}; has {names}")
    return names


def _window(src: Any, box: Box) -> tuple[Window, Window]:
    """(window of the box in file pixels, possibly partly outside the file; its part inside the file)."""
    bounds = (box.left, box.bottom, box.right, box.top)
    if box.crs != _crs_string(src.crs) and CRS.from_user_input(box.crs) != CRS.from_user_input(src.crs.to_wkt()):
        bounds = transform_bounds(box.crs, src.crs, *bounds, densify_pts=21)
    full = from_bounds(*bounds, transform=src.transform)
    col0, row0 = int(round(full.col_off)), int(round(full.row_off))
    width, height = max(1, int(round(full.width))), max(1, int(round(full.height)))
    full = Window(col0, row0, width, height)
    c0, r0 = max(col0, 0), max(row0, 0)
    c1, r1 = min(col0 + width, src.width), min(row0 + height, src.height)
    if c1 <= c0 or r1 <= r0:
        raise StatusError("outside_box", "the glacier's box does not overlap the file")
    return full, Window(c0, r0, c1 - c0, r1 - r0)


def _pct(num: int, den: int) -> float | None:
    return 100.0 * num / den if den else None


def scene_stats(path: str, *, satellite: str | None, box: Box | None = None) -> dict[str, Any]:
    """Raster statistics of a scene file as catalog columns (see :mod:`glacierwatch.catalog.schema`).

    Raises :class:`StatusError` with the catalog status for an unusable file.
    """
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise StatusError("no_crs", "the GeoTIFF has no CRS")
            names = _band_names(src, satellite)
            qa_index = names.index(QA_BAND)
            nodata = src.nodata if src.nodata is not None else FILL_DN
            if box is None:
                data = src.read()
                box_source = "file"
            else:
                full, inner = _window(src, box)
                part = src.read(window=inner)
                if (inner.width, inner.height) == (full.width, full.height):
                    data = part
                else:  # pad the part of the box outside the file with fill
                    data = np.full((src.count, full.height, full.width), nodata, dtype=part.dtype)
                    data[qa_index] = int(QA.FILL)
                    r0, c0 = inner.row_off - full.row_off, inner.col_off - full.col_off
                    data[:, r0:r0 + inner.height, c0:c0 + inner.width] = part
                box_source = "inventory"
            crs = _crs_string(src.crs)
    except StatusError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise StatusError("unreadable", f"unreadable GeoTIFF ({exc}{cause})") from exc

    bands, height, width = data.shape
    qa = data[qa_index]
    other = [i for i in range(bands) if i != qa_index]
    fill = (qa & np.uint16(int(QA.FILL))) != 0
    if other and not (isinstance(nodata, float) and math.isnan(nodata)):
        fill |= np.all(data[other] == nodata, axis=0)
    n2d = height * width
    n_fill = int(np.count_nonzero(fill))
    n_seen = n2d - n_fill
    seen = ~fill

    def share(bit: QA) -> float | None:
        return _pct(int(np.count_nonzero(((qa & np.uint16(int(bit))) != 0) & seen)), n_seen)

    n_values = int(data.size)
    zero_values = n_values - int(np.count_nonzero(data))
    valid = seen & ~qa_invalid_mask(qa)
    return {
        "box_source": box_source, "crs": crs, "width": width, "height": height, "bands": bands,
        "n_pixels": n_values, "n_pixels_2d": n2d, "nodata_pixels": n_fill, "zero_values": zero_values,
        "zero_pixel_pct": _pct(zero_values, n_values), "box_fill_fraction": _pct(n_fill, n2d),
        "box_cloud_fraction": share(QA.CLOUD), "box_shadow_fraction": share(QA.CLOUD_SHADOW),
        "box_snow_fraction": share(QA.SNOW),
        "box_valid_fraction": _pct(int(np.count_nonzero(valid)), n2d),
    }
