"""The per-glacier grid: one CRS, one 30 m pixel lattice, one extent for every scene and the DEM.

A glacier's grid is fixed once (UTM zone of the outline centroid, 30 m, pixel edges on the Landsat
lattice (odd multiples of 15 m), covering the outline's bounding box plus a margin on each side of
the larger of ``box_margin`` x its size and ``box_margin_m`` metres, see :func:`inventory_grid`), so
that a time series stacks without resizing and the area of a pixel is known exactly (900 m² at 30 m).

The area counting region of a glacier on its grid is :func:`counting_region`: its outline, or the
outline buffered by ``buffer_m`` and cut to the glacier's *territory* (the part of the box nearer to
its outline than to any other inventory outline, minus the other outlines; computed by
:mod:`glacierwatch.inventory.territory`, stored as WKB in the inventory), or the whole box.
"""

from __future__ import annotations

import json
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone containing (lon, lat) in degrees (no Norway/Svalbard exceptions)."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def margin_size(size: float, margin: float, margin_m: float) -> float:
    """The box margin on each side along one axis: the larger of ``margin`` x ``size`` and ``margin_m``
    (same units as ``size``, m on a projected grid). ``margin_m = 0`` is the seed's 10 %-only rule."""
    return max(size * margin, margin_m)


@dataclass(frozen=True)
class GlacierGrid:
    """A north-up raster grid: ``crs`` (e.g. ``EPSG:32632``), origin (``x0``, ``y0``) of the
    upper-left corner in CRS units (m), pixel size ``resolution`` (m), ``width`` x ``height`` pixels."""

    crs: str
    x0: float
    y0: float
    resolution: float
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        """The affine pixel-to-CRS transform (rasterio convention)."""
        return Affine(self.resolution, 0.0, self.x0, 0.0, -self.resolution, self.y0)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return (self.height, self.width)

    @property
    def pixel_area_m2(self) -> float:
        """Area of one pixel in m² (exact for a projected CRS in metres)."""
        return self.resolution * self.resolution

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in CRS units."""
        return (self.x0, self.y0 - self.height * self.resolution,
                self.x0 + self.width * self.resolution, self.y0)

    @classmethod
    def from_projected_bounds(cls, crs: str, left: float, bottom: float, right: float, top: float,
                              *, resolution: float = 30.0, margin: float = 0.1, margin_m: float = 0.0,
                              anchor: float | None = None) -> GlacierGrid:
        """Grid covering the box (in ``crs`` units) enlarged on each side by the larger of ``margin``
        x its size (per axis) and ``margin_m`` (CRS units, m), its pixel edges snapped outwards to
        ``anchor`` + multiples of ``resolution``.

        ``anchor`` (default: half a pixel, 15 m at 30 m) puts the edges on the Landsat Collection 2
        UTM lattice, whose pixel edges lie at odd multiples of 15 m (pixel centres at multiples of
        30 m; e.g. a STAC ``proj:transform`` origin of 353685). On that lattice a scene in the
        glacier's own zone lands on the grid pixel for pixel; edges at multiples of 30 m would put
        every grid pixel centre exactly between four Landsat pixels, where nearest-neighbour
        resampling has ties that GDAL and Earth Engine may break differently.
        """
        if anchor is None:
            anchor = resolution / 2.0
        dx, dy = margin_size(right - left, margin, margin_m), margin_size(top - bottom, margin, margin_m)
        left, right = left - dx, right + dx
        bottom, top = bottom - dy, top + dy
        x0 = math.floor((left - anchor) / resolution) * resolution + anchor
        y0 = math.ceil((top - anchor) / resolution) * resolution + anchor
        x1 = math.ceil((right - anchor) / resolution) * resolution + anchor
        y1 = math.floor((bottom - anchor) / resolution) * resolution + anchor
        width = max(1, int(round((x1 - x0) / resolution)))
        height = max(1, int(round((y0 - y1) / resolution)))
        return cls(crs=crs, x0=x0, y0=y0, resolution=resolution, width=width, height=height)

    @classmethod
    def for_lonlat_bounds(cls, lon_min: float, lat_min: float, lon_max: float, lat_max: float,
                          *, resolution: float = 30.0, margin: float = 0.1, margin_m: float = 0.0,
                          crs: str | None = None) -> GlacierGrid:
        """Grid for a WGS 84 box (degrees) in the UTM zone of its centre (or ``crs``); margins as in
        :meth:`from_projected_bounds`, measured in the projected box."""
        if crs is None:
            crs = f"EPSG:{utm_epsg((lon_min + lon_max) / 2, (lat_min + lat_max) / 2)}"
        tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        left, bottom, right, top = tr.transform_bounds(lon_min, lat_min, lon_max, lat_max, densify_pts=21)
        return cls.from_projected_bounds(crs, left, bottom, right, top, resolution=resolution, margin=margin,
                                         margin_m=margin_m)

    @classmethod
    def from_rasterio(cls, crs: Any, transform: Affine, width: int, height: int) -> GlacierGrid:
        """Grid of an open raster (north-up, square pixels)."""
        if transform.b != 0 or transform.d != 0 or abs(abs(transform.e) - transform.a) > 1e-6 * transform.a:
            raise ValueError(f"not a north-up square-pixel grid: {transform!r}")
        return cls(crs=CRS.from_user_input(crs).to_string(), x0=transform.c, y0=transform.f,
                   resolution=transform.a, width=int(width), height=int(height))

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (stored in inventory rows and file tags)."""
        return {"crs": self.crs, "x0": self.x0, "y0": self.y0, "resolution": self.resolution,
                "width": self.width, "height": self.height}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GlacierGrid:
        return cls(crs=str(data["crs"]), x0=float(data["x0"]), y0=float(data["y0"]),
                   resolution=float(data["resolution"]), width=int(data["width"]),
                   height=int(data["height"]))

    @classmethod
    def from_json(cls, text: str) -> GlacierGrid:
        return cls.from_dict(json.loads(text))


