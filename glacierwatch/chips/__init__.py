"""Training chips: composites of the scenes around each dated mask (outline or synthetic truth), masks, named
channels, a glacier-level split stratified by region, stored as NPZ shards with their normalisation.

    >>> from glacierwatch.chips import build_chips_from_catalog, ChipSet
    >>> info = build_chips_from_catalog("work/catalog.parquet", "work/inventory.parquet",
    ...                                 dem_dir="work/dem", out_dir="work/chips")      # doctest: +SKIP
    >>> images, masks, rows = ChipSet("work/chips").load("train", normalise=True)     # doctest: +SKIP

The format is described in :mod:`glacierwatch.chips.store` and docs/model.md; channel computation is
shared with the time-series stage in :mod:`glacierwatch.features`.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glacierwatch.lazy import lazy_exports

if TYPE_CHECKING:
    from glacierwatch.chips.store import ChipSetInfo
    from glacierwatch.config import CatalogConfig, ChipsConfig

log = logging.getLogger(__name__)

#: Public name -> the submodule that defines it. Names load on first use (PEP 562), so importing
#: ``chips.cli`` for ``chips --help`` does not import torch.
_EXPORTS = {
    "MASK_KINDS": "build",
    "MASK_MODES": "build",
    "ChipPlan": "build",
    "SyntheticTruth": "build",
    "build_chips": "build",
    "composite_scenes": "build",
    "plan_chips": "build",
    "resize_mask": "build",
    "SEED_BAND_MAP": "importer",
    "import_chips": "importer",
    "parse_band_map": "importer",
    "ChipSet": "store",
    "ChipSetInfo": "store",
    "assign_folds": "store",
    "assign_splits": "store",
    "write_chipset": "store",
}

__all__ = [
    "MASK_KINDS",
    "MASK_MODES",
    "SEED_BAND_MAP",
    "ChipPlan",
    "ChipSet",
    "ChipSetInfo",
    "SyntheticTruth",
    "assign_folds",
    "assign_splits",
    "build_chips",
    "build_chips_from_catalog",
    "composite_scenes",
    "import_chips",
    "parse_band_map",
    "plan_chips",
    "read_inventory",
    "resize_mask",
    "write_chipset",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def read_inventory(path: str | PathLike[str]) -> Any:
    """The inventory GeoParquet as a GeoDataFrame (EPSG:4326 unless the file says otherwise)."""
    import geopandas as gpd

    from glacierwatch.errors import DatasetNotFoundError, InputError

    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"inventory not found: {path}")
    try:
        inv = gpd.read_parquet(path)
    except Exception as exc:  # geopandas/pyarrow raise many types
        raise InputError(f"{path}: not a readable GeoParquet inventory ({type(exc).__name__}: {exc})") from exc
    if inv.crs is None:
        inv = inv.set_crs("EPSG:4326")
    return inv


def build_chips_from_catalog(catalog: str | PathLike[str], inventory: str | PathLike[str], *,
                             dem_dir: str | PathLike[str] | None, out_dir: str | PathLike[str],
                             config: ChipsConfig | None = None, catalog_config: CatalogConfig | None = None,
                             truth_dir: str | PathLike[str] | None = None, progress: bool = True) -> ChipSetInfo:
    """:func:`build_chips` on the catalog's scenes of the training glaciers: the one driver of the
    ``chips`` stage (CLI and pipeline).

    ``masks = "outline"``: the catalog's ``training`` selection (scenes within ``training_window_days``
    of each glacier's outline date). ``masks = "dated"``: every catalog scene of the training glaciers
    (same filters, any date), the validation outlines written beside the inventory
    (``<stem>_validation.parquet``) and the synthetic truth of ``truth_dir`` (default
    ``config.truth_dir``); :func:`plan_chips` picks the scenes of each dated mask. Without
    the ``inference-glaciers`` when ``config.exclude_inference_glaciers`` (the glaciers whose areas are
    measured are not trained on).
    """
    import pandas as pd

    from glacierwatch.catalog import select
    from glacierwatch.catalog.queries import config_with
    from glacierwatch.chips.build import build_chips
    from glacierwatch.config import CatalogConfig, ChipsConfig
    from glacierwatch.errors import InputError
    from glacierwatch.inventory.select import output_paths

    inv = read_inventory(inventory)
    config = config or ChipsConfig()
    catalog_config = catalog_config or CatalogConfig()
    plain = pd.DataFrame(inv.drop(columns=inv.geometry.name))
    search = catalog_config
    validation = None
    if config.masks == "dated":
        # every date of a training glacier; plan_chips applies the window around each dated outline
        search = config_with(catalog_config, {"training_window_days": 366 * 100})
        val_path = output_paths(inventory)["validation"]
        if val_path.exists():
            validation = read_inventory(val_path)
            if validation.crs is not None and inv.crs is not None and validation.crs != inv.crs:
                validation = validation.to_crs(inv.crs)
    selection = select(catalog, "training", config=search, inventory=plain)
    if getattr(config, "exclude_inference_glaciers", False):
        measured = select(catalog, "inference-glaciers", config=catalog_config, inventory=plain)
        selection = selection[~selection["glims_id"].isin(measured["glims_id"])]
        log.info("chips: %d inference glacier(s) left out of training", measured["glims_id"].nunique())
    if selection.empty:
        raise InputError(f"the catalog {catalog} has no scene in the training window of any inventory glacier")
    return build_chips(selection, inv, dem_dir=dem_dir, out_dir=out_dir, config=config, progress=progress,
                       validation=validation, truth_dir=truth_dir,
                       window_days=int(catalog_config.training_window_days))
