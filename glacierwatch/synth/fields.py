"""Small numerical building blocks of the synthetic world: smooth random fields, smooth steps,
soft minima and a float32 conversion that keeps every value distinct.

All random fields are drawn from a caller-supplied :class:`numpy.random.Generator`, so a glacier's
world depends only on its own generator (and not on the order glaciers are built in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _bspline3_weights(frac: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weights of the four knots around a point at fractional offset ``frac`` (cubic B-spline)."""
    f2, f3 = frac * frac, frac * frac * frac
    w0 = (1.0 - frac) ** 3 / 6.0
    w1 = (3.0 * f3 - 6.0 * f2 + 4.0) / 6.0
    w2 = (-3.0 * f3 + 3.0 * f2 + 3.0 * frac + 1.0) / 6.0
    w3 = f3 / 6.0
    return w0, w1, w2, w3


def _interp_axis0(coarse: np.ndarray, n_fine: int, scale: float, offset: float) -> np.ndarray:
    """Cubic B-spline interpolation of ``coarse`` rows onto ``n_fine`` rows spaced 1/scale knots.

    Gather-and-add (no BLAS: matrix products are slow on a busy machine with threaded BLAS).
    """
    pos = (np.arange(n_fine, dtype=np.float64) + offset) / scale + 1.0
    base = np.floor(pos).astype(np.intp)
    weights = _bspline3_weights(pos - base)
    out = np.zeros((n_fine, coarse.shape[1]), dtype=np.float64)
    for k, w in enumerate(weights):
        out += w[:, None] * coarse[base - 1 + k]
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """A smooth zero-mean random field of unit standard deviation (float64).

    ``scale_px`` is the correlation length in pixels: the spacing of random knots that a cubic
    B-spline interpolates (separably, O(rows x cols x 4)).
    """
    h, w = int(shape[0]), int(shape[1])
    scale = max(float(scale_px), 1.0)
    ch = int(math.ceil(h / scale)) + 4
    cw = int(math.ceil(w / scale)) + 4
    off_r, off_c = rng.uniform(0.0, scale, size=2)
    coarse = rng.standard_normal((ch, cw))
    rows = _interp_axis0(coarse, h, scale, off_r)
    field = _interp_axis0(rows.T, w, scale, off_c).T
    sd = float(field.std())
    return (field - float(field.mean())) / (sd if sd > 0 else 1.0)


def fbm(rng: np.random.Generator, shape: tuple[int, int], scales_px: Sequence[float],
        amplitudes: Sequence[float]) -> np.ndarray:
    """Sum of :func:`smooth_noise` octaves, ``amplitudes[i]`` x field of scale ``scales_px[i]``."""
    out = np.zeros(shape, dtype=np.float64)
    for scale, amp in zip(scales_px, amplitudes, strict=True):
        out += amp * smooth_noise(rng, shape, scale)
    return out


def smoothstep(edge0: float, edge1: float, x: np.ndarray | float) -> np.ndarray:
    """Hermite smooth step: 0 below ``edge0``, 1 above ``edge1`` (edges may be in either order)."""
    t = np.clip((np.asarray(x, dtype=np.float64) - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def softplus(x: np.ndarray, k: float) -> np.ndarray:
    """Smooth ``max(x, 0)`` with a transition width ``k`` (same units as ``x``)."""
    z = np.asarray(x, dtype=np.float64) / k
    return k * (np.logaddexp(0.0, z))


def softmin(values: Sequence[np.ndarray], k: float) -> np.ndarray:
    """Smooth minimum of arrays (same units), transition width ``k``: -k log sum exp(-v / k)."""
    stack = np.stack([np.asarray(v, dtype=np.float64) for v in values]) / -k
    peak = stack.max(axis=0)
    return -k * (peak + np.log(np.exp(stack - peak).sum(axis=0)))


def _float32_keys(values: np.ndarray) -> np.ndarray:
    """Monotonic int64 keys of float32 values (adjacent floats have adjacent keys)."""
    bits = values.view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(2**31) - bits)


def _keys_to_float32(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys >= 0, keys, -(2**31) - keys).astype(np.int32)
    return bits.view(np.float32)


def unique_float32(values: np.ndarray) -> np.ndarray:
    """Convert to float32 keeping the order of ``values`` and making every value distinct.

    Ties created by rounding to float32 are broken by moving values up by whole ULPs (in the order of
    the float64 input), so a level ``v = sorted(values)[-n]`` selects exactly ``n`` pixels with
    ``values >= v``. The change is a few units in the last place.
    """
    flat64 = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(flat64)):
        raise ValueError("unique_float32 needs finite values")
    order = np.argsort(flat64, kind="stable")
    keys = _float32_keys(flat64.astype(np.float32))[order]
    ramp = np.arange(keys.size, dtype=np.int64)
    strict = np.maximum.accumulate(keys - ramp) + ramp
    out = np.empty(flat64.size, dtype=np.float32)
    out[order] = _keys_to_float32(strict)
    return out.reshape(np.shape(values))


def shift_with_fill(array: np.ndarray, drow: int, dcol: int, fill: float = 0.0) -> np.ndarray:
    """``out[r, c] = array[r - drow, c - dcol]`` (content moves down/right), ``fill`` where undefined."""
    h, w = array.shape
    out = np.full_like(array, fill)
    if abs(drow) >= h or abs(dcol) >= w:
        return out
    src_r = slice(max(0, -drow), h - max(0, drow))
    dst_r = slice(max(0, drow), h - max(0, -drow))
    src_c = slice(max(0, -dcol), w - max(0, dcol))
    dst_c = slice(max(0, dcol), w - max(0, -dcol))
    out[dst_r, dst_c] = array[src_r, src_c]
    return out
