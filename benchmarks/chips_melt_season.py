"""Seasonal snow by month with and without the melt season, and chip counts per mask kind.

    PYTHONPATH=. python benchmarks/chips_melt_season.py --out /tmp/melt --training 40 --timeseries 3 \
        --first-year 2008 --last-year 2012 [--json result.json]

Builds two small synthetic worlds (same seed; ``melt_season`` off / on, the second with
``training_extra_scenes`` and more lakes), prints the median snow-covered fraction of the box outside
the glacier (``truth.csv`` ``snow_fraction_outside``, scenes under 5 % cloud) by local month, then
builds the inventory and catalog of the melt-season world and counts the chips of
``[chips] masks = "outline"`` and ``"dated"`` (with the world's truth) by mask kind.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import pandas as pd

from glacierwatch.chips import ChipSet, build_chips_from_catalog
from glacierwatch.config import CatalogConfig, ChipsConfig, InventoryConfig
from glacierwatch.synth import make_world


def snow_by_month(world_dir: Path) -> pd.Series:
    truth = pd.read_csv(world_dir / "truth.csv")
    hemi = {g["glims_id"]: g["hemisphere"] for g in json.loads((world_dir / "world.json").read_text())["glaciers"]}
    truth = truth[truth["cloud_fraction"] < 0.05]
    month = pd.to_datetime(truth["date"]).dt.month
    south = truth["glims_id"].map(hemi) == "S"
    local = month.where(~south, (month + 5) % 12 + 1)  # southern months shifted by half a year
    return truth.groupby(local)["snow_fraction_outside"].median()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--training", type=int, default=40)
    ap.add_argument("--timeseries", type=int, default=3)
    ap.add_argument("--first-year", type=int, default=2008)
    ap.add_argument("--last-year", type=int, default=2012)
    ap.add_argument("--extra", type=int, default=3, help="training_extra_scenes of the melt-season world")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    # this script builds the catalog straight from the world's scene files (no imagery fetch onto the
    # inventory grids): scenes of time-series glaciers, whose world grids are larger, would be reported
    # one by one as "not on the glacier grid"
    logging.getLogger("glacierwatch.chips.build").setLevel(logging.ERROR)
    common = {"n_training": args.training, "n_timeseries": args.timeseries, "seed": args.seed,
              "first_year": args.first_year, "last_year": args.last_year, "scenes_per_year": 12, "progress": False}
    t0 = time.perf_counter()
    make_world(args.out / "seed", overwrite=True, **common)
    t1 = time.perf_counter()
    melt = make_world(args.out / "melt", overwrite=True, training_extra_scenes=args.extra, melt_season=True,
                      lake_probability=0.6,
                      **common)
    t2 = time.perf_counter()
    table = pd.DataFrame({"seed_world": snow_by_month(args.out / "seed"), "melt_season": snow_by_month(melt.out_dir)})
    table.index.name = "local_month"
    print("median snow-covered fraction of the box outside the glacier (scenes < 5 % cloud):")
    print(table.round(3).to_string())
    print(f"world build: seed {t1 - t0:.0f} s, melt-season + {args.extra} extra training scenes {t2 - t1:.0f} s")

    from glacierwatch.catalog import build_catalog
    from glacierwatch.chips import read_inventory
    from glacierwatch.inventory import read_outlines, select_glaciers, write_inventory

    work = args.out / "work"
    selection = select_glaciers([read_outlines(melt.outlines)], config=InventoryConfig())
    write_inventory(selection, work / "inventory.parquet")
    build_catalog(melt.scenes_dir, work / "catalog.parquet", inventory=work / "inventory.parquet", progress=False)
    # chips of the training glaciers only (the time-series glaciers are measured, not trained on)
    inventory = read_inventory(work / "inventory.parquet")
    inventory[inventory["glims_id"].isin(melt.training_ids)].to_parquet(work / "training.parquet", index=False)
    catalog_config = CatalogConfig(min_pixels=20_000)  # the demo's
    counts = {}
    for masks in ("outline", "dated"):
        t = time.perf_counter()
        info = build_chips_from_catalog(work / "catalog.parquet", work / "training.parquet", dem_dir=melt.dem_dir,
                                        out_dir=work / f"chips-{masks}",
                                        config=ChipsConfig(masks=masks, exclude_inference_glaciers=False),
                                        catalog_config=catalog_config, truth_dir=melt.out_dir, progress=False)
        index = ChipSet(work / f"chips-{masks}").index
        counts[masks] = {"chips": info.n_chips, "glaciers": int(index["glims_id"].nunique()),
                         "by_mask_kind": index["mask_kind"].value_counts().to_dict(), "dropped": info.dropped,
                         "seconds": round(time.perf_counter() - t, 1)}
        print(f"masks = {masks!r}: {counts[masks]}")
    if args.json:
        args.json.write_text(json.dumps({"snow_by_month": table.round(4).to_dict(), "chips": counts}, indent=2))


if __name__ == "__main__":
    main()
