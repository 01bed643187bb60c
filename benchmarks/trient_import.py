"""The real check of the local-folder source: Trient (GLIMS G007026E45991N), 29 Landsat 5 dates of
1990-1991 exported from Earth Engine (Collection 1 TOA reflectance, files in UTM zones 31 and 32,
-inf where masked), plus NASADEM, imported onto the glacier grid and measured.

Steps, each through the command line a user would type (``glacierwatch ...``), timed:

1. ``inventory select`` on the SGI 2010 outline of Trient (B90-02, 5.83 km²) with a column map
   (``glims_id==G007026E45991N`` so the id is Trient's GLIMS id, not a derived one);
2. ``imagery fetch --source local`` with the ``[imagery.local]`` table of docs/tutorial/trient.py
   (band map 1-8, physical values, Collection 1 BQA, day-of-year date names, L5, the NASADEM file);
3. ``catalog build --inventory``;
4. ``timeseries run --segmenter ndsi`` (NDSI > 0.4), once with ``--smoothing none`` and once with
   ``--smoothing masked``, with a ``[catalog]`` table relaxing the inference filter: the exports are
   1990-91 TOA of every season with no IMAGE_QUALITY (``image_quality = "none"``) and fill where
   Earth Engine masked pixels. The paper's predicates, each alone, are counted too.

Run::

    .venv/bin/python benchmarks/trient_import.py [--shared ../shared/data] [--work /tmp/trient] [--json out.json]

Nothing is downloaded and nothing is written outside ``--work``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

GLIMS_ID = "G007026E45991N"
SGI_AREA_KM2 = 5.83  # Trient, SGI 2010 (B90-02), 5.825 km²
TRIENT_DIR = "glacierview_trient_l5_toa_timeseries"
OUTLINE = "sgi2010_trient_region/trient_SGI2010_B90-02_epsg4326.geojson"
REGION = "sgi2010_trient_region/SGI_2010_trient_region_lv95.shp"

def _load_tutorial() -> Any:
    """docs/tutorial/trient.py, which holds the one copy of the Trient configuration."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "docs" / "tutorial" / "trient.py"
    spec = importlib.util.spec_from_file_location("glacierwatch_tutorial_trient", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_TUTORIAL = _load_tutorial()
#: The configuration of the Trient exports (explained in docs/tutorial/trient.md).
CONFIG_TEMPLATE: str = _TUTORIAL.CONFIG_TEMPLATE
#: ``write_config(path, shared)``: :data:`CONFIG_TEMPLATE` with the Trient folders under ``shared``.
write_config = _TUTORIAL.write_config


def _cli(args: list[str], *, quiet: bool) -> tuple[int, float, str]:
    """Run ``glacierwatch ARGS`` in this process: (exit status, seconds, stdout)."""
    from glacierwatch.cli import main

    buffer = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buffer) if quiet else contextlib.nullcontext():
        rc = main(args)
    return rc, time.perf_counter() - t0, buffer.getvalue()


def _nonfinite_pixels(path: Path) -> tuple[int, str]:
    """(pixels with a NaN or infinite value in any band, EPSG code) of a source file."""
    with rasterio.open(path) as src:
        data = src.read()
        return int((~np.isfinite(data)).any(axis=0).sum()), f"EPSG:{src.crs.to_epsg()}"


def _outside_footprint(path: Path, grid: Any) -> np.ndarray:
    """Grid pixels the source file does not cover (nearest-neighbour footprint, as the import warps)."""
    from glacierwatch.imagery.standard import warp_to_grid

    with rasterio.open(path) as src:
        ones = np.ones((src.height, src.width), dtype=np.uint8)
        covered = warp_to_grid(ones, src_crs=src.crs, src_transform=src.transform, grid=grid)
    return covered == 0


