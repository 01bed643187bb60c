"""``fetch_imagery``: scenes and DEMs of every inventory glacier, from any source, onto its grid.

Per glacier (one task of :func:`glacierwatch.tasks.run_per_glacier`, so glaciers can run on Dask):

1. **Plan** — the source is searched once; the records are saved to
   ``imagery/plans/<mode>/<GLIMS_ID>.json`` together with the request (dates, box, cloud limit). A
   rerun with the same request reuses the plan instead of searching again.
2. **Scenes** — records of one overpass (same date and satellite) become one standard scene file
   (mosaicked, lowest cloud cover first). A scene whose file exists is skipped (files are written
   to a temporary name and renamed, so an existing file is complete). Up to ``workers`` scenes are
   read at the same time. Each written scene is appended to ``imagery/manifests/<GLIMS_ID>.jsonl``
   (file, date, satellite, source, provider ids, bytes, time); each failed one to the ledger
   ``imagery/failures.jsonl`` (scene, source, error class, message) — it does not stop the glacier.
3. **DEM** — ``dem/<GLIMS_ID>.tif`` on the same grid, if the source offers one.
4. **Done** — when every planned scene and the DEM are there, ``imagery/done/<mode>/<GLIMS_ID>.json``
   is written and later runs skip the glacier. A glacier with failures is not done: rerun, or
   ``glacierwatch imagery retry-failed``, fetches only what is missing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glacierwatch import redact
from glacierwatch.config import ImageryConfig
from glacierwatch.errors import InputError
from glacierwatch.imagery.records import GlacierRequest, SceneRecord, requests_from_inventory
from glacierwatch.imagery.sources import make_source
from glacierwatch.imagery.sources.base import ImagerySource, SourceAuthError
from glacierwatch.imagery.standard import mosaic, write_dem, write_standard_scene
from glacierwatch.io import append_json_line, ensure_dir, read_json_lines, write_json
from glacierwatch.layout import FetchPaths
from glacierwatch.lock import stage_lock
from glacierwatch.tasks import TaskReport, append_ledger, read_ledger, run_per_glacier

log = logging.getLogger(__name__)

@dataclass
class GlacierFetch:
    """What one glacier's fetch did (the task's return value)."""

    glims_id: str
    planned: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    dem: str = "none"  # written, exists, none (source has no DEM), failed
    failures: list[str] = field(default_factory=list)


def request_key(request: GlacierRequest, source: str, settings: Any = None) -> str:
    """Hash of everything that decides a glacier's search: the request and the source's settings
    (a changed request, or e.g. another local folder or band map, searches again)."""
    text = json.dumps({"source": source, "settings": settings, "grid": request.grid.to_dict(),
                       "start": request.start.isoformat(),
                       "end": request.end.isoformat(), "max_cloud_cover": request.max_cloud_cover,
                       "satellites": list(request.satellites)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record_to_json(record: SceneRecord) -> dict[str, Any]:
    return {"source": record.source, "scene_id": record.scene_id, "glims_id": record.glims_id,
            "date": record.date.isoformat(), "satellite": record.satellite,
            "properties": dict(record.properties), "handle": dict(record.handle)}


def _record_from_json(data: dict[str, Any]) -> SceneRecord:
    return SceneRecord(source=data["source"], scene_id=data["scene_id"], glims_id=data["glims_id"],
                       date=dt.date.fromisoformat(data["date"]), satellite=data["satellite"],
                       properties=data.get("properties", {}), handle=data.get("handle", {}))


def load_or_search_plan(source: ImagerySource, request: GlacierRequest, paths: FetchPaths, mode: str,
                        *, refresh: bool = False, settings: Any = None) -> list[SceneRecord]:
    """The glacier's records: from its saved plan when the request is unchanged, else searched and saved."""
    key = request_key(request, source.name, settings)
    plan_file = paths.glacier(request.glims_id).plan(mode)
    if plan_file.exists() and not refresh:
        try:
            saved = json.loads(plan_file.read_text(encoding="utf-8"))
            if saved.get("request_key") == key:
                return [_record_from_json(r) for r in saved["records"]]
            log.info("%s: the request, the %s settings or its input files changed since the saved plan; "
                     "searching again", request.glims_id, source.name)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("%s: unreadable plan %s, searching again", request.glims_id, plan_file)
    records = source.search(request)
    seen: dict[str, SceneRecord] = {}
    for record in records:  # sources de-duplicate too; this is the last line of defence
        seen.setdefault(record.scene_id, record)
    records = sorted(seen.values(), key=lambda r: (r.date, r.satellite, r.cloud_cover(), r.scene_id))
    write_json(plan_file, {"request_key": key, "glims_id": request.glims_id, "source": source.name,
                           "start": request.start.isoformat(), "end": request.end.isoformat(),
                           "grid": request.grid.to_dict(), "searched": _now(),
                           "records": [_record_to_json(r) for r in records]})
    return records


