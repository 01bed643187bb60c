"""Per-glacier task runner: skip-if-done, continue-on-error, a failure ledger and progress, once.

Modelled on OGGM's ``entity_task``: a stage writes a function ``task(glims_id, **kwargs)`` that does
one glacier's work and writes its own output atomically; :func:`run_per_glacier` calls it for every
glacier, skipping those whose output already exists, recording failures in a ledger (JSON lines:
glims_id, stage, error class, message, time) instead of stopping, and showing a progress bar.
With ``scheduler="processes"`` or ``"tcp://host:port"`` the same tasks run on Dask.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from glacierwatch.io import append_json_line, read_json_lines
from glacierwatch.redact import redact

log = logging.getLogger(__name__)


@dataclass
class TaskReport:
    """What a run did: glacier ids done now, skipped (already done) and failed (id -> message).

    ``results``: each task's return value; for a failed glacier whose error carries a partial
    result (an exception with a ``result`` attribute, e.g. scenes written before one failed), that
    result, so that summaries count what was written."""

    stage: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.stage}: {len(self.done)} done, {len(self.skipped)} already done, "
                f"{len(self.failed)} failed")


def append_ledger(ledger: str | os.PathLike[str], *, glims_id: str, stage: str, error: BaseException,
                  **extra: Any) -> None:
    """Append one failure record (a JSON line: glims_id, stage, error_class, message, time, plus
    ``extra`` fields a stage adds, e.g. the scene) to the ledger file."""
    append_json_line(ledger, {
        "glims_id": glims_id, "stage": stage, "error_class": type(error).__name__,
        "message": redact(str(error)), "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    })


def read_ledger(ledger: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All failure records of a ledger (empty if it does not exist; a line torn by a kill is skipped)."""
    return read_json_lines(ledger)


def _call(func: Callable[..., Any], glims_id: str, kwargs: dict[str, Any]) -> tuple[str, bool, Any]:
    try:
        return glims_id, True, func(glims_id, **kwargs)
    except Exception as exc:  # continue-on-error is the point of the runner
        log.debug("task failed for %s:\n%s", glims_id, traceback.format_exc())
        return glims_id, False, exc


def run_per_glacier(func: Callable[..., Any], glims_ids: Sequence[str], *, stage: str,
                    is_done: Callable[[str], bool] | None = None, ledger: str | os.PathLike[str] | None = None,
                    scheduler: str = "local", workers: int | None = None, progress: bool = True,
                    **kwargs: Any) -> TaskReport:
    """Run ``func(glims_id, **kwargs)`` for each glacier.

    ``is_done(glims_id)`` returning True skips a glacier (its output is already there).
    ``scheduler``: ``"local"`` (in this process), ``"processes"`` (a Dask LocalCluster with
    ``workers`` worker processes) or a ``"tcp://host:port"`` address of a running Dask scheduler.
    """
    report = TaskReport(stage=stage)
    todo = []
    for gid in glims_ids:
        if is_done is not None and is_done(gid):
            report.skipped.append(gid)
        else:
            todo.append(gid)
    if report.skipped:
        log.info("%s: %d glacier(s) already done, skipped", stage, len(report.skipped))

    def record(gid: str, ok: bool, value: Any) -> None:
        if ok:
            report.done.append(gid)
            report.results[gid] = value
        else:
            report.failed[gid] = redact(f"{type(value).__name__}: {value}")
            partial = getattr(value, "result", None)
            if partial is not None:
                report.results[gid] = partial
            log.warning("%s failed for %s: %s", stage, gid, report.failed[gid])
            if ledger is not None:
                append_ledger(ledger, glims_id=gid, stage=stage, error=value)

    bar = tqdm(total=len(todo), desc=stage, unit="glacier", disable=not progress or not todo)
    if scheduler == "local":
        for gid in todo:
            record(*_call(func, gid, kwargs))
            bar.update(1)
    else:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler == "processes":
            cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        elif scheduler.startswith("tcp://"):
            client = Client(scheduler)
        else:
            raise ValueError(f"unknown scheduler {scheduler!r} (local, processes or tcp://host:port)")
        try:
            futures = [client.submit(_call, func, gid, kwargs, key=f"{stage}-{gid}", pure=False) for gid in todo]
            for fut in as_completed(futures):
                record(*fut.result())
                bar.update(1)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    bar.close()
    log.debug(report.summary())  # the stage logs its own line with it
    return report
