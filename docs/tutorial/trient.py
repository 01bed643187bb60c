"""The Trient tutorial (docs/tutorial/trient.md), step by step through the command line: real
Landsat 5 exports of Glacier du Trient (1990-91) and the Swiss Glacier Inventory 2010 outlines in,
areas, an overlay, a trend and a validation out.

Run from a clone of the repository (nothing is downloaded; everything is written under WORK)::

    python docs/tutorial/trient.py WORK [--shared ../shared/data]

Each step prints the ``glacierwatch ...`` command it runs, so the same can be typed in a shell.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

#: Trient in the Swiss Glacier Inventory 2010 (its GLIMS id is G007026E45991N).
TRIENT_SGI_ID = "B90-02"
TRIENT_DIR = "glacierview_trient_l5_toa_timeseries"
REGION_OUTLINES = "sgi2010_trient_region/SGI_2010_trient_region_lv95.shp"
SGI_2010 = "sgi_multitemporal_switzerland/sgi2010_outlines/SGI_2010.shp"
#: The end-of-summer scene the overlay shows (87 % of the outline observed, 6 % cloud).
OVERLAY_DATE = "1990-09-01"
#: End of summer, when the seasonal snow is gone (the months timeseries counts for the annual area).
LATE_SUMMER_MONTHS = (8, 9, 10)
#: Share of the counting region observed, 0-1: the scenes the tutorial compares with SGI.
LATE_SUMMER_MIN_OBSERVED = 0.8
#: Days around SGI 2010's date (2010-01-01) that reach back to August 1990.
SINCE_1990_WINDOW_DAYS = 7305

#: The configuration of the Trient exports (docs/tutorial/trient.md explains each line; also used by
#: benchmarks/trient_import.py). ``{input_dir}`` and ``{dem_file}`` are filled in by :func:`write_config`.
CONFIG_TEMPLATE = """\
[imagery]
source = "local"
# a local folder is imported whole: no provider-side cloud limit in timeseries mode
timeseries_max_cloud_cover = "none"

[imagery.local]
input_dir = "{input_dir}"
pattern = "*.tif"
# Earth Engine LANDSAT/LT05/C01/T1_TOA export order: B1-B5, B6 (thermal, K), B7, BQA
band_map = ["blue=1", "green=2", "red=3", "nir08=4", "swir16=5", "lwir=6", "swir22=7", "qa_pixel=8"]
values = "physical"
qa_format = "c1_bqa"
# G000000000000N_<YYYY><MM><DOY>_Landsat5.tif (geemap's 'YYYYMMDD' Joda pattern: DD = day of year)
date_regex = '_(?P<year>\\d{{4}})(?P<month>\\d{{2}})(?P<doy>\\d{{1,3}})_'
satellite = "L5"
dem_file = "{dem_file}"

[catalog]
# relax the inference filter: the exports are 1990-91 TOA of every season, carry no IMAGE_QUALITY
# and have fill where Earth Engine masked pixels
image_quality = "none"
max_cloud_cover = 100.1
max_nodata_pixels = 1000000
max_zero_pixel_pct = 100.0
min_pixels = 0
summer_months_north = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]

