"""The model card: what a checkpoint expects and how it was made, written beside every checkpoint.

A card is a JSON-serialisable dict. Inference code must call :func:`check_channels` with the names of
the channels it built (in order) before feeding them to the model: the seed's code fed channels in one
order at training and another at inference (and duplicated NDWI), which nothing caught.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from glacierwatch.errors import ChannelMismatchError, InputError

CARD_FORMAT = "glacierwatch-model-card/1"
#: Keys every card has.
REQUIRED_KEYS = ("format", "channels", "normalisation", "chip_size", "encoder", "in_channels", "num_classes",
                 "fingerprint", "data_fingerprint", "settings", "metrics", "sensors")


def weights_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Short sha256 of the weights (names, shapes, dtypes and values), 16 hex digits."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def check_channels(card: Mapping[str, Any], channels: Sequence[str]) -> None:
    """Raise :class:`ChannelMismatchError` unless ``channels`` are the card's channels in the card's order."""
    expected = list(card.get("channels") or [])
    got = [str(c) for c in channels]
    if got == expected:
        return
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    dup = sorted({c for c in got if got.count(c) > 1})
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    if dup:
        parts.append(f"duplicated {dup}")
    if not parts:
        pos = next(i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b)
        parts.append(f"same names in another order (position {pos}: model expects {expected[pos]!r}, input has {got[pos]!r})")
    raise ChannelMismatchError(
        f"the model was trained on {len(expected)} channels {expected} (in this order) but the input has "
        f"{len(got)} channels {got}: {'; '.join(parts)}. Build the input with the card's channel list "
        "(glacierwatch.features.compute_channels(bands, card['channels'], dem=...)).")


#: What a glacierwatch U-Net is for (the card's ``intended_use``).
INTENDED_USE = (
    "Segmenting the ice of one mountain glacier (about 1-50 km²) in Landsat 5/7/8/9 Collection 2 Level-2 "
    "surface-reflectance scenes on that glacier's own grid (its outline box + 10 %, 30 m), to measure its "
    "area per scene and, over many scenes, its relative area change per year (the seed paper's method). "
    "Inputs must be built exactly as the card says (channels, order, normalisation, chip size); the "
    "output is a per-pixel glacier probability, thresholded at 0.5 for areas.")

#: Known limits of the method, true of every card; :func:`usage_fields` adds the card's own.
LIMITATIONS = (
    "Debris-covered ice, and ice under seasonal snow or cloud, is confused with rock, snow or cloud: areas "
    "of scenes with a low observed fraction, or outside the ablation season, are unreliable.",
    "Trained against one outline per glacier at one date: the model learns what the inventory calls "
    "glacier, including its analyst's choices (ice divides, nunataks, debris).",
    "Areas are of the pixels counted inside the outline plus the buffer: growth beyond it is not measured.",
    "Chips are resized to the chip size: the smallest glaciers lose detail and their areas are the least "
    "precise; glaciers much larger than the chip lose more.",
    "Not for ice sheets, polar ice caps, sea ice, or glaciers above about 60° latitude (the paper excluded "
    "them; DEMs and illumination differ).",
    "Probabilities are not calibrated: 0.5 is a threshold, not a 50 % chance.",
)


def usage_fields(card: Mapping[str, Any]) -> dict[str, Any]:
    """``intended_use`` and ``limitations`` for a card: the general ones plus what this card's training
    data implies (sensors and regions seen). ``card.update(usage_fields(card))`` adds them."""
    limitations = list(LIMITATIONS)
    sensors = [str(s) for s in card.get("sensors") or []]
    if sensors:
        limitations.append(f"Trained on scenes of {', '.join(sensors)} only: other sensors are out of distribution.")
    regions = [str(r) for r in card.get("regions") or []]
    if regions:
        limitations.append(f"Trained on glaciers of {', '.join(regions)}: elsewhere, check it against outlines "
                           "(glacierwatch validate) before trusting its areas.")
    return {"intended_use": INTENDED_USE, "limitations": limitations}


def validate_card(card: Any, *, source: str = "model card") -> dict[str, Any]:
    """Check that ``card`` has the required keys and a consistent normalisation; return it as a dict."""
    if not isinstance(card, Mapping):
        raise InputError(f"{source}: not a model card (expected a JSON object)")
    missing = [k for k in REQUIRED_KEYS if k not in card]
    if missing:
        raise InputError(f"{source}: model card lacks {missing}")
    norm = card["normalisation"]
    if list(norm.get("channels", [])) != list(card["channels"]):
        raise InputError(f"{source}: normalisation channels {norm.get('channels')} differ from the card's "
                         f"channels {card['channels']}")
    if int(card["in_channels"]) != len(card["channels"]):
        raise InputError(f"{source}: in_channels {card['in_channels']} but {len(card['channels'])} channel names")
    return dict(card)