def group_records(records: Sequence[SceneRecord]) -> dict[tuple[str, str, str], list[SceneRecord]]:
    """Records per standard scene (glacier, date, satellite), each group lowest cloud cover first."""
    groups: dict[tuple[str, str, str], list[SceneRecord]] = defaultdict(list)
    for record in records:
        groups[record.group_key].append(record)
    for group in groups.values():
        group.sort(key=lambda r: (r.cloud_cover(), r.scene_id))
    return dict(sorted(groups.items()))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _Journal:
    """Appends a glacier's manifest lines and its failure-ledger lines (from the reading threads)."""

    def __init__(self, paths: FetchPaths, glims_id: str, source: str, mode: str) -> None:
        self.paths, self.glims_id, self.source, self.mode = paths, glims_id, source, mode
        self.manifest = paths.glacier(glims_id).manifest
        self.lock = threading.Lock()

    def written(self, file: Path, group: Sequence[SceneRecord]) -> None:
        with self.lock:
            append_json_line(self.manifest, {
                "scene": file.name, "date": group[0].date.isoformat(), "satellite": group[0].satellite,
                "source": self.source, "scene_ids": [r.scene_id for r in group], "bytes": file.stat().st_size,
                "time": _now()})

    def failed(self, scene: str | None, scene_ids: Sequence[str], error: BaseException) -> None:
        with self.lock:
            append_ledger(self.paths.ledger, glims_id=self.glims_id, stage="imagery", error=error,
                          mode=self.mode, source=self.source, scene=scene, scene_ids=list(scene_ids))


def read_manifest(paths: FetchPaths, glims_id: str) -> list[dict[str, Any]]:
    """The manifest lines of a glacier (a torn last line from a killed run is skipped)."""
    return read_json_lines(paths.glacier(glims_id).manifest)


