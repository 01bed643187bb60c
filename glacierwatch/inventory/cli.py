"""``glacierwatch inventory select`` and ``glacierwatch inventory regions``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from glacierwatch.config import Config, InventoryConfig
from glacierwatch.errors import InputError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("inventory", help="select glaciers from GLIMS / RGI / national outlines")
    sub = parser.add_subparsers(dest="inventory_command", metavar="ACTION", required=True)
    d = InventoryConfig()
    sel = sub.add_parser(
        "select", help="one outline per glacier, the seed's filters, the per-glacier grid",
        description="Read outline files (GLIMS download glims_polygons.shp, RGI 5/6/7, or any polygon file "
                    "with --column-map), choose one outline per glacier (the latest on or after --after), "
                    "filter by region and area, sample per region, and write inventory.parquet, "
                    "inventory_validation.parquet (the other dated outlines) and inventory_report.json.")
    sel.add_argument("outlines", nargs="*", metavar="OUTLINES",
                     help="outline files or GLIMS download folders (default: [inventory] outlines of --config)")
    sel.add_argument("--out", required=True, help="inventory.parquet (validation and report are written beside it)")
    sel.add_argument("--config", help="TOML configuration; its [inventory] table gives the defaults")
    sel.add_argument("--after", help=f"keep outlines dated on or after this day (default {d.after})")
    sel.add_argument("--date-field", choices=["src_date", "anlys_time"],
                     help=f"date the filter and the rule use (default {d.date_field}: the source image date)")
    sel.add_argument("--min-area", type=float, help=f"smallest glacier, km² (default {d.min_area_km2:g})")
    sel.add_argument("--max-area", type=float, help=f"largest glacier, km² (default {d.max_area_km2:g})")
    sel.add_argument("--exclude-regions", nargs="+", metavar="REGION",
                     help="regions to leave out besides the region table's polar ones (e.g. Unknown)")
    sel.add_argument("--per-region", type=int, help="at most N glaciers per region, area-weighted sample (default: all)")
    sel.add_argument("--seed", type=int, help=f"random seed of the sample (default {d.seed})")
    sel.add_argument("--regions", metavar="FILE",
                     help="region table CSV replacing the default (see 'glacierwatch inventory regions')")
    sel.add_argument("--column-map", nargs="+", metavar="KEY=COLUMN",
                     help="for files that are neither GLIMS nor RGI: KEY=COLUMN pairs (KEY=\"=constant\" for a "
                          "constant) or one TOML/JSON file; keys: glims_id, source_id, name, geog_area, src_date, "
                          "anlys_time, inventory_area_km2, inventory_area_m2, o1region, o2region, anlys_id, line_type")
    sel.add_argument("--layer", help="layer to read from multi-layer files (default: glims_polygons or the only polygon layer)")
    sel.set_defaults(func=_select)

    reg = sub.add_parser("regions", help="print (or write) the default region table to edit for --regions")
    reg.add_argument("--out", help="write the table to this CSV file instead of printing it")
    reg.set_defaults(func=_regions)


def _config(args: argparse.Namespace) -> InventoryConfig:
    cfg = Config.from_toml(args.config).inventory if args.config else InventoryConfig()
    overrides = {k: v for k, v in {
        "after": args.after, "date_field": args.date_field, "min_area_km2": args.min_area,
        "max_area_km2": args.max_area, "exclude_regions": args.exclude_regions,
        "per_region": args.per_region, "seed": args.seed,
    }.items() if v is not None}
    if args.outlines:
        overrides["outlines"] = [str(Path(p)) for p in args.outlines]
    return dataclasses.replace(cfg, **overrides)


def _select(args: argparse.Namespace) -> int:
    from glacierwatch.inventory.read import parse_column_map, read_outlines
    from glacierwatch.inventory.select import select_glaciers, write_inventory

    config = _config(args)
    if not config.outlines:
        raise InputError("no outline files: give OUTLINES or [inventory] outlines in --config")
    column_map = parse_column_map(args.column_map) if args.column_map else None
    frames = []
    for path in config.outlines:
        log.info("reading %s", path)
        frames.append(read_outlines(path, column_map=column_map, layer=args.layer))
    selection = select_glaciers(frames, config=config, regions=args.regions)
    if selection.inventory.empty:
        # an empty inventory would only fail later, in imagery or catalog: stop here, saying why
        print(selection.report.format_text())
        raise InputError(f"no glacier passed the selection (the steps above say where they were dropped); "
                         f"{args.out} not written")
    paths = write_inventory(selection, args.out)
    print(selection.report.format_text())
    print(f"inventory: {paths['inventory']} ({len(selection.inventory)} glaciers)")
    print(f"validation outlines: {paths['validation']} ({len(selection.validation)} outlines)")
    print(f"report: {paths['report']}")
    return 0


def _regions(args: argparse.Namespace) -> int:
    from glacierwatch.inventory.regions import default_region_table_text

    text = default_region_table_text()
    if args.out:
        from glacierwatch.io import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        print(f"region table written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0