[timeseries]
segmenter = "ndsi"
smoothing = "none"
"""


def write_config(path: Path, shared: Path) -> Path:
    """Write :data:`CONFIG_TEMPLATE` to ``path`` with the Trient folders under ``shared``."""
    trient = Path(shared).resolve() / TRIENT_DIR
    path.write_text(CONFIG_TEMPLATE.format(input_dir=trient / "landsat5_c01_toa",
                                           dem_file=trient / "nasadem" / "G000000000000N_DEM.tif"), encoding="utf-8")
    return path


def glacierwatch(*args: str | Path) -> None:
    """Run ``glacierwatch ARGS`` in this process, as typed in a shell; stop the tutorial if it fails."""
    from glacierwatch.cli import main

    argv = [str(a) for a in args]
    print(f"\n$ glacierwatch {shlex.join(argv)}", flush=True)
    status = main(argv)
    if status != 0:
        raise SystemExit(f"tutorial: 'glacierwatch {argv[0]}' failed with status {status}")


def trient_glims_id(inventory: Path) -> str:
    """The id ``inventory select`` gave Trient: SGI has no GLIMS ids, so it is derived from the
    outline's centroid; SGI's own id is kept in ``source_id``."""
    import geopandas as gpd

    inv = gpd.read_parquet(inventory)
    return str(inv.loc[inv["source_id"] == TRIENT_SGI_ID, "glims_id"].iloc[0])


def run_tutorial(work: Path, shared: Path) -> dict[str, Path]:
    """Every step of the tutorial, writing only under ``work``; the outputs by name."""
    shared = Path(shared).resolve()
    for needed in (shared / TRIENT_DIR, shared / REGION_OUTLINES, shared / SGI_2010):
        if not needed.exists():
            raise SystemExit(f"tutorial: {needed} not found (the shared data folder, --shared)")
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work / "trient.toml", shared)
    inventory = work / "inventory.parquet"
    catalog = work / "catalog.parquet"
    areas = work / "areas.parquet"

    # 1. inventory: every SGI 2010 glacier of the region is read, so that Trient's territory (the
    #    pixels it may count) leaves out its neighbours' ice; SGI columns mapped to the inventory's
    glacierwatch("inventory", "select", shared / REGION_OUTLINES,
                 "--column-map", "id=SGI", "area_m2=Shape_Area", "src_date==2010-09-01", "geog_area==Swiss Alps",
                 "--out", inventory)
    trient = trient_glims_id(inventory)
    print(f"Trient (SGI {TRIENT_SGI_ID}) is {trient} in this inventory")

    # 2. imagery: the Earth Engine exports onto Trient's grid (scenes/, dem/ and a manifest)
    glacierwatch("imagery", "fetch", "--inventory", inventory, "--source", "local", "--mode", "timeseries",
                 "--glaciers", trient, "--out", work, "--config", config, "--no-progress")

    # 3. catalog: one row per scene file, with its cloud cover, fill and quality
    glacierwatch("catalog", "build", work / "scenes", "--out", catalog, "--inventory", inventory,
                 "--config", config, "--no-progress")

    # 4. areas: NDSI > 0.4 on every scene the (relaxed) inference filter keeps
    glacierwatch("timeseries", "run", "--catalog", catalog, "--inventory", inventory, "--out", areas,
                 "--dem-dir", work / "dem", "--config", config, "--segmenter", "ndsi", "--smoothing", "none",
                 "--glaciers", trient, "--no-progress")

    # 5. an overlay: the true-colour scene, the NDSI glacier probability and the outline
    glacierwatch("timeseries", "overlay", trient, OVERLAY_DATE, "--areas", areas, "--inventory", inventory,
                 "--dem-dir", work / "dem", "--config", config, "--out", work / "overlays")

    # 6. trend: every scene is fitted (no scene is counted in the annual table); the short record is flagged
    glacierwatch("trends", areas, "--out", work / "trends", "--fit-on", "scenes")

    # 7. validation against the Swiss Glacier Inventory 2010 (matched by location): validate counts the
    #    rows with use = true, and none is (no scene has 90 % of the outline observed), so the
    #    end-of-summer scenes with at least 80 % observed are handed over as a plain table
    late_summer = write_late_summer_areas(areas, work / "areas_late_summer.csv")
    glacierwatch("validate", late_summer, "--reference", shared / SGI_2010, "--inventory", inventory,
                 "--out", work / "validation")
    # ... and, since SGI 2010 is 19 years after the record, the same comparison across those years
    glacierwatch("validate", late_summer, "--reference", shared / SGI_2010, "--inventory", inventory,
                 "--window-days", str(SINCE_1990_WINDOW_DAYS), "--out", work / "validation_since_1990")

    return {"config": config, "inventory": inventory, "catalog": catalog, "areas": areas,
            "annual": work / "areas.annual.parquet", "overlays": work / "overlays",
            "trends": work / "trends" / "glacier_trends.csv", "late_summer": late_summer,
            "validation": work / "validation" / "validation.csv",
            "validation_since_1990": work / "validation_since_1990" / "validation.csv"}


def write_late_summer_areas(areas: Path, out: Path) -> Path:
    """The end-of-summer areas worth comparing: scenes of August-October with at least
    :data:`LATE_SUMMER_MIN_OBSERVED` of the counting region observed, as ``glims_id, date, area_km2,
    area_km2_low, area_km2_high`` (km²) in a CSV, the table ``glacierwatch validate`` reads from anyone."""
    import pandas as pd

    table = pd.read_parquet(areas)
    keep = table["date"].dt.month.isin(LATE_SUMMER_MONTHS) & (table["valid_fraction"] >= LATE_SUMMER_MIN_OBSERVED)
    columns = ["glims_id", "date", "area_km2", "area_km2_low", "area_km2_high", "valid_fraction"]
    table.loc[keep, columns].assign(date=lambda t: t["date"].dt.strftime("%Y-%m-%d")).to_csv(out, index=False)
    print(f"{int(keep.sum())} end-of-summer scene(s) with >= {LATE_SUMMER_MIN_OBSERVED:.0%} observed -> {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="work folder: everything the tutorial writes goes here")
    parser.add_argument("--shared", type=Path, default=repo.parent / "shared" / "data",
                        help="the shared data folder (default: ../shared/data beside the clone)")
    args = parser.parse_args(argv)
    outputs = run_tutorial(args.work, args.shared)
    print("\noutputs:\n" + "\n".join(f"  {name}: {path}" for name, path in outputs.items() if name != "glims_id"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
