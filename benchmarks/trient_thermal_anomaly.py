"""The ``lwir_anomaly`` channel on real Landsat 5 scenes: Trient, August-September 1990-91.

Real data only (``../shared/data``; see each folder's SOURCE.md): the 29 Earth Engine exports of
``LANDSAT/LT05/C01/T1_TOA`` in ``glacierview_trient_l5_toa_timeseries`` (band 6: brightness
temperature, K; bands 2 and 5: green and SWIR1 TOA reflectance), its NASADEM (put onto each scene's
grid bilinearly) and the SGI 2010 outline of Trient (B90-02).

For each August-September scene it prints the median brightness temperature of the ground (NDSI <= 0.4,
outside the outline), the slope of a plain least-squares line of ground temperature against
elevation (K/km), and the median ``lwir_anomaly`` (K) of the ground (with its interquartile range),
of the glacier (inside the outline) and of the outline's pixels with NDSI <= 0.4 (ice that looks like
ground in the reflective bands: dirty or debris-covered margins, mixed pixels).

    .venv/bin/python benchmarks/trient_thermal_anomaly.py [--data ../shared/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from shapely.geometry.base import BaseGeometry

from glacierwatch.features import NDSI_GLACIER_THRESHOLD, lwir_anomaly, normalized_difference
from glacierwatch.grid import GlacierGrid, outline_on_grid
from glacierwatch.imagery.standard import dem_on_grid

SERIES = "glacierview_trient_l5_toa_timeseries"
OUTLINE = "sgi2010_trient_region/trient_SGI2010_B90-02_epsg4326.geojson"
#: band positions (0-based) of the T1_TOA exports (SOURCE.md): B2 green, B5 SWIR1, B6 thermal
GREEN, SWIR16, THERMAL = 1, 4, 5


def scene_figures(path: Path, dem_path: Path, outline: BaseGeometry) -> dict[str, float]:
    """``outline``: Trient's SGI 2010 outline in EPSG:4326."""
    with rasterio.open(path) as src:
        bands = src.read().astype(np.float64)
        grid = GlacierGrid.from_rasterio(src.crs, src.transform, src.width, src.height)
    # the pipeline's own DEM resampling (bilinear, NaN = no data) and outline burning
    dem = dem_on_grid(dem_path, grid).astype(np.float64)
    glacier = outline_on_grid(outline, grid)
    bands[~np.isfinite(bands)] = np.nan  # Earth Engine's masked pixels are -inf
    ndsi = normalized_difference(bands[GREEN], bands[SWIR16])
    temp = bands[THERMAL]
    anomaly = lwir_anomaly(temp, dem, ndsi)
    ground = (np.nan_to_num(ndsi, nan=1.0) <= NDSI_GLACIER_THRESHOLD) & ~glacier
    fit = ground & np.isfinite(temp) & np.isfinite(dem)
    dark_ice = glacier & (np.nan_to_num(ndsi, nan=1.0) <= NDSI_GLACIER_THRESHOLD)
    q25, q75 = np.nanpercentile(anomaly[ground], [25, 75])
    return {"ground_temperature_k": float(np.nanmedian(temp[ground])),
            "ground_lapse_k_per_km": float(np.polyfit(dem[fit], temp[fit], 1)[0] * 1000),
            "anomaly_ground_k": float(np.nanmedian(anomaly[ground])), "anomaly_ground_iqr_k": float(q75 - q25),
            "anomaly_glacier_k": float(np.nanmedian(anomaly[glacier])),
            "anomaly_dark_ice_k": float(np.nanmedian(anomaly[dark_ice])) if dark_ice.any() else float("nan"),
            "dark_ice_pixels": int(dark_ice.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    series = args.data / SERIES
    if not series.is_dir():
        print(f"no {series}: this check needs the real Trient series", file=sys.stderr)
        return 2
    outline = gpd.read_file(args.data / OUTLINE).to_crs("EPSG:4326").geometry.union_all()
    dem_path = series / "nasadem" / "G000000000000N_DEM.tif"
    results = {}
    for path in sorted((series / "landsat5_c01_toa").glob("*.tif")):
        stamp = path.stem.split("_")[1]  # YYYYMM + day of year (SOURCE.md)
        if stamp[4:6] not in ("08", "09"):
            continue
        r = scene_figures(path, dem_path, outline)
        results[stamp] = r
        print(f"{stamp[:4]}-{stamp[4:6]} doy {stamp[6:]}: ground {r['ground_temperature_k']:.1f} K, "
              f"lapse {r['ground_lapse_k_per_km']:+.1f} K/km | anomaly: ground {r['anomaly_ground_k']:+.2f} "
              f"(IQR {r['anomaly_ground_iqr_k']:.2f}), glacier {r['anomaly_glacier_k']:+.2f}, "
              f"outline NDSI <= 0.4 {r['anomaly_dark_ice_k']:+.2f} K ({r['dark_ice_pixels']} px)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
