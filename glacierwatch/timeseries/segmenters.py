"""Segmenters for the time-series stage: the trained U-Net, the NDSI baseline, and (for tests and
validation) an oracle that returns a known true mask.

A segmenter maps a batch of physical-unit bands at chip size (or, for one whose ``resolution`` is
"grid", at the glacier grid's own size) to glacier probabilities:
``segmenter(bands, dem, glims_id=..., dates=...) -> (N, H, W) float32 in [0, 1]`` where ``bands``
maps common band names to (N, H, W) float32 arrays (reflectance / K) and ``dem`` is (H, W) in m.
Segmenters are built from a picklable :class:`SegmenterSpec` and cached per process, so Dask
workers load a checkpoint once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from glacierwatch.errors import InputError
from glacierwatch.features import (
    NDSI_GLACIER_THRESHOLD,
    Normaliser,
    compute_channels,
    fill_nan,
    ndsi_mask,
    normalized_difference,
    water_mask,
)


class Segmenter(Protocol):
    name: str
    fingerprint: str
    #: arithmetic of the model pass that changes the numbers: "bf16" (autocast, on CPUs and GPUs that
    #: have it, when asked) or "fp32"; a segmenter without the attribute counts as "fp32"
    precision: str

    def __call__(self, bands: Mapping[str, np.ndarray], dem: np.ndarray | None, *, glims_id: str,
                 dates: Sequence[Any]) -> np.ndarray: ...


@dataclass(frozen=True)
class SegmenterSpec:
    """What to segment with: ``kind`` = unet (needs ``checkpoint``) or ndsi."""

    kind: str
    checkpoint: str | None = None
    batch_size: int = 32
    device: str = "cpu"
    bf16: bool = True
    ndsi_threshold: float = NDSI_GLACIER_THRESHOLD
    #: ndsi: "grid" (the glacier grid's own pixels) or "chip" (the chip-size stack)
    ndsi_resolution: str = "grid"


def works_on_grid(segmenter: Segmenter) -> bool:
    """Whether ``segmenter`` takes the scenes at the glacier grid's own resolution (its ``resolution``
    is "grid") rather than resized to chip size (the U-Net, whose input size is fixed by its training)."""
    return str(getattr(segmenter, "resolution", "chip")) == "grid"


def held_out_area_error(card: Mapping[str, Any]) -> float:
    """The model's measured relative area error on its held-out test chips (a fraction): the 90th
    percentile of the per-chip absolute error from the card's metrics, else the mean absolute error,
    else 0 (no measurement). The time series widens each scene's area interval by it."""
    metrics = (card.get("metrics") or {}).get("unet") or {}
    for key in ("area_error_pct_abs_p90", "area_error_pct_mean_abs"):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            return float(value) / 100.0
    return 0.0


def segmenter_precision(segmenter: Segmenter) -> str:
    """``segmenter.precision``, "fp32" for a segmenter that does not say (tests' stand-ins, oracles)."""
    return str(getattr(segmenter, "precision", "fp32"))


def inference_precision(device: str, bf16: bool) -> str:
    """"bf16" where the U-Net's pass runs under bf16 autocast (``bf16`` asked and the device has it),
    else "fp32" (fp16 on an older GPU also counts as its own: "fp16")."""
    import torch

    from glacierwatch.model.predict import amp_dtype, resolve_device

    dtype = amp_dtype(resolve_device(device), bf16)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32") if dtype is not None else "fp32"


#: Half-width of the NDSI ramp of :class:`NDSISegmenter` on the grid: probability 0 at the threshold
#: minus this, 1 at the threshold plus it. The time series' interval (0.5 -/+ 0.25) then counts the
#: pixels of NDSI above 0.5 (low) and above 0.3 (high) around the 0.4 rule, the range of NDSI
#: thresholds used for glacier mapping.
NDSI_RAMP_HALF_WIDTH = 0.2


class NDSISegmenter:
    """Baseline: glacier where NDSI > threshold (0.4, Hall et al.) and not open water.

    ``resolution``: "grid" (default) classifies the glacier grid's own pixels; "chip" the chip-size
    stack the U-Net sees (the box resized to 128 x 128, as the seed did), where resizing mixes a
    snow patch or the glacier margin with the rock around it (measured in docs/timeseries.md).
    """

    name = "ndsi"
    #: no held-out measurement: its intervals come from the pixels alone
    relative_area_error = 0.0
    precision = "fp32"

    def __init__(self, threshold: float = NDSI_GLACIER_THRESHOLD, *, exclude_water: bool = True,
                 resolution: str = "grid") -> None:
        if resolution not in ("grid", "chip"):
            raise InputError(f"unknown NDSI resolution {resolution!r} (grid or chip)")
        self.threshold = threshold
        self.exclude_water = exclude_water
        self.resolution = resolution
        # the chip-size baseline keeps the fingerprint it had before the grid's resolution existed
        self.fingerprint = (f"ndsi>{threshold:g}" + ("-water" if exclude_water else "")
                            + ("@grid" if resolution == "grid" else ""))

    def __call__(self, bands: Mapping[str, np.ndarray], dem: np.ndarray | None, *, glims_id: str,
                 dates: Sequence[Any]) -> np.ndarray:
        glacier = ndsi_mask(bands, threshold=self.threshold, exclude_water=self.exclude_water)
        if self.resolution == "chip":  # the seed's 0/1 mask (resizing it back to the grid softens it)
            return glacier.astype(np.float32)
        # a ramp through the threshold, so that the time series' interval (probability 0.5 -/+ its
        # spread) is the area over an NDSI range around the threshold; open water stays 0
        ndsi = np.nan_to_num(normalized_difference(bands["green"], bands["swir16"]), nan=-1.0)
        ramp = np.clip(0.5 + (ndsi - self.threshold) / (2.0 * NDSI_RAMP_HALF_WIDTH), 0.0, 1.0)
        if self.exclude_water and "nir08" in bands:
            ramp[water_mask(bands)] = 0.0
        # exactly the rule's pixels above 0.5, whatever the float rounding of the ramp
        return np.where(glacier, np.maximum(ramp, 0.5 + 1e-6), np.minimum(ramp, 0.5)).astype(np.float32)


