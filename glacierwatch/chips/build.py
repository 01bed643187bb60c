"""``glacierwatch chips build``: training chips from scene files, outlines and DEMs.

For each training glacier:

1. every scene of its window (the catalog's training selection) is read with
   :func:`glacierwatch.io.read_scene` and scaled with :func:`features.physical_bands` with
   ``mask_invalid=True``: cloud, dilated cloud, cirrus, shadow and fill pixels (QA_PIXEL) become NaN;
2. the composite is the per-pixel mean over the scenes of the remaining (clear) values (NaN-mean),
   so a cloud in one scene is left out of the mean rather than averaged in (the seed averaged it in);
3. the channels (:func:`features.compute_channels`, indices from the composite reflectance) are
   filled where no scene saw the ground (:func:`features.fill_nan`) and resized to the chip size with
   antialiasing (:func:`features.resize_stack`);
4. the mask is the inventory outline rasterised on the glacier grid (``all_touched=False``), resized
   as a bilinear (antialiased) fraction and thresholded at 0.5;
5. chips whose mask variance is at or below ``min_mask_variance`` are dropped and counted.

Per-glacier results are cached under ``OUT/.cache-<settings hash>/`` so an interrupted build resumes;
the split (stratified by region, by glacier) and the normalisation (train split only) are done once all
glaciers are processed, then the shards are written (see :mod:`glacierwatch.chips.store`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glacierwatch.chips import features
from glacierwatch.chips.store import ChipSetInfo, assign_splits, write_chipset
from glacierwatch.config import ChipsConfig
from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid, outline_on_grid
from glacierwatch.io import atomic_path, read_raster, read_scene
from glacierwatch.landsat import QA_BAND
from glacierwatch.tasks import run_per_glacier

log = logging.getLogger(__name__)

#: Chips of this many glaciers or fewer are reported as "skipped: already cached".
_META_FILE = "meta.json"


def _bands_needed(channels: Sequence[str]) -> list[str]:
    unknown = [c for c in channels if c not in features.KNOWN_CHANNELS]
    if unknown:
        raise InputError(f"unknown channel(s) {unknown}; known: {list(features.KNOWN_CHANNELS)}")
    need: list[str] = []
    for c in channels:
        if c == "ndsi":
            need += ["green", "swir16"]
        elif c == "ndwi":
            need += ["green", "nir08"]
        elif c != "dem":
            need.append(c)
    return list(dict.fromkeys(need))


def composite_scenes(paths: Sequence[str | Path], satellites: Sequence[str], bands: Sequence[str],
                     grid: GlacierGrid) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """NaN-mean composite of the clear pixels of several scenes on ``grid``.

    Returns (physical bands: name -> float32 (H, W), NaN where no scene was clear; info dict with
    the scenes used/skipped, valid pixels per satellite and the valid fraction).
    """
    sums = {b: np.zeros(grid.shape, dtype=np.float64) for b in bands}
    counts = np.zeros(grid.shape, dtype=np.int32)
    per_sat: Counter[str] = Counter()
    used, skipped = [], []
    for path, sat in zip(paths, satellites):
        scene = read_scene(path, bands=[*bands, QA_BAND])
        if scene.grid.shape != grid.shape or abs(scene.grid.x0 - grid.x0) > 1e-3 * grid.resolution \
                or abs(scene.grid.y0 - grid.y0) > 1e-3 * grid.resolution:
            log.warning("%s: not on the glacier grid (%s vs %s); scene skipped", path, scene.grid, grid)
            skipped.append(str(path))
            continue
        phys = features.physical_bands(scene, bands, mask_invalid=True)
        valid = np.ones(grid.shape, dtype=bool)
        for b in bands:
            valid &= np.isfinite(phys[b])
        for b in bands:
            sums[b][valid] += phys[b][valid]
        counts += valid
        per_sat[str(sat)] += int(valid.sum())
        used.append(str(path))
    with np.errstate(invalid="ignore", divide="ignore"):
        comp = {b: np.where(counts > 0, sums[b] / np.maximum(counts, 1), np.nan).astype(np.float32) for b in bands}
    info = {"used": used, "skipped": skipped, "valid_pixels": dict(per_sat),
            "valid_fraction": float((counts > 0).mean()) if counts.size else 0.0}
    return comp, info


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Bilinear (antialiased) glacier fraction at ``size`` x ``size``, thresholded at 0.5 -> uint8."""
    frac = features.resize_stack(mask.astype(np.float32)[np.newaxis], size).numpy()[0]
    return (frac >= 0.5).astype(np.uint8)


