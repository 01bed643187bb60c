"""Build the scene catalog: one row per scene file, provider metadata + raster statistics + status.

``build_catalog(scenes_dir, out)`` walks ``scenes_dir`` for ``*.tif`` files (the standard layout is
``<GLIMS_ID>/<GLIMS_ID>_<YYYY-MM-DD>_<L5|L7|L8|L9>_C02_T1_L2_SR.tif``), reads the metadata files beside
each (see :mod:`glacierwatch.catalog.metadata`), computes its statistics inside the glacier's box (see
:mod:`glacierwatch.catalog.stats`), and writes ``catalog.parquet`` atomically. A file that cannot be
used gets a row whose ``status`` says why; the build itself does not stop.

Incremental: if ``out`` exists and was written with the same schema version, a file whose signature
(size and mtime of the scene and of its metadata files, and the box) is unchanged keeps its row; only
new or changed files are read, and rows of files that are gone are dropped.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from glacierwatch.catalog.metadata import SIDECAR_SUFFIXES, MetadataError, deduplicate, read_records
from glacierwatch.catalog.schema import COLUMN_NAMES, SCHEMA_VERSION, arrow_schema
from glacierwatch.catalog.stats import StatusError, box_key, scene_stats
from glacierwatch.errors import DatasetNotFoundError, InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.ids import is_glims_id
from glacierwatch.io import atomic_path, read_table
from glacierwatch.landsat import is_slc_off
from glacierwatch.layout import SceneName, parse_scene_name
from glacierwatch.lock import stage_lock

log = logging.getLogger(__name__)

_SCENE_SUFFIXES = (".tif", ".tiff")


# ------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class _Task:
    path: str
    file_name: str
    name: SceneName | None
    name_error: str | None
    sidecars: tuple[str, ...]
    box: GlacierGrid | None  #: the glacier's grid, whose bounds are the box (None: the whole file)
    file_size: int
    file_mtime_ns: int
    signature: str


def _signature(size: int, mtime_ns: int, sidecars: Sequence[tuple[str, int, int]], box: GlacierGrid | None) -> str:
    text = "|".join([str(SCHEMA_VERSION), str(size), str(mtime_ns),
                     ";".join(f"{n}:{s}:{m}" for n, s, m in sorted(sidecars)),
                     box_key(box) if box else "file"])
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _discover(scenes_dir: Path) -> list[tuple[Path, os.stat_result, list[tuple[Path, os.stat_result]]]]:
    """Scene files under ``scenes_dir`` with their stat and their metadata files (with stat)."""
    found = []
    stack = [scenes_dir]
    while stack:
        folder = stack.pop()
        try:
            entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            continue
        scenes: dict[str, os.DirEntry[str]] = {}
        others: list[os.DirEntry[str]] = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.name.lower().endswith(_SCENE_SUFFIXES):
                scenes[entry.name.rsplit(".", 1)[0]] = entry
            else:
                others.append(entry)
        sidecars: dict[str, list[tuple[Path, os.stat_result]]] = {stem: [] for stem in scenes}
        for entry in others:
            for suffix in SIDECAR_SUFFIXES:
                if entry.name.endswith(suffix) and entry.name[: -len(suffix)] in scenes:
                    sidecars[entry.name[: -len(suffix)]].append((Path(entry.path), entry.stat()))
                    break
        for stem, entry in scenes.items():
            found.append((Path(entry.path), entry.stat(), sorted(sidecars[stem])))
    found.sort(key=lambda item: str(item[0]))
    return found


@dataclass(frozen=True)
class _Glacier:
    box: GlacierGrid | None
    hemisphere: str | None
    region: str | None


def _load_inventory(path: str | os.PathLike[str]) -> dict[str, _Glacier]:
    df = read_table(path, columns=["glims_id"])
    if "grid" not in df.columns:
        raise InputError(f"{path}: the inventory has no 'grid' column (GlacierGrid JSON) to define each glacier's box")
    duplicated = df["glims_id"][df["glims_id"].duplicated()]
    if len(duplicated):
        raise InputError(f"{path}: {len(duplicated)} duplicate glims_id(s), e.g. {duplicated.iloc[0]} "
                         "(one outline per glacier is expected)")
    out: dict[str, _Glacier] = {}
    hemis = df["hemisphere"] if "hemisphere" in df.columns else [None] * len(df)
    regions = df["region"] if "region" in df.columns else [None] * len(df)
    for gid, grid_json, hemi, region in zip(df["glims_id"], df["grid"], hemis, regions, strict=True):
        if not is_glims_id(gid):
            raise InputError(f"{path}: not a GLIMS id in the inventory: {gid!r}")
        try:
            grid = GlacierGrid.from_json(grid_json) if isinstance(grid_json, str) else None
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: glacier {gid}: invalid grid JSON ({exc})") from exc
        hemi = hemi if hemi in ("N", "S") else None
        out[gid] = _Glacier(grid, hemi, region if isinstance(region, str) else None)
    return out


def _make_tasks(found: Iterable[tuple[Path, os.stat_result, list[tuple[Path, os.stat_result]]]],
                glaciers: dict[str, _Glacier] | None) -> list[_Task]:
    tasks = []
    for path, st, sidecars in found:
        name: SceneName | None = None
        error = None
        try:
            name = parse_scene_name(path.name)
            folder = path.parent.name
            if is_glims_id(folder) and folder != name.glims_id:
                raise InputError(f"file of glacier {name.glims_id} in the folder of {folder}")
        except InputError as exc:
            error = str(exc)
        box = None
        if glaciers is not None and name is not None and name.glims_id in glaciers:
            box = glaciers[name.glims_id].box
        side = [(p.name, s.st_size, s.st_mtime_ns) for p, s in sidecars]
        tasks.append(_Task(str(path), path.name, name, error, tuple(str(p) for p, _ in sidecars),
                           box, st.st_size, st.st_mtime_ns, _signature(st.st_size, st.st_mtime_ns, side, box)))
    return tasks


# ------------------------------------------------------------------ reading one file

_META_FIELDS = ("product_id", "spacecraft_id", "sensor_id", "acquired", "cloud_cover", "cloud_cover_land",
                "image_quality", "image_quality_tirs", "sun_elevation", "sun_azimuth", "processing_level",
                "wrs_path", "wrs_row")


def scan_scene(task: _Task) -> dict[str, Any]:
    """The catalog row of one scene file. Never raises for a bad file: the row's status says why."""
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    name = task.name
    row.update(path=task.path, file_name=task.file_name, file_size=task.file_size,
               file_mtime_ns=task.file_mtime_ns, signature=task.signature)
    if name is not None:
        row.update(glims_id=name.glims_id, date=name.date, satellite=name.satellite, collection=name.collection,
                   tier=name.tier, hemisphere=name.glims_id[-1], slc_off=is_slc_off(name.satellite, name.date))
    status, error = ("bad_name", task.name_error) if task.name_error else ("ok", None)
    try:
        row.update(scene_stats(task.path, satellite=name.satellite if name else None, box=task.box))
    except StatusError as exc:
        if status == "ok":
            status, error = exc.status, str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a build of 500,000
        if status == "ok":
            status, error = "error", f"{type(exc).__name__}: {exc}"
    meta_error = None
    try:
        records = read_records(task.sidecars)
    except MetadataError as exc:
        records, meta_error = [], str(exc)
    except Exception as exc:  # noqa: BLE001
        records, meta_error = [], f"{type(exc).__name__}: {exc}"
    record, dropped = deduplicate(records)
    row.update(metadata_records=len(records), duplicate_records=dropped)
    if record is not None:
        row.update(metadata_source=record.source, metadata_path=record.path)
        row.update({f: getattr(record, f) for f in _META_FIELDS})
        if record.collection:
            row["collection"] = record.collection
        if record.tier:
            row["tier"] = record.tier
    if status == "ok":
        if meta_error is not None:
            status, error = "bad_metadata", meta_error
        elif record is None:
            status, error = "no_metadata", "no metadata file beside the scene"
        elif name is not None and record.date is not None and record.date != name.date:
            status, error = "metadata_mismatch", f"metadata date {record.date} != file name date {name.date}"
        elif name is not None and record.satellite is not None and record.satellite != name.satellite:
            status, error = "metadata_mismatch", f"metadata satellite {record.satellite} != file name {name.satellite}"
    row.update(status=status, error=error)
    return row


