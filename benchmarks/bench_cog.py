"""Cost of writing standard scenes as COGs with scale/offset (the fetch's writer) against the plain
tiled GeoTIFF writer, in one run: write time (CPU seconds of this process) and file size, per grid size.

    .venv/bin/python benchmarks/bench_cog.py --n 20 --sizes 150,600 --json bench_cog.json

Prints, per size, the ratio COG / plain for time and bytes; ``--json`` writes them. The scenes are
8 bands of uint16 DN with smooth spatial structure (as real surfaces compress) and 5 % fill.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from glacierwatch.grid import GlacierGrid
from glacierwatch.io import write_raster, write_scene_cog
from glacierwatch.landsat import SCENE_BANDS


def _scene(size: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    base = 8_000 + 6_000 * np.sin(6 * x) * np.cos(4 * y)
    data = np.stack([base + 500 * b + rng.normal(0, 150, base.shape) for b in range(len(SCENE_BANDS))])
    data = np.clip(data, 1, 65535).astype(np.uint16)
    data[:, : size // 20, :] = 0
    return data


def measure(n: int, size: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    grid = GlacierGrid("EPSG:32632", x0=345_615.0, y0=5_098_515.0, resolution=30.0, width=size, height=size)
    scenes = [_scene(size, rng) for _ in range(n)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, writer in (("plain", write_raster), ("cog", write_scene_cog)):
            folder = Path(tmp) / name
            start = time.process_time()
            for i, data in enumerate(scenes):
                kwargs = {"nodata": 0} if writer is write_raster else {}
                writer(folder / f"s{i}.tif", data, grid, band_names=list(SCENE_BANDS), **kwargs)
            out[f"{name}_cpu_s"] = time.process_time() - start
            out[f"{name}_bytes"] = float(sum(p.stat().st_size for p in folder.iterdir()))
    out["time_ratio_cog_over_plain"] = out["cog_cpu_s"] / out["plain_cpu_s"]
    out["size_ratio_cog_over_plain"] = out["cog_bytes"] / out["plain_bytes"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="scenes per size")
    parser.add_argument("--sizes", default="150,600", help="grid sizes in pixels (square), comma-separated")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        r = measure(args.n, size)
        results[str(size)] = r
        print(f"{size:>5} px: COG/plain time {r['time_ratio_cog_over_plain']:.2f}x "
              f"({r['cog_cpu_s']:.2f} / {r['plain_cpu_s']:.2f} CPU s for {args.n} scenes), "
              f"size {r['size_ratio_cog_over_plain']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
