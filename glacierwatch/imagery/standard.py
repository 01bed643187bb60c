"""Standard scene and DEM files on the glacier grid, whichever source the pixels came from.

Every source hands this module uint16 Collection 2 Level-2 digital numbers per common band name
(``blue`` ... ``lwir``, ``qa_pixel``, optionally ``coastal``), either already on the glacier grid
(Earth Engine computes them there) or with their own CRS and transform (STAC assets, local files),
in which case :func:`warp_to_grid` puts them on it. One resampling rule for all sources:
**nearest neighbour** — it keeps digital numbers and QA bit fields exact (averaging QA bits is
meaningless) and is what Earth Engine does by default, so the three sources write identical files.

Fill: a pixel outside a scene's footprint, or flagged fill, has DN 0 in every band and
``qa_pixel = 1`` (the QA fill bit), as in USGS products. Scale factors are *not* applied here: files
hold DNs; :mod:`glacierwatch.landsat` converts them (reflectance = DN x 0.0000275 - 0.2,
K = DN x 0.00341802 + 149.0) in exactly one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject

from glacierwatch.errors import InputError, SceneReadError
from glacierwatch.grid import GlacierGrid, raster_window
from glacierwatch.imagery.records import SceneRecord
from glacierwatch.io import Scene, read_open_scene, read_raster, write_cog, write_json, write_scene_cog
from glacierwatch.landsat import FILL_DN, QA, QA_BAND, SCENE_BANDS, SENSORS, qa_fill_mask
from glacierwatch.layout import GlacierPaths


#: Standard file band order per satellite: the sensor's bands (coastal first on OLI) when all are
#: present, else the bands common to all sensors.
def file_bands(satellite: str, available: Sequence[str]) -> tuple[str, ...]:
    """Band order of the standard file for ``satellite`` given the bands a source delivered."""
    sensor = SENSORS[satellite]
    if all(b in available for b in sensor.file_bands):
        return sensor.file_bands
    missing = [b for b in SCENE_BANDS if b not in available]
    if missing:
        raise InputError(f"{satellite} scene lacks band(s) {missing}; has {sorted(available)}")
    return SCENE_BANDS


def warp_to_grid(data: np.ndarray, *, src_crs: Any, src_transform: Affine, grid: GlacierGrid,
                 src_nodata: float | None = FILL_DN, dst_nodata: float = FILL_DN,
                 resampling: Resampling = Resampling.nearest) -> np.ndarray:
    """Put a (rows, cols) or (bands, rows, cols) array onto ``grid`` (nearest neighbour by default).

    Pixels the source does not cover, and source pixels equal to ``src_nodata`` (NaN and -inf are
    also treated as no data for float input), become ``dst_nodata``.
    """
    array = np.asarray(data)
    squeeze = array.ndim == 2
    if squeeze:
        array = array[np.newaxis]
    if np.issubdtype(array.dtype, np.floating):
        # -inf (Earth Engine exports of masked pixels) and NaN are no data whatever the tag says
        bad = ~np.isfinite(array)
        if bad.any():
            array = array.copy()
            fill = src_nodata if src_nodata is not None and np.isfinite(src_nodata) else np.nan
            array[bad] = fill
            if src_nodata is None or not np.isfinite(src_nodata):
                src_nodata = np.nan
    out = np.full((array.shape[0], *grid.shape), dst_nodata, dtype=array.dtype)
    reproject(source=array, destination=out, src_transform=src_transform, src_crs=CRS.from_user_input(src_crs),
              src_nodata=src_nodata, dst_transform=grid.transform, dst_crs=CRS.from_user_input(grid.crs),
              dst_nodata=dst_nodata, resampling=resampling, init_dest_nodata=True)
    return out[0] if squeeze else out


def normalise_fill(bands: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mark fill consistently: where QA is 0 (outside the footprint after warping) or has the fill
    bit, or every reflective/thermal band is 0, all bands become 0 and ``qa_pixel`` becomes 1."""
    qa = np.asarray(bands[QA_BAND], dtype=np.uint16)
    fill = (qa == 0) | qa_fill_mask(qa)
    others = [np.asarray(v) for k, v in bands.items() if k != QA_BAND]
    if others:
        fill |= np.all(np.stack(others) == FILL_DN, axis=0)
    out: dict[str, np.ndarray] = {}
    for name, value in bands.items():
        arr = np.array(value, dtype=np.uint16, copy=True)
        arr[fill] = np.uint16(int(QA.FILL)) if name == QA_BAND else np.uint16(FILL_DN)
        out[name] = arr
    return out