def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=arrow_schema())


def _scan_many(tasks: Sequence[_Task]) -> pa.Table:
    """Rows of several files as one Arrow table (compact to send back from a worker process)."""
    return _rows_to_table([scan_scene(t) for t in tasks])


def _ping() -> bool:
    return True


def _crash_row(task: _Task) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update(path=task.path, file_name=task.file_name, file_size=task.file_size,
               file_mtime_ns=task.file_mtime_ns, signature=task.signature, status="error",
               error="the worker process reading this file crashed")
    if task.name is not None:
        row.update(glims_id=task.name.glims_id, date=task.name.date, satellite=task.name.satellite,
                   hemisphere=task.name.glims_id[-1])
    return row


#: Files per chunk: a worker's unit of work, and the serial path's batch of rows per Arrow table.
_CHUNK = 256


def _run_tasks(tasks: Sequence[_Task], *, workers: int, progress: bool) -> list[pa.Table]:
    """Catalog rows of ``tasks`` as Arrow tables (one per chunk of files)."""
    bar = tqdm(total=len(tasks), desc="catalog", unit="file", disable=not progress or not tasks)
    try:
        if workers <= 1 or len(tasks) < 2:
            return _run_serial(tasks, bar.update)
        return _run_pool(tasks, workers=workers, update=bar.update)
    finally:
        bar.close()


