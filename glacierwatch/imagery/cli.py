"""``glacierwatch imagery fetch``: scenes and DEMs onto each glacier's grid from Earth Engine, STAC or a
local folder; ``glacierwatch imagery retry-failed``: fetch again what the failure ledger lists."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt

from glacierwatch.config import Config, ImageryConfig
from glacierwatch.errors import InputError


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from exc


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("imagery", help="fetch Landsat C2 L2 scenes and DEMs onto the glacier grids")
    sub = parser.add_subparsers(dest="imagery_command", metavar="ACTION", required=True)
    d = ImageryConfig()
    fetch = sub.add_parser("fetch", help="fetch (or import) every inventory glacier's scenes and DEM",
                           description="Writes WORKDIR/scenes/<GLIMS_ID>/*.tif (+ .json metadata), "
                                       "WORKDIR/dem/<GLIMS_ID>.tif and WORKDIR/imagery/ (plans, manifests, "
                                       "failures.jsonl). A rerun skips what is done.")
    fetch.add_argument("--inventory", required=True, help="inventory.parquet (glims_id, grid, outline_date)")
    fetch.add_argument("--source", choices=["earthengine", "stac", "local"],
                       help="where scenes come from (default: [imagery] source of --config"
                            + (f", {d.source})" if d.source else "; required without it)"))
    fetch.add_argument("--mode", choices=["training", "timeseries"], default="timeseries",
                       help="training: outline date +- window; timeseries: 1984 to today (default)")
    fetch.add_argument("--out", required=True, metavar="WORKDIR", help="work folder")
    fetch.add_argument("--start", type=_date, help="first date, YYYY-MM-DD (overrides the mode's window)")
    fetch.add_argument("--end", type=_date, help="last date, YYYY-MM-DD (inclusive)")
    fetch.add_argument("--glaciers", nargs="+", metavar="GLIMS_ID", help="only these glaciers")
    fetch.add_argument("--threads", type=int, help=f"scenes of one glacier read at once (default {d.workers})")
    fetch.add_argument("--scheduler", default="local", help="local, processes or tcp://HOST:PORT (Dask, per glacier)")
    fetch.add_argument("--workers", type=int, help="Dask worker processes for --scheduler processes")
    fetch.add_argument("--input-dir", help="local source: the folder to import (overrides [imagery.local] input_dir)")
    fetch.add_argument("--refresh", action="store_true", help="search again even if a saved plan matches")
    fetch.add_argument("--config", help="TOML configuration ([imagery] and its sub-tables; [catalog] window)")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bars")
    fetch.set_defaults(func=_fetch)
    retry = sub.add_parser("retry-failed", help="fetch again the scenes listed in WORKDIR/imagery/failures.jsonl")
    retry.add_argument("--out", required=True, metavar="WORKDIR", help="work folder of the earlier fetch")
    retry.add_argument("--config", help="TOML configuration (default: the settings the fetch saved in WORKDIR/imagery/fetch.json)")
    retry.add_argument("--threads", type=int, help="scenes of one glacier read at once")
    retry.add_argument("--no-progress", action="store_true", help="no progress bars")
    retry.set_defaults(func=_retry)


def _report(report: object, out: str) -> int:
    from glacierwatch.layout import FetchPaths
    from glacierwatch.tasks import TaskReport

    assert isinstance(report, TaskReport)
    print(report.summary())
    written = sum(r.written for r in report.results.values())
    skipped = sum(r.skipped for r in report.results.values())
    print(f"scenes written: {written}, already there: {skipped}")
    if report.failed:
        print(f"failures: {FetchPaths.for_out(out).ledger} (glacierwatch imagery retry-failed --out {out})")
        return 1
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from glacierwatch.imagery.fetch import fetch_imagery

    cfg = Config.from_toml(args.config) if args.config else Config()
    imagery = cfg.imagery
    if args.input_dir:
        imagery = dataclasses.replace(imagery, local=dataclasses.replace(imagery.local, input_dir=args.input_dir))
    if args.start and args.end and args.end < args.start:
        raise InputError(f"--end {args.end} is before --start {args.start}")
    report = fetch_imagery(args.inventory, args.out, source=args.source, mode=args.mode, start=args.start,
                           end=args.end, glaciers=args.glaciers, config=imagery,
                           window_days=cfg.catalog.training_window_days, workers=args.threads,
                           scheduler=args.scheduler, dask_workers=args.workers, refresh=args.refresh,
                           progress=not args.no_progress)
    return _report(report, args.out)


def _retry(args: argparse.Namespace) -> int:
    from glacierwatch.imagery.fetch import retry_failed

    # without --config, the settings saved by the fetch are used (e.g. its --input-dir)
    config = Config.from_toml(args.config).imagery if args.config else None
    report = retry_failed(args.out, config=config, workers=args.threads, progress=not args.no_progress)
    return _report(report, args.out)
