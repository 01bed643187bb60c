"""Per-glacier area time series: scenes -> chip-size stack -> temporal smoothing -> segmentation
-> probabilities back on the glacier grid -> threshold -> km².

The area counts glacier pixels on the glacier grid (``pixel_area_m2`` from the grid's transform:
900 m² for 30 m pixels) inside the region of interest: the inventory outline buffered by
``buffer_m`` metres (or the whole box when ``buffer_m`` is None, as the seed did).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import rasterio.errors
from shapely import Geometry

from glacierwatch.chips.features import resize_stack
from glacierwatch.config import TimeseriesConfig
from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid, outline_on_grid, to_grid_crs
from glacierwatch.io import read_raster
from glacierwatch.timeseries.segmenters import Segmenter
from glacierwatch.timeseries.stack import SceneStack, read_stack, smooth_stack

AREA_COLUMNS = (
    "glims_id", "region", "date", "satellite", "scene", "area_km2", "area_km2_unsmoothed",
    "valid_fraction", "filled_fraction", "pixel_area_m2", "segmenter", "model_fingerprint",
    "smoothing", "sigma", "buffer_m", "run_key",
)


def raster_grid(path: str) -> GlacierGrid:
    """The grid of a raster file (without reading its pixels)."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputError(f"{path}: no CRS")
            return GlacierGrid.from_rasterio(src.crs, src.transform, src.width, src.height)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{path}: unreadable raster ({exc})") from exc


