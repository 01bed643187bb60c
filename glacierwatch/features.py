"""Model input channels, shared by the chips stage (training), the model stage (evaluation) and the
time-series stage (inference), so that all build exactly the same channels in exactly the same order.
It lies below the stages (it imports none of them), so that no stage imports another for it.

Channels are named: the six reflective bands (surface reflectance, unitless), ``lwir`` (surface
temperature, K), ``dem`` (elevation, m), ``ndsi`` = (green - swir16) / (green + swir16) and
``ndwi`` = (green - nir08) / (green + nir08), both from reflectance (before normalisation), and
``lwir_anomaly`` (K): the surface temperature minus that of the snow- and ice-free ground at the same
elevation in the same image (:func:`lwir_anomaly`).
Normalisation is a per-channel min-max with statistics fitted on the training chips and stored in
the model card (:class:`Normaliser`), so a scene is scaled the same way whatever else is in it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from glacierwatch.io import Scene
from glacierwatch.landsat import COMMON_BANDS, QA_BAND, qa_invalid_mask, to_physical

DEFAULT_CHANNELS: tuple[str, ...] = (
    "blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "dem", "ndsi", "ndwi", "lwir_anomaly",
)
INDEX_CHANNELS = ("ndsi", "ndwi")
#: Channels computed from others: the bands (and ``dem``) each one needs.
DERIVED_CHANNEL_INPUTS: dict[str, tuple[str, ...]] = {
    "ndsi": ("green", "swir16"),
    "ndwi": ("green", "nir08"),
    "lwir_anomaly": ("lwir", "green", "swir16", "dem"),
}
KNOWN_CHANNELS: tuple[str, ...] = (*COMMON_BANDS, "coastal", "dem", *DERIVED_CHANNEL_INPUTS)

#: NDSI threshold of the classical baseline segmenter (Hall et al.; GLIMS band-ratio practice).
NDSI_GLACIER_THRESHOLD = 0.4


def check_known(channels: Sequence[str]) -> None:
    """ValueError naming the channels that are not in :data:`KNOWN_CHANNELS`."""
    unknown = [c for c in channels if c not in KNOWN_CHANNELS]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; known: {list(KNOWN_CHANNELS)}")


def bands_needed(channels: Sequence[str]) -> list[str]:
    """The scene bands that ``channels`` are computed from, in a stable order (no ``dem``).

    Raises ValueError for an unknown channel."""
    check_known(channels)
    need: list[str] = []
    for c in channels:
        need += DERIVED_CHANNEL_INPUTS.get(c, (c,))
    return [b for b in dict.fromkeys(need) if b != "dem"]


def needs_dem(channels: Sequence[str]) -> bool:
    """Whether any of ``channels`` is, or is computed from, the DEM."""
    return any(c == "dem" or "dem" in DERIVED_CHANNEL_INPUTS.get(c, ()) for c in channels)


def physical_bands(scene: Scene, bands: Sequence[str] = COMMON_BANDS, *, mask_invalid: bool = False
                   ) -> dict[str, np.ndarray]:
    """Scaled bands of a scene (reflectance / kelvin, float32, NaN at fill).

    With ``mask_invalid`` pixels flagged cloud, cloud shadow, cirrus or fill in QA_PIXEL are NaN too.
    """
    invalid = qa_invalid_mask(scene.bands[QA_BAND]) if mask_invalid and QA_BAND in scene.bands else None
    out = {}
    for name in bands:
        values = to_physical(name, scene.bands[name])
        if invalid is not None:
            values[invalid] = np.nan
        out[name] = values
    return out


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) in [-1, 1]; reflectances below 0 are clipped to 0, 0/0 gives 0."""
    a = np.clip(a, 0.0, None)
    b = np.clip(b, 0.0, None)
    total = a + b
    with np.errstate(invalid="ignore", divide="ignore"):
        nd = np.where(total > 1e-6, (a - b) / np.where(total > 1e-6, total, 1.0), 0.0)
    nd = np.where(np.isnan(a) | np.isnan(b), np.nan, nd)
    return nd.astype(np.float32)


