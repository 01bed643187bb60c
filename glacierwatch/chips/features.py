"""The old home of :mod:`glacierwatch.features` (the model input channels), kept because the 0.1.0
documentation imported them from ``glacierwatch.chips.features``; new code imports
:mod:`glacierwatch.features`."""

from glacierwatch.features import (
    DEFAULT_CHANNELS,
    INDEX_CHANNELS,
    KNOWN_CHANNELS,
    NDSI_GLACIER_THRESHOLD,
    WATER_MAX_NIR,
    WATER_MIN_NDWI,
    Normaliser,
    compute_channels,
    fill_nan,
    ndsi_mask,
    normalized_difference,
    physical_bands,
    resize_stack,
    water_mask,
)

__all__ = [
    "DEFAULT_CHANNELS",
    "INDEX_CHANNELS",
    "KNOWN_CHANNELS",
    "NDSI_GLACIER_THRESHOLD",
    "WATER_MAX_NIR",
    "WATER_MIN_NDWI",
    "Normaliser",
    "compute_channels",
    "fill_nan",
    "ndsi_mask",
    "normalized_difference",
    "physical_bands",
    "resize_stack",
    "water_mask",
]