def run_key(segmenter: Segmenter, config: TimeseriesConfig) -> str:
    """A short hash of everything that changes the areas (model, smoothing, threshold, buffer)."""
    payload = json.dumps({"segmenter": segmenter.name, "fingerprint": segmenter.fingerprint,
                          "smoothing": config.smoothing, "sigma": config.sigma,
                          "threshold": config.threshold, "buffer_m": config.buffer_m}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _segment(segmenter: Segmenter, bands: np.ndarray, band_names: Sequence[str], dem: np.ndarray | None,
             *, glims_id: str, dates: Sequence[Any], batch: int) -> np.ndarray:
    out = np.empty((bands.shape[0], *bands.shape[-2:]), dtype=np.float32)
    for start in range(0, bands.shape[0], batch):
        chunk = bands[start:start + batch]
        named = {name: chunk[:, i] for i, name in enumerate(band_names)}
        out[start:start + batch] = segmenter(named, dem, glims_id=glims_id, dates=dates[start:start + batch])
    return out


def probabilities_on_grid(probs: np.ndarray, grid: GlacierGrid) -> np.ndarray:
    """Chip-size probabilities (N, S, S) resized back to the glacier grid: (N, rows, cols) float32."""
    return resize_stack(probs[:, None], grid.shape).numpy()[:, 0]


def _areas_on_grid(probs: np.ndarray, grid: GlacierGrid, region: np.ndarray, threshold: float,
                   batch: int = 64) -> np.ndarray:
    """Resize chip-size probabilities back to the grid, threshold, count pixels in ``region`` -> km²."""
    km2_per_pixel = grid.pixel_area_m2 / 1e6
    areas = np.empty(len(probs), dtype=np.float64)
    for start in range(0, len(probs), batch):
        glacier = probabilities_on_grid(probs[start:start + batch], grid) > threshold
        areas[start:start + batch] = (glacier & region[None]).sum(axis=(1, 2)) * km2_per_pixel
    return areas


def prepare_glacier(glims_id: str, scenes: pd.DataFrame, geometry: Geometry, grid: GlacierGrid | None
                    ) -> tuple[pd.DataFrame, GlacierGrid, np.ndarray]:
    """Scenes in processing order (date, then path), the glacier grid (the first scene's when ``grid``
    is None) and the outline rasterised on it; errors if there is no scene or the outline misses the grid."""
    if scenes.empty:
        raise InputError(f"{glims_id}: no scenes passed the selection")
    scenes = scenes.sort_values(["date", "path"]).reset_index(drop=True)
    if grid is None:
        grid = raster_grid(scenes["path"].iloc[0])
    outline = outline_on_grid(geometry, grid)
    if not outline.any():
        raise InputError(f"{glims_id}: the outline covers no pixel of the glacier grid")
    return scenes, grid, outline


def count_region(geometry: Geometry, grid: GlacierGrid, buffer_m: float | None) -> np.ndarray:
    """Where glacier pixels are counted: the outline buffered by ``buffer_m`` m, or the whole box (None/0)."""
    return outline_on_grid(geometry, grid, buffer_m=buffer_m) if buffer_m else np.ones(grid.shape, bool)


def dem_at_chip_size(dem_path: str, grid: GlacierGrid, chip_size: int) -> np.ndarray:
    """The DEM (m) on ``grid`` reduced to ``chip_size``; nodata is filled with the mean elevation."""
    dem, dem_grid, nodata = read_raster(dem_path)
    if dem_grid != grid:
        raise InputError(f"{dem_path}: DEM grid differs from the glacier grid")
    dem = dem.astype(np.float32)
    if nodata is not None:
        dem[dem == nodata] = np.nan
    return resize_stack(np.nan_to_num(dem, nan=float(np.nanmean(dem)))[None], chip_size).numpy()[0]


@dataclass
class GlacierProbabilities:
    """A glacier's scene stack at chip size and the segmenter's glacier probabilities on it.

    ``probs``: (T, S, S) from the temporally smoothed stack (what ``area_km2`` counts);
    ``probs_raw``: from the unsmoothed stack (``area_km2_unsmoothed``): the same array when the
    smoothing is ``none``, None when not asked for; ``support``: the smoothed weight (see
    :func:`~glacierwatch.timeseries.stack.smooth_stack`); ``dates``: one per scene, in stack order.
    """

    stack: SceneStack
    support: np.ndarray
    probs: np.ndarray
    probs_raw: np.ndarray | None
    dates: list[Any]


def glacier_probabilities(glims_id: str, scenes: pd.DataFrame, *, grid: GlacierGrid, outline: np.ndarray,
                          dem_small: np.ndarray | None, segmenter: Segmenter, config: TimeseriesConfig,
                          chip_size: int = 128, threads: int = 2, unsmoothed: bool = True
                          ) -> GlacierProbabilities:
    """Read the scenes (already in :func:`prepare_glacier` order), smooth them over time
    (``config.smoothing``, ``config.sigma``) and segment: glacier probabilities at chip size."""
    stack = read_stack(list(scenes["path"]), grid, outline, size=chip_size, threads=threads)
    smoothed, support = smooth_stack(stack, mode=config.smoothing, sigma=config.sigma)
    dates = list(pd.to_datetime(scenes["date"]).dt.date)
    probs = _segment(segmenter, smoothed, stack.band_names, dem_small, glims_id=glims_id, dates=dates,
                     batch=config.batch_size)
    if config.smoothing == "none":
        probs_raw: np.ndarray | None = probs
    elif unsmoothed:
        probs_raw = _segment(segmenter, stack.bands, stack.band_names, dem_small, glims_id=glims_id,
                             dates=dates, batch=config.batch_size)
    else:
        probs_raw = None
    return GlacierProbabilities(stack, support, probs, probs_raw, dates)


def glacier_areas(glims_id: str, scenes: pd.DataFrame, *, geometry: Geometry, region_name: str,
                  grid: GlacierGrid | None, dem_path: str | None, segmenter: Segmenter,
                  config: TimeseriesConfig, chip_size: int = 128, threads: int = 2) -> pd.DataFrame:
    """Area of one glacier on every scene in ``scenes`` (columns path, date, satellite).

    ``grid``: the glacier grid every scene must be on; None takes the grid of the first scene file
    (scenes written by the imagery stage or the synthetic world all share their glacier's grid).
    Returns one row per scene with the columns of :data:`AREA_COLUMNS`.
    """
    scenes, grid, outline = prepare_glacier(glims_id, scenes, geometry, grid)
    region = count_region(geometry, grid, config.buffer_m)
    dem_small = dem_at_chip_size(dem_path, grid, chip_size) if dem_path is not None else None
    result = glacier_probabilities(glims_id, scenes, grid=grid, outline=outline, dem_small=dem_small,
                                   segmenter=segmenter, config=config, chip_size=chip_size, threads=threads)
    stack, support, probs, probs_raw = result.stack, result.support, result.probs, result.probs_raw
    assert probs_raw is not None
    areas = _areas_on_grid(probs, grid, region, config.threshold)
    areas_raw = areas if probs_raw is probs else _areas_on_grid(probs_raw, grid, region, config.threshold)

    # share of the outline (at chip size) that was not observed but got a value from its neighbours
    outline_small = resize_stack(outline.astype(np.float32)[None], chip_size).numpy()[0] >= 0.5
    unobserved = stack.weight < 0.5
    filled = unobserved & (support > 1e-6) if config.smoothing == "masked" else unobserved
    n_out = max(int(outline_small.sum()), 1)
    filled_fraction = (filled & outline_small[None]).sum(axis=(1, 2)) / n_out

    key = run_key(segmenter, config)
    return pd.DataFrame({
        "glims_id": glims_id,
        "region": region_name,
        "date": pd.to_datetime(scenes["date"]).dt.date,
        "satellite": scenes["satellite"].astype(str).to_numpy(),
        "scene": [str(p).rsplit("/", 1)[-1] for p in scenes["path"]],
        "area_km2": areas,
        "area_km2_unsmoothed": areas_raw,
        "valid_fraction": stack.valid_fraction,
        "filled_fraction": filled_fraction.astype(np.float64) if config.smoothing != "none" else 0.0,
        "pixel_area_m2": grid.pixel_area_m2,
        "segmenter": segmenter.name,
        "model_fingerprint": segmenter.fingerprint,
        "smoothing": config.smoothing,
        "sigma": float(config.sigma),
        "buffer_m": float(config.buffer_m) if config.buffer_m else np.nan,
        "run_key": key,
    }, columns=list(AREA_COLUMNS))