def compute_channels(bands: Mapping[str, np.ndarray], channels: Sequence[str] = DEFAULT_CHANNELS, *,
                     dem: np.ndarray | None = None) -> np.ndarray:
    """Stack named channels from physical bands (arrays of equal shape, leading dims allowed).

    Returns float32 of shape (C, *shape) — or (..., C, H, W) when bands carry leading dims, the channel
    axis being placed just before the two spatial axes.
    """
    check_known(channels)
    if dem is None and needs_dem(channels):
        raise ValueError(f"channel(s) {[c for c in channels if needs_dem([c])]} requested but no DEM given")

    @functools.cache
    def ndsi() -> np.ndarray:  # once, for its own channel and for the anomaly's ground pixels
        return normalized_difference(bands["green"], bands["swir16"])

    layers = []
    for name in channels:
        if name == "ndsi":
            layers.append(ndsi())
        elif name == "ndwi":
            layers.append(normalized_difference(bands["green"], bands["nir08"]))
        elif name == "dem":
            assert dem is not None  # checked above
            layers.append(np.broadcast_to(dem.astype(np.float32), bands["green"].shape))
        elif name == "lwir_anomaly":
            assert dem is not None
            layers.append(lwir_anomaly(bands["lwir"], dem, ndsi()))
        else:
            layers.append(np.asarray(bands[name], dtype=np.float32))
    return np.stack(layers, axis=-3).astype(np.float32)


#: Elevation bins (m) of :func:`lwir_anomaly`'s temperature-elevation line, and the fewest ground
#: pixels a bin needs to count.
ANOMALY_BIN_M = 100.0
ANOMALY_MIN_BIN_PIXELS = 20


def lwir_anomaly(lwir: np.ndarray, dem: np.ndarray, ndsi: np.ndarray) -> np.ndarray:
    """Surface temperature (K) minus the temperature of snow- and ice-free ground at the same
    elevation in the same image: a per-image line of temperature against elevation, fitted by
    weighted least squares to the median temperature of each :data:`ANOMALY_BIN_M` elevation bin of the
    ground pixels (NDSI <= :data:`NDSI_GLACIER_THRESHOLD`; medians, so that the minority of the bin
    that is debris-covered ice does not pull the line down).

    Why: debris over ice is colder than rock at its elevation (the ice under it holds the surface
    near 273 K), while its reflectance is the rock's. The absolute temperature mixes that signal with
    the lapse rate and the season; the anomaly is near 0 on ground at any elevation or date.

    ``lwir`` and ``ndsi``: (..., H, W); ``dem``: (H, W) in m. Returns float32 (..., H, W), NaN where
    ``lwir`` or ``dem`` is NaN, all NaN for an image with too few ground pixels for one bin.
    """
    lwir = np.asarray(lwir, dtype=np.float64)
    dem = np.asarray(dem, dtype=np.float64)
    ndsi = np.broadcast_to(np.asarray(ndsi), lwir.shape)
    out = np.full(lwir.shape, np.nan, dtype=np.float32)
    for lead in np.ndindex(lwir.shape[:-2]):
        t, nd = lwir[lead], ndsi[lead]
        ground = np.isfinite(t) & np.isfinite(dem) & (np.nan_to_num(nd, nan=1.0) <= NDSI_GLACIER_THRESHOLD)
        if ground.sum() < ANOMALY_MIN_BIN_PIXELS:
            continue
        z, tz = dem[ground], t[ground]
        bins = np.floor(z / ANOMALY_BIN_M).astype(np.int64)
        order = np.argsort(bins, kind="stable")
        bins, z, tz = bins[order], z[order], tz[order]
        starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
        stops = np.r_[starts[1:], bins.size]
        centres, medians, weights = [], [], []
        for a, b in zip(starts, stops, strict=True):
            if b - a >= ANOMALY_MIN_BIN_PIXELS:
                centres.append(float(np.median(z[a:b])))
                medians.append(float(np.median(tz[a:b])))
                weights.append(float(b - a))
        if not centres:
            continue
        if len(centres) == 1:
            expected = np.full(dem.shape, medians[0])
        else:
            slope, intercept = np.polyfit(centres, medians, 1, w=np.sqrt(weights))
            expected = intercept + slope * dem
        out[lead] = (t - expected).astype(np.float32)
    return out


