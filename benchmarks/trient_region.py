"""Trient (SGI 2010 B90-02): the counting region with and without neighbour exclusion, and whether
the glacier grid holds the 1990 tongue, for several box margins.

Real data only (``../shared/data``; see each folder's SOURCE.md):

* ``sgi2010_trient_region``: the 34 SGI 2010 polygons around Trient (24 glaciers), read with the
  inventory stage (column map as in tests/test_inventory.py) and selected with ``min_area_km2 = 0``;
* ``oggm_sample_data_hintereisferner_oetztal/lengths``: the Leclercq length record of Trient
  (dL 1990 - dL 2010 = how much longer the glacier was in 1990);
* ``glacierview_trient_l5_toa_timeseries``: NASADEM over the box (the 2010 terminus is the lowest
  outline pixel; the tongue's direction is from the centroid of the outline within 1 km of it to it)
  and the 29 Landsat 5 TOA scenes of 1990-91 (Earth Engine exports clipped to the 2010 box: NDSI > 0.4
  pixels in the scene edge row nearest the terminus show the tongue leaving the scene).

    PYTHONPATH=. .venv/bin/python benchmarks/trient_region.py [--data ../shared/data] [--json out.json]

Prints, per ``box_margin_m``: grid size (px, km²), distance of the 1990 terminus inside the grid
edge (m; negative = outside); and for Trient's counting region with ``buffer_m`` = 500 m: area with
and without neighbour exclusion (km²) and the km² of other SGI glaciers' outlines each contains.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import shapely
from pyproj import Transformer
from rasterio.warp import Resampling, reproject

from glacierwatch.config import InventoryConfig
from glacierwatch.grid import GlacierGrid, counting_region, inventory_grid, outline_on_grid
from glacierwatch.inventory import parse_column_map, read_outlines, select_glaciers

SGI_MAP = ["id=SGI", "area_m2=Shape_Area", "src_date==2010-09-01", "geog_area==Swiss Alps"]


def length_change_m(data: Path, glacier: str = "Trient", early: int = 1990, late: int = 2010) -> float:
    """How much longer (m) the glacier was in ``early`` than in ``late`` (Leclercq record)."""
    table = pd.read_csv(data / "oggm_sample_data_hintereisferner_oetztal" / "lengths"
                        / "leclercq_length_changes_selected.csv")
    t = table[table["glacier_name"] == glacier].set_index("year")["dL_m"]
    return float(t.loc[early] - t.loc[late])


def terminus_and_direction(outline_wgs: shapely.Geometry, grid: GlacierGrid, dem_path: Path
                           ) -> tuple[tuple[float, float], tuple[float, float]]:
    """The 2010 terminus (lowest outline pixel centre, grid CRS m) and the unit down-valley vector."""
    dem = np.full(grid.shape, np.nan, dtype=np.float32)
    with rasterio.open(dem_path) as src:
        reproject(rasterio.band(src, 1), dem, dst_transform=grid.transform, dst_crs=grid.crs,
                  dst_nodata=np.nan, resampling=Resampling.bilinear)
    inside = outline_on_grid(outline_wgs, grid) & np.isfinite(dem)
    rows, cols = np.nonzero(inside)
    k = int(np.argmin(dem[rows, cols]))
    x = grid.x0 + (cols + 0.5) * grid.resolution
    y = grid.y0 - (rows + 0.5) * grid.resolution
    tx, ty = float(x[k]), float(y[k])
    near = np.hypot(x - tx, y - ty) < 1000.0
    dx, dy = tx - float(x[near].mean()), ty - float(y[near].mean())
    norm = math.hypot(dx, dy)
    return (tx, ty), (dx / norm, dy / norm)


def inside_distance(grid: GlacierGrid, x: float, y: float) -> float:
    """Distance (m) of (x, y) inside the nearest grid edge (negative: outside)."""
    left, bottom, right, top = grid.bounds
    return min(x - left, right - x, y - bottom, top - y)


def scene_edge_ice(scenes_dir: Path, terminus_wgs: tuple[float, float]) -> list[dict[str, object]]:
    """Per Aug-Sep scene: NDSI > 0.4 pixels in the scene edge row nearest the 2010 terminus, within
    500 m of its column (B2 green, B5 SWIR1 of the C1 TOA exports)."""
    out = []
    for tif in sorted(scenes_dir.glob("*.tif")):
        token = tif.stem.split("_")[1]
        year, month = int(token[:4]), int(token[4:6])
        if month not in (8, 9):
            continue
        with rasterio.open(tif) as src:
            green, swir = src.read(2).astype(float), src.read(5).astype(float)
            tx, ty = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True).transform(*terminus_wgs)
            row, col = src.index(tx, ty)
            edge = 0 if row < src.height / 2 else src.height - 1  # the tongue flows out of the top or bottom
            half = int(500 / src.res[0])
            c0, c1 = max(0, col - half), min(src.width, col + half + 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                ndsi = (green - swir) / (green + swir)
            ice = np.isfinite(ndsi[edge, c0:c1]) & (ndsi[edge, c0:c1] > 0.4)
            out.append({"scene": tif.name, "year": year, "month": month, "edge_row": edge,
                        "terminus_row": int(row), "edge_ice_px": int(ice.sum()), "edge_px": int(c1 - c0)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--margins", default="0,1000,1500,2000", help="box_margin_m values, m")
    parser.add_argument("--buffer", type=float, default=500.0, help="counting-region buffer_m, m")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    data = Path(args.data)
    outlines = read_outlines(data / "sgi2010_trient_region" / "SGI_2010_trient_region_lv95.shp",
                             column_map=parse_column_map(SGI_MAP))
    dl = length_change_m(data)
    result: dict[str, object] = {"length_change_1990_2010_m": dl, "buffer_m": args.buffer, "margins": []}
    print(f"Leclercq: Trient 1990 was {dl:.0f} m longer than in 2010")
    scenes_dir = data / "glacierview_trient_l5_toa_timeseries" / "landsat5_c01_toa"
    dem_path = data / "glacierview_trient_l5_toa_timeseries" / "nasadem" / "G000000000000N_DEM.tif"
    terminus_done = False
    for margin_m in [float(m) for m in args.margins.split(",")]:
        t0 = time.perf_counter()
        sel = select_glaciers(outlines, config=InventoryConfig(min_area_km2=0.0, box_margin_m=margin_m))
        seconds = time.perf_counter() - t0
        inv = sel.inventory
        trient = inv[inv["source_id"] == "B90-02"].iloc[0]
        grid = GlacierGrid.from_json(trient["grid"])
        assert grid == inventory_grid(trient.geometry, margin=0.1, margin_m=margin_m)
        if not terminus_done:
            (tx, ty), (ux, uy) = terminus_and_direction(trient.geometry, grid, dem_path)
            to_wgs = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
            t2010 = to_wgs.transform(tx, ty)
            t1990 = to_wgs.transform(tx + dl * ux, ty + dl * uy)
            edge = scene_edge_ice(scenes_dir, t2010)
            result.update({"terminus_2010_lonlat": t2010, "terminus_1990_lonlat": t1990,
                           "down_valley_azimuth_deg": math.degrees(math.atan2(ux, uy)) % 360, "scenes": edge})
            print(f"2010 terminus {t2010[0]:.5f} E {t2010[1]:.5f} N; 1990 terminus {t1990[0]:.5f} E "
                  f"{t1990[1]:.5f} N (down-valley azimuth {result['down_valley_azimuth_deg']:.0f}°)")
            n_ice = sum(1 for e in edge if e["edge_ice_px"] > 0)
            print(f"Aug-Sep scenes of 1990-91 with ice (NDSI > 0.4) in the edge row at the terminus: "
                  f"{n_ice} of {len(edge)}: " + ", ".join(f"{e['scene'].split('_')[1]} {e['edge_ice_px']}/"
                                                           f"{e['edge_px']}" for e in edge))
            terminus_done = True
        to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
        x1990, y1990 = to_grid.transform(*result["terminus_1990_lonlat"])
        others = inv[inv["glims_id"] != trient["glims_id"]]
        pix_km2 = grid.pixel_area_m2 / 1e6
        other_mask = np.zeros(grid.shape, dtype=bool)
        for geom in others.geometry:
            other_mask |= outline_on_grid(geom, grid)
        plain = counting_region(trient.geometry, None, grid, args.buffer)
        own = counting_region(trient.geometry, trient["territory_wkb"], grid, args.buffer)
        row = {"box_margin_m": margin_m, "grid_px": [grid.height, grid.width],
               "grid_km2": grid.height * grid.width * pix_km2,
               "terminus_1990_inside_m": inside_distance(grid, x1990, y1990),
               "region_km2_no_exclusion": float(plain.sum() * pix_km2),
               "region_km2_territory": float(own.sum() * pix_km2),
               "neighbour_ice_km2_no_exclusion": float((plain & other_mask).sum() * pix_km2),
               "neighbour_ice_km2_territory": float((own & other_mask).sum() * pix_km2),
               "neighbours_touched_no_exclusion": int(sum(bool((plain & outline_on_grid(g, grid)).any())
                                                          for g in others.geometry)),
               "outline_km2_on_grid": float(outline_on_grid(trient.geometry, grid).sum() * pix_km2),
               "select_seconds": seconds}
        result["margins"].append(row)
        print(f"box_margin_m {margin_m:6.0f}: grid {grid.height}x{grid.width} px = {row['grid_km2']:.1f} km²; "
              f"1990 terminus {row['terminus_1990_inside_m']:+.0f} m inside the edge; outline+{args.buffer:.0f} m "
              f"{row['region_km2_no_exclusion']:.2f} km² (neighbour ice {row['neighbour_ice_km2_no_exclusion']:.2f} "
              f"km², {row['neighbours_touched_no_exclusion']} glaciers) -> ∩ territory "
              f"{row['region_km2_territory']:.2f} km² (neighbour ice {row['neighbour_ice_km2_territory']:.2f} km²); "
              f"selection of {len(inv)} glaciers {seconds:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
