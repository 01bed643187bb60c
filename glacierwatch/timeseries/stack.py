"""Reading a glacier's scenes into a time stack at chip size, and smoothing it over time.

Scenes are read one at a time (in a small thread pool, so reading overlaps computing) and reduced
at once to chip size (128 x 128 by default): only the reduced stack of a glacier is kept (7 bands x
128 x 128 x 4 bytes = 0.46 MB per scene, plus 64 KB of weights, plus another 0.46 MB of raw bands for
the seed's smoothing), never the full-resolution stack. A long series can be kept in memory-mapped
files (``scratch_dir``) instead of memory, and smoothed in blocks of scenes
(:func:`smooth_block`): each block reads only its scenes and a halo of one kernel radius around them,
and its values equal those of the whole-stack smoothing. A stack can also be read in the background
(``read_stack(..., background=True)``) and used while it fills (:meth:`SceneStack.wait_read`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
import torch
from scipy.ndimage import gaussian_filter1d

from glacierwatch.config import Smoothing, choices
from glacierwatch.errors import GlacierwatchError, InputError
from glacierwatch.features import NDSI_GLACIER_THRESHOLD, ndsi_mask, physical_bands, resize_stack
from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery.standard import scene_on_grid
from glacierwatch.landsat import COMMON_BANDS, QA_BAND, qa_invalid_mask

log = logging.getLogger(__name__)

#: ``time``: Gaussian over dates (sigma in days), renormalised over the observed pixels of the scenes
#: within 4 sigma: no reflection at the series ends. ``masked``/``seed``: Gaussian over image positions
#: (sigma in images), the seed's kernel (``seed``: clouds and fill smoothed in). ``none``: no smoothing.
SMOOTHING_MODES = choices(Smoothing)


class ReadProgress:
    """How many scenes of a stack read in the background are in place (always a prefix: scenes are
    written in date order), shared by the reading thread and the stack's users."""

    def __init__(self, n_scenes: int) -> None:
        self.n_scenes = n_scenes
        self._done = 0
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self.cancelled = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def done(self) -> int:
        """Scenes [0, done) are in place."""
        with self._cond:
            return self._done

    def advance(self, done: int) -> None:
        with self._cond:
            self._done = done
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """The reading stopped on an error that is not one scene's (a scene's own is its skip_reason)."""
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def wait(self, count: int) -> None:
        """Block until the first ``count`` scenes are in place; raise the reading's error if it stopped."""
        count = min(count, self.n_scenes)
        with self._cond:
            self._cond.wait_for(lambda: self._done >= count or self._error is not None)
            if self._error is not None:
                raise self._error

    def stop(self) -> None:
        """Stop reading (the scenes being read finish) and wait for the reading thread to end."""
        self.cancelled.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()


@dataclass
class SceneStack:
    """A glacier's scenes at chip size, in date order.

    ``bands``: (T, B, S, S) float32 physical values with invalid pixels excluded (NaN where no valid
    pixel contributed); ``raw``: the same but with clouds and shadows left in and fill as 0, the way
    the seed read them (for ``smoothing = seed``; None when not read); ``weight``: (T, S, S) share of
    valid full-resolution pixels behind each chip pixel; ``valid_fraction``: (T,) share of the outline
    that was observed; ``snow_fraction``: (T,) seasonal-snow measure (see :func:`reduce_scene`);
    ``skip_reason``: (T,) why a scene could not be read or placed on the grid ("" for a good one; a
    skipped scene has zero weight, NaN bands and valid fraction 0); ``warped``: (T,) scenes that were
    not on the glacier grid and were put onto it. ``bands``, ``raw`` and ``weight`` may be
    :class:`numpy.memmap` (see :func:`read_stack`).

    A stack read in the background (``read_stack(..., background=True)``) fills in date order while
    it is used: :meth:`wait_read` blocks until the scenes a computation needs are in place;
    ``skip_reason`` is complete once :meth:`wait_read` has returned for every scene.
    """

    band_names: tuple[str, ...]
    bands: np.ndarray
    raw: np.ndarray | None
    weight: np.ndarray
    valid_fraction: np.ndarray
    grid: GlacierGrid
    snow_fraction: np.ndarray | None = None
    skip_reason: tuple[str, ...] = ()
    warped: np.ndarray | None = None
    progress: ReadProgress | None = field(default=None, repr=False, compare=False)
    _reasons: list[str] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.bands.shape[0])

    def wait_read(self, count: int | None = None) -> None:
        """Block until scenes [0, count) are read (None: all of them); at once for a stack read in full.
        Raises the error that stopped a background reading (one scene's error is its ``skip_reason``)."""
        if self.progress is None:
            return
        n = len(self)
        self.progress.wait(n if count is None else count)
        if (count is None or count >= n) and self._reasons is not None:
            self.skip_reason = tuple(self._reasons)

    def close(self) -> None:
        """Stop a background reading and wait for its thread (nothing for a stack read in full); the
        stack's memory-mapped files may be removed after this."""
        if self.progress is not None:
            self.progress.stop()


