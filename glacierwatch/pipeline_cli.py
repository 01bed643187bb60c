"""Verbs over the whole chain: ``run CONFIG.toml``, ``init [PATH]`` and ``demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from glacierwatch.config import Config, example_toml
from glacierwatch.errors import InputError
from glacierwatch.pipeline import STAGES  # the stage runners are imported by run_pipeline's steps


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser("run", help="run every stage from a TOML configuration, skipping up-to-date ones")
    run.add_argument("config", help="configuration file (write one with: glacierwatch init)")
    run.add_argument("--stages", nargs="+", choices=STAGES, help="only these stages")
    run.add_argument("--force", action="store_true", help="rerun stages even when up to date")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)

    init = subparsers.add_parser("init", help="write a commented example configuration")
    init.add_argument("path", nargs="?", default="glacierwatch.toml")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=_init)

    demo = subparsers.add_parser("demo", help="synthetic world + the whole chain + estimated vs true trends")
    demo.add_argument("--workdir", default="demo-work", help="work folder (default: demo-work)")
    demo.add_argument("--glaciers", type=int, default=120, help="training glaciers (default 120)")
    demo.add_argument("--timeseries-glaciers", type=int, default=6, help="time-series glaciers (default 6)")
    demo.add_argument("--scenes-per-year", type=int, default=10, help="time-series scenes per glacier and year")
    demo.add_argument("--first-year", type=int, default=1984)
    demo.add_argument("--last-year", type=int, default=2023)
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo's fixed number)")
    demo.add_argument("--melt-season", action="store_true",
                      help="a world with a melt season (snowy June-July scenes) and more lakes (60 %%)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_demo)


def _run(args: argparse.Namespace) -> int:
    from glacierwatch.pipeline import run_pipeline

    status = run_pipeline(Config.from_toml(args.config), stages=args.stages, force=args.force,
                          progress=not args.no_progress)
    for stage, state in status.items():
        print(f"{stage:<11} {state}")
    return 0


def _init(args: argparse.Namespace) -> int:
    from glacierwatch.io import atomic_path

    path = Path(args.path)
    if path.is_dir():
        path = path / "glacierwatch.toml"
    if path.exists() and not args.force:
        raise InputError(f"{path} exists; use --force to overwrite")
    with atomic_path(path) as tmp:  # creates a missing folder
        tmp.write_text(example_toml(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from glacierwatch.demo import format_demo, run_demo

    result = run_demo(args.workdir, n_training=args.glaciers, n_timeseries=args.timeseries_glaciers,
                      scenes_per_year=args.scenes_per_year, first_year=args.first_year,
                      last_year=args.last_year, seed=args.seed,
                      melt_season=args.melt_season, lake_probability=0.6 if args.melt_season else 0.35,
                      progress=not args.no_progress,
                      **({"epochs": args.epochs} if args.epochs is not None else {}))
    print(format_demo(result))
    return 0
