"""Per-glacier area time series: scenes -> chip-size stack -> temporal smoothing -> segmentation
-> probabilities back on the glacier grid -> threshold -> km².

The area counts glacier pixels on the glacier grid (``pixel_area_m2`` from the grid's transform:
900 m² for 30 m pixels) inside the region of interest: the inventory outline buffered by
``buffer_m`` metres (or the whole box when ``buffer_m`` is None, as the seed did).

Memory per glacier is bounded: the chip-size stack is held in memory up to
``TimeseriesConfig.max_stack_mb`` and otherwise in memory-mapped files in a temporary folder (beside
the output in a stage run), and a series is smoothed, segmented and counted block by block
(:func:`segment_blocks`): probabilities exist for one block of scenes at a time, at full grid
resolution only for one batch of images. The areas do not depend on the blocks.

Reading, the model and the counting overlap (:func:`glacier_areas`, ``overlap=True``): the stack is read
in the background while the model segments the scenes already read, batch by batch, and a batch's
probabilities are counted on the grid by a second thread while the next batch is in the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import rasterio.errors
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from glacierwatch.config import TimeseriesConfig
from glacierwatch.errors import InputError
from glacierwatch.features import resize_stack
from glacierwatch.grid import GlacierGrid, counting_region, outline_on_grid, territory_on_grid
from glacierwatch.landsat import COMMON_BANDS
from glacierwatch.model.predict import batch_bounds
from glacierwatch.timeseries.segmenters import Segmenter, segmenter_precision, works_on_grid
from glacierwatch.timeseries.stack import (
    SceneStack,
    read_stack,
    scenes_needed,
    smooth_block,
    smoothing_is_identity,
    stack_bytes_per_scene,
)

AREA_COLUMNS = (
    "glims_id", "region", "date", "satellite", "scene", "area_km2", "area_km2_low", "area_km2_high",
    "model_error_fraction", "area_km2_unsmoothed", "valid_fraction", "filled_fraction", "snow_fraction",
    "sun_elevation", "season_ok", "use", "skip_reason", "pixel_area_m2", "segmenter", "model_fingerprint", "precision", "smoothing", "sigma",
    "buffer_m", "min_patch_km2", "run_key",
)

#: The run's scenes table (``<OUT stem>.scenes.parquet``): the scene file, its date and satellite, and
#: the sun's elevation at the scene centre (degrees; NaN where the catalog has none).
SCENE_COLUMNS = ("glims_id", "path", "date", "satellite", "sun_elevation")


def raster_grid(path: str) -> GlacierGrid:
    """The grid of a raster file (without reading its pixels)."""
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputError(f"{path}: no CRS")
            return GlacierGrid.from_rasterio(src.crs, src.transform, src.width, src.height)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{path}: unreadable raster ({exc})") from exc


def computes_unsmoothed(config: TimeseriesConfig) -> bool:
    """Whether ``area_km2_unsmoothed`` is filled: asked for (``config.unsmoothed``), or free because
    with smoothing ``none`` the smoothed and unsmoothed stacks are the same (one pass serves both)."""
    return bool(config.unsmoothed) or config.smoothing == "none"


def smoothing_sigma(config: TimeseriesConfig) -> float:
    """The sigma the smoothing uses: days for ``time``, images for ``masked``/``seed``, 0 for ``none``."""
    if config.smoothing == "time":
        return float(config.sigma_days)
    return float(config.sigma) if config.smoothing != "none" else 0.0


def season_months(config: TimeseriesConfig, latitude: float) -> frozenset[int]:
    """The months whose scenes count in the annual areas of a glacier at ``latitude`` (degrees)."""
    if config.season == "all" or (config.season == "end_of_ablation" and abs(latitude) < config.tropics_lat):
        return frozenset(range(1, 13))
    south = latitude < 0
    if config.season == "seed":
        return frozenset([11, 12, 1, 2, 3, 4] if south else [5, 6, 7, 8, 9, 10])
    if config.season == "end_of_ablation":
        return frozenset(config.season_months_south if south else config.season_months_north)
    raise InputError(f"unknown season {config.season!r}; choose end_of_ablation, seed or all")


def run_key(segmenter: Segmenter, config: TimeseriesConfig) -> str:
    """A short hash of everything that changes the areas table (model and its precision, smoothing, threshold, buffer,
    whether the unsmoothed areas are computed); not of ``batch_size`` or ``max_stack_mb``, which change
    the speed and memory use but not the numbers."""
    payload = json.dumps({"segmenter": segmenter.name, "fingerprint": segmenter.fingerprint,
                          "precision": segmenter_precision(segmenter),
                          "smoothing": config.smoothing, "sigma": smoothing_sigma(config),
                          "threshold": config.threshold, "buffer_m": config.buffer_m,
                          "unsmoothed": computes_unsmoothed(config), "season": config.season,
                          "season_months": [config.season_months_north, config.season_months_south,
                                            config.tropics_lat],
                          "min_valid_fraction": config.min_valid_fraction,
                          "min_sun_elevation": config.min_sun_elevation,
                          "interval_spread": config.interval_spread,
                          "interval_model_error": config.interval_model_error, "areas_version": 5,
                          # only when set, so that the areas of work folders from before the option stay current
                          **({"min_patch_km2": config.min_patch_km2} if config.min_patch_km2 > 0 else {})},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _segment(segmenter: Segmenter, stacks: Sequence[np.ndarray], band_names: Sequence[str],
             dem: np.ndarray | None, *, glims_id: str, dates: Sequence[Any], batch: int) -> list[np.ndarray]:
    """Glacier probabilities (n, S, S) for each of ``stacks`` (n, B, S, S) (all of the same scenes
    ``dates``), in model calls of at most ``batch`` images that run across the stacks: the smoothed
    and unsmoothed passes of a block share their batches (66 images as 3 x 22, not 2 x (32 + 1))."""
    n = len(dates)
    outs = [np.empty((n, *st.shape[-2:]), dtype=np.float32) for st in stacks]
    for start, stop in batch_bounds(n * len(stacks), batch):
        parts = [(k, max(start, k * n) - k * n, min(stop, (k + 1) * n) - k * n) for k in range(len(stacks))]
        parts = [(k, a, b) for k, a, b in parts if a < b]
        chunk = np.concatenate([np.asarray(stacks[k][a:b]) for k, a, b in parts])
        chunk_dates = [d for _, a, b in parts for d in dates[a:b]]
        named = {name: chunk[:, i] for i, name in enumerate(band_names)}
        probs = segmenter(named, dem, glims_id=glims_id, dates=chunk_dates)
        offset = 0
        for k, a, b in parts:
            outs[k][a:b] = probs[offset:offset + b - a]
            offset += b - a
    return outs


def probabilities_on_grid(probs: np.ndarray, grid: GlacierGrid) -> np.ndarray:
    """Chip-size probabilities (N, S, S) resized back to the glacier grid: (N, rows, cols) float32."""
    return resize_stack(probs[:, None], grid.shape).numpy()[:, 0]


@dataclass(frozen=True)
class BlockAreas:
    """Areas (km²) of a block of scenes: at the threshold and the bounds of its interval."""

    area: np.ndarray
    low: np.ndarray
    high: np.ndarray


#: 8-connectivity: pixels touching at a corner belong to the same patch (a glacier tongue one pixel
#: wide on a diagonal stays one patch).
_PATCH_STRUCTURE = np.ones((3, 3), dtype=bool)


def drop_small_patches(masks: np.ndarray, min_pixels: int) -> np.ndarray:
    """``masks`` (N, rows, cols) bool without the 8-connected patches of fewer than ``min_pixels``
    pixels (each image on its own); ``min_pixels <= 1`` returns ``masks`` unchanged."""
    if min_pixels <= 1:
        return masks
    out = np.zeros_like(masks)
    for k, mask in enumerate(masks):
        labels, n = ndimage.label(mask, structure=_PATCH_STRUCTURE)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        keep = sizes >= min_pixels
        keep[0] = False
        out[k] = keep[labels]
    return out


#: A glacier's patch size limit is at most this share of its outline's area, so that the limit meant
#: for snow patches beside a glacier of a few km² never removes a small glacier or its main parts.
MIN_PATCH_OUTLINE_SHARE = 0.1


def glacier_min_patch_km2(min_patch_km2: float, outline_km2: float) -> float:
    """The patch size limit (km²) of a glacier whose outline covers ``outline_km2``: ``min_patch_km2``,
    at most :data:`MIN_PATCH_OUTLINE_SHARE` of the outline (0.1 km² for a glacier of 1 km² or more,
    0.005 km² for one of 0.05 km²)."""
    return min(float(min_patch_km2), MIN_PATCH_OUTLINE_SHARE * max(float(outline_km2), 0.0))


def patch_pixels(min_patch_km2: float, grid: GlacierGrid) -> int:
    """The fewest pixels of ``grid`` a counted patch has: ``min_patch_km2`` (km²) rounded up to pixels."""
    return int(np.ceil(min_patch_km2 * 1e6 / grid.pixel_area_m2 - 1e-9)) if min_patch_km2 > 0 else 0


def _areas_on_grid(probs: np.ndarray, grid: GlacierGrid, region: np.ndarray, threshold: float,
                   batch: int = 64, *, weight: np.ndarray | None = None, outline: np.ndarray | None = None,
                   spread: float = 0.0, min_patch_km2: float = 0.0) -> BlockAreas:
    """Resize chip-size probabilities back to the grid, threshold, count pixels in ``region`` -> km².

    ``min_patch_km2``: glacier patches (8-connected, within ``region``) smaller than this are not
    counted, at the threshold and at both bounds.

    The interval: ``low`` counts the pixels above ``threshold + spread`` that were observed (none of
    the unobserved part glacier); ``high`` counts those above ``threshold - spread`` plus every
    unobserved pixel of the outline (all of it glacier as the inventory saw it). ``weight``: the
    chip-size observed share (unobserved where resized back below 0.5); None: all observed.
    """
    km2_per_pixel = grid.pixel_area_m2 / 1e6
    n = len(probs)
    areas, low, high = (np.empty(n, dtype=np.float64) for _ in range(3))
    lo_t, hi_t = min(threshold + spread, 0.999), max(threshold - spread, 0.001)
    min_pixels = patch_pixels(min_patch_km2, grid)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        on_grid = probabilities_on_grid(probs[start:stop], grid)
        inside = region[None]
        areas[start:stop] = drop_small_patches((on_grid > threshold) & inside, min_pixels).sum(axis=(1, 2)) * km2_per_pixel
        if weight is None:
            observed = np.ones_like(on_grid, dtype=bool)
        else:
            observed = probabilities_on_grid(np.asarray(weight[start:stop], dtype=np.float32), grid) >= 0.5
        low[start:stop] = drop_small_patches((on_grid > lo_t) & observed & inside, min_pixels).sum(axis=(1, 2)) * km2_per_pixel
        unseen_ice = ~observed & inside & (outline[None] if outline is not None else True)
        high[start:stop] = drop_small_patches(((on_grid > hi_t) | unseen_ice) & inside,
                                              min_pixels).sum(axis=(1, 2)) * km2_per_pixel
    return BlockAreas(areas, np.minimum(low, areas), np.maximum(high, areas))


def prepare_glacier(glims_id: str, scenes: pd.DataFrame, geometry: BaseGeometry, grid: GlacierGrid | None
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


def count_region(geometry: BaseGeometry, grid: GlacierGrid, buffer_m: float | None,
                 territory_wkb: bytes | None = None) -> np.ndarray:
    """Where glacier pixels are counted (:func:`glacierwatch.grid.counting_region`): the outline
    buffered by ``buffer_m`` m within the glacier's own territory (0: the outline itself; None: the
    whole box, the seed's); InputError for a negative buffer."""
    if buffer_m is not None and buffer_m < 0:
        raise InputError(f"buffer_m must be >= 0 or none, got {buffer_m}")
    return counting_region(geometry, territory_wkb, grid, buffer_m)


