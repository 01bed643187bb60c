"""``glacierwatch chips import``: the seed's own training pairs (``images/<ID>.tif``, ``masks/<ID>.tif``).

The seed stores already-resized chips as GeoTIFFs without georeferencing. A *band map* names the
file bands (1-based) by common name, e.g. ``blue=1,green=2,red=3,nir08=4,swir16=5,swir22=6``;
``scale`` says what the values are:

* ``sr-dn``: Collection 2 Level-2 digital numbers (reflective bands -> reflectance with
  DN x 0.0000275 - 0.2, ``lwir`` -> K with DN x 0.00341802 + 149; DN 0 is fill); ``dem`` is taken as m;
* ``physical``: already reflectance / K / m.

Channels are the configured ones that the band map can supply (indices from green/swir16/nir08),
in the configured order; the others are dropped with a warning. Masks are thresholded at 0.5
(the seed's masks are resized, hence fractional). The glacier id is the file stem up to the first
``_`` (``G005595E61743N.tif`` or ``G007026E45991N_2005-08-01_L5_C02_T1_L2_SR.tif``).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio

from glacierwatch import features
from glacierwatch.chips.build import resize_mask
from glacierwatch.chips.store import ChipSetInfo, assign_splits, write_chipset
from glacierwatch.config import ChipsConfig
from glacierwatch.errors import DatasetNotFoundError, InputError
from glacierwatch.landsat import COMMON_BANDS, common_band_name, to_physical

log = logging.getLogger(__name__)

#: The layout of the seed's Norway chips (see shared/data/glacierview_training_chips_norway/SOURCE.md).
SEED_BAND_MAP = {"blue": 1, "green": 2, "red": 3, "nir08": 4, "swir16": 5, "swir22": 6}
_NAME = re.compile(r"^(?P<id>G\d{6}E\d{5}[NS])(?:_(?P<date>\d{4}-\d{2}-\d{2}))?(?:_(?P<sat>L[4-9]))?")


def parse_band_map(text: str | Mapping[str, int]) -> dict[str, int]:
    """``"blue=1,green=2"`` -> {"blue": 1, "green": 2} (names normalised to common names)."""
    if isinstance(text, Mapping):
        items: list[tuple[Any, Any]] = list(text.items())
    else:
        items = []
        for part in str(text).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise InputError(f"band map entry {part!r} is not NAME=BAND (e.g. blue=1)")
            name, _, num = part.partition("=")
            items.append((name, num))
    out: dict[str, int] = {}
    for name, num in items:
        key = common_band_name(str(name))
        if key not in (*COMMON_BANDS, "coastal", "dem"):
            raise InputError(f"band map: unknown band name {name!r} (use blue, green, red, nir08, swir16, swir22, lwir, coastal, dem)")
        try:
            out[key] = int(num)
        except ValueError:
            raise InputError(f"band map: {name}={num!r} is not a band number") from None
        if out[key] < 1:
            raise InputError(f"band map: band numbers start at 1 ({name}={num})")
    return out


def available_channels(channels: Sequence[str], band_map: Mapping[str, int]) -> list[str]:
    """The channels (in order) that the mapped bands can supply (a computed channel: all its inputs,
    :data:`features.DERIVED_CHANNEL_INPUTS`)."""
    have = set(band_map)
    return [c for c in channels if set(features.DERIVED_CHANNEL_INPUTS.get(c, (c,))) <= have]


def _read(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as src:
                return src.read()
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{path}: unreadable GeoTIFF ({exc})") from exc


def _physical(name: str, values: np.ndarray, scale: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if name == "dem" or scale == "physical":
        return values.astype(np.float32)
    return to_physical(name, values)


def import_chips(folders: Sequence[str | Path], *, out_dir: str | Path, band_map: str | Mapping[str, int] = SEED_BAND_MAP,
                 scale: str = "sr-dn", region: str | Sequence[str] = "unknown", inventory: pd.DataFrame | None = None,
                 config: ChipsConfig | None = None, progress: bool = True) -> ChipSetInfo:
    """Import seed-layout chip folders (each with ``images/`` and ``masks/``) into a chip set.

    ``region``: one region for all folders or one per folder; an ``inventory`` (glims_id, region)
    overrides it per glacier. The split is stratified by region and keeps a glacier in one split.
    """
    config = config or ChipsConfig()
    bmap = parse_band_map(band_map)
    if scale not in ("sr-dn", "physical"):
        raise InputError(f"scale must be 'sr-dn' or 'physical', not {scale!r}")
    channels = available_channels(config.channels, bmap)
    left = [c for c in config.channels if c not in channels]
    if left:
        log.warning("chips import: channel(s) %s cannot be made from the band map %s and are left out", left, bmap)
    if not channels:
        raise InputError(f"no configured channel {list(config.channels)} can be made from the band map {bmap}")
    regions = [region] * len(folders) if isinstance(region, str) else list(region)
    if len(regions) != len(folders):
        raise InputError(f"{len(regions)} regions given for {len(folders)} folders")
    inv_region: dict[str, str] = {}
    if inventory is not None and "region" in inventory.columns:
        inv_region = dict(zip(inventory["glims_id"], inventory["region"].astype(str), strict=False))
    records: list[dict[str, Any]] = []
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    dropped = {"mask_variance": 0, "no_mask": 0}
    for folder, reg in zip(folders, regions, strict=False):
        folder = Path(folder)
        img_dir, msk_dir = folder / "images", folder / "masks"
        if not img_dir.is_dir() or not msk_dir.is_dir():
            raise DatasetNotFoundError(f"{folder}: expected images/ and masks/ folders (the seed's layout)")
        files = sorted(img_dir.glob("*.tif")) + sorted(img_dir.glob("*.tiff"))
        if not files:
            raise DatasetNotFoundError(f"{img_dir}: no .tif images")
        for path in files:
            mpath = msk_dir / path.name
            if not mpath.exists():
                log.warning("chips import: no mask for %s; skipped", path.name)
                dropped["no_mask"] += 1
                continue
            m = _NAME.match(path.stem)
            glims_id = m.group("id") if m else path.stem.split("_")[0]
            data = _read(path)
            top = max(bmap.values())
            if data.shape[0] < top:
                raise InputError(f"{path}: {data.shape[0]} bands, band map needs band {top}")
            bands = {name: _physical(name, data[num - 1], scale) for name, num in bmap.items()}
            dem = bands.pop("dem", None)
            x = features.compute_channels(bands, channels, dem=dem)
            x = features.fill_nan(x)
            x = features.resize_stack(x, config.size).numpy().astype(np.float32)
            raw_mask = _read(mpath)[0].astype(np.float32)
            mask = resize_mask((raw_mask >= 0.5).astype(np.float32), config.size) if raw_mask.shape[0] != config.size \
                else (raw_mask >= 0.5).astype(np.uint8)
            if float(mask.var()) <= config.min_mask_variance:
                dropped["mask_variance"] += 1
                continue
            chip_id = path.stem
            if chip_id in cache:
                raise InputError(f"duplicate chip name {chip_id} in {folder}")
            cache[chip_id] = (x, mask)
            sat = (m.group("sat") if m else None) or ""
            records.append({
                "chip_id": chip_id, "glims_id": glims_id, "region": inv_region.get(glims_id, str(reg)),
                "satellites": sat, "dominant_satellite": sat, "n_scenes": np.nan,
                "date_first": (m.group("date") if m else None) or "", "date_last": (m.group("date") if m else None) or "",
                "valid_fraction": float(np.isfinite(x).all(axis=0).mean()),
                "pixel_area_m2": np.nan, "grid_height": config.size, "grid_width": config.size,
                "true_area_km2": np.nan, "mask_fraction": float(mask.mean()), "source": str(path),
            })
    if not records:
        raise InputError(f"no usable chip in {', '.join(map(str, folders))} (dropped: {dropped})")
    groups = pd.DataFrame(records)[["glims_id", "region"]]
    split = assign_splits(groups, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                          seed=config.seed)
    info = write_chipset(out_dir, records, lambda r: cache[r["chip_id"]], channels=channels, size=config.size,
                         split=split, dropped=dropped,
                         provenance={"built_by": "glacierwatch chips import", "folders": [str(f) for f in folders],
                                     "band_map": bmap, "scale": scale, "channels_left_out": left,
                                     "mask": "seed mask >= 0.5"},
                         normaliser_seed=config.seed)
    log.info("chips import: %s", info.summary())
    return info
