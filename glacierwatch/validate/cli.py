"""``glacierwatch validate AREAS --reference FILE... --out DIR``."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "validate", help="compare an areas table with dated reference areas (GLIMS, SGI, WGMS)",
        description="Match dated reference areas to the glaciers of an areas table (ours, or any table "
                    "with glims_id, date, area_km2, or the seed authors' wide CSV) and compare them. "
                    "Writes validation.csv/.parquet and validation_summary.csv. See docs/validation.md.")
    p.add_argument("areas", metavar="AREAS", help="areas table (per-scene or annual), Parquet or CSV")
    p.add_argument("--reference", required=True, nargs="+", action="extend", metavar="FILE",
                   help="reference file(s): inventory_validation.parquet, SGI_2010.shp, "
                        "sgi_area_by_inventory.csv, WGMS state.csv (+ its link table), or a "
                        "glims_id,date,area_km2 table")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--inventory", metavar="FILE", help="inventory.parquet: glacier centroids and names "
                                                       "(default: location from the GLIMS id)")
    p.add_argument("--window-days", type=float, default=60.0, metavar="DAYS",
                   help="our areas within this many days of a reference date count (default 60; "
                        "at least the reference's own date uncertainty)")
    p.add_argument("--max-match-distance", type=float, default=500.0, metavar="M",
                   help="largest distance, m, of a location match to an SGI outline (default 500)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from glacierwatch.validate.core import write_validation

    result = write_validation(args.areas, args.reference, args.out, window_days=args.window_days,
                              max_match_distance_m=args.max_match_distance, inventory=args.inventory)
    cols = ["source", "n_reference_rows", "n_compared", "n_glaciers", "median_ratio",
            "median_abs_error_km2", "coverage"]
    print(result.summary[cols].to_string(index=False))
    print(f"\n{len(result.validation)} matched reference rows; outputs in {args.out}")
    return 0
