"""Evaluation of segmenters on a chip-set split: Dice and IoU overall, per region and per sensor, and the
area error per glacier in km² and % (the quantity trends are made of).

Segmenters: ``unet`` (a checkpoint; its card's channels must match the chip set's) and ``ndsi``
(the classical baseline, NDSI > 0.4, from the chips' ``ndsi`` channel or their green and swir16).
Dice and IoU are *micro* figures (pixels pooled over all chips of a group, at the chip size), as the
seed reported; ``mean_chip_dice`` averages per-chip Dice. Areas: the probability map is resized back
to the glacier's original grid (bilinear), thresholded, and its pixels counted at the grid's pixel
area; the truth is the outline rasterised on that grid. For chips without a grid (imported seed chips)
areas are compared at chip size and only the % error is given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glacierwatch.chips.store import ChipSet
from glacierwatch.config import SegmenterName, choices
from glacierwatch.errors import InputError
from glacierwatch.features import NDSI_GLACIER_THRESHOLD, Normaliser, normalized_difference, resize_stack
from glacierwatch.io import write_json, write_table
from glacierwatch.model.card import check_channels

log = logging.getLogger(__name__)

SEGMENTERS = choices(SegmenterName)


def confusion(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of boolean arrays."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    tp = int(np.count_nonzero(pred & truth))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(truth)) - tp


def dice_iou(tp: float, fp: float, fn: float) -> tuple[float, float]:
    """Dice and IoU from counts; both 1.0 when prediction and truth are empty."""
    den = 2 * tp + fp + fn
    if den == 0:
        return 1.0, 1.0
    return 2 * tp / den, tp / (tp + fp + fn)


def ndsi_probability(images: np.ndarray, channels: Sequence[str], *,
                     threshold: float = NDSI_GLACIER_THRESHOLD) -> np.ndarray:
    """The baseline as a 0/1 'probability' (N, H, W) from physical-unit chips."""
    chans = list(channels)
    if "ndsi" in chans:
        ndsi = images[:, chans.index("ndsi")]
    elif "green" in chans and "swir16" in chans:
        ndsi = normalized_difference(images[:, chans.index("green")], images[:, chans.index("swir16")])
    else:
        raise InputError(f"the NDSI baseline needs an 'ndsi' channel or 'green' and 'swir16'; chips have {chans}")
    return (np.nan_to_num(ndsi, nan=-1.0) > threshold).astype(np.float32)


@dataclass
class EvaluationResult:
    """Per-chip rows (one per chip and segmenter) and the summary (overall, per region, per sensor, area)."""

    per_chip: pd.DataFrame
    summary: dict[str, Any]
    split: str
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        write_table(self.per_chip, out / "per_glacier.csv")
        write_json(out / "metrics.json", self.summary)
        (out / "summary.txt").write_text(format_summary(self) + "\n", encoding="utf-8")
        return out


def _group_metrics(df: pd.DataFrame) -> dict[str, Any]:
    tp, fp, fn = (float(df[c].sum()) for c in ("tp", "fp", "fn"))
    dice, iou = dice_iou(tp, fp, fn)
    out: dict[str, Any] = {"n_chips": int(len(df)), "dice": dice, "iou": iou,
                           "mean_chip_dice": float(df["dice"].mean()) if len(df) else float("nan")}
    err = df["area_error_pct"].replace([np.inf, -np.inf], np.nan).dropna()
    out["area_error_pct_mean_abs"] = float(err.abs().mean()) if len(err) else float("nan")
    out["area_error_pct_median"] = float(err.median()) if len(err) else float("nan")
    # what the per-scene area intervals of the time series are widened by (docs/timeseries.md)
    out["area_error_pct_abs_p90"] = float(err.abs().quantile(0.9)) if len(err) else float("nan")
    out["area_error_pct_mean"] = float(err.mean()) if len(err) else float("nan")
    km2 = df["area_error_km2"].dropna()
    out["area_error_km2_mean_abs"] = float(km2.abs().mean()) if len(km2) else float("nan")
    out["area_error_km2_total"] = float(km2.sum()) if len(km2) else float("nan")
    return out


def _chip_rows(name: str, prob: np.ndarray, masks: np.ndarray, rows: pd.DataFrame, threshold: float) -> pd.DataFrame:
    recs = []
    for i, row in enumerate(rows.itertuples(index=False)):
        pred = prob[i] > threshold
        tp, fp, fn = confusion(pred, masks[i] > 0)
        dice, iou = dice_iou(tp, fp, fn)
        area_px = getattr(row, "pixel_area_m2", np.nan)
        true_km2 = getattr(row, "true_area_km2", np.nan)
        h, w = int(getattr(row, "grid_height", int(prob.shape[-2]))), int(getattr(row, "grid_width", int(prob.shape[-1])))
        if np.isfinite(area_px) and np.isfinite(true_km2):
            full = resize_stack(prob[i][np.newaxis], (h, w), antialias=False).numpy()[0] if (h, w) != prob.shape[-2:] else prob[i]
            pred_km2 = float(np.count_nonzero(full > threshold)) * float(area_px) / 1e6
            err_km2 = pred_km2 - float(true_km2)
            err_pct = 100 * err_km2 / true_km2 if true_km2 > 0 else np.nan
        else:
            pred_km2 = true_km2 = err_km2 = np.nan
            n_true = int(np.count_nonzero(masks[i]))
            err_pct = 100 * (int(np.count_nonzero(pred)) - n_true) / n_true if n_true else np.nan
        recs.append({
            "segmenter": name, "chip_id": row.chip_id, "glims_id": row.glims_id, "region": row.region,
            "sensor": getattr(row, "dominant_satellite", "") or "unknown", "tp": tp, "fp": fp, "fn": fn,
            "dice": dice, "iou": iou, "true_area_km2": true_km2, "pred_area_km2": pred_km2,
            "area_error_km2": err_km2, "area_error_pct": err_pct,
        })
    return pd.DataFrame(recs)


def summarise(per_chip: pd.DataFrame) -> dict[str, Any]:
    """Overall / per-region / per-sensor metrics for each segmenter in ``per_chip``."""
    out: dict[str, Any] = {}
    for name, df in per_chip.groupby("segmenter", sort=False):
        out[str(name)] = {
            "overall": _group_metrics(df),
            "per_region": {str(k): _group_metrics(g) for k, g in df.groupby("region")},
            "per_sensor": {str(k): _group_metrics(g) for k, g in df.groupby("sensor")},
        }
    return out


def evaluate_arrays(images: np.ndarray, masks: np.ndarray, rows: pd.DataFrame, channels: Sequence[str], *,
                    model: Any = None, card: Mapping[str, Any] | None = None,
                    segmenters: Sequence[str] = SEGMENTERS, threshold: float = 0.5, batch_size: int = 32,
                    device: str = "cpu", bf16: bool | None = None) -> pd.DataFrame:
    """Per-chip rows for physical-unit ``images`` (N, C, H, W) and ``masks``."""
    from glacierwatch.model.predict import predict_proba

    frames = []
    for name in segmenters:
        if name == "unet":
            if model is None or card is None:
                raise InputError("segmenter 'unet' needs a model checkpoint (--model)")
            check_channels(card, channels)
            x = Normaliser.from_dict(card["normalisation"]).apply(images)
            prob = predict_proba(model, x, batch_size=batch_size, device=device, bf16=bf16)
        elif name == "ndsi":
            prob = ndsi_probability(images, channels)
        else:
            raise InputError(f"unknown segmenter {name!r}; choose from {', '.join(SEGMENTERS)}")
        frames.append(_chip_rows(name, prob, masks, rows, threshold))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def evaluate(chips_dir: str | Path, model: str | Path | tuple[Any, Mapping[str, Any]] | None = None, *,
             split: str | Sequence[str] = "test", segmenters: Sequence[str] | None = None,
             threshold: float = 0.5, batch_size: int = 32, device: str = "cpu", bf16: bool | None = None,
             out_dir: str | Path | None = None, split_override: Mapping[str, str] | None = None) -> EvaluationResult:
    """Evaluate the U-Net (``model``: checkpoint path, or (model, card)) and/or the NDSI baseline.

    ``segmenters`` default: both when a model is given, else ``ndsi``. ``split_override`` maps chip_id ->
    split (cross-validation). Writes ``per_glacier.csv``, ``metrics.json`` and ``summary.txt`` to
    ``out_dir`` if given.
    """
    from glacierwatch.model.predict import load_checkpoint

    cs = ChipSet(chips_dir)
    if segmenters is None:
        segmenters = SEGMENTERS if model is not None else ("ndsi",)
    m = card = None
    if "unet" in segmenters:
        if model is None:
            raise InputError("segmenter 'unet' needs a model checkpoint (--model); use --segmenter ndsi without one")
        if isinstance(model, tuple):
            m, card = model
        else:
            m, card = load_checkpoint(model, device=device)
        check_channels(card, cs.channels)
        if card.get("data_fingerprint") and card.get("chipset_fingerprint") not in (None, cs.fingerprint):
            log.info("evaluating on a chip set other than the training one (%s vs %s)",
                     cs.fingerprint, card.get("chipset_fingerprint"))
    index = cs.index.copy()
    if split_override is not None:
        index["split"] = index["chip_id"].map(split_override).fillna("unused")
    splits = [split] if isinstance(split, str) else list(split)
    rows = index[index["split"].isin(splits)].reset_index(drop=True)
    if rows.empty:
        raise InputError(f"{chips_dir}: no chip in split(s) {splits} (counts: {cs.header.get('counts')})")
    images, masks = cs.load_rows(rows)
    per_chip = evaluate_arrays(images, masks, rows, cs.channels, model=m, card=card, segmenters=segmenters,
                               threshold=threshold, batch_size=batch_size, device=device, bf16=bf16)
    summary = {"split": "+".join(splits), "n_chips": int(len(rows)), "chipset": str(cs.path),
               "chipset_fingerprint": cs.fingerprint, "threshold": threshold,
               "model_fingerprint": card.get("fingerprint") if card else None,
               "segmenters": summarise(per_chip)}
    result = EvaluationResult(per_chip=per_chip, summary=summary, split="+".join(splits))
    if out_dir is not None:
        result.write(out_dir)
    return result


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:+.1f}" if pct else f"{v:.3f}"


def format_summary(result: EvaluationResult) -> str:
    """A plain-text table: segmenter x group with Dice, IoU and area errors."""
    lines = [f"split {result.summary['split']}: {result.summary['n_chips']} chips",
             f"{'segmenter':9} {'group':22} {'chips':>5} {'Dice':>6} {'IoU':>6} {'chipDice':>8} "
             f"{'|area err| %':>12} {'|area err| km2':>14}"]
    for name, s in result.summary["segmenters"].items():
        groups = [("all", s["overall"])] + [(f"region {k}", v) for k, v in s["per_region"].items()] \
            + [(f"sensor {k}", v) for k, v in s["per_sensor"].items()]
        for label, g in groups:
            lines.append(f"{name:9} {label[:22]:22} {g['n_chips']:5d} {_fmt(g['dice']):>6} {_fmt(g['iou']):>6} "
                         f"{_fmt(g['mean_chip_dice']):>8} {_fmt(g['area_error_pct_mean_abs']).lstrip('+'):>12} "
                         f"{_fmt(g['area_error_km2_mean_abs']):>14}")
    return "\n".join(lines)
