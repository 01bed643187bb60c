"""``glacierwatch chips build``: training chips from scene files, outlines and DEMs.

Which chips (``[chips] masks``, :func:`plan_chips`):

* ``"outline"`` (the seed): one chip per training glacier, the composite of the scenes around its
  inventory outline date, the outline as the mask;
* ``"dated"`` (default): one chip per *dated mask*. With a synthetic world's truth (``truth_dir``),
  every training scene of a glacier on its own, with the TRUE mask of its date (late-season and snowy
  scenes, small and large states, each with what the glacier was that day). Otherwise one composite
  per dated outline: the inventory outline (as in ``"outline"``) plus each of the glacier's other
  dated outlines (``inventory_validation.parquet``, e.g. GLIMS multi-temporal, SGI) that has scenes
  within ``window_days`` of its date. Dated chips seeing less than ``min_valid_fraction`` of the grid
  clear are dropped (a single scene can be mostly cloud).

For each chip:

1. every scene of its window (the catalog's training selection) is read with
   :func:`glacierwatch.io.read_scene` and scaled with :func:`features.physical_bands` with
   ``mask_invalid=True``: cloud, dilated cloud, cirrus, shadow and fill pixels (QA_PIXEL) become NaN;
2. the composite is the per-pixel mean over the scenes of the remaining (clear) values (NaN-mean),
   so a cloud in one scene is left out of the mean rather than averaged in (the seed averaged it in);
3. the channels (:func:`features.compute_channels`, indices from the composite reflectance) are
   filled where no scene saw the ground (:func:`features.fill_nan`) and resized to the chip size with
   antialiasing (:func:`features.resize_stack`);
4. the mask (the outline rasterised on the glacier grid, ``all_touched=False``, or the true mask of
   the scene date warped onto it, nearest neighbour) is resized as a bilinear (antialiased) fraction
   and thresholded at 0.5;
5. chips whose mask variance is at or below ``min_mask_variance`` are dropped and counted.

Per-chip results are cached under ``OUT/.cache-<settings hash>/`` so an interrupted build resumes;
the split (stratified by region, by glacier) and the normalisation (train split only) are done once all
glaciers are processed, then the shards are written (see :mod:`glacierwatch.chips.store`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glacierwatch import features
from glacierwatch.chips.store import ChipSetInfo, assign_splits, write_chipset
from glacierwatch.config import CatalogConfig, ChipsConfig, MaskMode, choices
from glacierwatch.errors import ConfigError, GlacierwatchError, InputError
from glacierwatch.grid import GlacierGrid, outline_on_grid
from glacierwatch.imagery.standard import dem_on_grid, scene_on_grid
from glacierwatch.io import atomic_path, read_raster, read_scene
from glacierwatch.landsat import QA_BAND
from glacierwatch.layout import SYNTH_TRUTH, GlacierPaths, synth_potential_path
from glacierwatch.tasks import run_per_glacier

log = logging.getLogger(__name__)

#: Values of ``[chips] masks``.
MASK_MODES = choices(MaskMode)
#: Where a chip's mask comes from (index column ``mask_kind``).
MASK_KINDS = ("outline", "validation_outline", "truth")


def _bands_needed(channels: Sequence[str]) -> list[str]:
    try:
        return features.bands_needed(channels)
    except ValueError as exc:
        raise InputError(str(exc)) from None


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
    for path, sat in zip(paths, satellites, strict=False):
        try:  # a scene on another grid is put onto the glacier grid (nearest neighbour, windowed read)
            scene, _ = scene_on_grid(str(path), grid)
        except GlacierwatchError as exc:
            log.warning("%s: scene skipped (%s)", path, exc)
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


def _settings_hash(config: ChipsConfig, truth: SyntheticTruth | None) -> str:
    key = json.dumps({"size": config.size, "channels": list(config.channels), "masks": config.masks,
                      "min_valid_fraction": config.min_valid_fraction,
                      "truth": str(truth.world_dir) if truth is not None else "", "v": 2}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:10]


class SyntheticTruth:
    """The true glacier masks of a synthetic world (:mod:`glacierwatch.synth`): ``truth.csv`` gives
    each scene date's ``mask_level``, ``truth/<ID>.tif`` the potential field; the mask of a date is
    ``potential >= mask_level``, warped onto the glacier grid (nearest neighbour, as the imagery stage
    warps the scenes)."""

    def __init__(self, world_dir: str | Path) -> None:
        from glacierwatch.errors import DatasetNotFoundError
        from glacierwatch.io import read_table

        self.world_dir = Path(world_dir).resolve()
        csv = self.world_dir / SYNTH_TRUTH
        if not csv.exists():
            raise DatasetNotFoundError(f"no synthetic truth in {self.world_dir} ({SYNTH_TRUTH} missing)")
        table = read_table(csv, columns=["glims_id", "date", "mask_level"])
        self._levels = {(str(g), str(d)[:10]): float(v)
                        for g, d, v in zip(table["glims_id"], table["date"], table["mask_level"], strict=False)}
        self._potential: dict[str, tuple[np.ndarray, GlacierGrid]] = {}

    def has(self, glims_id: str, date: Any) -> bool:
        """True when ``truth.csv`` lists ``glims_id`` on ``date``."""
        return (glims_id, str(pd.Timestamp(date).date())) in self._levels

    def mask_on(self, glims_id: str, date: Any, grid: GlacierGrid) -> np.ndarray:
        """The true mask of ``glims_id`` on ``date`` on ``grid`` (bool; False where the world's box
        does not reach)."""
        from glacierwatch.imagery.standard import warp_to_grid

        level = self._levels[(glims_id, str(pd.Timestamp(date).date()))]
        if glims_id not in self._potential:
            arr, pgrid, _ = read_raster(synth_potential_path(self.world_dir, glims_id))
            self._potential = {glims_id: (arr.astype(np.float32), pgrid)}  # one glacier at a time
        potential, pgrid = self._potential[glims_id]
        warped = warp_to_grid(potential, src_crs=pgrid.crs, src_transform=pgrid.transform, grid=grid,
                              src_nodata=None, dst_nodata=np.nan)
        with np.errstate(invalid="ignore"):
            return warped >= np.float32(level)


@dataclass
class ChipPlan:
    """One chip to build: the glacier, the scenes composited, the date its mask holds on and where the
    mask comes from (``mask_kind``: one of :data:`MASK_KINDS`; ``geometry`` for outline kinds)."""

    chip_id: str
    glims_id: str
    mask_kind: str
    mask_date: str
    scenes: pd.DataFrame
    geometry: Any = None


def _within(scenes: pd.DataFrame, date: Any, days: int) -> pd.DataFrame:
    offset = (pd.to_datetime(scenes["date"]) - pd.Timestamp(date)).dt.days.abs()
    return scenes[offset <= days]


def plan_chips(selection: pd.DataFrame, inventory: pd.DataFrame, *, masks: str = "dated",
               validation: pd.DataFrame | None = None, truth: SyntheticTruth | None = None,
               window_days: int | None = None) -> list[ChipPlan]:
    """The chips to build (see the module doc), in glacier then date order.

    ``selection``: scene rows (``glims_id, path, date, satellite``); in ``"outline"`` mode all of a
    glacier's rows are composited (the catalog's training selection), in ``"dated"`` mode each dated
    outline takes the rows within ``window_days`` of its date (``None``: the inventory outline takes
    all rows, as the selection is its training window; other outlines use the catalog's default
    ``training_window_days``) and a glacier with truth takes every row that ``truth.csv`` lists. ``inventory``: ``glims_id, geometry`` (and ``outline_date``);
    ``validation``: other dated outlines (``glims_id, outline_date, geometry``).
    """
    if masks not in MASK_MODES:
        raise ConfigError(f"[chips] masks must be one of {list(MASK_MODES)}, got {masks!r}")
    inv = inventory.drop_duplicates("glims_id").set_index("glims_id", drop=False)
    other_window = window_days if window_days is not None else CatalogConfig().training_window_days
    plans: list[ChipPlan] = []
    for gid, scenes in selection.groupby("glims_id", sort=True):
        gid = str(gid)
        if gid not in inv.index:
            continue
        scenes = scenes.sort_values(["date", "path"])
        row = inv.loc[gid]
        outline_date = row.get("outline_date") if "outline_date" in row.index else None
        outline_day = str(pd.Timestamp(outline_date).date()) if outline_date is not None and pd.notna(outline_date) else ""
        if masks == "outline":
            plans.append(ChipPlan(gid, gid, "outline", outline_day, scenes, row["geometry"]))
            continue
        if truth is not None and any(truth.has(gid, d) for d in scenes["date"]):
            for _, scene in scenes.iterrows():
                if truth.has(gid, scene["date"]):
                    day = str(pd.Timestamp(scene["date"]).date())
                    same_day = scenes[pd.to_datetime(scenes["date"]) == pd.Timestamp(day)]
                    if plans and plans[-1].chip_id == f"{gid}_{day}":
                        continue  # two files of one day: one chip
                    plans.append(ChipPlan(f"{gid}_{day}", gid, "truth", day, same_day))
            continue
        near = _within(scenes, outline_date, window_days) if outline_day and window_days is not None else scenes
        if not near.empty:
            plans.append(ChipPlan(gid, gid, "outline", outline_day, near, row["geometry"]))
        if validation is not None and not validation.empty:
            for _, other in validation[validation["glims_id"] == gid].iterrows():
                if pd.isna(other.get("outline_date")):
                    continue
                day = str(pd.Timestamp(other["outline_date"]).date())
                if day == outline_day or any(p.chip_id == f"{gid}_{day}" for p in plans):
                    continue
                near = _within(scenes, day, other_window)
                if not near.empty:
                    plans.append(ChipPlan(f"{gid}_{day}", gid, "validation_outline", day, near, other["geometry"]))
    return plans


def _build_one(plan: ChipPlan, *, inv_row: pd.Series, inv_crs: Any, dem_dir: Path | None,
               cache: Path, config: ChipsConfig, truth: SyntheticTruth | None) -> dict[str, Any]:
    """One chip -> cache/<chip_id>.npz + metadata (returned and stored in the npz)."""
    channels = list(config.channels)
    bands = _bands_needed(channels)
    scenes = plan.scenes
    glims_id = plan.glims_id
    grid_text = inv_row.get("grid") if "grid" in inv_row.index else None
    if isinstance(grid_text, str) and grid_text:
        grid = GlacierGrid.from_json(grid_text)
    else:
        grid = read_scene(scenes["path"].iloc[0], bands=[QA_BAND]).grid
    comp, info = composite_scenes(list(scenes["path"]), list(scenes["satellite"]), bands, grid)
    meta: dict[str, Any] = {
        "chip_id": plan.chip_id, "glims_id": glims_id, "region": str(inv_row.get("region", "unknown")),
        "satellites": ",".join(sorted({str(s) for s in scenes["satellite"]})),
        "dominant_satellite": max(info["valid_pixels"], key=info["valid_pixels"].get) if info["valid_pixels"] else "",
        "n_scenes": len(info["used"]),
        "date_first": str(pd.to_datetime(scenes["date"]).min().date()),
        "date_last": str(pd.to_datetime(scenes["date"]).max().date()),
        "valid_fraction": info["valid_fraction"],
        "pixel_area_m2": grid.pixel_area_m2, "grid_height": grid.height, "grid_width": grid.width,
        "source": ";".join(Path(p).name for p in info["used"]),
        "mask_kind": plan.mask_kind, "mask_date": plan.mask_date,
    }
    if plan.mask_kind == "truth":
        assert truth is not None
        mask_full = truth.mask_on(glims_id, plan.mask_date, grid)
    else:
        mask_full = outline_on_grid(plan.geometry, grid, src_crs=inv_crs)
    meta["true_area_km2"] = float(mask_full.sum()) * grid.pixel_area_m2 / 1e6
    status = "ok"
    if not info["used"]:
        status = "no_scenes"
    elif info["valid_fraction"] == 0.0:
        status = "no_clear_pixels"
    elif config.masks == "dated" and info["valid_fraction"] < config.min_valid_fraction:
        status = "cloudy"
    image = np.zeros((len(channels), config.size, config.size), dtype=np.float32)
    mask = resize_mask(mask_full, config.size)
    if status == "ok":
        dem = None
        if features.needs_dem(channels):
            if dem_dir is None:
                raise InputError(f"channels {list(channels)} need a DEM but no DEM folder is given")
            dem = dem_on_grid(GlacierPaths(glims_id, dem_dir=Path(dem_dir)).dem, grid)
        image = chip_from_composite(comp, channels, dem, config.size)
        if float(mask.var()) <= config.min_mask_variance:
            status = "mask_variance"
    meta["mask_fraction"] = float(mask.mean())
    meta["status"] = status
    with atomic_path(cache / f"{plan.chip_id}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, image=image, mask=mask, meta=np.array(json.dumps(meta)))
    return meta


def build_chips(selection: pd.DataFrame, inventory: pd.DataFrame, *, dem_dir: str | os.PathLike[str] | None,
                out_dir: str | os.PathLike[str], config: ChipsConfig | None = None, progress: bool = True,
                keep_cache: bool = False, validation: pd.DataFrame | None = None,
                truth_dir: str | os.PathLike[str] | None = None, window_days: int | None = None) -> ChipSetInfo:
    """Build the training chip set (see the module doc) and return what was written.

    ``selection``: scene rows with ``glims_id, path, date, satellite`` (the catalog's training
    selection; for ``masks = "dated"`` it may hold every scene of the training glaciers);
    ``inventory``: GeoDataFrame with ``glims_id, region, geometry``, ``outline_date`` and ``grid``
    (GlacierGrid JSON); ``validation``: the glaciers' other dated outlines (same CRS as the inventory);
    ``truth_dir``: a synthetic world whose true masks replace the outlines (``"dated"`` only; default
    ``config.truth_dir``); ``window_days``: scenes within this many days of a dated outline are
    composited for it (see :func:`plan_chips`; ``None`` when ``selection`` is the training window). Chips that fail are logged to ``OUT/failures.jsonl`` and left out.
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
    truth_dir = truth_dir if truth_dir is not None else (config.truth_dir or None)
    truth = SyntheticTruth(Path(truth_dir)) if truth_dir is not None and config.masks == "dated" else None
    ids = sorted(set(selection["glims_id"]))
    unknown = [g for g in ids if g not in inv.index]
    if unknown:
        log.warning("%d glacier(s) of the selection are not in the inventory and are left out: %s",
                    len(unknown), ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else ""))
        ids = [g for g in ids if g in inv.index]
    if not ids:
        raise InputError("no glacier of the scene selection is in the inventory")
    cache = out / f".cache-{_settings_hash(config, truth)}"
    cache.mkdir(parents=True, exist_ok=True)
    plans = plan_chips(selection[selection["glims_id"].isin(ids)], inv, masks=config.masks,
                       validation=validation, truth=truth, window_days=window_days)
    by_chip = {p.chip_id: p for p in plans}
    dem_path = Path(dem_dir) if dem_dir is not None else None

    def task(chip_id: str) -> dict[str, Any]:
        plan = by_chip[chip_id]
        return _build_one(plan, inv_row=inv.loc[plan.glims_id], inv_crs=inv_crs, dem_dir=dem_path,
                          cache=cache, config=config, truth=truth)

    report = run_per_glacier(task, list(by_chip), stage="chips", is_done=lambda c: (cache / f"{c}.npz").exists(),
                             ledger=out / "failures.jsonl", progress=progress)
    metas = []
    for chip_id in by_chip:
        f = cache / f"{chip_id}.npz"
        if f.exists():
            with np.load(f) as data:
                metas.append(json.loads(str(data["meta"])))
    status = Counter(m["status"] for m in metas)
    kept = [m for m in metas if m["status"] == "ok"]
    dropped = {"mask_variance": status.get("mask_variance", 0), "no_scenes": status.get("no_scenes", 0),
               "no_clear_pixels": status.get("no_clear_pixels", 0), "failed": len(report.failed)}
    if config.masks == "dated":
        dropped["cloudy"] = status.get("cloudy", 0)
    kinds = Counter(m["mask_kind"] for m in kept)
    log.info("chips: %d chip(s) of %d glacier(s); by mask: %s", len(kept), len({m["glims_id"] for m in kept}),
             dict(kinds))
    if dropped["mask_variance"]:
        log.info("chips: %d chip(s) dropped for a (near) zero-variance mask", dropped["mask_variance"])
    groups = pd.DataFrame([{"glims_id": m["glims_id"], "region": m["region"]} for m in kept])
    if groups.empty:
        raise InputError(f"no usable chip: {dict(status)}; failures: {report.failed}")
    split = assign_splits(groups, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                          seed=config.seed)

    def load(rec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        with np.load(cache / f"{rec['chip_id']}.npz") as data:
            return data["image"], data["mask"]

    for m in kept:
        m.pop("status", None)
    info = write_chipset(out, kept, load, channels=config.channels, size=config.size, split=split,
                         dropped=dropped, failed=report.failed,
                         provenance={"built_by": "glacierwatch chips build", "config": {
                             "size": config.size, "channels": list(config.channels), "masks": config.masks,
                             "min_valid_fraction": config.min_valid_fraction,
                             "truth_dir": str(truth.world_dir) if truth is not None else "",
                             "min_mask_variance": config.min_mask_variance, "val_fraction": config.val_fraction,
                             "test_fraction": config.test_fraction, "seed": config.seed},
                             "composite": "NaN-mean of QA-clear pixels (cloud, dilated cloud, cirrus, shadow, fill excluded)",
                             "mask": ("outline rasterised on the glacier grid (all_touched=False)" if config.masks == "outline"
                                      else "dated: the true mask of the scene date (synthetic truth, nearest-neighbour "
                                           "warp) or the dated outline rasterised (all_touched=False)")
                                     + ", bilinear antialiased fraction >= 0.5",
                             "chips_by_mask_kind": dict(kinds),
                             "n_scene_rows": int(len(selection))},
                         normaliser_seed=config.seed)
    if not keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    log.info("chips: %s", info.summary())
    return info