def stack_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of a stack's images: ``size`` x ``size`` for an int (chip size), else ``size``."""
    if isinstance(size, int):
        return (size, size)
    rows, cols = size
    return (int(rows), int(cols))


def stack_bytes_per_scene(size: int | tuple[int, int], n_bands: int = len(COMMON_BANDS), *,
                          keep_raw: bool = True) -> int:
    """Bytes one scene takes in a :class:`SceneStack` at ``size`` (:func:`stack_shape`; float32 bands,
    raw bands if kept, weight): 983,040 for 7 bands at 128 with raw, 524,288 without."""
    rows, cols = stack_shape(size)
    return 4 * rows * cols * (n_bands * (2 if keep_raw else 1) + 1)


#: NDSI above which an observed pixel counts as snow or ice in the per-scene snow measure (the same
#: threshold as the NDSI glacier baseline, :data:`glacierwatch.features.NDSI_GLACIER_THRESHOLD`).
SNOW_NDSI = NDSI_GLACIER_THRESHOLD


@dataclass(frozen=True)
class ReducedScene:
    """One scene reduced to chip size (see :func:`reduce_scene`)."""

    bands: np.ndarray
    raw: np.ndarray | None
    weight: np.ndarray
    valid_fraction: float
    snow_fraction: float
    warped: bool


def reduce_scene(path: str, grid: GlacierGrid, outline: np.ndarray, size: int | tuple[int, int],
                 band_names: Sequence[str], keep_raw: bool = True, snow_zone: np.ndarray | None = None) -> ReducedScene:
    """Read one scene onto ``grid`` (:func:`scene_on_grid`) and reduce it to ``size`` (:func:`stack_shape`;
    the grid's own shape keeps its pixels as they are).

    ``valid_fraction``: share of ``outline`` pixels observed (not fill, cloud, shadow or cirrus);
    ``snow_fraction``: share of the observed pixels of ``snow_zone`` (the box away from the glacier)
    with NDSI > 0.4 that are not open water, a measure of seasonal snow (NaN when none of the zone is
    observed or no zone given).
    """
    scene, warped = scene_on_grid(path, grid)
    phys = physical_bands(scene, band_names)
    stacked = np.stack([phys[b] for b in band_names])  # (B, H, W), NaN at fill
    invalid = qa_invalid_mask(scene.bands[QA_BAND]) | ~np.isfinite(stacked).all(axis=0)
    valid = (~invalid).astype(np.float32)
    observed = float(valid[outline].mean()) if outline.any() else float(valid.mean())
    snow = float("nan")
    if snow_zone is not None and "green" in phys and "swir16" in phys:
        seen = snow_zone & ~invalid
        if seen.any():
            snow = float(ndsi_mask(phys, threshold=SNOW_NDSI)[seen].mean())  # lakes are not snow
    clean = np.where(invalid[None], 0.0, stacked).astype(np.float32)
    small_w = resize_stack(valid[None], size).numpy()[0]
    small_sum = resize_stack(clean, size).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        small = np.where(small_w[None] > 1e-3, small_sum / np.maximum(small_w[None], 1e-12), np.nan)
    small_raw = None
    if keep_raw:  # only the seed's smoothing uses the raw bands: skip their resize otherwise
        raw_values = np.where(np.isfinite(stacked), stacked, 0.0).astype(np.float32)
        small_raw = resize_stack(raw_values, size).numpy()
    return ReducedScene(small.astype(np.float32), small_raw, small_w.astype(np.float32), observed, snow, warped)