def fill_nan(x: np.ndarray) -> np.ndarray:
    """Replace NaN by the mean of the same channel of the same image (0 if all NaN); x: (..., C, H, W)."""
    x = np.array(x, dtype=np.float32, copy=True)
    nan = np.isnan(x)
    if nan.any():
        # np.nanmean's own arithmetic (zeros at NaN, sum, divide by the count), without its warning for
        # an all-NaN channel: silencing it with warnings.catch_warnings would change the process-wide
        # warning filters while other threads (reading, rasterising) run
        total = np.where(nan, np.float32(0.0), x).sum(axis=(-2, -1), keepdims=True)
        count = (~nan).sum(axis=(-2, -1), keepdims=True)
        means = np.where(count > 0, total / np.maximum(count, 1), np.float32(0.0)).astype(np.float32)
        x = np.where(nan, np.broadcast_to(means, x.shape), x)
    return x


def resize_stack(x: np.ndarray | torch.Tensor, size: int | tuple[int, int], *, antialias: bool = True
                 ) -> torch.Tensor:
    """Bilinear resize (with antialiasing when shrinking) of (N, C, H, W) or (C, H, W) to ``size``."""
    t = torch.as_tensor(x, dtype=torch.float32)
    squeeze = t.ndim == 3
    if squeeze:
        t = t.unsqueeze(0)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(t.shape[-2:]) != hw:
        t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=antialias)
    return t.squeeze(0) if squeeze else t


@dataclass(frozen=True)
class Normaliser:
    """Per-channel min-max scaling to about [0, 1]: ``(x - low) / (high - low)``.

    ``low`` and ``high`` are robust extremes (the 0.5th and 99.5th percentiles by default) of each
    channel over the training chips; values outside are not clipped.
    """

    channels: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def fit(cls, images: np.ndarray, channels: Sequence[str], *, percentiles: tuple[float, float] = (0.5, 99.5),
            max_samples: int = 2_000_000, seed: int = 0) -> Normaliser:
        """Fit on (N, C, H, W) physical-unit images (NaN ignored)."""
        if images.shape[1] != len(channels):
            raise ValueError(f"{images.shape[1]} channels in images, {len(channels)} names")
        rng = np.random.default_rng(seed)
        low, high = [], []
        for c in range(images.shape[1]):
            values = images[:, c].ravel()
            values = values[np.isfinite(values)]
            if values.size > max_samples:
                values = rng.choice(values, max_samples, replace=False)
            if values.size == 0:
                lo, hi = 0.0, 1.0
            else:
                lo, hi = (float(v) for v in np.percentile(values, percentiles))
            if hi - lo < 1e-6:
                hi = lo + 1.0
            low.append(lo)
            high.append(hi)
        return cls(tuple(channels), tuple(low), tuple(high))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Scale (..., C, H, W) physical-unit channels (same names and order as ``channels``)."""
        if x.shape[-3] != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} channels {self.channels}, got {x.shape[-3]}")
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        return ((x - low) / (high - low)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "minmax", "channels": list(self.channels), "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normaliser:
        return cls(tuple(data["channels"]), tuple(float(v) for v in data["low"]),
                   tuple(float(v) for v in data["high"]))


#: Open water (lakes, which also have NDSI > 0.4): NDWI = (green - nir08)/(green + nir08) above this
#: and NIR reflectance below :data:`WATER_MAX_NIR` (water is dark in the near infrared; snow and ice
#: are bright, NDWI ~0.1-0.2). McFeeters' NDWI; thresholds as used for glacial lakes.
WATER_MIN_NDWI = 0.5
WATER_MAX_NIR = 0.05


def water_mask(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """Open water: NDWI > :data:`WATER_MIN_NDWI` and nir08 < :data:`WATER_MAX_NIR` (reflectance)."""
    ndwi = np.nan_to_num(normalized_difference(bands["green"], bands["nir08"]), nan=-1.0)
    return (ndwi > WATER_MIN_NDWI) & (np.nan_to_num(np.asarray(bands["nir08"], dtype=np.float32), nan=1.0)
                                      < WATER_MAX_NIR)


def ndsi_mask(bands: Mapping[str, np.ndarray], *, threshold: float = NDSI_GLACIER_THRESHOLD,
              exclude_water: bool = True) -> np.ndarray:
    """The classical baseline: glacier where NDSI = (green - swir16)/(green + swir16) > ``threshold``,
    and never open water (:func:`water_mask`, when ``nir08`` is given; ``exclude_water=False``: the
    seed's plain NDSI, which counts lakes)."""
    ndsi = normalized_difference(bands["green"], bands["swir16"])
    glacier = np.nan_to_num(ndsi, nan=-1.0) > threshold
    if exclude_water and "nir08" in bands:
        glacier &= ~water_mask(bands)
    return glacier