def mosaic(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine several images of one overpass on one grid: each pixel from the first part that
    observed it (parts in priority order, e.g. lowest cloud cover first)."""
    if not parts:
        raise ValueError("nothing to mosaic")
    names = set(parts[0])
    for part in parts[1:]:
        names &= set(part)
    result = normalise_fill({k: parts[0][k] for k in names})
    for part in parts[1:]:
        part = normalise_fill({k: part[k] for k in names})
        hole = qa_fill_mask(result[QA_BAND])
        if not hole.any():
            break
        for name in names:
            result[name][hole] = part[name][hole]
    return result


def write_standard_scene(scenes_dir: str | os.PathLike[str], records: Sequence[SceneRecord],
                         bands: Mapping[str, np.ndarray], grid: GlacierGrid) -> Path:
    """Write one standard scene file (a COG with the bands' scale/offset, :func:`glacierwatch.io.write_scene_cog`)
    and its side-car JSON for ``records`` of one overpass.

    ``bands``: uint16 DN on ``grid`` per common name (already mosaicked). The GeoTIFF's tags hold only
    glims_id, date and satellite, so the same pixels give the same bytes whichever source they came
    from; provenance (source, provider ids) goes to the fetch manifest. The side-car JSON (the
    provider's USGS metadata properties, a list when several records made the scene) is written
    first and the GeoTIFF last, so a scene file that exists always has its metadata.
    """
    if not records:
        raise ValueError("a scene needs at least one record")
    first = records[0]
    if any(r.group_key != first.group_key for r in records):
        raise ValueError("records of different glaciers, dates or satellites cannot make one scene")
    order = file_bands(first.satellite, list(bands))
    arrays = []
    for name in order:
        arr = np.asarray(bands[name])
        if arr.shape != grid.shape:
            raise InputError(f"{first.scene_id}: band {name} has shape {arr.shape}, grid is {grid.shape}")
        if arr.dtype != np.uint16:
            raise InputError(f"{first.scene_id}: band {name} is {arr.dtype}; standard scenes are uint16 DN")
        arrays.append(arr)
    target = GlacierPaths(first.glims_id, scenes_dir=Path(scenes_dir)).scene(first.date, first.satellite)
    props = [dict(r.properties) for r in records]
    write_json(target.with_suffix(".json"), props[0] if len(props) == 1 else props)
    write_scene_cog(target, np.stack(arrays), grid, band_names=list(order),
                    tags={"glims_id": first.glims_id, "date": first.date.isoformat(), "satellite": first.satellite})
    return target


def dem_on_grid(path: str | os.PathLike[str], grid: GlacierGrid) -> np.ndarray:
    """A DEM file's elevation (float32, m, NaN = no data) on ``grid``: the file itself when it is on
    the grid, otherwise put onto it bilinearly (a DEM on a larger box or in another CRS; the one
    resampling of DEMs). InputError when the DEM has no value on the grid."""
    dem, dem_grid, nodata = read_raster(path)
    dem = dem.astype(np.float32)
    if nodata is not None:
        dem[dem == nodata] = np.nan
    if dem_grid != grid:
        dem = warp_to_grid(dem, src_crs=dem_grid.crs, src_transform=dem_grid.transform, grid=grid,
                           src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear)
    if not np.isfinite(dem).any():
        raise InputError(f"{path}: the DEM has no value on the glacier grid {grid}")
    return dem


def write_dem(dem_dir: str | os.PathLike[str], glims_id: str, elevation: np.ndarray, grid: GlacierGrid, *,
              source: str) -> Path:
    """Write the DEM (float32 elevation in m, NaN = no data) on the glacier grid, as a COG."""
    if elevation.shape != grid.shape:
        raise InputError(f"{glims_id}: DEM shape {elevation.shape} does not match grid {grid.shape}")
    target = GlacierPaths(glims_id, dem_dir=Path(dem_dir)).dem
    write_cog(target, np.asarray(elevation, dtype=np.float32), grid, band_names=["elevation"], units=["m"],
              nodata=float("nan"), tags={"glims_id": glims_id, "units": "m", "source": source})
    return target


def scene_on_grid(path: str, grid: GlacierGrid) -> tuple[Scene, bool]:
    """A scene file's bands on ``grid``: the file itself when it is on the grid, otherwise only the
    window of the file that covers the grid, put onto it by nearest neighbour (the one resampling of
    scenes, :func:`glacierwatch.imagery.standard.warp_to_grid`); grid pixels the file does not cover are
    fill. Memory is bounded by the grid whatever the file's size. SceneReadError when the file cannot
    be read or does not overlap the grid. Returns (scene, whether it was warped)."""
    try:  # opened once: its grid decides the window, then the bands are read from the same handle
        with rasterio.open(path) as src:
            if src.crs is None:
                raise SceneReadError(f"{path}: no CRS")
            file_grid = GlacierGrid.from_rasterio(src.crs, src.transform, src.width, src.height)
            on_grid = file_grid == grid
            window = None if on_grid else raster_window(grid, src.transform, src.shape, crs=src.crs, pad=2)
            if not on_grid and window is None:
                raise SceneReadError(f"{path}: does not overlap the glacier grid {grid}")
            scene = read_open_scene(src, path, bands=SCENE_BANDS, window=window, grid=file_grid if on_grid else None)
    except SceneReadError:
        raise
    except (rasterio.errors.RasterioIOError, ValueError, OSError) as exc:
        raise SceneReadError(f"{path}: unreadable GeoTIFF ({exc})") from exc
    if scene.grid == grid:
        return scene, False
    bands: dict[str, np.ndarray] = {}
    for name, values in scene.bands.items():
        # QA fill is bit 0 set (1); reflective and thermal fill is DN 0
        fill = 1 if name == QA_BAND else FILL_DN
        bands[name] = warp_to_grid(values, src_crs=scene.grid.crs, src_transform=scene.grid.transform,
                                   grid=grid, src_nodata=fill, dst_nodata=fill)
    return Scene(path=scene.path, grid=grid, bands=bands, tags=scene.tags), True
