"""``glacierwatch synth``: write the synthetic Landsat world with known truth."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from glacierwatch.config import Config, SynthConfig


def register(subparsers: Any) -> None:
    """Add the ``synth`` verb to the main parser's subparsers."""
    defaults = SynthConfig()
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic Landsat world with known truth (outlines, scenes, DEMs, true areas)",
        description=(
            "Write GLIMS-like outlines (outlines.gpkg), Landsat C2 L2 scene files with Earth Engine "
            "metadata (scenes/<ID>/), DEMs (dem/<ID>.tif) and the exact truth (truth.csv, truth/<ID>.tif, "
            "truth_trends.csv) into DIR. The world is deterministic for a given seed; a finished world "
            "with the same parameters is reused."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--config", type=Path, default=None, metavar="TOML",
                        help="configuration file whose [synth] section gives the defaults")
    parser.add_argument("--glaciers", type=int, default=None, metavar="N",
                        help=f"training glaciers (default {defaults.n_training_glaciers})")
    parser.add_argument("--timeseries-glaciers", type=int, default=None, metavar="N",
                        help=f"time-series glaciers (default {defaults.n_timeseries_glaciers})")
    parser.add_argument("--seed", type=int, default=None, help=f"random seed (default {defaults.seed})")
    parser.add_argument("--first-year", type=int, default=None,
                        help=f"first year of the time series (default {defaults.first_year})")
    parser.add_argument("--last-year", type=int, default=None,
                        help=f"last year of the time series (default {defaults.last_year})")
    parser.add_argument("--scenes-per-year", type=int, default=None,
                        help=f"time-series scenes per glacier and year (default {defaults.scenes_per_year})")
    parser.add_argument("--training-extra-scenes", type=int, default=None, metavar="N",
                        help="clear scenes added to each training glacier in other years, alternately early and "
                             f"late summer (default {defaults.training_extra_scenes})")
    parser.add_argument("--melt-season", action=argparse.BooleanOptionalAction, default=None,
                        help="seasonal snow line rising through the ablation season (snowy June-July scenes); "
                             f"default {'on' if defaults.melt_season else 'off'} (the seed's summer snow line)")
    parser.add_argument("--lake-probability", type=float, default=None, metavar="P",
                        help=f"chance that a glacier has a pro-glacial lake (default {defaults.lake_probability})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a world built with other parameters in DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    """Build the world described by ``args``; print a one-line summary. Returns 0."""
    from glacierwatch.synth.world import make_world_from_config

    config = Config.from_toml(args.config).synth if args.config is not None else SynthConfig()
    overrides = {
        "n_training_glaciers": args.glaciers,
        "n_timeseries_glaciers": args.timeseries_glaciers,
        "seed": args.seed,
        "first_year": args.first_year,
        "last_year": args.last_year,
        "scenes_per_year": args.scenes_per_year,
        "training_extra_scenes": args.training_extra_scenes,
        "melt_season": args.melt_season,
        "lake_probability": args.lake_probability,
    }
    # SynthConfig is frozen: the command line's values make a new one
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    info = make_world_from_config(args.out, config, progress=not args.no_progress, overwrite=args.overwrite)
    print(f"synthetic world: {len(info.training_ids)} training + {len(info.timeseries_ids)} time-series "
          f"glaciers, {info.n_scenes} scenes -> {info.out_dir}")
    return 0
