"""The seed's U-Net with a ResNet encoder, in plain PyTorch (no torchvision, nothing downloaded).

Encoder: a ResNet (18, 34 or 50) whose modules carry torchvision's names (``conv1``, ``bn1``,
``layer1.0.conv1`` ... ``layer4.2.bn3``, ``downsample.0``/``.1``), so that a torchvision-layout
state dict (ImageNet, or the SSL4EO-L Landsat ResNet-50 weights, which use the same names) loads into
:attr:`UNet.encoder` with strict key matching; only ``fc.*`` is ignored and ``conv1.weight`` is
adapted to the number of input channels (see :func:`adapt_first_conv`).

Decoder (the authors' public code): each step is ConvTranspose2d(k3, s2, p1, output_padding 1) ->
ReLU -> BatchNorm, concatenation with the matching encoder output, then two (Conv3x3 -> BN -> ReLU).
For ResNet-50 at 128x128: 2048 (4x4) -> 1024 with layer3 (8x8) -> 512 with layer2 (16x16) -> 256 with
layer1 (32x32) -> 64 with the stem's ReLU output (64x64) -> 32 with the input image itself
(128x128, block (32 + C) -> 16) -> 1x1 conv 16 -> ``num_classes`` logits.
For ResNet-18/34 the same rule gives 512 -> 256 -> 128 -> 64 -> 64 -> 32 -> 16. This is
``decoder="seed"``; for ResNet-50 it is 83 % of the network's FLOPs (14.3 of 17.2 GFLOP per 128x128 image).

``decoder="light"``: the common U-Net decoder (segmentation_models_pytorch's ``UnetDecoder`` layout) with
256/128/64/32/16 channels whatever the encoder: each step is a nearest-neighbour 2x upsampling,
concatenation with the matching encoder output (layer3, layer2, layer1, stem, then the input image),
then two (Conv3x3 -> BN -> ReLU). The decoder type is part of the model card (``card["decoder"]``), so
inference rebuilds the network that was trained; cards written before the option mean ``seed``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: Encoder name -> (block type, blocks per stage).
ENCODERS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

#: Decoder name -> what it is (the ``[train] decoder`` option).
DECODERS: dict[str, str] = {
    "seed": "the authors' decoder: transposed convolutions, channels follow the encoder (2048->1024->...->16)",
    "light": "common U-Net decoder: nearest 2x upsampling + two 3x3 convs, 256/128/64/32/16 channels",
}
#: Output channels of the light decoder's five steps (1/16, 1/8, 1/4, 1/2, 1/1 of the input size).
LIGHT_DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32, 16)

#: Input band order of torchvision's ImageNet ResNet weights.
IMAGENET_BANDS: tuple[str, ...] = ("red", "green", "blue")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (ResNet-18/34), same attribute names."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet-50, stride on the 3x3 conv: "ResNet v1.5"), same names."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """A torchvision-layout ResNet without ``avgpool``/``fc``; returns the five skip tensors.

    ``forward(x)`` -> [stem ReLU output (64, H/2), layer1 (H/4), layer2 (H/8), layer3 (H/16),
    layer4 (H/32)].
    """

    def __init__(self, name: str = "resnet50", in_channels: int = 10):
        super().__init__()
        if name not in ENCODERS:
            raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
        kind, layers = ENCODERS[name]
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.name = name
        self.in_channels = in_channels
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.channels: tuple[int, ...] = (64, 64 * block.expansion, 128 * block.expansion,
                                          256 * block.expansion, 512 * block.expansion)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: Any, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        s0 = self.relu(self.bn1(self.conv1(x)))
        s1 = self.layer1(self.maxpool(s0))
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        s4 = self.layer4(s3)
        return [s0, s1, s2, s3, s4]


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UpBlock(nn.Module):
    """ConvTranspose2d(k3, s2, p1, op1) -> ReLU -> BN, concatenate ``skip``, two (Conv3x3 -> BN -> ReLU)."""

    def __init__(self, cin: int, cup: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cup, kernel_size=3, stride=2, padding=1, output_padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(cup)
        self.conv = _double_conv(cup + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.relu(self.up(x)))
        return self.conv(torch.cat([x, skip], dim=1))


class LightUpBlock(nn.Module):
    """Nearest 2x upsampling, concatenate ``skip``, two (Conv3x3 -> BN -> ReLU) to ``cout`` channels."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv = _double_conv(cin + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.conv(torch.cat([x, skip], dim=1))


def build_decoder(name: str, encoder_channels: Sequence[int], in_channels: int) -> tuple[nn.ModuleList, int]:
    """The decoder ``name`` (:data:`DECODERS`) for an encoder with skip channels ``encoder_channels``
    (stem, layer1 ... layer4) and ``in_channels`` image bands; returns (blocks, output channels)."""
    c0, c1, c2, c3, c4 = encoder_channels
    if name == "seed":
        return nn.ModuleList([
            UpBlock(c4, c3, c3, c3),                 # 2048 -> 1024, + layer3
            UpBlock(c3, c2, c2, c2),                 # 1024 -> 512,  + layer2
            UpBlock(c2, c1, c1, c1),                 # 512  -> 256,  + layer1
            UpBlock(c1, c0, c0, c0),                 # 256  -> 64,   + stem ReLU output
            UpBlock(c0, 32, in_channels, 16),        # 64   -> 32,   + the input image; block (32+C) -> 16
        ]), 16
    if name == "light":
        d = LIGHT_DECODER_CHANNELS
        skips = (c3, c2, c1, c0, in_channels)
        cins = (c4, *d[:-1])
        return nn.ModuleList([LightUpBlock(ci, cs, co) for ci, cs, co in zip(cins, skips, d, strict=False)]), d[-1]
    raise ValueError(f"unknown decoder {name!r}; choose one of {sorted(DECODERS)}")