def read_stack(paths: Sequence[str], grid: GlacierGrid, outline: np.ndarray, *, size: int | tuple[int, int] = 128,
               band_names: Sequence[str] = COMMON_BANDS, threads: int = 2, keep_raw: bool = True,
               scratch_dir: str | Path | None = None,
               snow_zone: np.ndarray | Callable[[], np.ndarray] | None = None,
               background: bool = False, on_complete: Callable[[], None] | None = None) -> SceneStack:
    """Read scenes (already in date order) into a :class:`SceneStack` at ``size`` x ``size``.

    Each scene is placed on ``grid`` on its own (:func:`scene_on_grid`); one that cannot be read or
    placed is kept as an unobserved scene with its ``skip_reason``, and the others go on.
    ``keep_raw``: also keep the raw bands (only ``smoothing = seed`` uses them; False halves the stack).
    ``scratch_dir``: an existing folder to hold the stack arrays as memory-mapped files
    (``bands.f32``, ``raw.f32``, ``weight.f32``) instead of memory, for series too long to hold; the
    caller removes the folder when done with the stack. ``snow_zone``: where the snow measure is taken,
    or a function giving it (called once, by the reading thread before the first scene: a background
    reading then also overlaps its computation).
    ``background``: return at once and read in a background thread (the same readers, the same
    values), so that the model can work on the first scenes while the next are read; use
    :meth:`SceneStack.wait_read` before touching scenes and :meth:`SceneStack.close` when done.
    Memory is the same either way: the readers write into the stack, at most ``2 x threads``
    scenes ahead of the one being placed. ``on_complete``: called once when every scene is in place
    (by the reading thread when ``background``; not after an error or :meth:`SceneStack.close`), e.g.
    to start reading the next glacier while this one is still in the model; its errors are logged,
    never the stack's.
    """
    n = len(paths)
    rows, cols = stack_shape(size)
    shape = (n, len(band_names), rows, cols)

    def alloc(name: str, shp: tuple[int, ...]) -> np.ndarray:
        if scratch_dir is None or n == 0:
            return np.empty(shp, dtype=np.float32)
        return np.memmap(Path(scratch_dir) / f"{name}.f32", dtype=np.float32, mode="w+", shape=shp)

    bands = alloc("bands", shape)
    raw = alloc("raw", shape) if keep_raw else None
    weight = alloc("weight", (n, rows, cols))
    valid_fraction = np.zeros(n, dtype=np.float64)
    snow_fraction = np.full(n, np.nan, dtype=np.float64)
    warped = np.zeros(n, dtype=bool)
    reasons = [""] * n

    zone: list[np.ndarray | None] = [None]

    def reduce(path: str) -> ReducedScene | str:
        try:
            return reduce_scene(path, grid, outline, size, band_names, keep_raw, zone[0])
        except (GlacierwatchError, OSError, ValueError, rasterio.errors.RasterioError) as exc:
            return f"{type(exc).__name__}: {exc}"

    def place(i: int, result: ReducedScene | str) -> None:
        if isinstance(result, str):
            reasons[i] = result
            bands[i], weight[i], valid_fraction[i] = np.nan, 0.0, 0.0
            if raw is not None:
                raw[i] = 0.0
            return
        bands[i], weight[i], valid_fraction[i] = result.bands, result.weight, result.valid_fraction
        snow_fraction[i], warped[i] = result.snow_fraction, result.warped
        if raw is not None:
            raw[i] = result.raw

    progress = ReadProgress(n) if background else None

    def read_all() -> None:
        zone[0] = snow_zone() if callable(snow_zone) else snow_zone
        # at most a few scenes read ahead (pool.map would queue every scene's result of a long series)
        ahead = 2 * max(1, threads)
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="read-stack") as pool:
            pending: deque[Future[ReducedScene | str]] = deque()
            for i in range(n):
                if progress is not None and progress.cancelled.is_set():
                    for future in pending:
                        future.cancel()
                    return
                while len(pending) < ahead and i + len(pending) < n:
                    pending.append(pool.submit(reduce, paths[i + len(pending)]))
                place(i, pending.popleft().result())
                if progress is not None:
                    progress.advance(i + 1)
        if on_complete is not None:
            try:
                on_complete()
            except Exception:  # the stack is complete and good whatever the callback does
                log.exception("the callback after reading %d scenes failed", n)

    if progress is None:
        read_all()
        return SceneStack(tuple(band_names), bands, raw, weight, valid_fraction, grid,
                          snow_fraction=snow_fraction, skip_reason=tuple(reasons), warped=warped)

    def read_in_background() -> None:
        try:
            read_all()
        except BaseException as exc:  # handed to the stack's user by wait_read  # noqa: BLE001
            progress.fail(exc)

    stack = SceneStack(tuple(band_names), bands, raw, weight, valid_fraction, grid, snow_fraction=snow_fraction,
                       warped=warped, progress=progress, _reasons=reasons)
    progress.thread = threading.Thread(target=read_in_background, name="read-stack-feeder", daemon=True)
    progress.thread.start()
    return stack


