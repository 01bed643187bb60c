"""``glacierwatch timeseries run``: areas of each glacier on every selected scene."""

from __future__ import annotations

import argparse
import dataclasses

from glacierwatch.config import CatalogConfig, Config, TimeseriesConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("timeseries", help="per-glacier area time series")
    sub = parser.add_subparsers(dest="timeseries_command", metavar="ACTION", required=True)
    d = TimeseriesConfig()
    run = sub.add_parser("run", help="areas of each glacier on every scene passing the inference filter")
    run.add_argument("--catalog", required=True, help="catalog.parquet")
    run.add_argument("--inventory", required=True, help="inventory.parquet")
    run.add_argument("--model", help="model checkpoint (model.pt) for --segmenter unet")
    run.add_argument("--out", required=True, help="areas.parquet (per-glacier parts go beside it)")
    run.add_argument("--dem-dir", help="folder of DEMs on the glacier grids, <GLIMS_ID>.tif")
    run.add_argument("--glaciers", nargs="+", metavar="GLIMS_ID", help="default: the inference-glaciers selection")
    run.add_argument("--config", help="TOML configuration; its [timeseries] and [catalog] tables are used")
    run.add_argument("--segmenter", choices=["unet", "ndsi"], help=f"default {d.segmenter}")
    run.add_argument("--smoothing", choices=["masked", "seed", "none"], help=f"default {d.smoothing}")
    run.add_argument("--sigma", type=float, help=f"Gaussian sigma over time, images (default {d.sigma:g})")
    run.add_argument("--buffer-m", help=f"count pixels within this distance of the outline, m, or 'none' (default {d.buffer_m:g})")
    run.add_argument("--scheduler", help="local, processes or tcp://HOST:PORT (Dask)")
    run.add_argument("--workers", type=int, help="Dask workers for --scheduler processes")
    run.add_argument("--device", default="cpu", help="cpu or cuda")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from glacierwatch.timeseries.run import run_timeseries

    cfg = Config.from_toml(args.config) if args.config else Config()
    overrides = {k: v for k, v in {
        "segmenter": args.segmenter, "smoothing": args.smoothing, "sigma": args.sigma,
        "scheduler": args.scheduler, "workers": args.workers,
    }.items() if v is not None}
    if args.buffer_m is not None:
        overrides["buffer_m"] = None if args.buffer_m.lower() == "none" else float(args.buffer_m)
    ts_config = dataclasses.replace(cfg.timeseries, **overrides)
    catalog_config: CatalogConfig = cfg.catalog
    result = run_timeseries(catalog=args.catalog, inventory=args.inventory, out=args.out, model=args.model,
                            dem_dir=args.dem_dir, glaciers=args.glaciers, config=ts_config,
                            catalog_config=catalog_config, device=args.device)
    print(result.report.summary())
    print(f"areas: {result.outputs.areas} ({len(result.areas)} rows)")
    if result.report.failed:
        print(f"failures: {result.outputs.ledger}")
        return 1
    return 0
