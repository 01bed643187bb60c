"""``glacierwatch chips build`` and ``glacierwatch chips import``."""

from __future__ import annotations

import argparse
import dataclasses

from glacierwatch.config import ChipsConfig, Config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("chips", help="training chips (composites, masks, channels, split)")
    sub = parser.add_subparsers(dest="chips_command", metavar="ACTION", required=True)
    d = ChipsConfig()

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", required=True, help="chip-set folder to write")
        p.add_argument("--config", help="TOML configuration; its [chips] (and [catalog]) tables are used")
        p.add_argument("--size", type=int, help=f"chip size, pixels (default {d.size})")
        p.add_argument("--channels", help=f"comma-separated channel names in order (default {','.join(d.channels)})")
        p.add_argument("--seed", type=int, help=f"split seed (default {d.seed})")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    b = sub.add_parser("build", help="chips from scene files: QA-masked mean composites, dated or outline masks, split")
    b.add_argument("--catalog", required=True, help="catalog.parquet (its training selection is used)")
    b.add_argument("--inventory", required=True, help="inventory.parquet (outlines, regions, grids)")
    b.add_argument("--dem-dir", help="folder of DEMs on the glacier grids, <GLIMS_ID>.tif (needed for channel dem)")
    b.add_argument("--masks", choices=["dated", "outline"],
                   help=f"dated: one chip per dated mask (true masks with --truth-dir, else dated outlines); "
                        f"outline: the seed's one chip per glacier (default {d.masks})")
    b.add_argument("--truth-dir", help="synthetic world folder whose true masks dated chips use (truth.csv, truth/)")
    common(b)
    b.set_defaults(func=_build)

    i = sub.add_parser("import", help="the seed's training pairs: FOLDER/images/<ID>.tif + FOLDER/masks/<ID>.tif")
    i.add_argument("folders", nargs="+", help="folder(s) holding images/ and masks/")
    i.add_argument("--band-map", default="blue=1,green=2,red=3,nir08=4,swir16=5,swir22=6",
                   help="file band (1-based) of each band name (default: the seed's Norway chips)")
    i.add_argument("--scale", choices=["sr-dn", "physical"], default="sr-dn",
                   help="values are C2 L2 digital numbers (default) or already reflectance/K/m")
    i.add_argument("--region", action="append", help="region of the chips (one for all, or one per folder)")
    i.add_argument("--inventory", help="optional inventory (glims_id, region) giving each glacier's region")
    common(i)
    i.set_defaults(func=_import)


def _config(args: argparse.Namespace) -> tuple[ChipsConfig, Config]:
    cfg = Config.from_toml(args.config) if args.config else Config()
    over = {}
    if args.size is not None:
        over["size"] = args.size
    if args.channels:
        over["channels"] = [c.strip() for c in args.channels.split(",") if c.strip()]
    if args.seed is not None:
        over["seed"] = args.seed
    if getattr(args, "masks", None):
        over["masks"] = args.masks
    if getattr(args, "truth_dir", None):
        over["truth_dir"] = args.truth_dir
    return dataclasses.replace(cfg.chips, **over), cfg


def _build(args: argparse.Namespace) -> int:
    from glacierwatch.chips import build_chips_from_catalog

    chips, cfg = _config(args)
    info = build_chips_from_catalog(args.catalog, args.inventory, dem_dir=args.dem_dir, out_dir=args.out,
                                    config=chips, catalog_config=cfg.catalog, progress=not args.no_progress)
    print(info.summary())
    return 0


def _import(args: argparse.Namespace) -> int:
    from glacierwatch.chips import import_chips
    from glacierwatch.io import read_table

    chips, _ = _config(args)
    regions = args.region or ["unknown"]
    region = regions[0] if len(regions) == 1 else regions
    inventory = read_table(args.inventory) if args.inventory else None
    info = import_chips(args.folders, out_dir=args.out, band_map=args.band_map, scale=args.scale, region=region,
                        inventory=inventory, config=chips, progress=not args.no_progress)
    print(info.summary())
    return 0
