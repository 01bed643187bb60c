"""Ablation of the time-series choices on a synthetic world with known truth.

Runs the time-series stage on a finished work folder (``glacierwatch demo`` or ``glacierwatch run`` on
a synthetic world: ``synthetic/``, ``inventory.parquet``, ``catalog.parquet``, ``model/model.pt``) with
each variant in turn, and prints per variant: the largest and median absolute trend error (%/yr,
log-linear fit of the annual areas, or of the scene areas for the seed's variant), the median absolute
per-scene area error of the counted late-season scenes (%), and the drift: median estimated/true ratio
of the last decade over that of the first decade. Areas are cached per variant in ``OUT``.

    python benchmarks/ablation_timeseries.py WORKDIR --out OUT [--segmenter unet|ndsi] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from glacierwatch.config import Config, TimeseriesConfig
from glacierwatch.timeseries import run_timeseries
from glacierwatch.timeseries.annual import annual_areas
from glacierwatch.trends.core import decimal_year

#: name -> (timeseries settings, fit on: "annual" or "scenes"[, inventory: "seed" (10 % box, no
#: territories), "box" (1.5 km box, no territories); default the work folder's inventory])
#: The seed's choices of the steps before a step is added: no sun limit, NDSI on the chip-size stack,
#: every pixel counted.
_BEFORE = dict(min_sun_elevation=0.0, ndsi_resolution="chip", min_patch_km2=0.0)
VARIANTS: dict[str, tuple] = {
    "seed (sigma 20 images, May-Oct, 10 % box, whole box, scenes)": (
        dict(smoothing="seed", sigma=20.0, season="seed", buffer_m=None, min_valid_fraction=0.0, **_BEFORE),
        "scenes", "seed"),
    "masked sigma 4 images, outline + 500 m (old demo)": (
        dict(smoothing="masked", sigma=4.0, season="seed", min_valid_fraction=0.0, **_BEFORE), "scenes", "seed"),
    "+ 1.5 km box": (dict(smoothing="masked", sigma=4.0, season="seed", min_valid_fraction=0.0, **_BEFORE),
                     "scenes", "box"),
    "+ own territory": (dict(smoothing="masked", sigma=4.0, season="seed", min_valid_fraction=0.0, **_BEFORE),
                        "scenes"),
    "+ no smoothing": (dict(smoothing="none", season="seed", min_valid_fraction=0.0, **_BEFORE), "scenes"),
    "+ end-of-season window": (dict(smoothing="none", season="end_of_ablation", min_valid_fraction=0.0, **_BEFORE),
                               "scenes"),
    "+ observed >= 0.9": (dict(smoothing="none", season="end_of_ablation", min_valid_fraction=0.9, **_BEFORE),
                          "scenes"),
    "+ annual median": (dict(smoothing="none", season="end_of_ablation", min_valid_fraction=0.9,
                             annual_statistic="median", **_BEFORE), "annual"),
    "+ sun >= 20 degrees": (dict(ndsi_resolution="chip", min_patch_km2=0.0), "annual"),
    # the U-Net's input is the chip-size stack whatever this says: the step is run for NDSI only
    "+ NDSI on the grid's pixels": (dict(min_patch_km2=0.0), "annual"),
    "+ min patch 0.1 km² (= defaults)": (dict(), "annual"),
    "defaults, sun >= 15": (dict(min_sun_elevation=15.0), "annual"),
    "defaults, sun >= 25": (dict(min_sun_elevation=25.0), "annual"),
    "defaults, sun >= 30": (dict(min_sun_elevation=30.0), "annual"),
    "annual min": (dict(annual_statistic="min"), "annual"),
    "annual q25": (dict(annual_statistic="q25"), "annual"),
    "annual least_snow": (dict(annual_statistic="least_snow"), "annual"),
    "defaults, observed >= 0.8": (dict(min_valid_fraction=0.8), "annual"),
    "defaults, May-Oct": (dict(season="seed"), "annual"),
    "defaults, threshold 0.4": (dict(threshold=0.4), "annual"),
    "defaults, threshold 0.3": (dict(threshold=0.3), "annual"),
    "defaults, min patch 0.02 km²": (dict(min_patch_km2=0.02), "annual"),
    "defaults, min patch 0.05 km²": (dict(min_patch_km2=0.05), "annual"),
    "defaults, min patch 0.2 km²": (dict(min_patch_km2=0.2), "annual"),
    "time sigma 30 d": (dict(smoothing="time", sigma_days=30.0), "annual"),
}
#: variants that only the NDSI baseline runs (the U-Net's would repeat the row before)
NDSI_ONLY = ("+ NDSI on the grid's pixels",)


def _slope(dates: pd.Series, area: pd.Series) -> float:
    ok = np.isfinite(area.to_numpy(float)) & (area.to_numpy(float) > 0)
    if ok.sum() < 3:
        return float("nan")
    t = decimal_year(pd.to_datetime(dates[ok]))
    return float(np.polyfit(t, np.log(area.to_numpy(float)[ok]), 1)[0])


def evaluate(areas: pd.DataFrame, annual: pd.DataFrame, fit_on: str, world: Path) -> dict[str, float]:
    truth = pd.read_csv(world / "truth.csv", usecols=["glims_id", "date", "true_area_km2"])
    truth["date"] = pd.to_datetime(truth["date"])
    rates = pd.read_csv(world / "truth_trends.csv").set_index("glims_id")["true_rel_change_per_year"]
    a = areas.copy()
    a["date"] = pd.to_datetime(a["date"])
    counted = a[a["use"].astype(bool)] if "use" in a else a[np.isfinite(a["area_km2"])]
    errors = []
    for gid in sorted(a["glims_id"].unique()):
        if fit_on == "annual":
            g = annual[annual["glims_id"] == gid]
        else:
            g = counted[counted["glims_id"] == gid]
        errors.append(100 * (_slope(g["date"], g["area_km2"]) - rates[gid]))
    errors = np.abs(np.array(errors))
    joined = counted.merge(truth, on=["glims_id", "date"])
    ratio = joined["area_km2"] / joined["true_area_km2"]
    year = joined["date"].dt.year
    first, last = ratio[year < year.min() + 10].median(), ratio[year > year.max() - 10].median()
    inside = ((joined["area_km2_low"] <= joined["true_area_km2"]) & (joined["true_area_km2"] <= joined["area_km2_high"])
              if "area_km2_low" in joined else pd.Series(False, index=joined.index))
    return {"max_trend_error_pct_yr": float(np.nanmax(errors)), "median_trend_error_pct_yr": float(np.nanmedian(errors)),
            "median_abs_scene_error_pct": float(100 * np.nanmedian(np.abs(ratio - 1))),
            "drift_last_over_first_decade": float(last / first), "n_counted_scenes": int(len(joined)),
            "scene_interval_coverage": float(inside.mean()) if len(joined) else float("nan"),
            "n_annual": int(len(annual))}


def _inventory_variant(cfg: Config, kind: str, out: Path) -> Path:
    """The inventory of the work folder's outlines with the seed's 10 % box (``seed``) or the 1.5 km
    box (``box``), both without territories (no neighbour exclusion)."""
    from glacierwatch.inventory import read_outlines, select_glaciers, write_inventory

    margin_m = 0.0 if kind == "seed" else cfg.inventory.box_margin_m
    inv_cfg = dataclasses.replace(cfg.inventory, box_margin_m=margin_m)
    selection = select_glaciers([read_outlines(p) for p in inv_cfg.outlines], config=inv_cfg)
    selection.inventory["territory_wkb"] = None
    path = out / f"inventory-{kind}.parquet"
    out.mkdir(parents=True, exist_ok=True)
    write_inventory(selection, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the variants' areas")
    parser.add_argument("--segmenter", default="unet", choices=["unet", "ndsi"])
    parser.add_argument("--variants", nargs="*", help="names (substring match) to run; default all")
    parser.add_argument("--ndsi-counts-water", action="store_true",
                        help="the seed's plain NDSI baseline (lakes counted as glacier)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = args.workdir
    cfg = Config.from_toml(work / "glacierwatch.toml") if (work / "glacierwatch.toml").exists() else Config()
    # the catalog's inference filter keeps every month: the season is the time series' choice here
    catalog_config = dataclasses.replace(cfg.catalog, summer_months_north=list(range(1, 13)),
                                         summer_months_south=list(range(1, 13)))
    results = {}
    inventories = {"": work / "inventory.parquet"}
    for k, (name, (settings, fit_on, *which)) in enumerate(VARIANTS.items()):
        if args.variants and not any(v in name for v in args.variants):
            continue
        if name in NDSI_ONLY and args.segmenter != "ndsi":
            continue
        kind = which[0] if which else ""
        if kind not in inventories:
            inventories[kind] = _inventory_variant(cfg, kind, args.out)
        ts = dataclasses.replace(TimeseriesConfig(), segmenter=args.segmenter, **settings)
        segmenter = None
        if args.segmenter == "ndsi" and args.ndsi_counts_water:
            from glacierwatch.timeseries import NDSISegmenter

            segmenter = NDSISegmenter(exclude_water=False, resolution=ts.ndsi_resolution)
        out = args.out / f"{args.segmenter}-{k}" / "areas.parquet"
        dem_dir = work / cfg.imagery.dem_dir
        res = run_timeseries(catalog=work / "catalog.parquet", inventory=inventories[kind], out=out,
                             model=work / "model" / "model.pt" if args.segmenter == "unet" else None,
                             dem_dir=dem_dir, config=ts, catalog_config=catalog_config, progress=False,
                             segmenter=segmenter)
        if settings.get("season") == "seed":  # the paper's months (the stage's season_ok): drop the others
            areas = res.areas[res.areas["season_ok"].astype(bool)]
        else:
            areas = res.areas
        annual = res.annual if fit_on == "annual" else annual_areas(areas.iloc[:0])
        results[name] = evaluate(areas, annual, fit_on, work / "synthetic")
        r = results[name]
        print(f"{name:55s} max {r['max_trend_error_pct_yr']:.3f} med {r['median_trend_error_pct_yr']:.3f} %/yr | "
              f"scene err {r['median_abs_scene_error_pct']:.2f} % | drift {r['drift_last_over_first_decade']:.3f} | "
              f"n {r['n_counted_scenes']} | cover {r['scene_interval_coverage']:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"segmenter": args.segmenter, "workdir": str(work), "variants": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