def chip_from_composite(comp: dict[str, np.ndarray], channels: Sequence[str], dem: np.ndarray | None,
                        size: int) -> np.ndarray:
    """Physical channels of a composite, NaN filled, resized: float32 (C, size, size)."""
    x = features.compute_channels(comp, channels, dem=dem)
    x = features.fill_nan(x)
    return features.resize_stack(x, size).numpy().astype(np.float32)


def _settings_hash(config: ChipsConfig) -> str:
    key = json.dumps({"size": config.size, "channels": list(config.channels), "v": 1}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def _build_one(glims_id: str, *, scenes: pd.DataFrame, inv_row: pd.Series, inv_crs: Any, dem_dir: Path | None,
               cache: Path, config: ChipsConfig) -> dict[str, Any]:
    """One glacier's chip -> cache/<id>.npz + metadata (returned and stored in the npz)."""
    channels = list(config.channels)
    bands = _bands_needed(channels)
    grid_text = inv_row.get("grid") if "grid" in inv_row.index else None
    if isinstance(grid_text, str) and grid_text:
        grid = GlacierGrid.from_json(grid_text)
    else:
        grid = read_scene(scenes["path"].iloc[0], bands=[QA_BAND]).grid
    comp, info = composite_scenes(list(scenes["path"]), list(scenes["satellite"]), bands, grid)
    meta: dict[str, Any] = {
        "chip_id": glims_id, "glims_id": glims_id, "region": str(inv_row.get("region", "unknown")),
        "satellites": ",".join(sorted({str(s) for s in scenes["satellite"]})),
        "dominant_satellite": max(info["valid_pixels"], key=info["valid_pixels"].get) if info["valid_pixels"] else "",
        "n_scenes": len(info["used"]),
        "date_first": str(pd.to_datetime(scenes["date"]).min().date()),
        "date_last": str(pd.to_datetime(scenes["date"]).max().date()),
        "valid_fraction": info["valid_fraction"],
        "pixel_area_m2": grid.pixel_area_m2, "grid_height": grid.height, "grid_width": grid.width,
        "source": ";".join(Path(p).name for p in info["used"]),
    }
    mask_full = outline_on_grid(inv_row["geometry"], grid, src_crs=inv_crs)
    meta["true_area_km2"] = float(mask_full.sum()) * grid.pixel_area_m2 / 1e6
    status = "ok"
    if not info["used"]:
        status = "no_scenes"
    elif info["valid_fraction"] == 0.0:
        status = "no_clear_pixels"
    image = np.zeros((len(channels), config.size, config.size), dtype=np.float32)
    mask = resize_mask(mask_full, config.size)
    if status == "ok":
        dem = None
        if "dem" in channels:
            if dem_dir is None:
                raise InputError("channel 'dem' requested but no DEM folder given")
            dem_arr, dem_grid, nodata = read_raster(dem_dir / f"{glims_id}.tif")
            if dem_grid.shape != grid.shape:
                raise InputError(f"DEM {dem_dir / (glims_id + '.tif')} has shape {dem_grid.shape}, grid {grid.shape}")
            dem = dem_arr.astype(np.float32)
            if nodata is not None:
                dem[dem == nodata] = np.nan
        image = chip_from_composite(comp, channels, dem, config.size)
        if float(mask.var()) <= config.min_mask_variance:
            status = "mask_variance"
    meta["mask_fraction"] = float(mask.mean())
    meta["status"] = status
    with atomic_path(cache / f"{glims_id}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, image=image, mask=mask, meta=np.array(json.dumps(meta)))
    return meta


def build_chips(selection: pd.DataFrame, inventory: pd.DataFrame, *, dem_dir: str | Path | None,
                out_dir: str | Path, config: ChipsConfig | None = None, progress: bool = True,
                keep_cache: bool = False) -> ChipSetInfo:
    """Build the training chip set (see the module doc) and return what was written.

    ``selection``: scene rows with ``glims_id, path, date, satellite`` (the catalog's training
    selection); ``inventory``: GeoDataFrame with ``glims_id, region, geometry`` and ``grid`` (GlacierGrid
    JSON). Glaciers that fail are logged to ``OUT/failures.jsonl`` and left out.
    """
    config = config or ChipsConfig()
    out = Path(out_dir)
    missing = [c for c in ("glims_id", "path", "date", "satellite") if c not in selection.columns]
    if missing:
        raise InputError(f"scene selection lacks column(s) {missing}")
    missing = [c for c in ("glims_id", "geometry") if c not in inventory.columns]
    if missing:
        raise InputError(f"inventory lacks column(s) {missing}")
    _bands_needed(config.channels)
    inv = inventory.drop_duplicates("glims_id").set_index("glims_id", drop=False)
    inv_crs = getattr(inventory, "crs", None) or "EPSG:4326"
    ids = sorted(set(selection["glims_id"]))
    unknown = [g for g in ids if g not in inv.index]
    if unknown:
        log.warning("%d glacier(s) of the selection are not in the inventory and are left out: %s",
                    len(unknown), ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else ""))
        ids = [g for g in ids if g in inv.index]
    if not ids:
        raise InputError("no glacier of the scene selection is in the inventory")
    cache = out / f".cache-{_settings_hash(config)}"
    cache.mkdir(parents=True, exist_ok=True)
    by_id = {g: sub.sort_values("date") for g, sub in selection.groupby("glims_id")}
    dem_path = Path(dem_dir) if dem_dir is not None else None

    def task(gid: str) -> dict[str, Any]:
        return _build_one(gid, scenes=by_id[gid], inv_row=inv.loc[gid], inv_crs=inv_crs, dem_dir=dem_path,
                          cache=cache, config=config)

    report = run_per_glacier(task, ids, stage="chips", is_done=lambda g: (cache / f"{g}.npz").exists(),
                             ledger=out / "failures.jsonl", progress=progress)
    metas = []
    for gid in ids:
        f = cache / f"{gid}.npz"
        if f.exists():
            with np.load(f) as data:
                metas.append(json.loads(str(data["meta"])))
    status = Counter(m["status"] for m in metas)
    kept = [m for m in metas if m["status"] == "ok"]
    dropped = {"mask_variance": status.get("mask_variance", 0), "no_scenes": status.get("no_scenes", 0),
               "no_clear_pixels": status.get("no_clear_pixels", 0), "failed": len(report.failed)}
    if dropped["mask_variance"]:
        log.info("chips: %d chip(s) dropped for a (near) zero-variance mask", dropped["mask_variance"])
    groups = pd.DataFrame([{"glims_id": m["glims_id"], "region": m["region"]} for m in kept])
    if groups.empty:
        raise InputError(f"no usable chip: {dict(status)}; failures: {report.failed}")
    split = assign_splits(groups, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                          seed=config.seed)

    def load(rec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        with np.load(cache / f"{rec['glims_id']}.npz") as data:
            return data["image"], data["mask"]

    for m in kept:
        m.pop("status", None)
    info = write_chipset(out, kept, load, channels=config.channels, size=config.size, split=split,
                         dropped=dropped, failed=report.failed,
                         provenance={"built_by": "glacierwatch chips build", "config": {
                             "size": config.size, "channels": list(config.channels),
                             "min_mask_variance": config.min_mask_variance, "val_fraction": config.val_fraction,
                             "test_fraction": config.test_fraction, "seed": config.seed},
                             "composite": "NaN-mean of QA-clear pixels (cloud, dilated cloud, cirrus, shadow, fill excluded)",
                             "mask": "outline rasterised on the glacier grid (all_touched=False), bilinear antialiased fraction >= 0.5",
                             "n_scene_rows": int(len(selection))},
                         normaliser_seed=config.seed)
    if not keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    log.info("chips: %s", info.summary())
    return info