#: How :func:`raster_window` turns the grid's fractional pixel bounds into whole raster pixels.
WindowSnap = Literal["outward", "nearest"]


def _same_crs(grid_crs: str, raster_crs: Any) -> bool:
    """Whether a raster's CRS is the grid's: its EPSG code names the grid's CRS (cheap, the usual case
    of a file on its glacier grid), or pyproj finds the two CRSs equal."""
    try:
        epsg = raster_crs.to_epsg()
    except Exception:  # noqa: BLE001 - unusual CRS objects (or strings) have no to_epsg
        epsg = None
    if epsg and f"EPSG:{epsg}" == grid_crs:
        return True
    wkt = raster_crs.to_wkt() if hasattr(raster_crs, "to_wkt") else raster_crs
    return bool(CRS.from_user_input(grid_crs) == CRS.from_user_input(wkt))


def raster_window(grid: GlacierGrid, transform: Affine, shape: tuple[int, int], *, crs: Any = None,
                  pad: int = 0, snap: WindowSnap = "outward", clip: bool = True) -> Window | None:
    """The window of a raster (``transform``, ``shape`` = (rows, cols), ``crs``; ``None``: the grid's
    CRS) that covers ``grid``: the grid's bounds, transformed into the raster's CRS with densified
    edges (21 points a side) when the CRSs differ, in raster pixels.

    ``snap``: ``"outward"`` takes every raster pixel the bounds touch (floor of the first, ceiling of
    the last edge) then ``pad`` more pixels on each side -- what a reader warping the window onto the
    grid needs (the pad keeps the nearest source pixel of every grid pixel inside); ``"nearest"``
    rounds the first edge and the size to the nearest pixel (at least one) -- the box in a file's own
    pixels, exact for a file on the grid's lattice, as the catalog counts it (``pad`` added too).
    Bounds on a pixel edge may come out of ``from_bounds`` a hair past it (1/30 is not exact in
    binary), so ``"outward"`` can take one more pixel there; harmless for a reader, and why the
    catalog rounds instead.

    ``clip``: the window cut to the raster (:func:`clip_window`), or ``None`` when it does not overlap
    the raster; ``clip=False``: the whole window, possibly partly or wholly outside the raster.
    Offsets and sizes are whole pixels (int).
    """
    bounds = grid.bounds
    if crs is not None and not _same_crs(grid.crs, crs):
        bounds = transform_bounds(grid.crs, crs, *bounds, densify_pts=21)
    win = from_bounds(*bounds, transform=transform)
    if snap == "outward":
        col0, row0 = int(math.floor(win.col_off)), int(math.floor(win.row_off))
        col1, row1 = int(math.ceil(win.col_off + win.width)), int(math.ceil(win.row_off + win.height))
    elif snap == "nearest":
        # offset and size rounded separately (not the far edge): a box of a given size keeps it
        col0, row0 = int(round(win.col_off)), int(round(win.row_off))
        col1, row1 = col0 + max(1, int(round(win.width))), row0 + max(1, int(round(win.height)))
    else:
        raise ValueError(f"snap must be 'outward' or 'nearest', got {snap!r}")
    col0, row0, col1, row1 = col0 - pad, row0 - pad, col1 + pad, row1 + pad
    full = Window(col0, row0, col1 - col0, row1 - row0)
    return clip_window(full, shape) if clip else full


def clip_window(window: Window, shape: tuple[int, int]) -> Window | None:
    """The part of a whole-pixel ``window`` inside a raster of ``shape`` (rows, cols); None if none."""
    height, width = shape
    col0, row0 = max(int(window.col_off), 0), max(int(window.row_off), 0)
    col1 = min(int(window.col_off) + int(window.width), int(width))
    row1 = min(int(window.row_off) + int(window.height), int(height))
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def to_grid_crs(geometry: Any, grid: GlacierGrid, *, src_crs: Any = "EPSG:4326") -> Any:
    """A shapely ``geometry`` (in ``src_crs``) projected to the CRS of ``grid``."""
    if geometry is not None and CRS.from_user_input(src_crs) != CRS.from_user_input(grid.crs):
        project = Transformer.from_crs(src_crs, grid.crs, always_xy=True).transform
        # types-shapely types only the interleaved=True form of the transformation
        geometry = shapely.transform(geometry, lambda x, y: project(x, y), interleaved=False)  # type: ignore[arg-type, misc]
    return geometry


