"""Temporal smoothing of a glacier's stack: masked (renormalised) vs the seed's plain smoothing."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box

from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.timeseries import outline_on_grid, smooth_stack
from glacierwatch.timeseries.stack import SceneStack


def _stack(values: np.ndarray, weight: np.ndarray, raw: np.ndarray | None = None) -> SceneStack:
    t = values.shape[0]
    bands = np.broadcast_to(values[:, None, None, None], (t, 1, 4, 4)).astype(np.float32).copy()
    w = np.broadcast_to(weight[:, None, None], (t, 4, 4)).astype(np.float32).copy()
    bands[w[:, None] == 0] = np.nan
    raw_b = bands if raw is None else np.broadcast_to(raw[:, None, None, None], bands.shape).astype(np.float32).copy()
    grid = GlacierGrid("EPSG:32632", 0.0, 120.0, 30.0, 4, 4)
    return SceneStack(("green",), bands, np.nan_to_num(raw_b), w, np.ones(t), grid)


def test_masked_smoothing_ignores_clouds_seed_does_not() -> None:
    t = 60
    surface = np.full(t, 0.5)
    weight = np.ones(t)
    weight[::5] = 0  # every fifth image clouded over the whole chip
    cloud = surface.copy()
    cloud[::5] = 0.9  # what the seed would smooth in
    stack = _stack(surface, weight, raw=cloud)
    masked, support = smooth_stack(stack, mode="masked", sigma=5)
    assert np.allclose(masked, 0.5, atol=1e-5)
    assert support.min() > 0.5
    seed, _ = smooth_stack(stack, mode="seed", sigma=5)
    assert seed.mean() == pytest.approx(0.5 + 0.4 / 5, abs=0.01)


def test_masked_smoothing_keeps_an_interior_linear_trend() -> None:
    t = 200
    values = np.linspace(0.2, 0.8, t)
    weight = np.ones(t)
    weight[50:60] = 0
    smoothed, _ = smooth_stack(_stack(values, weight), mode="masked", sigma=4)
    # away from the ends and from the gap (whose edges lag by about sigma images), the trend is kept
    interior = np.r_[20:40, 70:180]
    assert np.allclose(smoothed[interior, 0, 0, 0], values[interior], atol=2e-3)
    # in the middle of the gap (between images 54 and 55) the two sides balance
    assert smoothed[54:56, 0, 0, 0].mean() == pytest.approx(values[54:56].mean(), abs=1e-4)


def test_none_and_unknown_modes() -> None:
    values = np.linspace(0, 1, 10)
    stack = _stack(values, np.ones(10))
    same, _ = smooth_stack(stack, mode="none")
    assert np.allclose(same[:, 0, 0, 0], values)
    with pytest.raises(InputError, match="unknown smoothing"):
        smooth_stack(stack, mode="median")


def test_outline_on_grid_and_buffer() -> None:
    grid = GlacierGrid("EPSG:32632", 0.0, 3000.0, 30.0, 100, 100)
    square = box(900, 900, 2100, 2100)  # 1.2 km square in the grid CRS
    inside = outline_on_grid(square, grid, src_crs="EPSG:32632")
    assert inside.sum() * 900 == pytest.approx(1.2e3 * 1.2e3, rel=0.01)
    buffered = outline_on_grid(square, grid, src_crs="EPSG:32632", buffer_m=300)
    assert buffered.sum() > inside.sum() and buffered[inside].all()