#: The snow measure is taken on the box farther than this from the outline (m): the margin zone
#: nearer the outline may hold glacier ice the outline missed.
SNOW_ZONE_DISTANCE_M = 300.0


def snow_zone(geometry: BaseGeometry, grid: GlacierGrid, territory_wkb: bytes | None = None) -> np.ndarray:
    """Where a scene's seasonal snow is measured: the glacier's territory (the box without other
    glaciers) farther than :data:`SNOW_ZONE_DISTANCE_M` from its outline."""
    return ~outline_on_grid(geometry, grid, buffer_m=SNOW_ZONE_DISTANCE_M) & territory_on_grid(territory_wkb, grid)


def dem_at_chip_size(dem_path: str, grid: GlacierGrid, chip_size: int | tuple[int, int]) -> np.ndarray:
    """The DEM (m) on ``grid`` reduced to ``chip_size`` (or a (rows, cols) stack size); nodata is filled
    with the mean elevation.
    A DEM on another grid (a larger box, another CRS) is put onto the glacier grid bilinearly."""
    from glacierwatch.imagery.standard import dem_on_grid

    dem = dem_on_grid(dem_path, grid)
    return resize_stack(np.nan_to_num(dem, nan=float(np.nanmean(dem)))[None], chip_size).numpy()[0]


