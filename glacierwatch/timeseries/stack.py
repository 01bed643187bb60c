"""Reading a glacier's scenes into a time stack at chip size, and smoothing it over time.

Scenes are read one at a time (in a small thread pool, so reading overlaps computing) and reduced
at once to chip size (128 x 128 by default): only the reduced stack of a glacier is held in memory
(7 bands x 128 x 128 x 4 bytes = 0.46 MB per scene, plus 64 KB of weights), never the
full-resolution stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from glacierwatch.chips.features import physical_bands, resize_stack
from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.io import read_scene
from glacierwatch.landsat import COMMON_BANDS, QA_BAND, SCENE_BANDS, qa_invalid_mask

SMOOTHING_MODES = ("masked", "seed", "none")


@dataclass
class SceneStack:
    """A glacier's scenes at chip size, in date order.

    ``bands``: (T, B, S, S) float32 physical values with invalid pixels excluded (NaN where no valid
    pixel contributed); ``raw``: the same but with clouds and shadows left in and fill as 0, the way
    the seed read them (for ``smoothing = seed``); ``weight``: (T, S, S) share of valid full-resolution
    pixels behind each chip pixel; ``valid_fraction``: (T,) share of the outline that was observed.
    """

    band_names: tuple[str, ...]
    bands: np.ndarray
    raw: np.ndarray
    weight: np.ndarray
    valid_fraction: np.ndarray
    grid: GlacierGrid


def _reduce_scene(path: str, grid: GlacierGrid, outline: np.ndarray, size: int,
                  band_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    scene = read_scene(path, bands=SCENE_BANDS)
    if scene.grid != grid:
        raise InputError(f"{path}: scene grid {scene.grid} differs from the glacier grid {grid}; "
                         "import scenes onto the glacier grid first")
    phys = physical_bands(scene, band_names)
    stacked = np.stack([phys[b] for b in band_names])  # (B, H, W), NaN at fill
    invalid = qa_invalid_mask(scene.bands[QA_BAND]) | np.isnan(stacked).any(axis=0)
    valid = (~invalid).astype(np.float32)
    observed = float(valid[outline].mean()) if outline.any() else float(valid.mean())
    clean = np.where(invalid[None], 0.0, stacked).astype(np.float32)
    raw = np.nan_to_num(stacked, nan=0.0).astype(np.float32)
    small_w = resize_stack(valid[None], size).numpy()[0]
    small_sum = resize_stack(clean, size).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        small = np.where(small_w[None] > 1e-3, small_sum / np.maximum(small_w[None], 1e-12), np.nan)
    return small.astype(np.float32), resize_stack(raw, size).numpy(), small_w.astype(np.float32), observed


def read_stack(paths: Sequence[str], grid: GlacierGrid, outline: np.ndarray, *, size: int = 128,
               band_names: Sequence[str] = COMMON_BANDS, threads: int = 2) -> SceneStack:
    """Read scenes (already in date order) into a :class:`SceneStack` at ``size`` x ``size``."""
    n = len(paths)
    bands = np.empty((n, len(band_names), size, size), dtype=np.float32)
    raw = np.empty_like(bands)
    weight = np.empty((n, size, size), dtype=np.float32)
    valid_fraction = np.empty(n, dtype=np.float64)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = pool.map(lambda p: _reduce_scene(p, grid, outline, size, band_names), paths)
        for i, (small, small_raw, w, observed) in enumerate(results):
            bands[i], raw[i], weight[i], valid_fraction[i] = small, small_raw, w, observed
    return SceneStack(tuple(band_names), bands, raw, weight, valid_fraction, grid)


def smooth_stack(stack: SceneStack, *, mode: str = "masked", sigma: float = 20.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Smooth each pixel over time with a Gaussian of ``sigma`` images (not days).

    * ``masked``: invalid pixels are left out and the weights renormalised over valid neighbours:
      ``G*(w x) / G*(w)``; a pixel with no valid neighbour at all stays NaN.
    * ``seed``: the seed's plain smoothing of the raw values (clouds and fill smoothed in), mode 'reflect'.
    * ``none``: no smoothing (invalid pixels stay NaN).

    Returns (smoothed bands (T, B, S, S), support (T, S, S)): the smoothed weight, i.e. how much
    valid data stands behind each value (1 = fully observed neighbourhood).
    """
    if mode not in SMOOTHING_MODES:
        raise InputError(f"unknown smoothing {mode!r}; choose one of {SMOOTHING_MODES}")
    if mode == "none" or len(stack.bands) < 2 or sigma <= 0:
        data = stack.raw if mode == "seed" else stack.bands
        return data.copy(), stack.weight.copy()
    if mode == "seed":
        smoothed = gaussian_filter1d(stack.raw, sigma, axis=0, mode="reflect")
        return smoothed.astype(np.float32), np.ones_like(stack.weight)
    w = stack.weight
    num = gaussian_filter1d(np.nan_to_num(stack.bands, nan=0.0) * w[:, None], sigma, axis=0, mode="reflect")
    den = gaussian_filter1d(w, sigma, axis=0, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = np.where(den[:, None] > 1e-6, num / np.maximum(den[:, None], 1e-12), np.nan)
    return smoothed.astype(np.float32), den.astype(np.float32)