class UNet(nn.Module):
    """U-Net with a torchvision-layout ResNet encoder.

    ``UNet(encoder="resnet50", in_channels=10, num_classes=2)`` maps (N, 10, 128, 128) to logits
    (N, 2, 128, 128) through a (N, 2048, 4, 4) bottleneck. Inputs whose height or width is not a
    multiple of 32 are reflect-padded to one and the logits cropped back. ``decoder``: ``seed`` (the
    authors') or ``light`` (see the module docstring).
    """

    def __init__(self, encoder: str = "resnet50", in_channels: int = 10, num_classes: int = 2,
                 decoder: str = "seed"):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {sorted(DECODERS)}")
        self.encoder_name = encoder
        self.decoder_name = decoder
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.encoder = ResNetEncoder(encoder, in_channels)
        self.decoder, head_in = build_decoder(decoder, self.encoder.channels, self.in_channels)
        self.head = nn.Conv2d(head_in, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        s0, s1, s2, s3, s4 = self.encoder(x)
        y = s4
        for block, skip in zip(self.decoder, (s3, s2, s1, s0, x), strict=False):
            y = block(y, skip)
        y = self.head(y)
        return y[..., :h, :w] if (ph or pw) else y


# ---------------------------------------------------------------- pretrained encoder weights

_PREFIXES = ("module.", "encoder.", "backbone.", "model.", "resnet.")


def _unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Accept a plain state dict or a checkpoint holding one (``state_dict``/``model``), strip common prefixes."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError("not a state dict")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    changed = True
    while changed and sd:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def adapt_first_conv(weight: torch.Tensor, channels: Sequence[str],
                     source_bands: Sequence[str] | None) -> torch.Tensor:
    """Build a first-conv weight for ``channels`` from a pretrained one (out, k, 7, 7).

    Channels whose name is among ``source_bands`` (the pretrained input bands, e.g. ``red, green, blue``
    for ImageNet) copy that band's filter; every other channel gets the mean of the pretrained filters.
    The result is multiplied by k / len(channels), so that the summed response to inputs of similar
    magnitude stays what it was (the rule timm uses when it changes ``in_chans``). With ``source_bands``
    None and k == len(channels) the weight is copied unchanged.
    """
    k = weight.shape[1]
    channels = list(channels)
    if source_bands is None:
        if k == len(channels):
            return weight.clone()
        if k == 3:
            source_bands = IMAGENET_BANDS
        else:
            source_bands = []
            log.warning("encoder weights: first conv has %d input bands, names unknown; every channel "
                        "starts from their mean filter (give encoder_weights_bands to map them)", k)
    source_bands = list(source_bands)
    if source_bands and len(source_bands) != k:
        raise ValueError(f"{len(source_bands)} band names given for a first conv with {k} input channels")
    mean = weight.mean(dim=1)
    out = torch.empty(weight.shape[0], len(channels), *weight.shape[2:], dtype=weight.dtype)
    for i, name in enumerate(channels):
        out[:, i] = weight[:, source_bands.index(name)] if name in source_bands else mean
    return out * (k / len(channels))


def load_encoder_weights(model: UNet, weights: str | Any, *, channels: Sequence[str] | None = None,
                         source_bands: Sequence[str] | None = None) -> dict[str, Any]:
    """Load a torchvision-layout ResNet state dict (a file path or a dict) into ``model.encoder``.

    Keys must match the encoder exactly (strict), apart from ``fc.*`` which is dropped; the first
    convolution is adapted with :func:`adapt_first_conv`. Returns a short report dict.
    """
    if isinstance(weights, (str, bytes)) or hasattr(weights, "__fspath__"):
        obj = torch.load(weights, map_location="cpu", weights_only=True)
    else:
        obj = weights
    sd = _unwrap_state_dict(obj)
    dropped = sorted(k for k in sd if k.startswith("fc."))
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    if "conv1.weight" not in sd:
        raise ValueError("not a ResNet state dict: no conv1.weight")
    names = list(channels) if channels is not None else [f"c{i}" for i in range(model.in_channels)]
    if len(names) != model.in_channels:
        raise ValueError(f"{len(names)} channel names for a model with {model.in_channels} input channels")
    src = sd["conv1.weight"]
    sd["conv1.weight"] = adapt_first_conv(src, names, source_bands)
    model.encoder.load_state_dict(sd, strict=True)  # raises with the missing/unexpected keys
    return {"source_in_channels": int(src.shape[1]), "dropped_keys": dropped, "n_tensors": len(sd)}