def _run_serial(tasks: Sequence[_Task], update: Callable[[int], Any]) -> list[pa.Table]:
    tables, rows = [], []
    for task in tasks:
        rows.append(scan_scene(task))
        update(1)
        if len(rows) >= _CHUNK:
            tables.append(_rows_to_table(rows))
            rows = []
    if rows:
        tables.append(_rows_to_table(rows))
    return tables


def _run_pool(tasks: Sequence[_Task], *, workers: int, update: Callable[[int], Any],
              scan: Callable[[Sequence[_Task]], pa.Table] = _scan_many) -> list[pa.Table]:
    """Read with a pool of ``workers`` processes; a file that crashes a worker gets an ``error`` row
    (the chunks lost with the pool are retried one file at a time to find it)."""
    context = multiprocessing.get_context("spawn")  # no fork of a GDAL-using parent
    size = max(1, min(_CHUNK, len(tasks) // (workers * 8)))
    chunks = [list(range(i, min(i + size, len(tasks)))) for i in range(0, len(tasks), size)]
    tables: list[pa.Table] = []
    failed: list[int] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        try:
            pool.submit(_ping).result()
        except BrokenProcessPool:
            log.warning("catalog: the worker processes did not start (a script calling build_catalog with "
                        "workers > 1 must do so under `if __name__ == \"__main__\":`); reading in this process")
            return _run_serial(tasks, update)
        futures: dict[Future[pa.Table], list[int]] = {
            pool.submit(scan, [tasks[i] for i in idx]): idx for idx in chunks}
        for fut in as_completed(futures):
            idx = futures[fut]
            try:
                tables.append(fut.result())
            except BrokenProcessPool:
                failed.extend(idx)
                continue
            update(len(idx))
    if not failed:
        return tables
    failed.sort()
    log.warning("a catalog worker crashed; retrying %d file(s) one at a time", len(failed))
    rows = []
    pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
    try:
        for i in failed:
            try:
                tables.append(pool.submit(scan, [tasks[i]]).result())
            except BrokenProcessPool:
                rows.append(_crash_row(tasks[i]))
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            update(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if rows:
        tables.append(_rows_to_table(rows))
    return tables


# ------------------------------------------------------------------ the catalog


def _read_existing(out: Path) -> pa.Table | None:
    if not out.exists():
        return None
    try:
        table = pq.read_table(out)
    except Exception as exc:  # noqa: BLE001 - a damaged catalog is rebuilt, not fatal
        log.warning("existing catalog %s is unreadable (%s); rebuilding it", out, exc)
        return None
    version = (table.schema.metadata or {}).get(b"glacierwatch.catalog.schema_version")
    if version != str(SCHEMA_VERSION).encode() or table.column_names != list(COLUMN_NAMES):
        log.info("existing catalog %s has another schema version; reading every file again", out)
        return None
    return table


def build_catalog(scenes_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  inventory: str | os.PathLike[str] | None = None, workers: int = 1,
                  progress: bool = True, lock_wait_s: float = 0.0) -> pd.DataFrame:
    """Build (or update) the catalog of the scene files under ``scenes_dir`` and write it to ``out``
    (Parquet, atomically). Returns the catalog; ``df.attrs["build"]`` has counts of files read,
    reused (unchanged since the last build), removed and per status.

    ``inventory``: optional inventory GeoParquet (``glims_id``, ``grid``, optionally ``hemisphere``,
    ``region``): statistics are computed in the window of each glacier grid's bounds, and
    ``hemisphere``/``region`` come from it. ``workers`` > 1 reads files in that many processes.
    Files are read in bounded windows (:data:`glacierwatch.catalog.stats.MAX_READ_BYTES`), with or
    without an inventory. One build per catalog file at a time: a second one stops with
    LockHeldError naming the holder, or waits up to ``lock_wait_s`` seconds (:mod:`glacierwatch.lock`).
    """
    scenes_dir = Path(scenes_dir)
    out = Path(out)
    if not scenes_dir.is_dir():
        raise DatasetNotFoundError(f"scenes folder not found: {scenes_dir}")
    if out.suffix.lower() not in (".parquet", ".pq"):
        raise InputError(f"the catalog is written as Parquet: give a .parquet file, not {out.name}")
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    glaciers = _load_inventory(inventory) if inventory is not None else None
    with stage_lock(out, wait_s=lock_wait_s):
        return _build_locked(scenes_dir, out, glaciers, workers=workers, progress=progress)


def _build_locked(scenes_dir: Path, out: Path, glaciers: dict[str, _Glacier] | None, *, workers: int,
                  progress: bool) -> pd.DataFrame:
    tasks = _make_tasks(_discover(scenes_dir.resolve()), glaciers)
    existing = _read_existing(out)
    keep_idx: list[int] = []
    todo: list[_Task] = []
    removed = 0
    if existing is not None:
        current = {task.path for task in tasks}
        removed = sum(1 for p in existing.column("path").to_pylist() if p not in current)
        old = {p: (i, s) for i, (p, s) in enumerate(zip(existing.column("path").to_pylist(),
                                                        existing.column("signature").to_pylist(), strict=True))}
        for task in tasks:
            hit = old.get(task.path)
            if hit is not None and hit[1] == task.signature:
                keep_idx.append(hit[0])
            else:
                todo.append(task)
    else:
        todo = list(tasks)
    if keep_idx:
        log.info("catalog: %d file(s) unchanged, %d to read", len(keep_idx), len(todo))

    parts = _run_tasks(todo, workers=workers, progress=progress) or [_rows_to_table([])]
    if keep_idx and existing is not None:
        parts.insert(0, existing.take(pa.array(keep_idx, pa.int64())).cast(arrow_schema()))
    table = pa.concat_tables(parts)
    table = _apply_inventory_attributes(table, glaciers)
    table = table.sort_by([("glims_id", "ascending"), ("date", "ascending"), ("path", "ascending")])
    table = table.replace_schema_metadata(arrow_schema().metadata)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")

    df = table.to_pandas()
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    df.attrs["build"] = {"files": len(tasks), "read": len(todo), "reused": len(keep_idx),
                         "removed": removed,
                         "status": {str(k): int(v) for k, v in counts.items()}}
    bad = {k: v for k, v in counts.items() if k != "ok"}
    log.debug("catalog: %d file(s), %d read, %d unchanged; status %s -> %s", len(tasks), len(todo),
             len(keep_idx), counts, out)
    if bad:
        log.warning("catalog: %d file(s) not ok: %s (query: SELECT path, status, error FROM scenes "
                    "WHERE status <> 'ok')", sum(bad.values()), bad)
    return df


def _apply_inventory_attributes(table: pa.Table, glaciers: dict[str, _Glacier] | None) -> pa.Table:
    """Set hemisphere and region from the inventory (hemisphere falls back to the id's last letter)."""
    ids = table.column("glims_id").to_pylist()
    hemi = [None if g is None else g[-1] for g in ids]
    region: list[str | None] = [None] * len(ids)
    if glaciers:
        for i, gid in enumerate(ids):
            info = glaciers.get(gid) if gid is not None else None
            if info is not None:
                hemi[i] = info.hemisphere or hemi[i]
                region[i] = info.region
    table = table.set_column(table.schema.get_field_index("hemisphere"), "hemisphere", pa.array(hemi, pa.string()))
    return table.set_column(table.schema.get_field_index("region"), "region", pa.array(region, pa.string()))