def fetch_glacier(glims_id: str, *, request: GlacierRequest, source_factory: Callable[[], ImagerySource],
                  paths: FetchPaths, mode: str, workers: int = 4, refresh: bool = False,
                  progress: bool = False, settings: Any = None) -> GlacierFetch:
    """Fetch one glacier's scenes and DEM (the per-glacier task; see the module docstring)."""
    files = paths.glacier(glims_id)  # every path of this glacier, its id validated once
    source = source_factory()
    result = GlacierFetch(glims_id=glims_id)
    journal = _Journal(paths, glims_id, source.name, mode)
    records = load_or_search_plan(source, request, paths, mode, refresh=refresh, settings=settings)
    groups = group_records(records)
    result.planned = len(groups)
    grid = request.grid
    scene_dir = files.scenes
    if scene_dir.is_dir():
        # temporary files of a killed run (never renamed, so never mistaken for scenes): remove them
        for stale in scene_dir.glob(".*.part"):
            stale.unlink(missing_ok=True)
    recorded = {row.get("scene") for row in read_manifest(paths, glims_id)}
    todo = []
    for (gid, date, sat), group in groups.items():
        target = paths.glacier(gid).scene(dt.date.fromisoformat(date), sat)
        if target.exists():
            result.skipped += 1
            if target.name not in recorded:  # killed between the rename and the manifest line
                journal.written(target, group)
        else:
            todo.append((target, group))

    def one(target: Path, group: list[SceneRecord]) -> Path:
        parts = [source.read(record, grid) for record in group]
        return write_standard_scene(paths.scenes_dir, group, mosaic(parts), grid)

    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(todo), desc=glims_id, unit="scene", disable=not progress or not todo, leave=False) as bar:
        futures = {pool.submit(one, target, group): (target, group) for target, group in todo}
        try:
            for fut in as_completed(futures):
                target, group = futures[fut]
                try:
                    journal.written(fut.result(), group)
                    result.written += 1
                except SourceAuthError:
                    raise
                except Exception as exc:  # continue-on-error: one bad scene must not stop the glacier
                    result.failed += 1
                    result.failures.append(f"{target.name}: {type(exc).__name__}: {exc}")
                    journal.failed(target.name, [r.scene_id for r in group], exc)
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise

    dem_file = files.dem
    if dem_file.exists():
        result.dem = "exists"
    else:
        try:
            elevation = source.read_dem(request)
            if elevation is not None and np.isnan(elevation).all():
                # e.g. NASADEM north of 60 N: an all-NaN file would only look like a DEM
                log.warning("%s: the %s DEM has no data over the glacier grid; none written", glims_id, source.name)
                result.dem = "none"
            elif elevation is not None:
                write_dem(paths.dem_dir, glims_id, elevation, grid, source=source.name)
                result.dem = "written"
        except SourceAuthError:
            raise
        except Exception as exc:
            result.dem = "failed"
            result.failures.append(f"DEM: {type(exc).__name__}: {exc}")
            journal.failed(dem_file.name, ["dem"], exc)
    if result.failed == 0 and result.dem != "failed":
        write_json(files.done(mode), {"request_key": request_key(request, source.name, settings),
                                                 "scenes": result.planned, "dem": result.dem, "time": _now()})
    return result


def _is_done(paths: FetchPaths, mode: str, keys: dict[str, str]) -> Callable[[str], bool]:
    def done(glims_id: str) -> bool:
        marker = paths.glacier(glims_id).done(mode)
        if not marker.exists():
            return False
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("request_key") == keys[glims_id]
        except (json.JSONDecodeError, OSError):
            return False
    return done


_SOURCES: dict[str, ImagerySource] = {}
_SOURCES_LOCK = threading.Lock()
#: The settings of a source section that decide what a search finds (others, such as credentials,
#: limits and timeouts, do not, and changing them must not search again); None = all of them.
_SEARCH_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "earthengine": ("dem_collection",),
    "stac": ("api_url", "collection", "dem_collection"),
    "local": None,
}


