"""The segmentation model: the seed's U-Net with a ResNet encoder, its training, model card,
checkpoint loading, prediction and evaluation (with the NDSI > 0.4 baseline beside it).

    >>> from glacierwatch.model import UNet
    >>> net = UNet(encoder="resnet50", in_channels=10, num_classes=2)   # (N,10,128,128) -> (N,2,128,128)
    >>> from glacierwatch.model import train, load_checkpoint, predict_proba, check_channels
    >>> path = train("work/chips", "work/model", config=TrainConfig())              # doctest: +SKIP
    >>> model, card = load_checkpoint(path)                                         # doctest: +SKIP
    >>> check_channels(card, channels_i_built)                                      # doctest: +SKIP
    >>> p = predict_proba(model, Normaliser.from_dict(card["normalisation"]).apply(x))  # doctest: +SKIP

Names load on first use (PEP 562), so importing a submodule (``model.cli`` for ``train --help``)
does not import torch. See docs/model.md.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from glacierwatch.lazy import lazy_exports

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "ENCODERS": "unet",
    "EvaluationResult": "evaluate",
    "ResNetEncoder": "unet",
    "TABLE_I": "train",
    "UNet": "unet",
    "adapt_first_conv": "unet",
    "check_channels": "card",
    "cross_validate": "train",
    "dice_iou": "evaluate",
    "evaluate": "evaluate",
    "evaluate_arrays": "evaluate",
    "format_summary": "evaluate",
    "load_checkpoint": "predict",
    "load_encoder_weights": "unet",
    "ndsi_probability": "evaluate",
    "predict_proba": "predict",
    "read_checkpoint": "predict",
    "resolve_device": "predict",
    "train": "train",
    "train_grid": "train",
    "validate_card": "card",
    "weights_fingerprint": "card",
}

#: Names that are both a function and the submodule defining it: ``glacierwatch.model.train`` is the
#: function (as it always was), the module is ``sys.modules["glacierwatch.model.train"]``.
_FUNCTIONS_OVER_SUBMODULES = frozenset({"train", "evaluate"})

__all__ = [
    "ENCODERS",
    "TABLE_I",
    "EvaluationResult",
    "ResNetEncoder",
    "UNet",
    "adapt_first_conv",
    "check_channels",
    "cross_validate",
    "dice_iou",
    "evaluate",
    "evaluate_arrays",
    "format_summary",
    "load_checkpoint",
    "load_encoder_weights",
    "ndsi_probability",
    "predict_proba",
    "read_checkpoint",
    "resolve_device",
    "train",
    "train_grid",
    "validate_card",
    "weights_fingerprint",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _Package(types.ModuleType):
    """This package, refusing to let the import system bind the submodules ``train`` and ``evaluate``
    over the functions of the same names (it does so whenever those submodules are first imported,
    e.g. by ``from glacierwatch.model.train import augment``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTIONS_OVER_SUBMODULES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
