"""The chip-set format (version 1): NPZ shards of physical-unit chips, a Parquet index, a JSON header.

::

    CHIPS/
      chipset.json           header: format, channels (names and order), units, chip size, the
                             Normaliser fitted on the train split, counts per split, chips dropped
                             and why, split settings, fingerprint, provenance
      index.parquet          one row per chip (see INDEX_COLUMNS)
      shards/shard-00000.npz images float32 (n, C, S, S) in PHYSICAL units (reflectance, K, m, index);
                             masks uint8 (n, S, S) (1 = glacier); chip_id (n,) str

Chips are stored un-normalised; every reader applies ``Normaliser.from_dict(chipset["normalisation"])``
(training, evaluation) exactly as the time-series stage applies the model card's copy of it to scene
channels. Shards are written once, atomically; the fingerprint is a hash of the index (ids and splits)
and of every shard's bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glacierwatch.errors import DatasetNotFoundError, InputError
from glacierwatch.features import Normaliser
from glacierwatch.io import atomic_path, read_table, write_json, write_table

FORMAT = "glacierwatch-chips/1"
SHARD_SIZE = 256
SPLITS = ("train", "val", "test")

#: Index columns (one row per chip).
INDEX_COLUMNS = {
    "chip_id": "unique chip name (built chips: the GLIMS id for the inventory-outline chip, <GLIMS id>_<mask date> "
               "for other dated chips; file stem for imported ones)",
    "glims_id": "glacier id (a glacier is in one split only)",
    "region": "region the split is stratified by",
    "split": "train, val or test",
    "shard": "shard file name under shards/",
    "row": "row of the chip in its shard",
    "satellites": "satellites of the composited scenes, comma-separated (e.g. 'L5,L7')",
    "dominant_satellite": "the satellite contributing most valid pixels",
    "n_scenes": "scenes averaged into the composite",
    "date_first": "first scene date (ISO)",
    "date_last": "last scene date (ISO)",
    "valid_fraction": "share of grid pixels seen clear in at least one scene",
    "pixel_area_m2": "area of one pixel of the original glacier grid, m² (NaN if unknown)",
    "grid_height": "rows of the original glacier grid",
    "grid_width": "columns of the original glacier grid",
    "true_area_km2": "area of the chip's mask (outline or true mask) on the original grid, km² (NaN if unknown)",
    "mask_kind": "where the mask comes from: outline (inventory), validation_outline (another dated outline), "
                 "truth (synthetic true mask of the scene date); absent for imported chips",
    "mask_date": "date the mask holds on (ISO; the outline date or the scene date)",
    "mask_fraction": "glacier share of the chip mask",
    "source": "file(s) the chip came from",
}

UNITS = {
    "blue": "surface reflectance", "green": "surface reflectance", "red": "surface reflectance",
    "nir08": "surface reflectance", "swir16": "surface reflectance", "swir22": "surface reflectance",
    "coastal": "surface reflectance", "lwir": "surface temperature, K", "dem": "elevation, m",
    "ndsi": "(green - swir16) / (green + swir16)", "ndwi": "(green - nir08) / (green + nir08)",
    "lwir_anomaly": "surface temperature minus that of snow-free ground at the same elevation in the image, K",
}


def short_hash(h: hashlib._Hash) -> str:
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- split

def assign_splits(groups: pd.DataFrame, *, val_fraction: float, test_fraction: float, seed: int = 0
                  ) -> dict[str, str]:
    """Split glaciers into train/val/test, stratified by region, each glacier in one split.

    ``groups``: one row per glacier with columns ``glims_id`` and ``region``. Within each region the
    glaciers are shuffled (seeded) and the first ones go to test, then val; the counts per region are
    rounded so that the totals over all regions match the fractions (a running remainder is carried
    from region to region, so small regions do not all round to zero). Returns glims_id -> split.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise InputError(f"split fractions val={val_fraction}, test={test_fraction} must be >= 0 and sum below 1")
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    acc_test = acc_val = 0.0
    done_test = done_val = 0
    frame = groups.drop_duplicates("glims_id").sort_values(["region", "glims_id"])
    for _, sub in frame.groupby("region", sort=True):
        ids = list(sub["glims_id"])
        order = rng.permutation(len(ids))
        acc_test += test_fraction * len(ids)
        acc_val += val_fraction * len(ids)
        n_test = min(len(ids), int(math.floor(acc_test + 0.5)) - done_test)
        n_val = min(len(ids) - n_test, int(math.floor(acc_val + 0.5)) - done_val)
        done_test += n_test
        done_val += n_val
        for rank, i in enumerate(order):
            out[ids[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def assign_folds(groups: pd.DataFrame, *, folds: int, seed: int = 0) -> dict[str, int]:
    """K folds of glaciers, stratified by region (glaciers dealt round-robin after a seeded shuffle)."""
    if folds < 2:
        raise InputError("cross-validation needs at least 2 folds")
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    nxt = 0
    frame = groups.drop_duplicates("glims_id").sort_values(["region", "glims_id"])
    for _, sub in frame.groupby("region", sort=True):
        ids = list(sub["glims_id"])
        for i in rng.permutation(len(ids)):
            out[ids[i]] = nxt % folds
            nxt += 1
    return out


# ---------------------------------------------------------------- writing

@dataclass
class ChipSetInfo:
    """What a build or import produced."""

    path: Path
    n_chips: int
    counts: dict[str, int]
    dropped: dict[str, int]
    channels: list[str]
    size: int
    fingerprint: str
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        drop = ", ".join(f"{k}: {v}" for k, v in self.dropped.items() if v) or "none"
        return (f"{self.n_chips} chips ({', '.join(f'{k} {v}' for k, v in self.counts.items())}) "
                f"-> {self.path}; dropped: {drop}; failed: {len(self.failed)}; fingerprint {self.fingerprint}")


def write_chipset(out_dir: str | Path, records: Sequence[Mapping[str, Any]], load: Any, *,
                  channels: Sequence[str], size: int, split: Mapping[str, str], dropped: Mapping[str, int],
                  provenance: Mapping[str, Any], failed: Mapping[str, str] | None = None,
                  normaliser_seed: int = 0) -> ChipSetInfo:
    """Write a chip set.

    ``records``: chip metadata (INDEX_COLUMNS except split/shard/row); ``load(record)`` returns
    ``(image (C, S, S) float32 physical, mask (S, S) uint8)``; ``split``: glims_id -> split.
    Chips are ordered by split then chip id; the Normaliser is fitted on a pixel sample of the
    train chips (all chips if there are none in train).
    """
    out = Path(out_dir)
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    # chipset.json is written last: without it a folder is an unfinished build, never a stale complete one
    (out / "chipset.json").unlink(missing_ok=True)
    for old in shard_dir.glob("shard-*.npz"):
        old.unlink()
    order = {s: i for i, s in enumerate(SPLITS)}
    recs = sorted((dict(r, split=split[r["glims_id"]]) for r in records),
                  key=lambda r: (order[r["split"]], r["chip_id"]))
    if not recs:
        raise InputError("no chips to write (every glacier was dropped or failed; see the log)")
    rng = np.random.default_rng(normaliser_seed)
    samples: list[np.ndarray] = []
    fit_on_train = any(r["split"] == "train" for r in recs)
    per_chip = max(64, 200_000 // max(1, sum(r["split"] == "train" for r in recs)))
    shard_hashes = []
    for start in range(0, len(recs), SHARD_SIZE):
        chunk = recs[start:start + SHARD_SIZE]
        name = f"shard-{start // SHARD_SIZE:05d}.npz"
        images = np.empty((len(chunk), len(channels), size, size), dtype=np.float32)
        masks = np.empty((len(chunk), size, size), dtype=np.uint8)
        for i, rec in enumerate(chunk):
            img, msk = load(rec)
            images[i], masks[i] = img, msk
            rec["shard"], rec["row"] = name, i
            if rec["split"] == "train" or not fit_on_train:
                flat = img.reshape(img.shape[0], -1)
                take = rng.choice(flat.shape[1], min(per_chip, flat.shape[1]), replace=False)
                samples.append(flat[:, take])
        with atomic_path(shard_dir / name) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, images=images, masks=masks, chip_id=np.array([r["chip_id"] for r in chunk]))
        shard_hashes.append(file_sha256(shard_dir / name))
    sample = np.concatenate(samples, axis=1)[np.newaxis, :, np.newaxis, :]  # (1, C, 1, n)
    normaliser = Normaliser.fit(sample, list(channels))
    index = pd.DataFrame(recs)
    cols = [c for c in INDEX_COLUMNS if c in index.columns] + [c for c in index.columns if c not in INDEX_COLUMNS]
    index = index[cols]
    h = hashlib.sha256()
    h.update(json.dumps(list(channels)).encode())
    h.update(pd.util.hash_pandas_object(index[["chip_id", "split"]], index=False).values.tobytes())
    for sh in shard_hashes:
        h.update(sh.encode())
    fingerprint = short_hash(h)
    counts = {s: int((index["split"] == s).sum()) for s in SPLITS}
    write_table(index, out / "index.parquet")
    header = {
        "format": FORMAT,
        "channels": list(channels),
        "units": {c: UNITS.get(c, "") for c in channels},
        "chip_size": int(size),
        "storage": "float32 physical units; normalise at load time with 'normalisation'",
        "normalisation": normaliser.to_dict(),
        "normalisation_fitted_on": "train" if fit_on_train else "all (no train chips)",
        "counts": counts,
        "n_chips": len(index),
        "n_glaciers": int(index["glims_id"].nunique()),
        "regions": {str(k): int(v) for k, v in index.groupby("region")["glims_id"].nunique().items()},
        "sensors": sorted({s for v in index.get("satellites", pd.Series(dtype=str)).dropna()
                           for s in str(v).split(",") if s}),
        "dropped": {k: int(v) for k, v in dropped.items()},
        "failed": dict(failed or {}),
        "fingerprint": fingerprint,
        "shards": {f"shard-{i:05d}.npz": sh for i, sh in enumerate(shard_hashes)},
        "provenance": dict(provenance),
    }
    write_json(out / "chipset.json", header)
    return ChipSetInfo(path=out, n_chips=len(index), counts=counts, dropped={k: int(v) for k, v in dropped.items()},
                       channels=list(channels), size=int(size), fingerprint=fingerprint, failed=dict(failed or {}))


# ---------------------------------------------------------------- reading

class ChipSet:
    """Read a chip set written by :func:`write_chipset`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        header = self.path / "chipset.json"
        if not header.exists():
            raise DatasetNotFoundError(f"not a chip set (no chipset.json): {self.path}")
        self.header: dict[str, Any] = json.loads(header.read_text(encoding="utf-8"))
        if self.header.get("format") != FORMAT:
            raise InputError(f"{header}: unknown chip-set format {self.header.get('format')!r} (expected {FORMAT})")
        self.index = read_table(self.path / "index.parquet")

    @property
    def channels(self) -> list[str]:
        return list(self.header["channels"])

    @property
    def size(self) -> int:
        return int(self.header["chip_size"])

    @property
    def fingerprint(self) -> str:
        return str(self.header["fingerprint"])

    @property
    def normaliser(self) -> Normaliser:
        return Normaliser.from_dict(self.header["normalisation"])

    def rows(self, split: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Index rows of one split, several, or all (None)."""
        if split is None:
            return self.index.copy()
        splits = [split] if isinstance(split, str) else list(split)
        return self.index[self.index["split"].isin(splits)].copy()

    def load_rows(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Physical images (n, C, S, S) float32 and masks (n, S, S) uint8 of the given index rows, in order."""
        n = len(rows)
        images = np.empty((n, len(self.channels), self.size, self.size), dtype=np.float32)
        masks = np.empty((n, self.size, self.size), dtype=np.uint8)
        pos = np.arange(n)
        for shard, sub in rows.assign(_pos=pos).groupby("shard", sort=True):
            path = self.path / "shards" / str(shard)
            if not path.exists():
                raise DatasetNotFoundError(f"chip shard missing: {path}")
            with np.load(path) as data:
                r = sub["row"].to_numpy()
                images[sub["_pos"].to_numpy()] = data["images"][r]
                masks[sub["_pos"].to_numpy()] = data["masks"][r]
        return images, masks

    def load(self, split: str | Iterable[str] | None = None, *, normalise: bool = False
             ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """(images, masks, rows) of a split; images normalised with the chip set's Normaliser if asked."""
        rows = self.rows(split).reset_index(drop=True)
        images, masks = self.load_rows(rows)
        if normalise:
            images = self.normaliser.apply(images)
        return images, masks, rows
