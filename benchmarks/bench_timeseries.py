"""Benchmark of the time-series stage (scene files -> areas), printed as ratios measured in one run.

Compares, on the same synthetic scenes and the same (randomly initialised: speed does not depend on
the weights) U-Net:

* the stage (``run_timeseries``: threaded reading, reduction at read time, temporal smoothing as
  matrix products, BatchNorm folded into the convolutions, bf16 weights, channels-last, near-equal
  batches shared by both passes) against a naive implementation of the seed's literal procedure (one
  file at a time: read, resize, then one model call per image, fp32) -> ``speedup_vs_naive`` (the
  default stage: two model passes per scene, for ``area_km2`` and ``area_km2_unsmoothed``) and
  ``speedup_vs_naive_single_pass`` (``unsmoothed = False``: one pass, the work the naive loop does);
* the stage against the model alone (prepared as the stage prepares it) on the same number of input
  tensors -> ``end_to_end_vs_model_only`` (model time / stage time: the share of the stage spent in the model);
* a Dask LocalCluster with 2 workers against 1 worker -> ``dask_2_vs_1_workers`` (time ratio);
* a projection of the seed's run (505,835 scenes) on this machine, from the measured scenes/s.

Each timing is repeated ``--repeat`` times (the machine may be shared); ratios use the fastest run of
each, and ``times_s`` in the JSON lists every run so the spread can be judged.

Usage: python benchmarks/bench_timeseries.py [--glaciers 2] [--scenes-per-year 6] [--encoder resnet50]
       [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter1d

from glacierwatch.catalog import build_catalog, select
from glacierwatch.chips.features import (
    DEFAULT_CHANNELS, Normaliser, compute_channels, fill_nan, physical_bands, resize_stack,
)
from glacierwatch.config import CatalogConfig, InventoryConfig, TimeseriesConfig
from glacierwatch.inventory import read_outlines, select_glaciers, write_inventory
from glacierwatch.io import read_raster, read_scene
from glacierwatch.model import UNet, predict_proba, weights_fingerprint
from glacierwatch.model.predict import prepare_for_inference
from glacierwatch.synth import make_world
from glacierwatch.timeseries import run_timeseries

SEED_SCENES = 505_835


def make_checkpoint(path: Path, encoder: str) -> Path:
    """A randomly initialised U-Net saved with a valid card (speed only)."""
    torch.manual_seed(0)
    model = UNet(encoder=encoder, in_channels=len(DEFAULT_CHANNELS), num_classes=2)
    state = model.state_dict()
    lows = [0.0] * 6 + [250.0, 0.0, -1.0, -1.0]
    highs = [1.0] * 6 + [300.0, 5000.0, 1.0, 1.0]
    card = {
        "format": "glacierwatch-model-card/1", "channels": list(DEFAULT_CHANNELS),
        "normalisation": Normaliser(DEFAULT_CHANNELS, tuple(lows), tuple(highs)).to_dict(),
        "chip_size": 128, "encoder": encoder, "in_channels": len(DEFAULT_CHANNELS), "num_classes": 2,
        "fingerprint": weights_fingerprint(state), "data_fingerprint": "benchmark-random-weights",
        "settings": {}, "metrics": {}, "sensors": ["L5", "L7", "L8", "L9"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "card": card}, path)
    return path


def naive_seed_procedure(scenes: pd.DataFrame, dem_dir: Path, model: torch.nn.Module, card: dict,
                         sigma: float) -> int:
    """The seed's literal loop: per glacier, read each file, resize it, stack, smooth, then call the
    model once per image (fp32), resize each mask back and count pixels."""
    normaliser = Normaliser.from_dict(card["normalisation"])
    n = 0
    for gid, group in scenes.groupby("glims_id"):
        dem, _, _ = read_raster(dem_dir / f"{gid}.tif")
        images, shape = [], None
        for path in group.sort_values("date")["path"]:
            scene = read_scene(path)
            shape = scene.grid.shape
            x = compute_channels(physical_bands(scene), card["channels"], dem=dem.astype(np.float32))
            images.append(resize_stack(fill_nan(x), 128).numpy())
        stack = gaussian_filter1d(np.stack(images), sigma, axis=0, mode="reflect")
        with torch.no_grad():
            for img in stack:
                logits = model(torch.from_numpy(normaliser.apply(img))[None])
                prob = torch.softmax(logits, 1)[:, 1:2]
                full = torch.nn.functional.interpolate(prob, size=shape, mode="bilinear")
                n += int((full > 0.5).sum() >= 0)
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glaciers", type=int, default=2, help="time-series glaciers (default 2)")
    parser.add_argument("--scenes-per-year", type=int, default=6)
    parser.add_argument("--first-year", type=int, default=1994)
    parser.add_argument("--last-year", type=int, default=2023)
    parser.add_argument("--encoder", default="resnet50", help="resnet18, resnet34 or resnet50 (the seed's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timing; the fastest counts (default 3)")
    parser.add_argument("--workdir", help="keep the data here (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench_ts_")
    work = Path(args.workdir or tmp.name)  # type: ignore[union-attr]
    world = make_world(work / "world", n_training=0, n_timeseries=args.glaciers, first_year=args.first_year,
                       last_year=args.last_year, scenes_per_year=args.scenes_per_year, progress=False)
    write_inventory(select_glaciers([read_outlines(world.outlines)], config=InventoryConfig()),
                    work / "inventory.parquet")
    build_catalog(world.scenes_dir, work / "catalog.parquet", inventory=work / "inventory.parquet", progress=False)
    catalog_config = CatalogConfig(min_pixels=1000)  # keep every glacier whatever its box size
    scenes = select(work / "catalog.parquet", "inference", config=catalog_config, inventory=work / "inventory.parquet")
    ckpt = make_checkpoint(work / "model" / "model.pt", args.encoder)
    n_scenes = len(scenes)
    print(f"{n_scenes} scenes of {scenes['glims_id'].nunique()} glaciers pass the inference filter; "
          f"encoder {args.encoder}; torch threads {torch.get_num_threads()}")

    config = TimeseriesConfig(segmenter="unet", batch_size=32)

    def stage(out: str, **overrides) -> float:
        from dataclasses import replace
        shutil.rmtree(work / out, ignore_errors=True)  # a finished output would be skipped (resumable)
        t0 = time.perf_counter()
        run_timeseries(catalog=work / "catalog.parquet", inventory=work / "inventory.parquet",
                       out=work / out / "areas.parquet", model=ckpt, dem_dir=world.dem_dir,
                       config=replace(config, **overrides), catalog_config=catalog_config,
                       glaciers=list(world.timeseries_ids), device=args.device, progress=False)
        return time.perf_counter() - t0

    repeat = max(1, args.repeat)
    times: dict[str, list[float]] = {}

    def timed(label: str, fn) -> float:
        times[label] = [fn() for _ in range(repeat)]
        return min(times[label])

    stage("warmup", sigma=20.0)  # loads the model, warms caches
    t_stage = timed("stage", lambda: stage("stage"))
    t_single = timed("stage_single_pass", lambda: stage("single", unsmoothed=False))
    model_calls = 2 * n_scenes  # smoothed and unsmoothed areas
    print(f"stage:       {t_stage:8.1f} s  {n_scenes / t_stage:7.2f} scenes/s ({model_calls} model inputs)")
    print(f"single pass: {t_single:8.1f} s  {n_scenes / t_single:7.2f} scenes/s ({n_scenes} model inputs)")

    from glacierwatch.model import load_checkpoint
    model, card = load_checkpoint(ckpt)
    prepared = prepare_for_inference(model, device=args.device, bf16=True)  # what the stage's segmenter runs
    x = np.random.default_rng(0).random((model_calls, len(DEFAULT_CHANNELS), 128, 128), dtype=np.float32)

    def model_only() -> float:
        t0 = time.perf_counter()
        predict_proba(prepared, x, batch_size=config.batch_size, device=args.device, bf16=True)
        return time.perf_counter() - t0

    t_model = timed("model_only", model_only)
    print(f"model only:  {t_model:8.1f} s  on the same {model_calls} tensors")

    model_fp32 = UNet(encoder=args.encoder, in_channels=len(DEFAULT_CHANNELS), num_classes=2)
    model_fp32.load_state_dict(model.state_dict())
    model_fp32.eval()

    def naive() -> float:
        t0 = time.perf_counter()
        naive_seed_procedure(scenes, world.dem_dir, model_fp32, card, 20.0)
        return time.perf_counter() - t0

    t_naive = timed("naive", naive)
    print(f"naive seed:  {t_naive:8.1f} s  {n_scenes / t_naive:7.2f} scenes/s (one model call per image, "
          "areas once)")
    # plain ratio of scenes/s; the default stage also computes a second (unsmoothed) area per scene
    speedup = t_naive / t_stage
    result = {
        "n_scenes": n_scenes, "encoder": args.encoder,
        "stage_scenes_per_s": n_scenes / t_stage,
        "stage_single_pass_scenes_per_s": n_scenes / t_single,
        "naive_scenes_per_s": n_scenes / t_naive,
        "speedup_vs_naive": speedup,
        "speedup_per_area_computed": 2 * speedup,
        "speedup_vs_naive_single_pass": t_naive / t_single,
        "end_to_end_vs_model_only": t_model / t_stage,
    }
    if not args.skip_dask:
        t1 = timed("dask1", lambda: stage("dask1", scheduler="processes", workers=1))
        t2 = timed("dask2", lambda: stage("dask2", scheduler="processes", workers=2))
        result["dask_2_vs_1_workers"] = t1 / t2
        print(f"dask:        1 worker {t1:.1f} s, 2 workers {t2:.1f} s")
    result["projected_seed_run_hours_this_machine"] = SEED_SCENES / result["stage_scenes_per_s"] / 3600
    result["projected_seed_run_hours_this_machine_single_pass"] = (
        SEED_SCENES / result["stage_single_pass_scenes_per_s"] / 3600)
    result["repeat"] = repeat
    result["times_s"] = {k: [round(v, 3) for v in vals] for k, vals in times.items()}
    print(f"\nspeedup vs the naive seed loop (scenes/s):          {speedup:.2f}x "
          f"({2 * speedup:.2f}x per area computed)")
    print(f"  with the second (unsmoothed) pass off:            {result['speedup_vs_naive_single_pass']:.2f}x")
    print(f"share of stage time in the model:                   {result['end_to_end_vs_model_only']:.2f}")
    if "dask_2_vs_1_workers" in result:
        print(f"Dask LocalCluster, 2 workers vs 1:                  {result['dask_2_vs_1_workers']:.2f}x")
    print(f"projected seed run (505,835 scenes) on this machine: "
          f"{result['projected_seed_run_hours_this_machine']:.1f} h "
          f"({result['projected_seed_run_hours_this_machine_single_pass']:.1f} h single pass; "
          f"{os.cpu_count()} cores)")
    print("all runs (s): " + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vals)}" for k, vals in times.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
