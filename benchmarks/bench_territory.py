"""Territory cost per glacier as the outline set grows (it should stay flat: an STR-tree finds the
neighbours of each box, so a glacier's Voronoi diagram holds only the outlines near it).

Lays out N irregular glaciers (0.3-4 km², 1.2-2.5 km apart) on a square patch of the Alps and times
:func:`glacierwatch.inventory.territory.territories_wkb` for all of them, for each N given:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_territory.py --n 50,200 [--json out.json]

Prints ms per glacier for each N and the ratio of the largest N's to the smallest N's (1 = flat).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import shapely
from pyproj import Transformer

from glacierwatch.grid import inventory_grid
from glacierwatch.inventory.territory import territories_wkb


def glaciers(n: int, seed: int = 0) -> list[shapely.Geometry]:
    """``n`` irregular star-shaped outlines (WGS 84) on a jittered square lattice in UTM 32N."""
    rng = np.random.default_rng(seed)
    side = int(math.ceil(math.sqrt(n)))
    to_wgs = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    out = []
    for k in range(n):
        cx = 350_000 + (k % side) * 2500 + rng.uniform(-300, 300)
        cy = 5_100_000 + (k // side) * 2500 + rng.uniform(-300, 300)
        radius = math.sqrt(rng.uniform(0.3, 4.0) * 1e6 / math.pi)
        angles = np.linspace(0, 2 * math.pi, 120, endpoint=False)
        r = radius * (1 + 0.25 * np.sin(3 * angles + rng.uniform(0, 6)) + 0.1 * rng.standard_normal(120).cumsum() / 10)
        r = np.clip(r, 0.3 * radius, 1.1 * radius)
        x, y = to_wgs.transform(cx + r * np.cos(angles), cy + r * np.sin(angles))
        out.append(shapely.make_valid(shapely.Polygon(np.c_[x, y])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="50,200", help="glacier counts")
    parser.add_argument("--margin-m", type=float, default=1500.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    result = {}
    for n in [int(v) for v in args.n.split(",")]:
        geoms = glaciers(n)
        grids = [inventory_grid(g, margin=0.1, margin_m=args.margin_m) for g in geoms]
        t0 = time.process_time()
        territories_wkb(geoms, list(range(n)), grids)
        ms = (time.process_time() - t0) * 1000.0 / n
        result[n] = ms
        print(f"{n:6d} glaciers: {ms:7.1f} ms CPU per glacier")
    counts = sorted(result)
    print(f"ratio {counts[-1]} / {counts[0]} glaciers, per glacier: {result[counts[-1]] / result[counts[0]]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ms_per_glacier": result, "margin_m": args.margin_m}, indent=2))


if __name__ == "__main__":
    main()
