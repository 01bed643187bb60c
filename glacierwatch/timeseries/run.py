"""The time-series stage over many glaciers: resumable, continue-on-error, in-process or on Dask.

Outputs (``OUT`` = e.g. ``areas.parquet``):

* ``OUT`` — one row per glacier and scene (columns in :data:`~glacierwatch.timeseries.areas.AREA_COLUMNS`),
  rewritten atomically from the per-glacier parts at the end of every run;
* ``<OUT stem>.parts/<GLIMS_ID>.parquet`` — each glacier's rows, written atomically when the glacier
  is done: a killed run started again skips the glaciers whose part exists with the same settings
  (``run_key``) and finishes with every glacier exactly once;
* ``<OUT stem>.annual.parquet`` — one row per glacier and year: the annual area from the year's
  counted end-of-season scenes (:mod:`glacierwatch.timeseries.annual`), what the trends are fitted on;
* ``<OUT stem>.scenes.parquet`` — the scenes selected for the run (the catalog's inference filter;
  columns :data:`~glacierwatch.timeseries.areas.SCENE_COLUMNS`);
* ``<OUT stem>.failures.jsonl`` — the ledger: one line per failed glacier (error class, message);
* ``<OUT stem>.parts/.<GLIMS_ID>.stack-*/`` — while a glacier whose stack exceeds
  ``TimeseriesConfig.max_stack_mb`` is processed: its chip-size stack as memory-mapped files (removed
  when the glacier is done or fails, and by the next run if the process was killed).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from glacierwatch.config import CatalogConfig, TimeseriesConfig
from glacierwatch.errors import InputError
from glacierwatch.features import needs_dem
from glacierwatch.glacier import Glacier, read_glaciers
from glacierwatch.ids import validate_glims_id
from glacierwatch.io import read_table, write_table
from glacierwatch.layout import GlacierPaths, TimeseriesOutputs
from glacierwatch.lock import stage_lock
from glacierwatch.tasks import TaskReport, run_per_glacier
from glacierwatch.timeseries.annual import annual_areas
from glacierwatch.timeseries.areas import (
    AREA_COLUMNS,
    SCENE_COLUMNS,
    GlacierReading,
    glacier_areas,
    remove_stale_stacks,
    run_key,
)
from glacierwatch.timeseries.segmenters import Segmenter, SegmenterSpec, make_segmenter, works_on_grid

log = logging.getLogger(__name__)


@dataclass
class TimeseriesResult:
    outputs: TimeseriesOutputs
    report: TaskReport
    areas: pd.DataFrame
    annual: pd.DataFrame


def _part_done(part: Path, key: str) -> bool:
    if not part.exists():
        return False
    try:
        keys = pq.read_table(part, columns=["run_key"]).column("run_key").unique().to_pylist()
    except Exception:  # an unreadable part is redone
        return False
    return keys == [key]


def find_dem(files: GlacierPaths, segmenter: Segmenter) -> str | None:
    """The glacier's DEM (``files.dem_file``: ``<dem_dir>/<GLIMS_ID>.tif``) if it exists, else None
    (also when ``files`` has no DEM folder); InputError if the model needs a DEM and there is none."""
    dem_file = None
    if files.dem_dir is not None:
        candidate = files.dem_file
        dem_file = str(candidate) if candidate.exists() else None
    if segmenter.name == "unet" and dem_file is None and needs_dem(getattr(segmenter, "channels", ())):
        raise InputError(f"{files.glims_id}: the model needs a DEM but "
                         f"{files.dem_dir}/{files.glims_id}.tif is missing")
    return dem_file


def _open_glacier(glims_id: str, *, scenes_path: str, glaciers: Mapping[str, Glacier], parts_dir: str,
                  segmenter: Segmenter, config: TimeseriesConfig, chip_size: int,
                  on_complete: Callable[[], None] | None = None, background: bool = True) -> GlacierReading:
    """Start reading one glacier's scenes (in the background; ``background=False``: read them now) onto its inventory grid, with its DEM,
    counting region and snow zone; a stack folder left in ``parts_dir`` by a killed run of this glacier
    is removed first. A stack too long for memory (``config.max_stack_mb``) goes to a temporary folder
    in ``parts_dir``, removed when the reading is closed."""
    validate_glims_id(glims_id)
    remove_stale_stacks(parts_dir, glims_id)
    scenes = pd.read_parquet(scenes_path, filters=[("glims_id", "==", glims_id)])
    glacier = glaciers[glims_id]
    files = glacier.paths
    if files is None:  # _run_timeseries_locked reads every record with its paths
        raise ValueError(f"{glims_id}: the glacier record carries no paths")
    return GlacierReading(glims_id, scenes, geometry=glacier.outline, grid=glacier.grid,
                          dem_path=find_dem(files, segmenter), config=config, chip_size=chip_size,
                          threads=config.read_threads, scratch_dir=parts_dir, territory_wkb=glacier.territory_wkb,
                          background=background, on_complete=on_complete, on_grid=works_on_grid(segmenter))


class ReadAhead:
    """Reads the next glacier's scenes while the current glacier is in the model (in-process runs).

    When a glacier's scenes are all read (its reading's ``on_complete``), the reading of the next
    glacier of ``order`` that ``is_done`` does not skip is opened on a helper thread; the task of
    that glacier then takes it (:meth:`open`) instead of opening its own, so the readers do not wait
    for the model, nor the model for a glacier's first scenes (except the first glacier's). At most
    two glaciers' stacks exist at a time (each within ``max_stack_mb``). An error opening the next
    glacier is raised by its :meth:`open`, inside that glacier's task (its ledger line). :meth:`close`
    closes a reading opened but not taken (a stopped run).
    """

    def __init__(self, order: Sequence[str], is_done: Callable[[str], bool],
                 open_reading: Callable[[str, Callable[[], None]], GlacierReading]) -> None:
        self._order = list(order)
        self._position = {gid: i for i, gid in enumerate(self._order)}  # not list.index per glacier
        self._is_done = is_done
        self._open = open_reading
        self._lock = threading.Lock()
        self._pending: tuple[str, Future[GlacierReading]] | None = None
        # a glacier opened ahead whose scenes were all read before its task took it: the one after it
        # is opened when it is taken (not at once: that would hold three stacks)
        self._deferred: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
        self._closed = False

    def open(self, glims_id: str) -> GlacierReading:
        """The reading of ``glims_id``: the one opened ahead, or opened now; either way, the next
        glacier's reading is opened when this one's scenes are all read."""
        taken = None
        with self._lock:
            if self._pending is not None:
                pending_id, future = self._pending
                self._pending = None
                if pending_id == glims_id:
                    taken = future
                else:  # not the glacier asked for (the order changed): dropped
                    future.add_done_callback(_close_reading)
        if taken is not None:
            reading = taken.result()
            with self._lock:
                read_already = self._deferred == glims_id
                if read_already:
                    self._deferred = None
            if read_already:
                self._ahead(glims_id)
            return reading
        return self._open(glims_id, functools.partial(self._ahead, glims_id))

    def _ahead(self, glims_id: str) -> None:
        """Open the reading of the glacier after ``glims_id`` (the reading thread of ``glims_id`` calls this)."""
        following = self._next_after(glims_id)
        if following is None:
            return
        with self._lock:
            if self._closed:
                return
            if self._pending is not None:  # glims_id itself, read before its task took it
                self._deferred = glims_id
                return
            self._pending = (following, self._pool.submit(
                self._open, following, functools.partial(self._ahead, following)))

    def _next_after(self, glims_id: str) -> str | None:
        at = self._position.get(glims_id)
        if at is None:
            return None
        for gid in self._order[at + 1:]:
            if not self._is_done(gid):
                return gid
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].add_done_callback(_close_reading)
        self._pool.shutdown(wait=True)


def _close_reading(future: Future[GlacierReading]) -> None:
    if future.exception() is None:
        future.result().close()


def _glacier_task(glims_id: str, *, scenes_path: str, glaciers: Mapping[str, Glacier],
                  parts_dir: str, spec: SegmenterSpec | None, segmenter: Segmenter | None,
                  config: TimeseriesConfig, chip_size: int, read_ahead: ReadAhead | None = None) -> int:
    """One glacier: read its scenes (:func:`_open_glacier`, or the reading ``read_ahead`` opened while the
    previous glacier was in the model), compute its areas on its inventory grid, write its part
    atomically (to the record's ``paths.part``)."""
    seg = segmenter if segmenter is not None else make_segmenter(spec)
    if read_ahead is not None:
        reading = read_ahead.open(glims_id)
    else:
        reading = _open_glacier(glims_id, scenes_path=scenes_path, glaciers=glaciers, parts_dir=parts_dir,
                                segmenter=seg, config=config, chip_size=chip_size)
    glacier = glaciers[glims_id]
    areas = glacier_areas(glims_id, reading.scenes, geometry=glacier.outline, region_name=glacier.region,
                          grid=reading.grid, dem_path=None, segmenter=seg, config=config,
                          chip_size=chip_size, latitude=glacier.latitude, reading=reading)
    assert glacier.paths is not None  # _open_glacier checked it
    write_table(areas, glacier.paths.part)
    return len(areas)


def select_inference_scenes(catalog: str | Path, inventory: str | Path, *,
                            catalog_config: CatalogConfig) -> pd.DataFrame:
    """The catalog's inference selection (the paper's scene filter), via the catalog stage."""
    from glacierwatch.catalog import select

    return select(catalog, "inference", config=catalog_config, inventory=inventory)


def collect_parts(outputs: TimeseriesOutputs, glims_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Concatenate per-glacier parts (all, or those of ``glims_ids``) in glacier and date order."""
    files = sorted(outputs.parts.glob("*.parquet"))
    if glims_ids is not None:
        wanted = set(glims_ids)
        files = [f for f in files if f.stem in wanted]
    if not files:
        return pd.DataFrame(columns=list(AREA_COLUMNS))
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.sort_values(["glims_id", "date", "scene"]).reset_index(drop=True)


def run_timeseries(*, catalog: str | Path, inventory: str | Path, out: str | Path,
                   model: str | Path | None = None, dem_dir: str | Path | None = None,
                   glaciers: Sequence[str] | None = None, config: TimeseriesConfig | None = None,
                   catalog_config: CatalogConfig | None = None, segmenter: Segmenter | None = None,
                   device: str = "cpu", chip_size: int = 128, progress: bool = True,
                   lock_wait_s: float = 0.0) -> TimeseriesResult:
    """Areas of every selected glacier on every scene passing the inference filter.

    The output is locked while the stage runs (a second run on it stops at once naming the holder, or
    waits ``lock_wait_s`` seconds).

    ``glaciers``: explicit GLIMS ids; default: the catalog's ``inference-glaciers`` selection.
    ``segmenter``: an already-built segmenter (in-process runs only, e.g. an oracle in tests);
    otherwise ``config.segmenter`` with ``model`` as checkpoint.
    """
    config = config if config is not None else TimeseriesConfig()
    catalog_config = catalog_config if catalog_config is not None else CatalogConfig()
    outputs = TimeseriesOutputs.for_path(out)
    with stage_lock(outputs.areas, wait_s=lock_wait_s):
        return _run_timeseries_locked(outputs, catalog=catalog, inventory=inventory, model=model,
                                      dem_dir=dem_dir, glaciers=glaciers, config=config,
                                      catalog_config=catalog_config, segmenter=segmenter, device=device,
                                      chip_size=chip_size, progress=progress)


def _run_timeseries_locked(outputs: TimeseriesOutputs, *, catalog: str | Path, inventory: str | Path,
                           model: str | Path | None, dem_dir: str | Path | None, glaciers: Sequence[str] | None,
                           config: TimeseriesConfig, catalog_config: CatalogConfig, segmenter: Segmenter | None,
                           device: str, chip_size: int, progress: bool) -> TimeseriesResult:
    scenes = select_inference_scenes(catalog, inventory, catalog_config=catalog_config)
    if scenes.empty:
        why = scenes.attrs.get("why_empty")
        raise InputError(f"no scene of {catalog} passed the inference filter" + (f": {why}" if why else ""))
    if glaciers is None:
        from glacierwatch.catalog import select

        chosen = select(catalog, "inference-glaciers", config=catalog_config, inventory=inventory)
        glaciers = list(dict.fromkeys(chosen["glims_id"]))
    glaciers = [validate_glims_id(g) for g in glaciers]
    # the inventory is read once, not once per glacier; each record carries its files
    facts = read_glaciers(inventory, glaciers, paths=lambda gid: outputs.glacier(gid, dem_dir=dem_dir))
    scenes = scenes[scenes["glims_id"].isin(glaciers)]
    # the sun elevation (degrees, NaN where the catalog has none) decides whether a scene counts
    scenes = scenes.assign(sun_elevation=pd.to_numeric(scenes["sun_elevation"], errors="coerce")
                           if "sun_elevation" in scenes else float("nan"))
    write_table(scenes[list(SCENE_COLUMNS)].reset_index(drop=True), outputs.scenes)

    spec = None
    if segmenter is None:
        if config.segmenter == "unet" and model is None:
            raise InputError("the unet segmenter needs --model CHECKPOINT (or use --segmenter ndsi)")
        spec = SegmenterSpec(config.segmenter, str(model) if model else None, config.batch_size, device,
                             bf16=config.bf16, ndsi_resolution=config.ndsi_resolution)
        seg_here = make_segmenter(spec)
    else:
        if config.scheduler != "local":
            raise InputError("a custom segmenter object can only run with scheduler 'local'")
        seg_here = segmenter
    key = run_key(seg_here, config)
    outputs.parts.mkdir(parents=True, exist_ok=True)

    def is_done(gid: str) -> bool:
        return _part_done(outputs.part(gid), key)

    inputs: dict[str, Any] = dict(scenes_path=str(outputs.scenes), glaciers=facts, parts_dir=str(outputs.parts),
                                  config=config, chip_size=chip_size)
    read_ahead = None
    if config.scheduler == "local" and config.read_ahead:  # Dask workers each read their own glaciers
        read_ahead = ReadAhead(glaciers, is_done, lambda gid, then: _open_glacier(
            gid, segmenter=seg_here, on_complete=then, **inputs))
    try:
        report = run_per_glacier(
            _glacier_task, glaciers, stage="timeseries", is_done=is_done,
            ledger=outputs.ledger, scheduler=config.scheduler, workers=config.workers, progress=progress,
            spec=spec, segmenter=segmenter, read_ahead=read_ahead, **inputs,
        )
    finally:
        if read_ahead is not None:
            read_ahead.close()
    areas = collect_parts(outputs, glaciers)
    write_table(areas, outputs.areas)
    annual = annual_areas(areas, statistic=config.annual_statistic,
                          latitude={g: f.latitude for g, f in facts.items()})
    write_table(annual, outputs.annual)
    skipped = int((areas["skip_reason"].astype(str) != "").sum()) if "skip_reason" in areas else 0
    if skipped:
        log.warning("%d scene(s) could not be read or placed on their glacier grid; their reasons are in "
                    "the skip_reason column of %s", skipped, outputs.areas)
    log.info("%s: %d rows for %d glaciers -> %s; %d annual areas (%s of the counted %s scenes) -> %s",
             report.summary(), len(areas), areas["glims_id"].nunique() if len(areas) else 0, outputs.areas,
             len(annual), config.annual_statistic, config.season, outputs.annual)
    return TimeseriesResult(outputs, report, areas, annual)


def read_areas(path: str | Path) -> pd.DataFrame:
    """Read an areas table written by :func:`run_timeseries`."""
    return read_table(path, columns=["glims_id", "region", "date", "area_km2"])
