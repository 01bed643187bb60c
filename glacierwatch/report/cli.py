"""``glacierwatch report WORKDIR [--out FILE]``."""

from __future__ import annotations

import argparse
from typing import Any


def _whole_number(text: str) -> int:
    from glacierwatch.trends.cli import positive_int  # imported when the option is given, not for --help

    return positive_int(text)


def _figure_count(text: str) -> int | None:
    from glacierwatch.trends.cli import glacier_figure_count

    return glacier_figure_count(text)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="one self-contained HTML report of a work folder",
        description="Write WORKDIR/report/index.html: a map of the glaciers coloured by their rate, Table II, "
                    "regional estimates, Figures 13, 16 and 18, each glacier's series with its interval and "
                    "observed fraction, overlays for a few dates, and (when present) estimated-vs-true rates, "
                    "model metrics, scene counts and the validation. The trends stage is run only when "
                    "WORKDIR/trends is missing (or with --rerun-trends); stale trends are reported in the page. "
                    "The page embeds its figures and needs no network to view.")
    p.add_argument("workdir", metavar="WORKDIR", help="work folder holding areas.parquet")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="HTML file to write (default WORKDIR/report/index.html)")
    p.add_argument("--min-obs", type=_whole_number, default=None, metavar="N",
                   help="min_obs when the trends stage runs (default [trends] min_obs)")
    p.add_argument("--by", default=None, metavar="COLUMN", help="grouping column when the trends stage runs")
    p.add_argument("--rerun-trends", action="store_true", help="recompute WORKDIR/trends even if present")
    p.add_argument("--glacier-figures", type=_figure_count, default=argparse.SUPPRESS, metavar="N|all",
                   help="per-glacier figures when the trends stage runs (default: the trends stage's)")
    p.add_argument("--overlay-glaciers", type=int, default=None, metavar="N",
                   help="glaciers drawn with overlays for a few dates (default 2; 0: none). Needs the run's "
                        "scenes, inventory.parquet and, for the U-Net, model/model.pt in WORKDIR")
    p.add_argument("--dem-dir", metavar="DIR", help="the run's DEM folder, for the overlays "
                                                     "(default WORKDIR/dem or WORKDIR/synthetic/dem)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from glacierwatch.report.builder import DEFAULT_OVERLAY_GLACIERS, build_report
    from glacierwatch.trends.figures import DEFAULT_MAX_GLACIER_FIGURES

    path = build_report(args.workdir, out=args.out, min_obs=args.min_obs, by=args.by,
                        rerun_trends=args.rerun_trends,
                        max_glacier_figures=getattr(args, "glacier_figures", DEFAULT_MAX_GLACIER_FIGURES),
                        overlay_glaciers=DEFAULT_OVERLAY_GLACIERS if args.overlay_glaciers is None
                        else args.overlay_glaciers, dem_dir=args.dem_dir)
    print(f"report: {path}")
    return 0