def scenes_needed(mode: str, stop: int, n_scenes: int, sigma: float, days: np.ndarray | None = None) -> int:
    """How many scenes (a prefix of the series) :func:`smooth_block` reads for a block ending at
    ``stop``: the block plus the kernel's reach after it (:func:`gaussian_radius` images, or 4 sigma
    days for ``time``); just the block when smoothing changes nothing."""
    if smoothing_is_identity(mode, n_scenes, sigma) or (mode == "seed" and (n_scenes < 2 or sigma <= 0)):
        return stop
    if mode == "time":
        if days is None:
            raise InputError("smoothing 'time' needs the scene dates (days)")
        d = np.asarray(days, dtype=np.float64)
        return min(n_scenes, int(np.searchsorted(d, d[stop - 1] + 4.0 * float(sigma), side="right")))
    return min(n_scenes, stop + gaussian_radius(sigma))


def gaussian_radius(sigma: float, truncate: float = 4.0) -> int:
    """Half-width (images) of scipy's ``gaussian_filter1d`` kernel: ``int(truncate * sigma + 0.5)``
    (80 for sigma 20). A smoothed value depends on the images at most this far from it (after the
    reflection at the series ends), so it is the halo a block of the series needs."""
    return int(truncate * float(sigma) + 0.5)


def smoothing_is_identity(mode: str, n_scenes: int, sigma: float) -> bool:
    """Whether ``smooth_block`` returns the unsmoothed bands unchanged (no smoothing, a series of one
    scene or sigma 0 with ``masked``): then segmenting the smoothed stack is segmenting the unsmoothed one."""
    return mode == "none" or (mode in ("masked", "time") and (n_scenes < 2 or sigma <= 0))


