"""Small synthetic glaciers for tests and benchmarks of the chips and model stages.

Not the project's synthetic world (:mod:`glacierwatch.synth`): a self-contained, fast generator with
the confounders that make NDSI > 0.4 imperfect, so a learned segmenter has something to beat:

* debris-covered glacier tongues (rock-like spectra, NDSI < 0; glacier in the mask, missed by NDSI),
* seasonal snow patches off the glacier (NDSI ~ 0.7; not glacier, but found by NDSI),
* pro-glacial lakes (water: NDSI ~ 0.6; not glacier),
* topographic shading and sensor noise.

:func:`toy_chips` makes chips in memory (physical units, any channel list);
:func:`write_toy_world` writes standard scene GeoTIFFs (with clouds and shadows flagged in
QA_PIXEL), DEMs, an inventory GeoDataFrame and a training selection, as the catalog would give it.

Why it is not part of :mod:`glacierwatch.synth`: that world is a time series of whole scenes (terrain,
a glacier changing at a known rate, sun geometry, sensor eras, metadata files) built to test areas
and trends end to end (seconds for a handful of glaciers); this one draws one surface per glacier in
milliseconds with the confounders in chosen amounts (debris, snow, lakes switched on or off), so a
model test can train on it in a second and assert that the U-Net beats NDSI. Merging them would
either slow every model test by the full world or add knobs to the world that only these tests use.
It shares the world's file layout (:class:`glacierwatch.layout.GlacierPaths`) and channel code
(:mod:`glacierwatch.features`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from glacierwatch.features import DEFAULT_CHANNELS, compute_channels
from glacierwatch.grid import GlacierGrid, utm_epsg
from glacierwatch.ids import glims_id_from_lonlat
from glacierwatch.landsat import QA, SENSORS, kelvin_to_dn, reflectance_to_dn
from glacierwatch.layout import DEM, SCENES, GlacierPaths

#: Surface classes: reflectance of (coastal, blue, green, red, nir08, swir16, swir22) and lwir (K).
SPECTRA: dict[str, tuple[tuple[float, ...], float]] = {
    "rock": ((0.09, 0.10, 0.13, 0.16, 0.24, 0.30, 0.24), 288.0),
    "vegetation": ((0.04, 0.04, 0.08, 0.05, 0.35, 0.18, 0.09), 292.0),
    "ice": ((0.63, 0.62, 0.60, 0.56, 0.45, 0.05, 0.04), 270.0),
    "debris": ((0.10, 0.11, 0.13, 0.15, 0.20, 0.22, 0.18), 279.0),
    "snow": ((0.86, 0.85, 0.83, 0.80, 0.70, 0.16, 0.12), 272.0),
    "water": ((0.08, 0.07, 0.07, 0.05, 0.03, 0.015, 0.01), 283.0),
}
_BANDS = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")
CLASSES = tuple(SPECTRA)
GLACIER_CLASSES = ("ice", "debris")

REGIONS: dict[str, tuple[float, float]] = {
    "Swiss Alps": (7.5, 46.3), "Himalaya": (86.9, 28.0), "Andes": (-70.0, -33.0), "Alaska": (-141.0, 61.0),
}


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (f - f.mean()) / (f.std() + 1e-9)


@dataclass
class ToySurface:
    """One glacier scene's ground truth: class map, glacier mask, DEM, shading."""

    classes: np.ndarray  # (H, W) int index into CLASSES
    glacier: np.ndarray  # (H, W) bool
    dem: np.ndarray      # (H, W) float32, m
    shade: np.ndarray    # (H, W) float32 illumination factor