def run_trient(shared: Path, work: Path, *, quiet: bool = True) -> dict[str, Any]:
    """Run the whole check in ``work`` (emptied first); return the figures (see :func:`report`)."""
    import geopandas as gpd
    import pandas as pd

    from glacierwatch.catalog import select
    from glacierwatch.catalog.queries import selection_params
    from glacierwatch.config import Config
    from glacierwatch.grid import GlacierGrid, outline_on_grid
    from glacierwatch.imagery import FetchPaths, read_manifest
    from glacierwatch.io import read_raster, read_scene
    from glacierwatch.landsat import QA, QA_BAND
    from glacierwatch.tasks import read_ledger

    shared = Path(shared)
    trient = shared / TRIENT_DIR
    if not trient.is_dir() or not (shared / OUTLINE).is_file():
        raise FileNotFoundError(f"Trient data not found under {shared}")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    config_path = write_config(work / "trient.toml", shared)
    cfg = Config.from_toml(config_path)
    inventory = work / "inventory.parquet"
    timings: dict[str, float] = {}

    # all 24 SGI 2010 glaciers of the region are read, so Trient's territory leaves out its neighbours'
    # ice; then the inventory keeps Trient (B90-02) alone, under its GLIMS id
    rc, timings["inventory"], _ = _cli(
        ["inventory", "select", str(shared / REGION), "--column-map", "id=SGI", "area_m2=Shape_Area",
         "src_date==2010-09-01", "geog_area==Swiss Alps", "--out", str(inventory)], quiet=quiet)
    if rc != 0:
        raise RuntimeError(f"inventory select failed with status {rc}")
    inv = gpd.read_parquet(inventory)
    trient_row = inv.loc[inv["source_id"] == "B90-02"].copy()
    trient_row["glims_id"] = GLIMS_ID
    trient_row.to_parquet(inventory)
    inv = gpd.read_parquet(inventory)
    row = inv.loc[inv["glims_id"] == GLIMS_ID].iloc[0]
    grid = GlacierGrid.from_json(row["grid"])

    rc, timings["fetch"], _ = _cli(["imagery", "fetch", "--inventory", str(inventory), "--source", "local",
                                    "--mode", "timeseries", "--out", str(work), "--config", str(config_path),
                                    "--no-progress"], quiet=quiet)
    paths = FetchPaths.for_out(work, cfg.imagery)
    manifest = read_manifest(paths, GLIMS_ID)
    failures = read_ledger(paths.ledger)

    catalog = work / "catalog.parquet"
    rc_cat, timings["catalog"], _ = _cli(["catalog", "build", str(paths.scenes_dir), "--out", str(catalog),
                                          "--inventory", str(inventory), "--config", str(config_path),
                                          "--no-progress"], quiet=quiet)
    if rc_cat != 0:
        raise RuntimeError(f"catalog build failed with status {rc_cat}")
    cat = pd.read_parquet(catalog)

    area_tables = {}
    ts_status, ts_output = {}, {}
    for smoothing in ("none", "masked"):
        out = work / f"areas_{smoothing}.parquet"
        ts_status[smoothing], timings[f"timeseries_{smoothing}"], ts_output[smoothing] = _cli(
            ["timeseries", "run", "--catalog", str(catalog), "--inventory", str(inventory), "--out", str(out),
             "--dem-dir", str(paths.dem_dir), "--config", str(config_path), "--segmenter", "ndsi",
             "--smoothing", smoothing, "--glaciers", GLIMS_ID], quiet=quiet)
        area_tables[smoothing] = pd.read_parquet(out) if out.exists() else pd.DataFrame(
            columns=["scene", "area_km2", "valid_fraction"])

    selected = select(catalog, "inference", config=cfg.catalog, inventory=inventory)
    paper = selection_params(Config().catalog)
    months = pd.to_datetime(cat["date"]).dt.month
    predicates = {  # each of the paper's inference predicates alone, with the paper's values
        "status = 'ok'": int((cat["status"] == "ok").sum()),
        f"cloud_cover < {paper['max_cloud_cover']:g}": int((cat["cloud_cover"] < paper["max_cloud_cover"]).sum()),
        f"image_quality = {paper['image_quality']}": int((cat["image_quality"] == paper["image_quality"]).sum()),
        f"n_pixels > {paper['min_pixels']}": int((cat["n_pixels"] > paper["min_pixels"]).sum()),
        f"nodata_pixels <= {paper['max_nodata_pixels']}": int((cat["nodata_pixels"] <= paper["max_nodata_pixels"]).sum()),
        f"zero_pixel_pct < {paper['max_zero_pixel_pct']:g}": int((cat["zero_pixel_pct"] < paper["max_zero_pixel_pct"]).sum()),
        "month in May-October (north)": int(months.isin(Config().catalog.summer_months_north).sum()),
    }

    outline = outline_on_grid(row.geometry, grid)
    source_of = {m["scene"]: m["scene_ids"][0] for m in manifest}
    by_scene = {s: t.set_index("scene") for s, t in area_tables.items()}
    per_scene = []
    for path in sorted(paths.scenes_dir.joinpath(GLIMS_ID).glob("*.tif")):
        scene = read_scene(path)
        fill = (scene.bands[QA_BAND] & np.uint16(int(QA.FILL))) != 0
        source_file = source_of[path.name]
        nonfinite, zone = _nonfinite_pixels(trient / "landsat5_c01_toa" / source_file)
        outside = _outside_footprint(trient / "landsat5_c01_toa" / source_file, grid)
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        date = scene.tags["date"]
        if path.name not in by_scene["none"].index:  # not selected by the (relaxed) inference filter
            continue
        per_scene.append({
            "date": date, "month": int(date[5:7]), "path": str(path), "source_file": source_file, "source_crs": zone,
            "nonfinite_source_pixels": nonfinite, "fill_pixels": int(fill.sum()),
            "fill_pixels_outside_footprint": int(outside.sum()),
            "fill_pixels_in_outline": int((fill & outline).sum()),
            "cloud_cover_pct": meta.get("CLOUD_COVER"),
            "valid_fraction": float(by_scene["none"].loc[path.name, "valid_fraction"]),
            "area_km2": float(by_scene["none"].loc[path.name, "area_km2"]),
            "area_km2_masked": float(by_scene["masked"].loc[path.name, "area_km2"]),
            "use": bool(by_scene["none"].loc[path.name, "use"]),
            "snow_fraction": float(by_scene["none"].loc[path.name, "snow_fraction"]),
        })

    from glacierwatch.grid import counting_region
    region = counting_region(row.geometry, row["territory_wkb"], grid, cfg.timeseries.buffer_m)
    everyone = gpd.read_file(shared / REGION).to_crs("EPSG:4326")  # all SGI 2010 glaciers of the region
    others = everyone.loc[everyone["SGI"] != "B90-02"]
    neighbour_px = sum(int((outline_on_grid(g, grid) & region).sum()) for g in others.geometry)
    annual_path = work / "areas_none.annual.parquet"
    annual = pd.read_parquet(annual_path) if annual_path.exists() else pd.DataFrame()

    dem, dem_grid, _ = read_raster(paths.dem_dir / f"{GLIMS_ID}.tif")
    return {
        "grid": grid.to_dict(), "outline_pixels": int(outline.sum()), "inventory_area_km2": float(row["area_km2"]),
        "scenes_written": len(manifest), "fetch_failed": len(failures), "fetch_status": rc,
        "dem": str(paths.dem_dir / f"{GLIMS_ID}.tif"), "dem_nan_pixels": int(np.isnan(dem).sum()),
        "dem_range_m": [float(np.nanmin(dem)), float(np.nanmax(dem))], "dem_on_grid": dem_grid == grid,
        "catalog_ok": int((cat["status"] == "ok").sum()), "inference_selected": len(selected),
        "paper_predicates": predicates, "area_rows": {k: len(v) for k, v in area_tables.items()},
        "timeseries_cli_status": ts_status, "timeseries_cli_output": {k: v.strip() for k, v in ts_output.items()},
        "scenes": per_scene, "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "counting_region_km2": float(region.sum() * grid.pixel_area_m2 / 1e6),
        "neighbour_glaciers_read": int(len(others)),
        "neighbour_pixels_in_counting_region": neighbour_px,
        "annual": annual.assign(date=annual["date"].astype(str)).to_dict("records") if len(annual) else [],
    }