#: A block of scenes may take ``max_stack_mb / _BLOCK_SHARE`` of stack-sized data. While a block is
#: smoothed and segmented it holds a few arrays of its size (the smoothed bands, the input of both model
#: passes, the halo's input in chunks), so blocks of an eighth of the budget keep the per-glacier peak
#: near ``max_stack_mb`` for the stack plus about half of that for the block being worked on.
_BLOCK_SHARE = 8


def block_length(n_scenes: int, bytes_per_scene: int, config: TimeseriesConfig) -> int:
    """Scenes per block: ``config.max_stack_mb / 8`` worth of stack (``bytes_per_scene`` each),
    rounded down to whole model batches (``config.batch_size``) and at least one batch; the whole
    series when it is shorter."""
    budget = float(config.max_stack_mb) * 2**20
    batch = max(1, int(config.batch_size))
    fit = int(budget / _BLOCK_SHARE / max(1, bytes_per_scene))
    return max(1, min(n_scenes, max(batch, fit // batch * batch)))


@contextlib.contextmanager
def glacier_stack(scenes: pd.DataFrame, grid: GlacierGrid, outline: np.ndarray, *, config: TimeseriesConfig,
                  chip_size: int | tuple[int, int] = 128, threads: int = 2, scratch_dir: str | Path | None = None,
                  glims_id: str = "glacier", snow_zone: np.ndarray | Callable[[], np.ndarray] | None = None,
                  background: bool = False, on_complete: Callable[[], None] | None = None) -> Iterator[SceneStack]:
    """Read a glacier's scenes (in :func:`prepare_glacier` order) into a chip-size :class:`SceneStack`
    (``chip_size`` x ``chip_size``, or a (rows, cols) size: :func:`stack_size`).

    The stack is in memory when it takes at most ``config.max_stack_mb`` MB (2^20 bytes), else in
    memory-mapped files in a temporary folder ``.<glims_id>.stack-*`` inside ``scratch_dir`` (None:
    the system's temporary folder), removed when the context ends, also on error. The raw bands are
    read only for ``smoothing = seed``, the only mode using them. ``background``: the context starts
    at once and the scenes are read while it runs (:meth:`SceneStack.wait_read`); the reading is
    stopped and its thread joined when the context ends, before the folder is removed.
    ``on_complete``: see :func:`~glacierwatch.timeseries.stack.read_stack`.
    """
    keep_raw = config.smoothing == "seed"
    per_scene = stack_bytes_per_scene(chip_size, len(COMMON_BANDS), keep_raw=keep_raw)
    paths = list(scenes["path"])
    folder = None
    if len(paths) * per_scene > float(config.max_stack_mb) * 2**20:
        if scratch_dir is not None:
            Path(scratch_dir).mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(prefix=f".{glims_id}.stack-", dir=scratch_dir)
    stack = None
    try:
        stack = read_stack(paths, grid, outline, size=chip_size, threads=threads, keep_raw=keep_raw,
                           scratch_dir=folder, snow_zone=snow_zone, background=background,
                           on_complete=on_complete)
        yield stack
    finally:
        if stack is not None:
            stack.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def remove_stale_stacks(scratch_dir: str | Path, glims_id: str) -> None:
    """Delete temporary stack folders of ``glims_id`` left in ``scratch_dir`` by a killed run."""
    for folder in Path(scratch_dir).glob(f".{glims_id}.stack-*"):
        shutil.rmtree(folder, ignore_errors=True)


def scene_days(dates: Sequence[Any]) -> np.ndarray:
    """Scene dates as days since 1970-01-01 (float64), the time axis of ``smoothing = time``."""
    stamps = pd.to_datetime(pd.Series(list(dates)))
    return ((stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)


@dataclass
class GlacierBlock:
    """Scenes [start, stop) of a glacier: glacier probabilities at chip size and what goes with them.

    ``probs``: (n, S, S) from the temporally smoothed stack (what ``area_km2`` counts); ``probs_raw``:
    from the unsmoothed stack (``area_km2_unsmoothed``): the same array when smoothing changes nothing
    (:func:`~glacierwatch.timeseries.stack.smoothing_is_identity`), None when not asked for;
    ``support``: the smoothed weight (see :func:`~glacierwatch.timeseries.stack.smooth_stack`);
    ``weight``: the observed share of each chip pixel.
    """

    start: int
    stop: int
    probs: np.ndarray
    probs_raw: np.ndarray | None
    support: np.ndarray
    weight: np.ndarray


def segment_blocks(glims_id: str, stack: SceneStack, *, dates: Sequence[Any], dem_small: np.ndarray | None,
                   segmenter: Segmenter, config: TimeseriesConfig, block: int | None = None,
                   unsmoothed: bool = True, per_batch: bool = False) -> Iterator[GlacierBlock]:
    """Smooth (``config.smoothing``, ``config.sigma``) and segment ``stack`` in blocks of ``block``
    scenes (None: :func:`block_length`), one :class:`GlacierBlock` at a time, in order.

    ``unsmoothed``: also segment the unsmoothed stack (a second model pass, batched with the first),
    unless smoothing changes nothing, where the first pass serves both.
    ``per_batch``: yield each model batch of a block as its own :class:`GlacierBlock` (the same batches,
    so the same probabilities; with one pass only), so that the caller can count one batch while the
    next is in the model, and a stack still being read (:meth:`SceneStack.wait_read`) is waited on
    only for the scenes (and smoothing halo, :func:`scenes_needed`) of the next batch.
    """
    n = len(stack)
    if block is None:
        keep_raw = stack.raw is not None
        per_scene = stack_bytes_per_scene((stack.bands.shape[-2], stack.bands.shape[-1]), len(stack.band_names),
                                          keep_raw=keep_raw)
        block = block_length(n, per_scene, config)
    sigma = smoothing_sigma(config)
    same = smoothing_is_identity(config.smoothing, n, sigma)
    two_pass = unsmoothed and not same
    days = scene_days(dates)
    step = max(1, int(block))
    for block_start in range(0, n, step):
        block_stop = min(n, block_start + step)
        parts = ([(block_start + a, block_start + b) for a, b in batch_bounds(block_stop - block_start,
                                                                              config.batch_size)]
                 if per_batch and not two_pass else [(block_start, block_stop)])
        for start, stop in parts:
            stack.wait_read(scenes_needed(config.smoothing, stop, n, sigma, days))
            smoothed, support = smooth_block(stack, start, stop, mode=config.smoothing, sigma=sigma, days=days)
            stacks = [smoothed, stack.bands[start:stop]] if two_pass else [smoothed]
            probs = _segment(segmenter, stacks, stack.band_names, dem_small, glims_id=glims_id,
                             dates=dates[start:stop], batch=config.batch_size)
            probs_raw = probs[0] if same else (probs[1] if unsmoothed else None)
            yield GlacierBlock(start, stop, probs[0], probs_raw, support, np.asarray(stack.weight[start:stop]))


def smoothed_probabilities(glims_id: str, stack: SceneStack, indices: Sequence[int], *, dates: Sequence[Any],
                           dem_small: np.ndarray | None, segmenter: Segmenter, config: TimeseriesConfig
                           ) -> dict[int, np.ndarray]:
    """The chip-size glacier probability (S, S) from the smoothed stack of each scene in ``indices``
    (positions in ``stack``): the values :func:`segment_blocks` gives those scenes, computed for them
    alone (smoothing reads only their neighbourhood; one model pass over just these images)."""
    wanted = sorted(set(int(i) for i in indices))
    if any(not 0 <= i < len(stack) for i in wanted):
        raise IndexError(f"scene index outside a stack of {len(stack)} scenes")
    if not wanted:
        return {}
    sigma, days = smoothing_sigma(config), scene_days(dates)
    smoothed = np.concatenate([smooth_block(stack, i, i + 1, mode=config.smoothing, sigma=sigma, days=days)[0]
                               for i in wanted])
    (probs,) = _segment(segmenter, [smoothed], stack.band_names, dem_small, glims_id=glims_id,
                        dates=[dates[i] for i in wanted], batch=config.batch_size)
    return {i: probs[k] for k, i in enumerate(wanted)}


@dataclass(frozen=True)
class _CountedBlock:
    """What :func:`glacier_areas` counts for one :class:`GlacierBlock` (see there)."""

    rows: slice
    areas: BlockAreas
    areas_raw: np.ndarray | None
    filled_fraction: np.ndarray | None


def stack_size(grid: GlacierGrid, chip_size: int, *, on_grid: bool) -> tuple[int, int]:
    """(rows, cols) of a glacier's stack: the grid's own shape ``on_grid`` (for a segmenter that
    :func:`~glacierwatch.timeseries.segmenters.works_on_grid`: the NDSI baseline by default), else
    ``chip_size`` x ``chip_size`` (the U-Net's input)."""
    return grid.shape if on_grid else (chip_size, chip_size)


class GlacierReading:
    """One glacier's inputs, opened and being read: the scenes in processing order, the grid, the outline
    on it, the chip-size :class:`SceneStack` (read in the background when ``background``; at the grid's
    own size with ``on_grid``, for a segmenter that :func:`works_on_grid`), and, on a
    one-thread executor (``counter``, which :func:`glacier_areas` then uses for counting), the snow zone
    (which the readers wait for), the counting region and the DEM at chip size, prepared while the first
    scenes are read.

    Opening one is cheap and returns at once; :func:`glacier_areas` takes it (``reading=``) and closes
    it. The time-series stage opens the next glacier's reading when the current glacier's scenes are all
    read (``on_complete``), so that its scenes are read while the current glacier is in the model.
    :meth:`close` stops the reading, joins its threads and removes a memory-mapped stack's folder;
    a reading is a context manager that closes on exit.
    """

    def __init__(self, glims_id: str, scenes: pd.DataFrame, *, geometry: BaseGeometry, grid: GlacierGrid | None,
                 dem_path: str | None, config: TimeseriesConfig, chip_size: int = 128, threads: int = 2,
                 scratch_dir: str | Path | None = None, territory_wkb: bytes | None = None,
                 background: bool = True, on_complete: Callable[[], None] | None = None,
                 on_grid: bool = False) -> None:
        self.glims_id = glims_id
        self.geometry = geometry
        self.scenes, self.grid, self.outline = prepare_glacier(glims_id, scenes, geometry, grid)
        self.on_grid = on_grid
        #: (rows, cols) of the stack's images (:func:`stack_size`)
        self.size = stack_size(self.grid, chip_size, on_grid=on_grid)
        size = self.size
        self._scope = contextlib.ExitStack()
        try:
            # the rasterising runs on the counting thread one job after the other (rasterio warns when
            # two threads rasterize at once); the snow zone first, since the readers wait for it
            self.counter = self._scope.enter_context(
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="count-areas"))
            zone_ready = self.counter.submit(snow_zone, geometry, self.grid, territory_wkb)
            self.region_ready = self.counter.submit(count_region, geometry, self.grid, config.buffer_m, territory_wkb)
            self.dem_ready: Future[np.ndarray | None] = self.counter.submit(
                lambda: dem_at_chip_size(dem_path, self.grid, size) if dem_path is not None else None)
            self.stack = self._scope.enter_context(glacier_stack(
                self.scenes, self.grid, self.outline, config=config, chip_size=size, threads=threads,
                scratch_dir=scratch_dir, glims_id=glims_id, snow_zone=zone_ready.result, background=background,
                on_complete=on_complete))
        except BaseException:
            self._scope.close()
            raise

    def close(self) -> None:
        self._scope.close()

    def __enter__(self) -> GlacierReading:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def glacier_areas(glims_id: str, scenes: pd.DataFrame, *, geometry: BaseGeometry, region_name: str,
                  grid: GlacierGrid | None, dem_path: str | None, segmenter: Segmenter,
                  config: TimeseriesConfig, chip_size: int = 128, threads: int = 2,
                  scratch_dir: str | Path | None = None, territory_wkb: bytes | None = None,
                  latitude: float | None = None, overlap: bool = True,
                  reading: GlacierReading | None = None) -> pd.DataFrame:
    """Area of one glacier on every scene in ``scenes`` (columns path, date, satellite and, when known,
    sun_elevation in degrees: a scene whose sun stood lower than ``config.min_sun_elevation`` does not
    count).

    ``grid``: the glacier grid (the inventory's); a scene on another grid is put onto it, a scene
    that cannot be read or placed is kept with its ``skip_reason`` and no area. None takes the grid
    of the first scene file (tests). ``territory_wkb``: the glacier's own part of the box (the
    inventory's ``territory_wkb``; None: no neighbour exclusion). ``latitude``: of the glacier (degrees; decides the season
    window; None: the outline's centroid). ``scratch_dir``: where a stack over ``config.max_stack_mb``
    is kept on disk (see :func:`glacier_stack`).
    ``overlap``: read the scenes in the background while the model segments the scenes already
    read, batch by batch, and count each batch's areas on the grid (one thread) while the next batch
    is in the model; the counting region and DEM are prepared while the first scenes are read. The
    areas are the same as with ``overlap=False`` (everything in turn), which only the tests use.
    ``reading``: the glacier's :class:`GlacierReading`, already opened (by the stage, while the previous
    glacier was in the model) with these scenes, grid, DEM and settings; it is closed here. None: opened
    here from the arguments (in the background when ``overlap``).
    Returns one row per scene with the columns of :data:`AREA_COLUMNS`; ``area_km2_unsmoothed`` is
    NaN when ``config.unsmoothed`` is False (and smoothing is not ``none``).
    """
    if reading is None:
        reading = GlacierReading(glims_id, scenes, geometry=geometry, grid=grid, dem_path=dem_path, config=config,
                                 chip_size=chip_size, threads=threads, scratch_dir=scratch_dir,
                                 territory_wkb=territory_wkb, background=overlap, on_grid=works_on_grid(segmenter))
    elif reading.glims_id != glims_id or reading.on_grid != works_on_grid(segmenter):
        reading.close()
        raise ValueError(f"{glims_id}: given the reading of {reading.glims_id} at {reading.size}, which "
                         f"{segmenter.name} does not take")
    with reading:
        scenes, grid, outline, stack = reading.scenes, reading.grid, reading.outline, reading.stack
        counter, region_ready, size = reading.counter, reading.region_ready, reading.size
        dates = list(pd.to_datetime(scenes["date"]).dt.date)
        if latitude is None:
            latitude = float(geometry.centroid.y)
        n = len(scenes)
        areas, low, high = (np.full(n, np.nan, dtype=np.float64) for _ in range(3))
        areas_raw = np.full(n, np.nan, dtype=np.float64)
        filled_fraction = np.zeros(n, dtype=np.float64)
        dem_small = reading.dem_ready.result()
        # share of the outline (at chip size) that was not observed but got a value from its neighbours
        outline_small = resize_stack(outline.astype(np.float32)[None], size).numpy()[0] >= 0.5
        n_out = max(int(outline_small.sum()), 1)
        error = float(getattr(segmenter, "relative_area_error", 0.0)) if config.interval_model_error else 0.0
        min_patch_km2 = glacier_min_patch_km2(config.min_patch_km2, float(outline.sum()) * grid.pixel_area_m2 / 1e6)

        def count(blk: GlacierBlock) -> _CountedBlock:
            # the interval's "unobserved" is what the segmented stack lacked: after smoothing, the
            # pixels no observed neighbour filled (support), else the scene's own gaps
            seen = blk.support if config.smoothing in ("masked", "time") else blk.weight
            region = region_ready.result()
            got = _areas_on_grid(blk.probs, grid, region, config.threshold, weight=seen, outline=outline,
                                 spread=config.interval_spread, min_patch_km2=min_patch_km2)
            raw = None
            if blk.probs_raw is not None and blk.probs_raw is not blk.probs:
                raw = _areas_on_grid(blk.probs_raw, grid, region, config.threshold,
                                     min_patch_km2=min_patch_km2).area
            filled = None
            if config.smoothing != "none":
                unobserved = blk.weight < 0.5
                gap = unobserved & (blk.support > 1e-6) if config.smoothing in ("masked", "time") else unobserved
                filled = (gap & outline_small[None]).sum(axis=(1, 2)) / n_out
            return _CountedBlock(slice(blk.start, blk.stop), got, raw, filled)

        def store(done: _CountedBlock, same_pass: bool) -> None:
            rows = done.rows
            areas[rows], low[rows], high[rows] = done.areas.area, done.areas.low, done.areas.high
            if config.interval_model_error:  # the model's own measured error on held-out chips
                low[rows] *= max(0.0, 1.0 - error)
                high[rows] *= 1.0 + error
            if same_pass:
                areas_raw[rows] = areas[rows]
            elif done.areas_raw is not None:
                areas_raw[rows] = done.areas_raw
            if done.filled_fraction is not None:
                filled_fraction[rows] = done.filled_fraction

        blocks = segment_blocks(glims_id, stack, dates=dates, dem_small=dem_small, segmenter=segmenter,
                                config=config, unsmoothed=computes_unsmoothed(config), per_batch=overlap)
        if not overlap:
            for blk in blocks:
                store(count(blk), blk.probs_raw is blk.probs)
        else:
            # one counting thread: a batch is counted while the next is in the model; at most one
            # batch waits to be counted, so at most two batches of probabilities exist at a time
            pending: tuple[Future[_CountedBlock], bool] | None = None
            for blk in blocks:
                future = counter.submit(count, blk)
                if pending is not None:
                    store(pending[0].result(), pending[1])
                pending = (future, blk.probs_raw is blk.probs)
            if pending is not None:
                store(pending[0].result(), pending[1])
        stack.wait_read()
        valid_fraction = np.array(stack.valid_fraction, dtype=np.float64)
        snow = (np.array(stack.snow_fraction, dtype=np.float64) if stack.snow_fraction is not None
                else np.full(n, np.nan))
        reasons = list(stack.skip_reason) if stack.skip_reason else [""] * n

    for i in range(n):  # a scene with nothing observed has no area (smoothing none: nothing to fill from)
        if not reasons[i] and valid_fraction[i] <= 0.0 and config.smoothing in ("none", "seed"):
            reasons[i] = "no observed pixel on the outline"
    bad = np.array([bool(r) for r in reasons], dtype=bool)
    for arr in (areas, low, high, areas_raw):
        arr[bad] = np.nan
    months = season_months(config, latitude)
    season_ok = np.array([d.month in months for d in dates], dtype=bool)
    sun = (pd.to_numeric(scenes["sun_elevation"], errors="coerce").to_numpy(dtype=np.float64)
           if "sun_elevation" in scenes else np.full(n, np.nan))
    sun_ok = ~(sun < config.min_sun_elevation)  # a scene without a sun elevation is not judged by it
    use = season_ok & sun_ok & ~bad & (valid_fraction >= config.min_valid_fraction) & np.isfinite(areas)
    sigma = smoothing_sigma(config)
    return pd.DataFrame({
        "glims_id": glims_id,
        "region": region_name,
        "date": pd.to_datetime(scenes["date"]).dt.date,
        "satellite": scenes["satellite"].astype(str).to_numpy(),
        "scene": [str(p).rsplit("/", 1)[-1] for p in scenes["path"]],
        "area_km2": areas,
        "area_km2_low": low,
        "area_km2_high": high,
        "model_error_fraction": np.full(n, error),
        "area_km2_unsmoothed": areas_raw,
        "valid_fraction": valid_fraction,
        "filled_fraction": filled_fraction,
        "snow_fraction": snow,
        "sun_elevation": sun,
        "season_ok": season_ok,
        "use": use,
        "skip_reason": reasons,
        "pixel_area_m2": grid.pixel_area_m2,
        "segmenter": segmenter.name,
        "model_fingerprint": segmenter.fingerprint,
        "precision": segmenter_precision(segmenter),
        "smoothing": config.smoothing,
        "sigma": sigma,
        "buffer_m": float(config.buffer_m) if config.buffer_m is not None else np.nan,
        "min_patch_km2": min_patch_km2,
        "run_key": run_key(segmenter, config),
    }, columns=list(AREA_COLUMNS))
