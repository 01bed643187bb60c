"""The per-glacier grid: one CRS, one 30 m pixel lattice, one extent for every scene and the DEM.

A glacier's grid is fixed once (UTM zone of the outline centroid, 30 m, pixel edges on the Landsat
lattice (odd multiples of 15 m),
covering the outline's bounding box plus a margin of 10 % of its size on each side), so that a time
series stacks without resizing and the area of a pixel is known exactly (900 m² at 30 m).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.features import rasterize


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone containing (lon, lat) in degrees (no Norway/Svalbard exceptions)."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


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
                              *, resolution: float = 30.0, margin: float = 0.1,
                              anchor: float | None = None) -> GlacierGrid:
        """Grid covering the box (in ``crs`` units) enlarged by ``margin`` x its size on each side,
        its pixel edges snapped outwards to ``anchor`` + multiples of ``resolution``.

        ``anchor`` (default: half a pixel, 15 m at 30 m) puts the edges on the Landsat Collection 2
        UTM lattice, whose pixel edges lie at odd multiples of 15 m (pixel centres at multiples of
        30 m; e.g. a STAC ``proj:transform`` origin of 353685). On that lattice a scene in the
        glacier's own zone lands on the grid pixel for pixel; edges at multiples of 30 m would put
        every grid pixel centre exactly between four Landsat pixels, where nearest-neighbour
        resampling has ties that GDAL and Earth Engine may break differently.
        """
        if anchor is None:
            anchor = resolution / 2.0
        dx, dy = (right - left) * margin, (top - bottom) * margin
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
                          *, resolution: float = 30.0, margin: float = 0.1,
                          crs: str | None = None) -> GlacierGrid:
        """Grid for a WGS 84 box (degrees) in the UTM zone of its centre (or ``crs``)."""
        if crs is None:
            crs = f"EPSG:{utm_epsg((lon_min + lon_max) / 2, (lat_min + lat_max) / 2)}"
        tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        left, bottom, right, top = tr.transform_bounds(lon_min, lat_min, lon_max, lat_max, densify_pts=21)
        return cls.from_projected_bounds(crs, left, bottom, right, top, resolution=resolution, margin=margin)

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


def to_grid_crs(geometry: Any, grid: GlacierGrid, *, src_crs: Any = "EPSG:4326") -> Any:
    """A shapely ``geometry`` (in ``src_crs``) projected to the CRS of ``grid``."""
    if geometry is not None and CRS.from_user_input(src_crs) != CRS.from_user_input(grid.crs):
        project = Transformer.from_crs(src_crs, grid.crs, always_xy=True).transform
        geometry = shapely.transform(geometry, lambda x, y: project(x, y), interleaved=False)
    return geometry


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
    return rasterize([(geometry, 1)], out_shape=grid.shape, transform=grid.transform, fill=0,
                     all_touched=False, dtype="uint8").astype(bool)
