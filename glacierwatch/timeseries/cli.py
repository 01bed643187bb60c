"""``glacierwatch timeseries run``: areas of each glacier on every selected scene;
``glacierwatch timeseries overlay``: a scene with the predicted glacier probability over it (Figure 17)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from glacierwatch.config import CatalogConfig, Config, TimeseriesConfig
from glacierwatch.layout import TimeseriesOutputs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    run.add_argument("--smoothing", choices=["time", "masked", "seed", "none"], help=f"default {d.smoothing}")
    run.add_argument("--sigma", type=float, help=f"smoothing masked/seed: Gaussian sigma, images (default {d.sigma:g})")
    run.add_argument("--sigma-days", type=float,
                     help=f"smoothing time: Gaussian sigma, days (default {d.sigma_days:g})")
    run.add_argument("--season", choices=["end_of_ablation", "seed", "all"],
                     help=f"scenes counted in the annual areas (default {d.season})")
    run.add_argument("--buffer-m", help=f"count pixels within this distance of the outline, m, or 'none' (default {d.buffer_m:g})")
    run.add_argument("--scheduler", help="local, processes or tcp://HOST:PORT (Dask)")
    run.add_argument("--workers", type=int, help="Dask workers for --scheduler processes")
    run.add_argument("--unsmoothed", dest="unsmoothed", action="store_true", default=None,
                     help="with smoothing on, also compute area_km2_unsmoothed: a second model pass per scene")
    run.add_argument("--no-unsmoothed", dest="unsmoothed", action="store_false", default=None,
                     help="skip area_km2_unsmoothed (left NaN; the default): one model pass per scene")
    run.add_argument("--max-stack-mb", type=float,
                     help=f"larger per-glacier stacks go to a temporary file, MB (default {d.max_stack_mb:g})")
    run.add_argument("--device", default="cpu", help="cpu or cuda")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    overlay = sub.add_parser("overlay", help="true-colour scenes of a glacier with its predicted probability "
                                             "and outline (Figure 17)")
    overlay.add_argument("glims_id", metavar="GLIMS_ID", help="glacier id, e.g. G007026E45991N")
    overlay.add_argument("dates", nargs="+", metavar="DATE", help="scene dates (YYYY-MM-DD) in the areas table")
    overlay.add_argument("--areas", required=True, help="areas.parquet of a 'timeseries run' (its .scenes.parquet "
                                                         "beside it lists the scenes used)")
    overlay.add_argument("--inventory", required=True, help="inventory.parquet")
    overlay.add_argument("--model", help="the run's model checkpoint (model.pt), for areas from the unet")
    overlay.add_argument("--dem-dir", help="the run's DEM folder, <GLIMS_ID>.tif")
    overlay.add_argument("--out", help="folder for the PNGs (default: 'overlays' beside the areas file)")
    overlay.add_argument("--config", help="TOML configuration; [timeseries] threshold and batch_size are used")
    overlay.add_argument("--device", default="cpu", help="cpu or cuda")
    overlay.set_defaults(func=_overlay)


def _run(args: argparse.Namespace) -> int:
    from glacierwatch.timeseries.run import run_timeseries

    cfg = Config.from_toml(args.config) if args.config else Config()
    overrides = {k: v for k, v in {
        "segmenter": args.segmenter, "smoothing": args.smoothing, "sigma": args.sigma,
        "sigma_days": args.sigma_days, "season": args.season,
        "scheduler": args.scheduler, "workers": args.workers, "unsmoothed": args.unsmoothed,
        "max_stack_mb": args.max_stack_mb,
    }.items() if v is not None}
    if args.buffer_m is not None:
        overrides["buffer_m"] = None if args.buffer_m.lower() == "none" else float(args.buffer_m)
    ts_config = dataclasses.replace(cfg.timeseries, **overrides)
    catalog_config: CatalogConfig = cfg.catalog
    result = run_timeseries(catalog=args.catalog, inventory=args.inventory, out=args.out, model=args.model,
                            dem_dir=args.dem_dir, glaciers=args.glaciers, config=ts_config,
                            catalog_config=catalog_config, device=args.device,
                            progress=not args.no_progress)
    print(result.report.summary())
    print(f"areas: {result.outputs.areas} ({len(result.areas)} rows)")
    if result.report.failed:
        print(f"failures: {result.outputs.ledger}")
        return 1
    return 0


def _overlay(args: argparse.Namespace) -> int:
    from glacierwatch.timeseries.overlay import overlay_figures

    cfg = Config.from_toml(args.config) if args.config else Config()
    out_dir = Path(args.out) if args.out else TimeseriesOutputs.for_path(args.areas).overlays
    paths = overlay_figures(args.glims_id, args.dates, areas_path=args.areas, inventory_path=args.inventory,
                            model=args.model, dem_dir=args.dem_dir, out_dir=out_dir, config=cfg.timeseries,
                            device=args.device)
    for path in paths:
        print(path)
    return 0
