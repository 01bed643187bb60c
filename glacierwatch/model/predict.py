"""Loading checkpoints and predicting glacier probabilities."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glacierwatch.errors import ChannelMismatchError, DatasetNotFoundError, InputError
from glacierwatch.model.card import check_channels, validate_card
from glacierwatch.model.unet import UNet

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "glacierwatch-model/1"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA GPU is available (use --device cpu)")
    return dev


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast on ``device`` (CPUs with AVX512-BF16/AMX, CUDA GPUs with bf16)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def amp_dtype(device: torch.device, want: bool | None) -> torch.dtype | None:
    """The autocast dtype to use: bf16 where supported (``want`` None = where fast), fp16 on older GPUs, or None."""
    if want is False:
        return None
    if bf16_supported(device):
        return torch.bfloat16
    if device.type == "cuda" and want:
        return torch.float16
    if want:
        log.info("bf16 autocast requested but not supported on %s; running fp32", device)
    return None


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def _checkpoint_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "model.pt"
    if not p.exists():
        raise DatasetNotFoundError(f"model checkpoint not found: {p}")
    return p


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict (state_dict, card, ...), validated."""
    p = _checkpoint_file(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise InputError(f"{p}: not a readable glacierwatch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "card" not in ckpt:
        raise InputError(f"{p}: not a glacierwatch model checkpoint (needs 'state_dict' and 'card')")
    ckpt["card"] = validate_card(ckpt["card"], source=str(p))
    return ckpt


def model_from_card(card: dict[str, Any]) -> UNet:
    return UNet(encoder=str(card["encoder"]), in_channels=int(card["in_channels"]),
                num_classes=int(card["num_classes"]))


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[UNet, dict[str, Any]]:
    """Load ``model.pt`` (or a folder holding it): (model in eval mode on ``device``, card dict).

    The card is also attached to the model as ``model.card``.
    """
    ckpt = read_checkpoint(path)
    card = ckpt["card"]
    model = model_from_card(card)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit the architecture in its card ({exc})") from exc
    model.card = card  # type: ignore[attr-defined]
    model.eval()
    return model.to(resolve_device(device)), card


def predict_proba(model: torch.nn.Module, x: np.ndarray | torch.Tensor, *, batch_size: int = 32,
                  device: str | torch.device = "cpu", bf16: bool | None = None,
                  channels: Sequence[str] | None = None, channels_last: bool = True) -> np.ndarray:
    """Glacier-class probability (N, H, W) float32 for normalised inputs (N, C, H, W).

    ``channels``: the names of the input channels; if given and the model carries a card
    (``load_checkpoint``), they must equal the card's channels (:class:`ChannelMismatchError`).
    ``bf16``: autocast in bf16 (None = where the device supports it fast).
    """
    card = getattr(model, "card", None)
    if channels is not None and card is not None:
        check_channels(card, channels)
    arr = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    if arr.ndim == 3:
        arr = arr.unsqueeze(0)
    in_ch = getattr(model, "in_channels", None)
    if arr.ndim != 4 or (in_ch is not None and arr.shape[1] != in_ch):
        names = f" {card['channels']}" if card else ""
        raise ChannelMismatchError(f"the model takes (N, {in_ch}, H, W) inputs{names}; got {tuple(arr.shape)}")
    dev = resolve_device(device)
    dtype = amp_dtype(dev, bf16)
    was_training = model.training
    model.eval()
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    out = np.empty((arr.shape[0], *arr.shape[-2:]), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, arr.shape[0], max(1, int(batch_size))):
            xb = arr[start:start + batch_size].to(dev, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(dev, dtype):
                logits = model(xb)
            prob = torch.softmax(logits.float(), dim=1)[:, 1]
            out[start:start + xb.shape[0]] = prob.cpu().numpy()
    if was_training:
        model.train()
    return out