#: rasterio's rasterize keeps a NotGeoreferencedWarning of its own in-memory dataset quiet through the
#: process-wide warning filters, which other threads changing them at once (any ``warnings.catch_warnings``,
#: in pandas or numpy too) can leave without that filter: the time-series stage burns one glacier's zones
#: while another thread works on the previous glacier, and the tests then saw "NotGeoreferencedWarning:
#: Dataset has no geotransform ..." from rasterio.features, with the very masks of a run without threads.
#: So rasterising is one thread at a time, and that one spurious warning is filtered for the process, at
#: import (before any thread starts, so every filter list a thread saves and restores holds it). rasterio's
#: reproject (scenes read onto the grid by the reader threads) quiets the same warning the same way and
#: showed it too, in the time-series ablation's runs (every array it warps comes with its transform).
warnings.filterwarnings("ignore", message="Dataset has no geotransform", category=NotGeoreferencedWarning,
                        module=r"rasterio\.(features|warp)")
_RASTERIZE_LOCK = threading.Lock()


def _burn(geometry: Any, grid: GlacierGrid) -> np.ndarray:
    """``geometry`` (in the grid's CRS) burnt on ``grid``: pixel centres inside are True."""
    with _RASTERIZE_LOCK:
        return rasterize([(geometry, 1)], out_shape=grid.shape, transform=grid.transform, fill=0,
                         all_touched=False, dtype="uint8").astype(bool)


def outline_on_grid(geometry: Any, grid: GlacierGrid, *, src_crs: Any = "EPSG:4326",
                    buffer_m: float | None = None) -> np.ndarray:
    """An outline (optionally buffered by ``buffer_m`` m) burnt on ``grid``: bool (rows, cols).

    Pixels whose centre lies inside count (``all_touched=False``). The chips stage (training masks)
    and the time-series stage (area counting region) both use this, so they agree pixel for pixel.
    """
    geometry = to_grid_crs(geometry, grid, src_crs=src_crs)
    if geometry is not None and buffer_m:
        geometry = geometry.buffer(buffer_m)
    if geometry is None or geometry.is_empty:
        return np.zeros(grid.shape, dtype=bool)
    return _burn(geometry, grid)


def inventory_grid(outline_wgs84: Any, *, margin: float, margin_m: float, resolution: float = 30.0,
                   crs: str | None = None) -> GlacierGrid:
    """THE glacier grid of an outline (WGS 84 degrees): its bounding box projected to ``crs``
    (default: the UTM zone of the outline's centroid) plus, on each side, the larger of ``margin`` x
    the box size and ``margin_m`` metres, on the Landsat lattice. The inventory and the synthetic world
    both derive their grids here, so a synthetic time-series grid can hold the inventory's exactly."""
    if crs is None:
        c = outline_wgs84.centroid
        crs = f"EPSG:{utm_epsg(c.x, c.y)}"
    return GlacierGrid.for_lonlat_bounds(*outline_wgs84.bounds, resolution=resolution, margin=margin,
                                         margin_m=margin_m, crs=crs)


def territory_on_grid(territory_wkb: bytes | None, grid: GlacierGrid) -> np.ndarray:
    """A territory (WKB of a (Multi)Polygon in the CRS of ``grid``, m; the inventory's
    ``territory_wkb``) burnt on ``grid`` like :func:`outline_on_grid`: bool (rows, cols), pixel
    centres inside count. ``None`` (no territory known) -> the whole grid."""
    if territory_wkb is None:
        return np.ones(grid.shape, dtype=bool)
    geometry = shapely.from_wkb(territory_wkb)
    if geometry is None or geometry.is_empty:
        return np.zeros(grid.shape, dtype=bool)
    return _burn(geometry, grid)


def counting_region(outline_wgs84: Any, territory_wkb: bytes | None, grid: GlacierGrid,
                    buffer_m: float | None) -> np.ndarray:
    """The pixels whose glacier pixels count towards a glacier's area: bool (rows, cols) on ``grid``.

    ``buffer_m = None``: the whole box (the seed's behaviour); ``0``: the outline itself;
    ``> 0``: the outline buffered by ``buffer_m`` metres, intersected with the glacier's territory
    (``territory_wkb``; ``None`` = no neighbour exclusion), so no other inventory glacier's outline
    and no pixel nearer to another outline is counted.
    """
    if buffer_m is None:
        return np.ones(grid.shape, dtype=bool)
    if buffer_m < 0 or not math.isfinite(buffer_m):
        raise ValueError(f"buffer_m must be >= 0 or None, got {buffer_m}")
    if buffer_m == 0:
        return outline_on_grid(outline_wgs84, grid)
    return outline_on_grid(outline_wgs84, grid, buffer_m=buffer_m) & territory_on_grid(territory_wkb, grid)