def _local_folder_state(config: ImageryConfig) -> str | None:
    """Fingerprint of the local input folder (relative path, size and mtime of every file matching
    the pattern and of the DEM file): a plan saved before files were added, replaced or removed no
    longer matches, so the folder is searched again without --refresh."""
    local = config.local
    if not local.input_dir or not Path(local.input_dir).is_dir():
        return None
    root = Path(local.input_dir).expanduser().resolve()
    digest = hashlib.sha256()
    files = sorted(p for p in root.glob(local.pattern) if p.is_file())
    if local.dem_file and Path(local.dem_file).is_file():
        files.append(Path(local.dem_file))
    for path in files:
        st = path.stat()
        digest.update(f"{path.as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return f"{len(files)}:{digest.hexdigest()[:16]}"


#: Sources whose search result depends on more than their settings (a folder's files): a function
#: of the imagery settings whose value is part of every plan's request key.
_SEARCH_STATE: dict[str, Callable[[ImageryConfig], Any]] = {"local": _local_folder_state}


@dataclass(frozen=True)
class _SourceFactory:
    """Picklable: builds the source inside each (possibly remote) worker, once per process and
    settings (a source may cache: the local folder index, an initialised Earth Engine client)."""

    name: str
    config: ImageryConfig
    #: what the search depends on besides the settings (the local folder's fingerprint), taken once
    #: per fetch; part of the plans' request key and of the source cache key (a cached local source
    #: keeps its folder index, which a changed folder must not reuse)
    search_state: Any = None

    def with_search_state(self) -> _SourceFactory:
        state = _SEARCH_STATE.get(self.name)
        return dataclasses.replace(self, search_state=state(self.config)) if state is not None else self

    def settings(self) -> Any:
        """The source section's settings (all of them: one source instance per distinct section)."""
        section = getattr(self.config, self.name, None)
        return dataclasses.asdict(section) if dataclasses.is_dataclass(section) and not isinstance(section, type) else None

    def search_settings(self) -> Any:
        """The settings that decide what a search finds (part of every plan's request key)."""
        settings, wanted = self.settings(), _SEARCH_SETTINGS.get(self.name)
        if settings is not None and wanted is not None:
            settings = {k: v for k, v in settings.items() if k in wanted}
        if self.search_state is not None and settings is not None:
            settings = {**settings, "search_state": self.search_state}
        return settings

    def __call__(self) -> ImagerySource:
        key = json.dumps([self.name, self.settings(), self.search_state], sort_keys=True, default=str)
        with _SOURCES_LOCK:
            if key not in _SOURCES:
                _SOURCES[key] = make_source(self.name, self.config)
            return _SOURCES[key]


def fetch_imagery(inventory: str | os.PathLike[str], out: str | os.PathLike[str], *, source: str | None = None,
                  mode: str = "timeseries", start: dt.date | None = None, end: dt.date | None = None,
                  glaciers: Sequence[str] | None = None, config: ImageryConfig | None = None,
                  window_days: int = 50, workers: int | None = None, scheduler: str = "local",
                  dask_workers: int | None = None, refresh: bool = False, progress: bool = True,
                  source_factory: Callable[[], ImagerySource] | None = None,
                  lock_wait_s: float = 0.0) -> TaskReport:
    """Fetch the scenes and DEM of every inventory glacier into ``out`` (see the module docstring).

    One fetch at a time per work folder: a second one stops at once with LockHeldError naming the
    holder, or waits up to ``lock_wait_s`` seconds for it (see :mod:`glacierwatch.lock`).

    ``source``: ``earthengine``, ``stac`` or ``local`` (default: ``config.source``); ``mode``:
    ``training`` (outline date +- ``window_days`` days) or ``timeseries`` (1984 to today, with the
    provider-side cloud filter ``config.timeseries_max_cloud_cover``). ``source_factory`` replaces
    the configured source (tests, custom providers).
    """
    config = config or ImageryConfig()
    name = source or config.source
    if not name and source_factory is None:
        raise InputError("no imagery source: give --source earthengine|stac|local or set [imagery] source")
    paths = FetchPaths.for_out(out, config)
    redact.install()  # signed asset URLs (and GDAL's messages about them) never reach a log in clear
    with stage_lock(ensure_dir(paths.state), wait_s=lock_wait_s):
        return _fetch_locked(inventory, paths, config=config, name=name, mode=mode, start=start, end=end,
                             glaciers=glaciers, window_days=window_days, workers=workers, scheduler=scheduler,
                             dask_workers=dask_workers, refresh=refresh, progress=progress,
                             source_factory=source_factory)


def _fetch_locked(inventory: str | os.PathLike[str], paths: FetchPaths, *, config: ImageryConfig, name: str,
                  mode: str, start: dt.date | None, end: dt.date | None, glaciers: Sequence[str] | None,
                  window_days: int, workers: int | None, scheduler: str, dask_workers: int | None,
                  refresh: bool, progress: bool,
                  source_factory: Callable[[], ImagerySource] | None) -> TaskReport:
    cloud = config.timeseries_max_cloud_cover if mode == "timeseries" else None
    requests = requests_from_inventory(inventory, mode=mode, start=start, end=end, window_days=window_days,
                                       glaciers=list(glaciers) if glaciers else None, max_cloud_cover=cloud)
    factory = source_factory or _SourceFactory(name, config).with_search_state()
    # built here once (and kept per process): a missing client library or a bad setting fails now,
    # before any glacier starts
    source_name = factory().name
    write_json(paths.settings, {
        "inventory": str(Path(inventory).resolve()), "source": source_name, "mode": mode,
        "start": start.isoformat() if start else None, "end": end.isoformat() if end else None,
        "window_days": window_days, "glaciers": list(glaciers) if glaciers else None, "time": _now(),
        # the imagery settings (folders, band maps, endpoints; key-file paths but never their contents),
        # so that retry-failed reads from the same place
        "imagery": dataclasses.asdict(config)})
    by_id = {r.glims_id: r for r in requests}
    settings = factory.search_settings() if isinstance(factory, _SourceFactory) else None
    keys = {gid: request_key(r, source_name, settings) for gid, r in by_id.items()}

    return run_per_glacier(
        _GlacierTask(by_id), list(by_id), stage=f"imagery ({source_name}, {mode})",
        is_done=None if refresh else _is_done(paths, mode, keys), ledger=paths.ledger, scheduler=scheduler,
        workers=dask_workers, progress=progress, source_factory=factory, paths=paths, mode=mode,
        workers_per_glacier=workers or config.workers, refresh=refresh, settings=settings)


@dataclass(frozen=True)
class _GlacierTask:
    """Picklable per-glacier task for :func:`run_per_glacier`."""

    requests: dict[str, GlacierRequest]

    def __call__(self, glims_id: str, *, workers_per_glacier: int, **kwargs: Any) -> GlacierFetch:
        result = fetch_glacier(glims_id, request=self.requests[glims_id], workers=workers_per_glacier, **kwargs)
        if result.failures:
            # the glacier is incomplete: report it as failed so it is listed (its scenes are in the
            # ledger), carrying what was written so that the summary counts it
            raise IncompleteGlacierError(f"{result.failed} scene(s) failed, DEM {result.dem}; "
                                         f"first: {result.failures[0]}", result=result)
        return result


class IncompleteGlacierError(InputError):
    """Some scenes (or the DEM) of a glacier could not be fetched; see the imagery failure ledger.
    ``result`` is what the glacier's fetch did do (scenes written, skipped)."""

    def __init__(self, message: str, *, result: GlacierFetch | None = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> Any:  # keep the partial result when sent back from a Dask worker
        return (_incomplete, (str(self), self.result))


def _incomplete(message: str, result: GlacierFetch | None) -> IncompleteGlacierError:
    return IncompleteGlacierError(message, result=result)


def retry_failed(out: str | os.PathLike[str], *, config: ImageryConfig | None = None,
                 source_factory: Callable[[], ImagerySource] | None = None, progress: bool = True,
                 workers: int | None = None, lock_wait_s: float = 0.0) -> TaskReport:
    """Try the glaciers of the failure ledger again, with the settings of the last fetch in ``out``
    (its source, mode, dates and ``[imagery]`` settings; ``config`` replaces the latter).

    The old ledger is kept as ``failures.<time>.jsonl``; what still fails goes to a fresh ledger.
    """
    with stage_lock(ensure_dir(FetchPaths.for_out(out, config).state), wait_s=lock_wait_s):
        return _retry_locked(out, config=config, source_factory=source_factory, progress=progress,
                             workers=workers)


def _retry_locked(out: str | os.PathLike[str], *, config: ImageryConfig | None,
                  source_factory: Callable[[], ImagerySource] | None, progress: bool,
                  workers: int | None) -> TaskReport:
    settings_file = FetchPaths.for_out(out, config).settings
    if not settings_file.exists():
        raise InputError(f"{out}: no previous fetch here ({settings_file} is missing)")
    settings = json.loads(settings_file.read_text(encoding="utf-8"))
    if config is None:
        from glacierwatch.config import Config

        config = Config.from_dict({"imagery": settings.get("imagery", {})}).imagery
    paths = FetchPaths.for_out(out, config)
    failed = sorted({r["glims_id"] for r in read_ledger(paths.ledger)})
    if not failed:
        log.info("no failures recorded in %s", paths.ledger)
        return TaskReport(stage="imagery retry-failed")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    os.replace(paths.ledger, paths.ledger.with_name(f"failures.{stamp}.jsonl"))

    def date(v: str | None) -> dt.date | None:
        return dt.date.fromisoformat(v) if v else None

    return fetch_imagery(settings["inventory"], out, source=settings["source"], mode=settings["mode"],
                         start=date(settings.get("start")), end=date(settings.get("end")), glaciers=failed,
                         config=config, window_days=int(settings.get("window_days", 50)), workers=workers,
                         progress=progress, source_factory=source_factory)