#: Output images per matrix product in :func:`_gaussian_rows`: small enough that the product's extra
#: work outside the kernel band stays small (64 + 2 x 80 columns for sigma 20), large enough for BLAS.
_ROWS_PER_PRODUCT = 64
#: Chip pixels (of every band) per matrix product: bounds the float64 temporaries (~15 MB).
_PIXELS_PER_PRODUCT = 1024


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block. The smoothing's matrix products are small (a few ms
    each): with two threads, every product waits at a barrier for the second thread, and when another
    process holds the other core that wait is a scheduler tick; measured on 2 busy cores, 33 scenes
    (sigma 20) took 1.0 s with two threads and 0.02 s with one; on idle cores one thread is as fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _gaussian_rows(x: np.ndarray, start: int, stop: int, sigma: float, *,
                   weight: np.ndarray | None = None, days: np.ndarray | None = None) -> np.ndarray:
    """Rows [start, stop) of ``gaussian_filter1d(x', sigma, axis=0, mode="reflect")`` as float32, where
    ``x'`` is ``x`` (T, S, S) or (T, B, S, S) float32, or ``nan_to_num(x) * weight[:, None]`` (the
    masked numerator) when ``weight`` (T, S, S) is given.

    Only images [start - radius, stop + radius) are read. The filter is linear, so each output chunk
    is a matrix product of its weights (the filter applied to an identity matrix over the chunk's halo
    range: the very weights scipy uses, reflection at the series ends included) with the input; done
    in float64 like scipy's accumulation, it gives scipy's float32 results (equal in the tests) at a
    fraction of the time (scipy's line-by-line filtering along the first axis is slow).

    ``days`` (T,): scene dates in days; the kernel is then a Gaussian of ``sigma`` days over dates
    (:func:`time_kernel_rows`) instead of images.
    """
    t = x.shape[0]
    radius = gaussian_radius(sigma)
    flat = x.reshape(t, -1, x.shape[-2] * x.shape[-1])  # (T, B or 1, pixels); views, memmaps stay lazy
    w_flat = weight.reshape(t, 1, -1) if weight is not None else None
    out = np.empty((stop - start, *flat.shape[1:]), dtype=np.float32)
    with _one_torch_thread():
        _gaussian_products(flat, w_flat, out, start, stop, sigma, radius, days)
    return out.reshape(stop - start, *x.shape[1:])


def time_kernel_rows(days: np.ndarray, r0: int, r1: int, sigma_days: float) -> tuple[int, int, np.ndarray]:
    """Rows [r0, r1) of the Gaussian-in-time kernel over scenes dated ``days`` (sorted, days): weight
    ``exp(-(d_r - d_j)^2 / (2 sigma^2))`` for scenes within 4 sigma, 0 beyond. Returns (lo, hi,
    weights (r1 - r0, hi - lo)): only scenes [lo, hi) can contribute."""
    d = np.asarray(days, dtype=np.float64)
    reach = 4.0 * float(sigma_days)
    lo = int(np.searchsorted(d, d[r0] - reach, side="left"))
    hi = int(np.searchsorted(d, d[r1 - 1] + reach, side="right"))
    diff = (d[r0:r1, None] - d[None, lo:hi]) / float(sigma_days)
    weights = np.where(np.abs(diff) <= 4.0, np.exp(-0.5 * diff * diff), 0.0)
    return lo, hi, weights


def _gaussian_products(flat: np.ndarray, w_flat: np.ndarray | None, out: np.ndarray, start: int, stop: int,
                       sigma: float, radius: int, days: np.ndarray | None = None) -> None:
    """The loop of :func:`_gaussian_rows`: ``out`` (stop - start, B, pixels) from ``flat`` (T, B, pixels)."""
    t, n_pix = flat.shape[0], flat.shape[-1]
    for r0 in range(start, stop, _ROWS_PER_PRODUCT):
        r1 = min(stop, r0 + _ROWS_PER_PRODUCT)
        if days is not None:
            lo, hi, weights = time_kernel_rows(days, r0, r1, sigma)
        else:
            lo, hi = max(0, r0 - radius), min(t, r1 + radius)
            # output r depends only on inputs within radius of r; the reflection at a series end lands
            # inside [lo, hi) too, so filtering the sub-range reproduces the whole-series weights
            weights = gaussian_filter1d(np.eye(hi - lo), sigma, axis=0, mode="reflect")[r0 - lo:r1 - lo]
        kernel = torch.from_numpy(np.ascontiguousarray(weights))
        for p0 in range(0, n_pix, _PIXELS_PER_PRODUCT):
            p1 = min(n_pix, p0 + _PIXELS_PER_PRODUCT)
            chunk = np.asarray(flat[lo:hi, :, p0:p1])
            if w_flat is not None:
                # the same float32 product as a whole-stack nan_to_num(bands) * weight
                chunk = np.nan_to_num(chunk, nan=0.0) * np.asarray(w_flat[lo:hi, :, p0:p1])
            # torch's matmul (on one thread, see _one_torch_thread), not numpy's: OpenBLAS's thread count
            # cannot be set per call and its threads stall the same way on a busy machine; casting to
            # float32 before the strided assignment is several times faster than assigning float64
            x64 = torch.from_numpy(np.ascontiguousarray(chunk).reshape(hi - lo, -1)).double()
            prod = (kernel @ x64).float().numpy()
            out[r0 - start:r1 - start, :, p0:p1] = prod.reshape(r1 - r0, *chunk.shape[1:])


