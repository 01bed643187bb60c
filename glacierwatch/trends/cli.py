"""``glacierwatch trends AREAS --out DIR [--min-obs N] [--by COLUMN]``."""

from __future__ import annotations

import argparse
from typing import Any

from glacierwatch.config import TrendsConfig

#: [trends] max_glacier_figures (the one default; figures.py imports matplotlib, --help must not)
DEFAULT_MAX_GLACIER_FIGURES = TrendsConfig().max_glacier_figures


def glacier_figure_count(text: str) -> int | None:
    """argparse type of ``--glacier-figures``: a whole number >= 0 or ``all`` (None)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    defaults = TrendsConfig()
    p = subparsers.add_parser(
        "trends", help="per-glacier and regional relative area change, Table II and figures",
        description="Fit the log-linear trend of every glacier in an areas table and the regional "
                    "averages (the paper's Appendix A, Figures 13, 16, 18 and Table II). "
                    "Rates are fractions per year: -0.01 = -1 % per year. See docs/trends.md.")
    p.add_argument("areas", metavar="AREAS",
                   help="areas table, Parquet or CSV, with glims_id, region, date, area_km2")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--min-obs", type=positive_int, default=defaults.min_obs, metavar="N",
                   help="glaciers with fewer valid observations are flagged and left out of regional "
                        f"estimates (default {defaults.min_obs})")
    p.add_argument("--by", default=defaults.by, metavar="COLUMN",
                   help=f"column the regional statistics group by (default {defaults.by})")
    p.add_argument("--glacier-figures", type=glacier_figure_count, default=DEFAULT_MAX_GLACIER_FIGURES,
                   metavar="N|all", help="draw at most N per-glacier figures, those with the most "
                                         f"observations (default {DEFAULT_MAX_GLACIER_FIGURES}; 0: none)")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    p.add_argument("--annual", metavar="FILE", default=None,
                   help="annual areas table (default: <AREAS stem>.annual.parquet beside AREAS, if present)")
    p.add_argument("--fit-on", choices=("annual", "scenes"), default=defaults.fit_on,
                   help=f"fit the annual areas or every scene (the paper's method); default {defaults.fit_on}")
    p.add_argument("--min-span-years", type=float, default=defaults.min_span_years, metavar="YEARS",
                   help=f"flag glaciers whose record spans fewer years (default {defaults.min_span_years:g}; 0: off)")
    p.add_argument("--min-years", type=int, default=defaults.min_years, metavar="N",
                   help=f"flag glaciers with an area in fewer calendar years (default {defaults.min_years}; 0: off)")
    p.add_argument("--min-r2", type=float, default=defaults.min_r2, metavar="R2",
                   help=f"flag glaciers whose fit has a lower r² (default {defaults.min_r2:g}: off)")
    p.add_argument("--paper-flags", action="store_true",
                   help="the paper's rules only (min-obs): no span, years, r² or poorly-observed flags")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from glacierwatch.trends.core import PAPER_OPTIONS, TrendOptions
    from glacierwatch.trends.stage import write_trends

    defaults = TrendsConfig()
    options = PAPER_OPTIONS if args.paper_flags else TrendOptions.from_config(defaults)
    if not args.paper_flags:
        options = TrendOptions(min_span_years=args.min_span_years, min_years=args.min_years, min_r2=args.min_r2,
                               max_poor_share=options.max_poor_share,
                               min_valid_fraction=options.min_valid_fraction, hac_lag_years=options.hac_lag_years,
                               model_error_in_slope=options.model_error_in_slope, systematic=options.systematic)
    result = write_trends(args.areas, args.out, min_obs=args.min_obs, by=args.by,
                          figures=not args.no_figures, max_glacier_figures=args.glacier_figures,
                          options=options, fit_on=args.fit_on, annual=args.annual)
    print(result.table2_markdown().split("\n\n")[0])
    n_flagged = int(result.glaciers["flagged"].sum())
    for warning in result.warnings:
        if warning.startswith("WARNING"):
            print(warning)
    print(f"\n{len(result.glaciers)} glaciers ({n_flagged} flagged), {result.counts.n_valid} observations; "
          f"outputs in {result.out_dir}")
    return 0
