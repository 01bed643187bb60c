"""The segmentation model: the seed's U-Net with a ResNet encoder, its training, model card,
checkpoint loading, prediction and evaluation (with the NDSI > 0.4 baseline beside it).

    >>> from glacierwatch.model import UNet
    >>> net = UNet(encoder="resnet50", in_channels=10, num_classes=2)   # (N,10,128,128) -> (N,2,128,128)
    >>> from glacierwatch.model import train, load_checkpoint, predict_proba, check_channels
    >>> path = train("work/chips", "work/model", config=TrainConfig())              # doctest: +SKIP
    >>> model, card = load_checkpoint(path)                                         # doctest: +SKIP
    >>> check_channels(card, channels_i_built)                                      # doctest: +SKIP
    >>> p = predict_proba(model, Normaliser.from_dict(card["normalisation"]).apply(x))  # doctest: +SKIP

See docs/model.md.
"""

from glacierwatch.model.card import check_channels, validate_card, weights_fingerprint
from glacierwatch.model.evaluate import (
    EvaluationResult, dice_iou, evaluate, evaluate_arrays, format_summary, ndsi_probability,
)
from glacierwatch.model.predict import load_checkpoint, predict_proba, read_checkpoint, resolve_device
from glacierwatch.model.train import TABLE_I, cross_validate, train, train_grid
from glacierwatch.model.unet import ENCODERS, ResNetEncoder, UNet, adapt_first_conv, load_encoder_weights

__all__ = [
    "ENCODERS", "TABLE_I", "EvaluationResult", "ResNetEncoder", "UNet", "adapt_first_conv", "check_channels",
    "cross_validate", "dice_iou", "evaluate", "evaluate_arrays", "format_summary", "load_checkpoint",
    "load_encoder_weights", "ndsi_probability", "predict_proba", "read_checkpoint", "resolve_device", "train",
    "train_grid", "validate_card", "weights_fingerprint",
]