def toy_surface(rng: np.random.Generator, shape: tuple[int, int], *, confounders: float = 1.0) -> ToySurface:
    """A glacier in a valley: ice with a debris-covered tongue, rock, vegetation, snow patches, a lake."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    pot = np.zeros(shape)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        sy, sx = rng.uniform(0.12, 0.3) * h, rng.uniform(0.12, 0.3) * w
        pot += np.exp(-0.5 * (((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
    pot += 0.25 * _smooth(rng, shape, max(2.0, h / 12))
    frac = rng.uniform(0.25, 0.5)
    glacier = pot > np.quantile(pot, 1 - frac)
    glacier = ndimage.binary_opening(glacier, iterations=1)
    dem = (2400 + 900 * pot / max(pot.max(), 1e-6) + 120 * _smooth(rng, shape, max(2.0, h / 8))).astype(np.float32)
    classes = np.full(shape, CLASSES.index("rock"), dtype=np.int64)
    classes[dem < np.quantile(dem, 0.15)] = CLASSES.index("vegetation")
    classes[glacier] = CLASSES.index("ice")
    if confounders > 0:
        # debris on the lowest part of the glacier, patchy
        low = glacier & (dem < np.quantile(dem[glacier], 0.3 * confounders)) if glacier.any() else glacier
        classes[low & (_smooth(rng, shape, 2.0) > -0.3)] = CLASSES.index("debris")
        # seasonal snow patches off the glacier
        snow = (~glacier) & (_smooth(rng, shape, max(1.5, h / 20)) > 1.3 / confounders)
        classes[snow] = CLASSES.index("snow")
        # a lake below the glacier, sometimes
        if rng.random() < 0.5 * confounders and (~glacier).any():
            ys, xs = np.nonzero(~glacier & ~ndimage.binary_dilation(glacier, iterations=2))
            if len(ys):
                i = rng.integers(len(ys))
                r = rng.uniform(0.04, 0.09) * min(h, w)
                lake = ((yy - ys[i]) ** 2 + (xx - xs[i]) ** 2 < r * r) & ~glacier
                classes[lake] = CLASSES.index("water")
    shade = np.clip(1.0 + 0.25 * _smooth(rng, shape, max(2.0, h / 10)), 0.35, 1.4).astype(np.float32)
    return ToySurface(classes=classes, glacier=glacier, dem=dem, shade=shade)


def render(surface: ToySurface, rng: np.random.Generator, *, noise: float = 0.01) -> dict[str, np.ndarray]:
    """Physical bands (reflectance, K) of a surface, shaded and noisy: name -> float32 (H, W)."""
    refl = np.array([SPECTRA[c][0] for c in CLASSES], dtype=np.float32)  # (K, 7)
    temp = np.array([SPECTRA[c][1] for c in CLASSES], dtype=np.float32)
    out: dict[str, np.ndarray] = {}
    for j, b in enumerate(_BANDS):
        v = refl[surface.classes, j] * surface.shade
        v = v * (1 + 0.04 * rng.standard_normal(v.shape)) + noise * rng.standard_normal(v.shape)
        out[b] = np.clip(v, 0.001, 1.2).astype(np.float32)
    out["lwir"] = (temp[surface.classes] + 2.0 * (surface.shade - 1) * 5
                   + 1.0 * rng.standard_normal(surface.classes.shape)).astype(np.float32)
    return out


def toy_chips(n: int, *, size: int = 64, channels: Sequence[str] = DEFAULT_CHANNELS, seed: int = 0,
              confounders: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` chips: physical images (n, C, size, size) float32 and masks (n, size, size) uint8."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, len(channels), size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        surf = toy_surface(rng, (size, size), confounders=confounders)
        images[i] = compute_channels(render(surf, rng), channels, dem=surf.dem)
        masks[i] = surf.glacier
    return images, masks


def write_toy_chipset(out_dir: str | Path, n: int = 40, *, size: int = 64, channels: Sequence[str] = DEFAULT_CHANNELS,
                      regions: Sequence[str] = ("Swiss Alps", "Himalaya"), val_fraction: float = 0.15,
                      test_fraction: float = 0.2, seed: int = 0, confounders: float = 1.0) -> Any:
    """A chip set of :func:`toy_chips` (one chip per made-up glacier), split as the builder splits."""
    from glacierwatch.chips.store import assign_splits, write_chipset

    images, masks = toy_chips(n, size=size, channels=channels, seed=seed, confounders=confounders)
    recs = []
    for i in range(n):
        region = regions[i % len(regions)]
        lon, lat = REGIONS.get(region, (10.0, 45.0))
        gid = glims_id_from_lonlat(lon + 0.01 * i, lat)
        recs.append({"chip_id": gid, "glims_id": gid, "region": region, "satellites": "L5" if i % 3 else "L8",
                     "dominant_satellite": "L5" if i % 3 else "L8", "n_scenes": 1, "date_first": "2005-08-01",
                     "date_last": "2005-08-01", "valid_fraction": 1.0, "pixel_area_m2": 900.0,
                     "grid_height": size, "grid_width": size,
                     "true_area_km2": float(masks[i].sum()) * 900.0 / 1e6, "mask_fraction": float(masks[i].mean()),
                     "source": "toy", "_i": i})
    split = assign_splits(pd.DataFrame(recs)[["glims_id", "region"]], val_fraction=val_fraction,
                          test_fraction=test_fraction, seed=seed)
    return write_chipset(out_dir, recs, lambda r: (images[r["_i"]], masks[r["_i"]]), channels=channels,
                         size=size, split=split, dropped={}, provenance={"built_by": "toy_chips", "seed": seed})


# ---------------------------------------------------------------- scene files

def _outline_polygon(mask: np.ndarray, grid: GlacierGrid) -> Any:
    """The glacier mask as a polygon in EPSG:4326 (pixel edges)."""
    import geopandas as gpd
    from rasterio.features import shapes
    from shapely.geometry import shape
    from shapely.ops import unary_union

    polys = [shape(geom) for geom, val in shapes(mask.astype(np.uint8), mask=mask, transform=grid.transform) if val]
    return gpd.GeoSeries([unary_union(polys)], crs=grid.crs).to_crs("EPSG:4326").iloc[0]


def write_scene(path: Path, bands: dict[str, np.ndarray], qa: np.ndarray, grid: GlacierGrid, satellite: str) -> None:
    """Write physical bands as a standard scene file (uint16 DN, common-name descriptions)."""
    from glacierwatch.io import write_raster

    names = SENSORS[satellite].file_bands
    layers = []
    for name in names:
        if name == "qa_pixel":
            layers.append(qa.astype(np.uint16))
        elif name == "lwir":
            layers.append(kelvin_to_dn(bands["lwir"]))
        else:
            layers.append(reflectance_to_dn(bands[name]))
    write_raster(path, np.stack(layers), grid, band_names=list(names), nodata=0)


@dataclass
class ToyWorld:
    """What :func:`write_toy_world` wrote."""

    root: Path
    inventory: Any            # GeoDataFrame: glims_id, region, outline_date, area_km2, grid, geometry
    selection: pd.DataFrame   # glims_id, path, date, satellite
    dem_dir: Path
    truth: dict[str, np.ndarray]  # glims_id -> glacier mask on its grid
    clear: dict[str, dict[str, np.ndarray]]  # glims_id -> clear-sky physical bands (no noise in clouds)


def write_toy_world(root: str | Path, n_glaciers: int = 6, *, shape: tuple[int, int] = (48, 56),
                    scenes_per_glacier: int = 3, regions: Sequence[str] = ("Swiss Alps", "Himalaya"),
                    cloud_fraction: float = 0.2, seed: int = 0, confounders: float = 1.0) -> ToyWorld:
    """Scene GeoTIFFs (L5/L7/L8 mixed, clouds and shadows flagged in QA_PIXEL), DEMs, an inventory."""
    import geopandas as gpd
    from pyproj import Transformer

    from glacierwatch.io import write_raster

    root = Path(root)
    rng = np.random.default_rng(seed)
    rows, sel, truth, clear = [], [], {}, {}
    sats = ("L5", "L7", "L8")
    for i in range(n_glaciers):
        region = regions[i % len(regions)]
        lon0, lat0 = REGIONS.get(region, (10.0, 45.0))
        lon, lat = lon0 + 0.05 * (i // len(regions)), lat0 + 0.01 * i
        gid = glims_id_from_lonlat(lon, lat)
        crs = f"EPSG:{utm_epsg(lon, lat)}"
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        h, w = shape
        grid = GlacierGrid(crs=crs, x0=round(x / 30) * 30 - 15 * w, y0=round(y / 30) * 30 + 15 * h,
                           resolution=30.0, width=w, height=h)
        surf = toy_surface(rng, shape, confounders=confounders)
        truth[gid] = surf.glacier
        files = GlacierPaths(gid, scenes_dir=root / SCENES, dem_dir=root / DEM)
        write_raster(files.dem, surf.dem, grid, band_names=["dem"])
        clear[gid] = render(surf, np.random.default_rng(seed + 1000 + i), noise=0.0)
        date0 = dt.date(2005 + i % 10, 8, 1)
        for k in range(scenes_per_glacier):
            sat = sats[(i + k) % len(sats)]
            date = date0 + dt.timedelta(days=16 * k)
            bands = render(surf, rng)
            qa = np.full(shape, int(QA.CLEAR), dtype=np.uint16)
            if cloud_fraction > 0:
                field = _smooth(rng, shape, 4.0)
                cloud = field > np.quantile(field, 1 - cloud_fraction)
                shadow = np.roll(cloud, (3, 4), axis=(0, 1)) & ~cloud
                for b in _BANDS:
                    bands[b] = np.where(cloud, 0.75 if b not in ("swir16", "swir22") else 0.45, bands[b])
                    bands[b] = np.where(shadow, bands[b] * 0.2, bands[b])
                bands["lwir"] = np.where(cloud, 250.0, bands["lwir"]).astype(np.float32)
                qa = np.where(cloud, int(QA.CLOUD | QA.DILATED_CLOUD), qa)
                qa = np.where(shadow, int(QA.CLOUD_SHADOW), qa).astype(np.uint16)
            path = files.scene(date, sat)
            write_scene(path, bands, qa, grid, sat)
            cc = round(100.0 * float(np.mean(qa != int(QA.CLEAR))), 2)
            props = {"SPACECRAFT_ID": SENSORS[sat].spacecraft_id, "DATE_ACQUIRED": date.isoformat(),
                     "CLOUD_COVER": cc, "CLOUD_COVER_LAND": cc, "IMAGE_QUALITY": 9, "COLLECTION_NUMBER": 2,
                     "COLLECTION_CATEGORY": "T1", "PROCESSING_LEVEL": "L2SP"}
            path.with_suffix(".json").write_text(json.dumps(props), encoding="utf-8")
            sel.append({"glims_id": gid, "path": str(path.resolve()), "date": pd.Timestamp(date), "satellite": sat})
        rows.append({"glims_id": gid, "region": region, "outline_date": pd.Timestamp(date0),
                     "area_km2": float(surf.glacier.sum()) * 900 / 1e6, "grid": grid.to_json(),
                     "geometry": _outline_polygon(surf.glacier, grid)})
    inventory = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    return ToyWorld(root=root, inventory=inventory, selection=pd.DataFrame(sel), dem_dir=root / DEM,
                    truth=truth, clear=clear)