def smooth_block(stack: SceneStack, start: int, stop: int, *, mode: str = "masked", sigma: float = 20.0,
                 days: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scenes [start, stop) of :func:`smooth_stack` (same values), reading only the scenes within one
    kernel radius (:func:`gaussian_radius`, or 4 sigma days for ``time``) of the block: (smoothed bands
    (n, B, S, S), support (n, S, S)). ``days`` (T,): the scenes' dates in days (``time`` only)."""
    if mode not in SMOOTHING_MODES:
        raise InputError(f"unknown smoothing {mode!r}; choose one of {SMOOTHING_MODES}")
    t = len(stack)
    if not 0 <= start <= stop <= t:
        raise ValueError(f"block [{start}, {stop}) outside a stack of {t} scenes")
    if mode == "seed" and stack.raw is None:
        raise InputError("smoothing 'seed' needs the raw bands: read the stack with keep_raw=True")
    if mode == "time" and days is None:
        raise InputError("smoothing 'time' needs the scene dates (days)")
    if mode == "none" or t < 2 or sigma <= 0:
        data = stack.raw if mode == "seed" else stack.bands
        assert data is not None  # seed mode without raw bands is refused above
        return np.array(data[start:stop], dtype=np.float32), np.array(stack.weight[start:stop], dtype=np.float32)
    if mode == "seed":
        assert stack.raw is not None
        smoothed = _gaussian_rows(stack.raw, start, stop, sigma)
        return smoothed, np.ones((stop - start, *stack.weight.shape[1:]), dtype=np.float32)
    time_days = days if mode == "time" else None
    num = _gaussian_rows(stack.bands, start, stop, sigma, weight=stack.weight, days=time_days)
    den = _gaussian_rows(stack.weight, start, stop, sigma, days=time_days)
    # in place (no block-sized temporaries): G*(w x) / G*(w), NaN where no valid neighbour contributes
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(num, np.maximum(den, np.float32(1e-12))[:, None], out=num)
    num[np.broadcast_to((den <= 1e-6)[:, None], num.shape)] = np.nan
    return num, den


def smooth_stack(stack: SceneStack, *, mode: str = "masked", sigma: float = 20.0,
                 days: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Smooth each pixel over time with a Gaussian of ``sigma`` images (not days).

    * ``masked``: invalid pixels are left out and the weights renormalised over valid neighbours:
      ``G*(w x) / G*(w)``; a pixel with no valid neighbour at all stays NaN.
    * ``seed``: the seed's plain smoothing of the raw values (clouds and fill smoothed in), mode 'reflect'.
    * ``none``: no smoothing (invalid pixels stay NaN).

    ``G`` is scipy's ``gaussian_filter1d(..., sigma, axis=0, mode="reflect")`` (truncated at 4 sigma;
    the series is mirrored at both ends, ``d c b a | a b c d | d c b a``).
    Returns (smoothed bands (T, B, S, S), support (T, S, S)): the smoothed weight, i.e. how much
    valid data stands behind each value (1 = fully observed neighbourhood). The whole stack as one
    :func:`smooth_block`. ``time``: as ``masked`` but the Gaussian is over the scene dates ``days``
    with ``sigma`` in days (no reflection: the weights are renormalised over the observed scenes).
    """
    return smooth_block(stack, 0, len(stack), mode=mode, sigma=sigma, days=days)
