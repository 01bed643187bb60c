"""Benchmark of the time-series stage (scene files -> areas), printed as ratios measured in one run.

Compares, on the same synthetic scenes and the same (randomly initialised: speed does not depend on
the weights) U-Net:

* the stage (``run_timeseries``: threaded reading, reduction at read time, temporal smoothing as
  matrix products, BatchNorm folded into the convolutions, bf16 weights, channels-last, near-equal
  batches) against a naive implementation of the seed's literal procedure (one file at a time: read,
  resize, then one model call per image, fp32) -> ``speedup_vs_naive``: the stage with one model pass
  per scene (``unsmoothed = false``, the default to be); ``--two-pass`` also times the stage with the
  second (unsmoothed) pass -> ``speedup_vs_naive_two_pass``;
* ``--sequential``: the stage without overlapping reading, model and counting (``glacier_areas(...,
  overlap=False)``) -> ``overlap_speedup`` (time ratio) and ``end_to_end_vs_model_only_sequential``;
* the stage against the model alone (prepared as the stage prepares it) on the same number of input
  tensors -> ``end_to_end_vs_model_only`` (model time / stage time: the share of the stage spent in the model);
  the naive loop against the model alone -> ``speedup_vs_naive_ceiling``, what ``speedup_vs_naive`` would be
  if the stage spent no time outside the model (on a CPU where one image at a time runs at half the
  batched speed or better, a 2x speed-up over the naive loop with the same model is out of reach);
* ``--defaults-stage`` (on by default): the stage with the library's default decoder (``light``,
  docs/model.md) on the same encoder, against the naive loop with ``--decoder`` (the seed's) ->
  ``speedup_defaults_vs_naive_seed``: what a user running glacierwatch's defaults gains over the seed's
  procedure with the seed's network;
* the stage, the model alone, the naive loop and the default-decoder stage are timed in interleaved rounds;
* a Dask LocalCluster with 2 workers against 1 worker -> ``dask_2_vs_1_workers`` (time ratio);
* scaling (``--scaling 50,200,800``, ``--scaling-2000`` adds 2,000): one glacier's time and peak memory
  against its number of scenes (its scene files cycled to N dated scenes), with ``max_stack_mb`` =
  ``--scaling-max-stack-mb`` -> ``scaling`` rows (seconds, seconds per scene, peak traced numpy/Python
  memory and peak RSS growth, MB) and ``scaling_time_per_scene_ratio_max_vs_min`` (1 = linear);
* projections of the seed's run (505,835 scenes): this machine, from the measured scenes/s; a
  ``--cores``-core machine with one GPU, and ``--cluster-machines`` of them on Dask, from the measured
  CPU seconds per scene outside the model, ``--gpu-img-s`` and ``--disk-mb-s`` (stated in the JSON);
* ``--profile FILE``: cProfile of one end-to-end stage run, top lines printed and written to FILE.

Each timing is repeated ``--repeat`` times (the machine may be shared); ratios use the fastest run of
each, and ``times_s`` in the JSON lists every run so the spread can be judged.

Usage: python benchmarks/bench_timeseries.py [--glaciers 2] [--scenes-per-year 6] [--encoder resnet50]
       [--decoder seed] [--device cpu] [--repeat 3] [--scaling 50,200,800] [--profile FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter1d

from glacierwatch.catalog import build_catalog, select
from glacierwatch.config import CatalogConfig, InventoryConfig, TimeseriesConfig, TrainConfig
from glacierwatch.features import DEFAULT_CHANNELS, Normaliser, compute_channels, fill_nan, physical_bands, resize_stack
from glacierwatch.inventory import read_outlines, select_glaciers, write_inventory
from glacierwatch.io import read_raster, read_scene
from glacierwatch.model import UNet, predict_proba, weights_fingerprint
from glacierwatch.model.predict import prepare_for_inference
from glacierwatch.synth import make_world
from glacierwatch.timeseries import run_timeseries
from glacierwatch.timeseries.areas import glacier_areas
from glacierwatch.timeseries.segmenters import SegmenterSpec, make_segmenter

SEED_SCENES = 505_835


def make_checkpoint(path: Path, encoder: str, decoder: str = "seed") -> Path:
    """A randomly initialised U-Net saved with a valid card (speed only)."""
    torch.manual_seed(0)
    model = UNet(encoder=encoder, in_channels=len(DEFAULT_CHANNELS), num_classes=2, decoder=decoder)
    state = model.state_dict()
    lows = [0.0] * 6 + [250.0, 0.0, -1.0, -1.0]
    highs = [1.0] * 6 + [300.0, 5000.0, 1.0, 1.0]
    card = {
        "format": "glacierwatch-model-card/1", "channels": list(DEFAULT_CHANNELS),
        "normalisation": Normaliser(DEFAULT_CHANNELS, tuple(lows), tuple(highs)).to_dict(),
        "chip_size": 128, "encoder": encoder, "decoder": decoder, "in_channels": len(DEFAULT_CHANNELS), "num_classes": 2,
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


class PeakRSS:
    """Peak resident memory growth (bytes) of this process while the block runs, sampled every 10 ms."""

    def __enter__(self) -> PeakRSS:
        import psutil

        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def scaling_case(scenes: pd.DataFrame, geometry, region: str, dem_path: str, segmenter, config: TimeseriesConfig,
                 n: int, scratch: Path) -> dict[str, float]:
    """One glacier with ``n`` scenes (its files cycled, dated one a week apart): seconds and peak memory."""
    base = scenes.sort_values("date").reset_index(drop=True)
    reps = base.iloc[np.arange(n) % len(base)].reset_index(drop=True).copy()
    reps["date"] = pd.Timestamp("1984-06-01") + pd.to_timedelta(7 * np.arange(n), unit="D")
    gid = str(base["glims_id"].iloc[0])
    tracemalloc.start()
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        out = glacier_areas(gid, reps, geometry=geometry, region_name=region, grid=None, dem_path=dem_path,
                            segmenter=segmenter, config=config, scratch_dir=scratch)
        secs = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(out) == n
    return {"scenes": n, "seconds": secs, "seconds_per_scene": secs / n, "peak_traced_mb": traced_peak / 2**20,
            "peak_rss_growth_mb": rss.growth_mb, "stack_mb": n * 524_288 / 2**20}


def projections(*, n_scenes: int, t_stage: float, t_model: float, bytes_per_scene: float, cores_here: int,
                cores: int, gpu_img_s: float, disk_mb_s: float, machines: list[int],
                startup_s: float = 120.0) -> dict[str, object]:
    """Seed-scale hours from measured figures and stated assumptions (see the module docstring)."""
    cpu_s_per_scene = max(t_stage - t_model, 0.0) / n_scenes * cores_here  # core-seconds outside the model
    cpu_h = SEED_SCENES * cpu_s_per_scene / cores / 3600
    gpu_h = SEED_SCENES / gpu_img_s / 3600
    disk_h = SEED_SCENES * bytes_per_scene / (disk_mb_s * 1e6) / 3600
    overlapped = max(cpu_h, gpu_h, disk_h)
    return {
        "assumptions": {
            "scenes": SEED_SCENES, "bytes_per_scene": bytes_per_scene, "disk_mb_s": disk_mb_s, "gpu_img_s": gpu_img_s,
            "cores": cores, "cpu_core_seconds_per_scene_outside_model": cpu_s_per_scene,
            "core_speed": "as this machine's cores (measured here, shared machine: pessimistic)",
            "overlap": "reading/resizing, the GPU and the disk overlapped (lower bound: the slowest of the three); "
                       "not overlapped: their sum",
            "cluster": f"glaciers are independent tasks; each machine pays {startup_s:.0f} s start-up "
                       "(environment, model load); no shared-disk limit assumed",
        },
        "one_gpu_machine_hours_overlapped": overlapped,
        "one_gpu_machine_hours_not_overlapped": cpu_h + gpu_h + disk_h,
        "one_gpu_machine_limited_by": {cpu_h: "cpu", gpu_h: "gpu", disk_h: "disk"}[overlapped],
        "one_gpu_machine_parts_hours": {"cpu": cpu_h, "gpu": gpu_h, "disk": disk_h},
        "dask_cluster_hours_overlapped": {str(m): overlapped / m + startup_s / 3600 for m in machines},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glaciers", type=int, default=2, help="time-series glaciers (default 2)")
    parser.add_argument("--scenes-per-year", type=int, default=6)
    parser.add_argument("--first-year", type=int, default=1994)
    parser.add_argument("--last-year", type=int, default=2023)
    parser.add_argument("--encoder", default="resnet50", help="resnet18, resnet34 or resnet50 (the seed's)")
    parser.add_argument("--decoder", default="seed", help="seed or light (docs/model.md)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call (default 32; 256 on a GPU)")
    parser.add_argument("--read-threads", type=int, default=2,
                        help="scene files of a glacier read at once ([timeseries] read_threads; more on a GPU machine)")
    parser.add_argument("--two-pass", action="store_true", help="also time the stage with the unsmoothed second pass")
    parser.add_argument("--skip-naive", action="store_true", help="do not time the naive seed loop")
    parser.add_argument("--sequential", action="store_true",
                        help="also time the stage without overlap (reading, model and counting in turn)")
    parser.add_argument("--scaling", default="50,200,800", help="scene counts of the scaling case ('' = none)")
    parser.add_argument("--scaling-2000", action="store_true", help="add 2,000 scenes to the scaling case")
    parser.add_argument("--scaling-max-stack-mb", type=float, default=64.0,
                        help="max_stack_mb in the scaling case (default 64: the 200- and 800-scene stacks go to disk)")
    parser.add_argument("--profile", metavar="FILE", help="cProfile one stage run; top lines to FILE and stdout")
    parser.add_argument("--gpu-img-s", type=float, default=2000.0,
                        help="projection: GPU images/s of the model (assumed; measure with bench_model.py --device cuda)")
    parser.add_argument("--disk-mb-s", type=float, default=200.0, help="projection: disk/network MB/s (assumed)")
    parser.add_argument("--cores", type=int, default=16, help="projection: CPU cores of the GPU machine")
    parser.add_argument("--cluster-machines", default="1,4,16", help="projection: Dask cluster sizes")
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--defaults-stage", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the stage with the library's default decoder (light) on the same encoder, "
                             "against the naive loop with --decoder (default on)")
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
    ckpt = make_checkpoint(work / "model" / "model.pt", args.encoder, args.decoder)
    n_scenes = len(scenes)
    print(f"{n_scenes} scenes of {scenes['glims_id'].nunique()} glaciers pass the inference filter; "
          f"encoder {args.encoder}, decoder {args.decoder}; torch threads {torch.get_num_threads()}")

    # one model pass per scene (unsmoothed = false): the default case
    config = TimeseriesConfig(segmenter="unet", batch_size=args.batch_size, unsmoothed=False,
                              read_threads=args.read_threads)

    def stage(out: str, model_path: Path = ckpt, **overrides) -> float:
        from dataclasses import replace
        shutil.rmtree(work / out, ignore_errors=True)  # a finished output would be skipped (resumable)
        t0 = time.perf_counter()
        run_timeseries(catalog=work / "catalog.parquet", inventory=work / "inventory.parquet",
                       out=work / out / "areas.parquet", model=model_path, dem_dir=world.dem_dir,
                       config=replace(config, **overrides), catalog_config=catalog_config,
                       glaciers=list(world.timeseries_ids), device=args.device, progress=False)
        return time.perf_counter() - t0

    repeat = max(1, args.repeat)
    times: dict[str, list[float]] = {}

    def timed(label: str, fn) -> float:
        times[label] = [fn() for _ in range(repeat)]
        return min(times[label])

    stage("warmup", sigma=20.0)  # loads the model, warms caches

    from glacierwatch.model import load_checkpoint
    model, card = load_checkpoint(ckpt)
    prepared = prepare_for_inference(model, device=args.device, bf16=True)  # what the stage's segmenter runs
    model_calls = n_scenes  # one pass per scene
    # the stage's segmenter: what its model calls see (channels computed from bands, normalised)
    x = np.random.default_rng(0).random((model_calls, len(DEFAULT_CHANNELS), 128, 128), dtype=np.float32)

    def model_only() -> float:
        t0 = time.perf_counter()
        predict_proba(prepared, x, batch_size=config.batch_size, device=args.device, bf16=True)
        return time.perf_counter() - t0

    model_fp32 = UNet(encoder=args.encoder, in_channels=len(DEFAULT_CHANNELS), num_classes=2, decoder=args.decoder)
    model_fp32.load_state_dict(model.state_dict())
    model_fp32.eval()

    def naive() -> float:
        t0 = time.perf_counter()
        naive_seed_procedure(scenes, world.dem_dir, model_fp32, card, 20.0)
        return time.perf_counter() - t0

    # the main timings in interleaved rounds (stage, model, naive, ...), so that a change in the load of a
    # shared machine during the run falls on all of them alike
    rounds: dict[str, object] = {"stage": lambda: stage("stage"), "model_only": model_only}
    if not args.skip_naive:
        rounds["naive"] = naive
    default_decoder = TrainConfig().decoder
    ckpt_default = None
    if args.defaults_stage and default_decoder != args.decoder:
        ckpt_default = make_checkpoint(work / "model_default" / "model.pt", args.encoder, default_decoder)

        def stage_default() -> float:
            return stage("stage_default", model_path=ckpt_default)

        stage_default()  # warm-up: loads that model
        rounds["stage_default_decoder"] = stage_default
    for label in rounds:
        times[label] = []
    for _ in range(repeat):
        for label, fn in rounds.items():
            times[label].append(fn())  # type: ignore[operator]
    best = {label: min(vals) for label, vals in times.items()}
    t_stage, t_model = best["stage"], best["model_only"]
    print(f"stage:       {t_stage:8.1f} s  {n_scenes / t_stage:7.2f} scenes/s ({model_calls} model inputs)")
    print(f"model only:  {t_model:8.1f} s  on the same {model_calls} tensors")

    t_sequential = None
    if args.sequential:
        import functools

        import glacierwatch.timeseries.run as run_module

        overlapped, opening = run_module.glacier_areas, run_module._open_glacier
        # the stage has no switch for it (overlap=False and background=False exist for comparisons like this)
        run_module.glacier_areas = functools.partial(overlapped, overlap=False)
        run_module._open_glacier = functools.partial(opening, background=False)
        try:
            t_sequential = timed("stage_sequential", lambda: stage("sequential", read_ahead=False))
        finally:
            run_module.glacier_areas, run_module._open_glacier = overlapped, opening
        print(f"sequential:  {t_sequential:8.1f} s  {n_scenes / t_sequential:7.2f} scenes/s (no overlap)")
    t_two = None
    if args.two_pass:
        t_two = timed("stage_two_pass", lambda: stage("two", unsmoothed=True))
        print(f"two passes:  {t_two:8.1f} s  {n_scenes / t_two:7.2f} scenes/s ({2 * n_scenes} model inputs)")
    profile_lines: list[str] = []
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        stage("profile")
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
        buf.write("\n--- by cumulative time ---\n")
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(25)
        Path(args.profile).write_text(buf.getvalue())
        profile_lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()][:60]
        print("\n".join(profile_lines))

    result: dict[str, object] = {
        "n_scenes": n_scenes, "encoder": args.encoder, "decoder": args.decoder, "device": args.device,
        "batch_size": args.batch_size, "unsmoothed": False,
        "stage_scenes_per_s": n_scenes / t_stage,
        "model_only_img_s": model_calls / t_model,
        "end_to_end_vs_model_only": t_model / t_stage,
    }
    if t_two is not None:
        result["stage_two_pass_scenes_per_s"] = n_scenes / t_two
    if t_sequential is not None:
        result["stage_sequential_scenes_per_s"] = n_scenes / t_sequential
        result["overlap_speedup"] = t_sequential / t_stage
        result["end_to_end_vs_model_only_sequential"] = t_model / t_sequential
    speedup = float("nan")
    if not args.skip_naive:
        t_naive = best["naive"]
        print(f"naive seed:  {t_naive:8.1f} s  {n_scenes / t_naive:7.2f} scenes/s (one model call per image, "
              "areas once)")
        speedup = t_naive / t_stage
        result["naive_scenes_per_s"] = n_scenes / t_naive
        result["speedup_vs_naive"] = speedup
        result["speedup_vs_naive_single_pass"] = speedup  # the same case (kept for older readers)
        # what speedup_vs_naive would be if the stage spent no time outside the model: the naive loop's
        # own model calls (one image each, fp32, BatchNorm unfolded) against the stage's batched model
        result["speedup_vs_naive_ceiling"] = t_naive / t_model
        if t_two is not None:
            result["speedup_vs_naive_two_pass"] = t_naive / t_two
        if "stage_default_decoder" in best:
            t_default = best["stage_default_decoder"]
            result["default_decoder"] = default_decoder
            result["stage_default_decoder_scenes_per_s"] = n_scenes / t_default
            result["speedup_defaults_vs_naive_seed"] = t_naive / t_default
            print(f"stage, {default_decoder} decoder (the library default): {t_default:.1f} s, "
                  f"{t_naive / t_default:.2f}x the naive seed loop with the {args.decoder} decoder")
    if not args.skip_dask:
        t1 = timed("dask1", lambda: stage("dask1", scheduler="processes", workers=1))
        t2 = timed("dask2", lambda: stage("dask2", scheduler="processes", workers=2))
        result["dask_2_vs_1_workers"] = t1 / t2
        print(f"dask:        1 worker {t1:.1f} s, 2 workers {t2:.1f} s")
    # ---- scaling: one glacier, N scenes, memory bounded by max_stack_mb
    counts = [int(c) for c in args.scaling.split(",") if c.strip()] + ([2000] if args.scaling_2000 else [])
    if counts:
        from glacierwatch.chips import read_inventory

        inv = read_inventory(work / "inventory.parquet")
        gid = str(world.timeseries_ids[0])
        row = inv.loc[inv["glims_id"] == gid].iloc[0]
        region = str(row["region"]) if "region" in inv.columns else ""
        g_scenes = scenes[scenes["glims_id"] == gid]
        seg = make_segmenter(SegmenterSpec("unet", str(ckpt), batch_size=args.batch_size, device=args.device))
        sc_config = TimeseriesConfig(segmenter="unet", batch_size=args.batch_size, unsmoothed=False,
                                     max_stack_mb=args.scaling_max_stack_mb)
        rows = []
        scratch = work / "scaling"
        scratch.mkdir(exist_ok=True)
        for n in counts:
            r = scaling_case(g_scenes, row.geometry, region, str(world.dem_dir / f"{gid}.tif"), seg, sc_config, n,
                             scratch)
            rows.append(r)
            print(f"scaling: {n:5d} scenes {r['seconds']:7.1f} s ({1000 * r['seconds_per_scene']:.1f} ms/scene), "
                  f"peak traced {r['peak_traced_mb']:.0f} MB, RSS +{r['peak_rss_growth_mb']:.0f} MB "
                  f"(stack {r['stack_mb']:.0f} MB, max_stack_mb {args.scaling_max_stack_mb:g})", flush=True)
        per = [r["seconds_per_scene"] for r in rows]
        result["scaling"] = rows
        result["scaling_max_stack_mb"] = args.scaling_max_stack_mb
        result["scaling_time_per_scene_ratio_max_vs_min"] = max(per) / min(per)
        result["scaling_time_per_scene_ratio_largest_vs_smallest"] = per[-1] / per[0]
        result["scaling_peak_traced_mb_max"] = max(r["peak_traced_mb"] for r in rows)
    # ---- projections of the seed's run
    bytes_per_scene = float(np.mean([os.path.getsize(p) for p in scenes["path"]]))
    result["projected_seed_run_hours_this_machine"] = SEED_SCENES / result["stage_scenes_per_s"] / 3600
    result["projection_gpu_machine"] = projections(
        n_scenes=n_scenes, t_stage=t_stage, t_model=t_model, bytes_per_scene=bytes_per_scene,
        cores_here=min(torch.get_num_threads(), os.cpu_count() or 1), cores=args.cores, gpu_img_s=args.gpu_img_s,
        disk_mb_s=args.disk_mb_s, machines=[int(m) for m in args.cluster_machines.split(",") if m.strip()])
    if profile_lines:
        result["profile_top"] = profile_lines
    result["repeat"] = repeat
    result["times_s"] = {k: [round(v, 3) for v in vals] for k, vals in times.items()}
    print(f"\nspeedup vs the naive seed loop (scenes/s, one pass): {speedup:.2f}x")
    if "speedup_vs_naive_two_pass" in result:
        print(f"  with the second (unsmoothed) pass on:             {result['speedup_vs_naive_two_pass']:.2f}x")
    print(f"share of stage time in the model:                   {result['end_to_end_vs_model_only']:.2f}")
    if "overlap_speedup" in result:
        print(f"  without overlap: {result['end_to_end_vs_model_only_sequential']:.2f}; "
              f"overlap speedup {result['overlap_speedup']:.2f}x")
    if "dask_2_vs_1_workers" in result:
        print(f"Dask LocalCluster, 2 workers vs 1:                  {result['dask_2_vs_1_workers']:.2f}x")
    proj = result["projection_gpu_machine"]
    print(f"projected seed run (505,835 scenes) on this machine: "
          f"{result['projected_seed_run_hours_this_machine']:.1f} h ({os.cpu_count()} cores); on a "
          f"{args.cores}-core machine with one GPU ({args.gpu_img_s:g} img/s assumed, {args.disk_mb_s:g} MB/s disk, "
          f"{bytes_per_scene / 1e6:.2f} MB a scene): {proj['one_gpu_machine_hours_overlapped']:.1f} h overlapped "
          f"({proj['one_gpu_machine_limited_by']}-bound), {proj['one_gpu_machine_hours_not_overlapped']:.1f} h not; "
          "Dask: " + ", ".join(f"{m} machines {h:.2f} h" for m, h in proj["dask_cluster_hours_overlapped"].items()))
    print("all runs (s): " + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vals)}" for k, vals in times.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