def report(result: dict[str, Any]) -> str:
    """The figures as text."""
    g = result["grid"]
    lines = [
        f"Trient {GLIMS_ID}: grid {g['crs']} {g['height']} x {g['width']} px at {g['resolution']:g} m "
        f"(origin {g['x0']:.0f}, {g['y0']:.0f}); outline {result['outline_pixels']} px, "
        f"inventory area {result['inventory_area_km2']:.3f} km² (SGI 2010: {SGI_AREA_KM2} km²)",
        f"imagery fetch: {result['scenes_written']} scenes written, {result['fetch_failed']} failures; "
        f"DEM on the grid: {result['dem_on_grid']}, {result['dem_nan_pixels']} NaN px, "
        f"{result['dem_range_m'][0]:.0f}-{result['dem_range_m'][1]:.0f} m",
        f"catalog: {result['catalog_ok']} ok; inference filter (relaxed [catalog]): {result['inference_selected']} selected",
        "paper's inference predicates, each alone: " + ", ".join(f"{k}: {v}" for k, v in result["paper_predicates"].items()),
        f"timeseries run (CLI) exit status {result['timeseries_cli_status']}, area rows {result['area_rows']}",
        "",
        f"{'date':<11} {'zone':<11} {'-inf px':>7} {'fill':>6} {'outside':>7} {'fill in':>7} {'cloud%':>7} "
        f"{'valid':>6} {'km² none':>9} {'km² masked':>10}",
        f"{'':<11} {'(source)':<11} {'(source)':>7} {'(grid)':>6} {'fprint':>7} {'outline':>7} {'(grid)':>7} "
        f"{'(outl.)':>6}",
    ]
    for s in result["scenes"]:
        lines.append(f"{s['date']:<11} {s['source_crs']:<11} {s['nonfinite_source_pixels']:>7} {s['fill_pixels']:>6} "
                     f"{s['fill_pixels_outside_footprint']:>7} {s['fill_pixels_in_outline']:>7} "
                     f"{s['cloud_cover_pct'] if s['cloud_cover_pct'] is not None else float('nan'):>7.1f} "
                     f"{s['valid_fraction']:>6.2f} {s['area_km2']:>9.2f} {s['area_km2_masked']:>10.2f}")
    summer = [s for s in result["scenes"] if s["month"] in (7, 8, 9)]
    if summer:
        areas = np.array([s["area_km2"] for s in summer])
        clean = [s for s in summer if s["valid_fraction"] > 0.8 and s["fill_pixels_in_outline"] == 0]
        lines += ["", f"July-September scenes: {len(summer)}; NDSI area (smoothing none) median {np.median(areas):.2f} km², "
                      f"range {areas.min():.2f}-{areas.max():.2f} km² vs {SGI_AREA_KM2} km² (SGI 2010)"]
        if clean:
            c = np.array([s["area_km2"] for s in clean])
            lines.append(f"  of which {len(clean)} with > 80 % of the outline observed and no fill in it: median "
                         f"{np.median(c):.2f} km² ({', '.join(s['date'] for s in clean)})")
    lines += ["", f"counting region (outline + buffer within Trient's territory): {result['counting_region_km2']:.2f} km²; "
                  f"pixels of the {result['neighbour_glaciers_read']} other SGI 2010 glaciers in it: "
                  f"{result['neighbour_pixels_in_counting_region']}"]
    counted = [s for s in result["scenes"] if s["use"]]
    lines.append("counted end-of-season scenes (Aug-Oct, >= 90 % of the outline observed): "
                 + ", ".join(f"{s['date']} {s['area_km2']:.2f} km² (snow {s['snow_fraction']:.2f})" for s in counted))
    for a in result["annual"]:
        lines.append(f"  annual area {a['year']}: {a['area_km2']:.2f} km² [{a['area_km2_low']:.2f}, "
                     f"{a['area_km2_high']:.2f}] from {a['n_scenes']} scene(s) vs SGI 2010 {SGI_AREA_KM2} km²")
    lines += ["", "run times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in result["timings_s"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=repo.parent / "shared" / "data", help="the shared data folder")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary folder, removed afterwards)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="show the stages' own output")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trient_") as tmp:
        work = args.work or Path(tmp) / "work"
        t0 = time.perf_counter()
        result = run_trient(args.shared, work, quiet=not args.verbose)
        result["timings_s"]["total"] = round(time.perf_counter() - t0, 2)
        print(report(result))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
