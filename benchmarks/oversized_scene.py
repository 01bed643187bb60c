"""Peak memory of the time series when one scene file is far larger than its glacier grid.

Writes a glacier grid of 150 x 120 pixels, 6 scenes on it and one 8000 x 8000 scene (8 bands, uint16,
1 GB of pixels) covering it on the same lattice, runs the time series of that glacier (NDSI, no
smoothing) in a fresh process and prints its peak resident memory and the big scene's area beside the
small ones'. The big file is read only in the window covering the grid.

    python benchmarks/oversized_scene.py [--size 8000] [--work DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import datetime as dt, json, resource, sys
from pathlib import Path
import numpy as np, pandas as pd, shapely
from pyproj import Transformer
from shapely.geometry import Point
from glacierwatch.config import TimeseriesConfig
from glacierwatch.grid import GlacierGrid
from glacierwatch.timeseries import NDSISegmenter, glacier_areas
work = Path(sys.argv[1])
grid = GlacierGrid("EPSG:32632", 350000.0, 5100000.0, 30.0, 150, 120)
center = (grid.x0 + 60 * 30.0, grid.y0 - 60 * 30.0)
to_wgs = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform
outline = shapely.transform(Point(*center).buffer(1000.0, 256), lambda x, y: to_wgs(x, y), interleaved=False)
files = sorted(work.glob("*.tif"))
scenes = pd.DataFrame([{"path": str(f), "date": dt.date(2015, 8, 1 + i), "satellite": "L8"} for i, f in enumerate(files)])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
areas = glacier_areas("G007000E46000N", scenes, geometry=outline, region_name="Europe", grid=grid, dem_path=None,
                      segmenter=NDSISegmenter(), config=TimeseriesConfig(smoothing="none", buffer_m=500.0))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mb": after / 1024, "rss_before_mb": before / 1024,
                  "areas": dict(zip(areas["scene"], areas["area_km2"].round(4))),
                  "skip_reasons": dict(zip(areas["scene"], areas["skip_reason"]))}))
"""


def write_files(work: Path, size: int) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from glacierwatch.grid import GlacierGrid
    from glacierwatch.io import write_raster
    from glacierwatch.landsat import QA, SCENE_BANDS, kelvin_to_dn, reflectance_to_dn

    grid = GlacierGrid("EPSG:32632", 350000.0, 5100000.0, 30.0, 150, 120)
    center = (grid.x0 + 60 * 30.0, grid.y0 - 60 * 30.0)

    def layers(g: GlacierGrid, rows: slice | None = None) -> list:
        r, c = np.mgrid[0:g.height, 0:g.width] if rows is None else np.mgrid[rows, 0:g.width]
        x, y = g.x0 + (c + 0.5) * 30.0, g.y0 - (r + 0.5) * 30.0
        ice = (x - center[0]) ** 2 + (y - center[1]) ** 2 <= 1000.0**2
        refl = {"blue": (0.8, 0.12), "green": (0.75, 0.15), "red": (0.7, 0.18), "nir08": (0.55, 0.25),
                "swir16": (0.05, 0.3), "swir22": (0.04, 0.25)}
        out = [reflectance_to_dn(np.where(ice, *refl[b])) for b in SCENE_BANDS[:6]]
        out += [kelvin_to_dn(np.where(ice, 270.0, 285.0)), np.full(ice.shape, int(QA.CLEAR), np.uint16)]
        return out

    for i in range(6):
        write_raster(work / f"G007000E46000N_2015-08-0{i + 1}_L8_C02_T1_L2_SR.tif",
                     np.stack(layers(grid)).astype(np.uint16), grid, band_names=list(SCENE_BANDS), nodata=0)
    # the big scene: the grid in its middle, written in strips (never held whole)
    half = (size - 150) // 2
    big = GlacierGrid("EPSG:32632", grid.x0 - half * 30.0, grid.y0 + half * 30.0, 30.0, size, size)
    profile = dict(driver="GTiff", width=size, height=size, count=len(SCENE_BANDS), dtype="uint16",
                   crs=big.crs, transform=from_origin(big.x0, big.y0, 30.0, 30.0), tiled=True,
                   compress="deflate", nodata=0, BIGTIFF="YES")
    with rasterio.open(work / "G007000E46000N_2015-08-07_L8_C02_T1_L2_SR.tif", "w", **profile) as dst:
        dst.descriptions = tuple(SCENE_BANDS)
        for r0 in range(0, size, 512):
            r1 = min(size, r0 + 512)
            block = np.stack(layers(big, slice(r0, r1))).astype(np.uint16)
            dst.write(block, window=rasterio.windows.Window(0, r0, size, r1 - r0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000, help="side of the big scene, pixels")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="oversized_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        write_files(work, args.size)
        done = subprocess.run([sys.executable, "-c", CHILD, str(work)], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    result["big_scene_pixels"] = args.size * args.size
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
