"""``glacierwatch report WORKDIR [--out FILE]``."""

from __future__ import annotations

import argparse
from typing import Any

from glacierwatch.trends.cli import glacier_figure_count, positive_int
from glacierwatch.trends.figures import DEFAULT_MAX_GLACIER_FIGURES


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="one self-contained HTML report of a work folder",
        description="Write WORKDIR/report/index.html: Table II, regional estimates, Figures 13, 16 and 18, "
                    "and (when present) estimated-vs-true rates, model metrics and scene counts. Runs the "
                    "trends stage into WORKDIR/trends first when its outputs are missing or stale. The page "
                    "embeds its figures and needs no network to view.")
    p.add_argument("workdir", metavar="WORKDIR", help="work folder holding areas.parquet")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="HTML file to write (default WORKDIR/report/index.html)")
    p.add_argument("--min-obs", type=positive_int, default=None, metavar="N",
                   help="min_obs for the trends stage (default: that of existing trends outputs, else 10)")
    p.add_argument("--by", default=None, metavar="COLUMN", help="grouping column for the trends stage")
    p.add_argument("--rerun-trends", action="store_true", help="recompute WORKDIR/trends even if current")
    p.add_argument("--glacier-figures", type=glacier_figure_count, default=DEFAULT_MAX_GLACIER_FIGURES,
                   metavar="N|all", help="per-glacier figures when the trends stage runs "
                                         f"(default {DEFAULT_MAX_GLACIER_FIGURES})")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from glacierwatch.report.builder import build_report

    path = build_report(args.workdir, out=args.out, min_obs=args.min_obs, by=args.by,
                        rerun_trends=args.rerun_trends, max_glacier_figures=args.glacier_figures)
    print(f"report: {path}")
    return 0