class UNetSegmenter:
    """The trained U-Net; channels and normalisation come from its model card.

    The model is prepared for inference once (:func:`~glacierwatch.model.predict.prepare_for_inference`:
    BatchNorm folded into the convolutions, bf16 weights where bf16 is fast, channels-last; on CUDA AMP
    in bf16, or fp16 on GPUs without bf16); its probabilities equal the checkpoint's under autocast up to
    bf16 rounding. ``prefetch_workers`` threads (default: 2 on CUDA, 0 on CPU, where the model already
    uses every core) compute and normalise the channels of the next batches of a call while the model
    runs the current one; the results do not depend on them.
    """

    name = "unet"

    def __init__(self, checkpoint: str, *, batch_size: int = 32, device: str = "cpu", bf16: bool = True,
                 prefetch_workers: int | None = None) -> None:
        from glacierwatch.model import load_checkpoint
        from glacierwatch.model.predict import prepare_for_inference

        model, self.card = load_checkpoint(checkpoint, device=device)
        self.model = prepare_for_inference(model, device=device, bf16=bf16)
        self.precision = inference_precision(device, bf16)
        self.channels: tuple[str, ...] = tuple(self.card["channels"])
        self.normaliser = Normaliser.from_dict(self.card["normalisation"])
        if tuple(self.normaliser.channels) != self.channels:
            raise InputError(f"{checkpoint}: model card channels {self.channels} differ from its "
                             f"normalisation channels {self.normaliser.channels}")
        self.chip_size = int(self.card.get("chip_size", 128))
        self.fingerprint = str(self.card.get("fingerprint", "unknown"))
        self.relative_area_error = held_out_area_error(self.card)
        self.batch_size, self.device, self.bf16 = batch_size, device, bf16
        on_gpu = str(device).startswith("cuda")
        self.prefetch_workers = (2 if on_gpu else 0) if prefetch_workers is None else max(0, int(prefetch_workers))
        self._pool: ThreadPoolExecutor | None = None

    def _inputs(self, bands: Mapping[str, np.ndarray], dem: np.ndarray | None, start: int, stop: int) -> np.ndarray:
        part = {name: arr[start:stop] for name, arr in bands.items()}
        return self.normaliser.apply(fill_nan(compute_channels(part, self.channels, dem=dem)))

    def __call__(self, bands: Mapping[str, np.ndarray], dem: np.ndarray | None, *, glims_id: str,
                 dates: Sequence[Any]) -> np.ndarray:
        from glacierwatch.model import predict_proba
        from glacierwatch.model.predict import batch_bounds

        n = len(next(iter(bands.values()))) if bands else 0
        bounds = batch_bounds(n, self.batch_size)
        if self.prefetch_workers == 0 or len(bounds) < 2:
            x = self._inputs(bands, dem, 0, n)
            return predict_proba(self.model, x, batch_size=self.batch_size, device=self.device, bf16=self.bf16,
                                 channels=self.channels)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.prefetch_workers, thread_name_prefix="unet-inputs")
        out = np.empty((n, *next(iter(bands.values())).shape[-2:]), dtype=np.float32)
        ahead = self.prefetch_workers + 1
        futures = [self._pool.submit(self._inputs, bands, dem, a, b) for a, b in bounds[:ahead]]
        for k, (a, b) in enumerate(bounds):
            x = futures[k].result()
            if k + ahead < len(bounds):
                futures.append(self._pool.submit(self._inputs, bands, dem, *bounds[k + ahead]))
            out[a:b] = predict_proba(self.model, x, batch_size=self.batch_size, device=self.device,
                                     bf16=self.bf16, channels=self.channels)
        return out


class OracleSegmenter:
    """Returns the known truth (for validating everything around the segmentation)."""

    name = "oracle"
    fingerprint = "oracle"

    def __init__(self, truth: Callable[[str, Sequence[Any], tuple[int, int]], np.ndarray]) -> None:
        self.truth = truth

    def __call__(self, bands: Mapping[str, np.ndarray], dem: np.ndarray | None, *, glims_id: str,
                 dates: Sequence[Any]) -> np.ndarray:
        shape = next(iter(bands.values())).shape[-2:]
        return np.asarray(self.truth(glims_id, dates, shape), dtype=np.float32)


@functools.lru_cache(maxsize=4)
def make_segmenter(spec: SegmenterSpec) -> Segmenter:
    """Build (or reuse, once per process) the segmenter described by ``spec``."""
    if spec.kind == "unet":
        if not spec.checkpoint:
            raise InputError("segmenter 'unet' needs a model checkpoint (--model)")
        return UNetSegmenter(spec.checkpoint, batch_size=spec.batch_size, device=spec.device, bf16=spec.bf16)
    if spec.kind == "ndsi":
        return NDSISegmenter(spec.ndsi_threshold, resolution=spec.ndsi_resolution)
    raise InputError(f"unknown segmenter {spec.kind!r} (unet or ndsi)")
