"""Surface reflectance spectra, cloud spectra and sensor traits of the synthetic scenes.

Reflectances are unitless surface reflectance (Landsat C2 L2 SR) in the rendered band order
:data:`RENDER_BANDS` (``coastal`` is written only for Landsat 8/9). Values follow typical library
spectra: snow and clean ice bright in the visible and dark in the SWIR (NDSI > 0.8), debris and rock
brighter in the SWIR than in the visible, vegetation dark red / bright NIR, turbid glacial lakes
brighter in green than NIR (high NDWI) and near-black in the SWIR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glacierwatch.landsat import REFLECTIVE_BANDS

#: Reflective bands rendered for every scene (coastal first; dropped for Landsat 5/7 files).
RENDER_BANDS: tuple[str, ...] = ("coastal", *REFLECTIVE_BANDS)

#: Surface types mixed in every pixel.
ENDMEMBERS: tuple[str, ...] = (
    "snow", "ice", "dirty_ice", "debris", "rock_light", "rock_dark", "veg_green", "veg_dry", "water",
)

#: Reflectance (E, 7): coastal, blue, green, red, nir08, swir16, swir22.
SPECTRA = np.array([
    [0.88, 0.87, 0.85, 0.82, 0.68, 0.07, 0.05],    # snow / firn (late-summer old snow)
    [0.64, 0.63, 0.60, 0.55, 0.42, 0.04, 0.03],    # clean glacier ice
    [0.43, 0.42, 0.40, 0.37, 0.29, 0.05, 0.04],    # dirty ice (dust, cryoconite)
    [0.10, 0.10, 0.12, 0.15, 0.19, 0.23, 0.20],    # supraglacial debris
    [0.15, 0.16, 0.19, 0.23, 0.28, 0.34, 0.28],    # light rock / scree (granite, gneiss)
    [0.07, 0.08, 0.10, 0.12, 0.16, 0.22, 0.19],    # dark rock (schist, basalt)
    [0.045, 0.04, 0.07, 0.045, 0.33, 0.17, 0.08],  # green vegetation (meadow, forest)
    [0.06, 0.06, 0.08, 0.10, 0.20, 0.25, 0.16],    # dry / dormant vegetation
    [0.10, 0.09, 0.12, 0.09, 0.035, 0.012, 0.008],  # turbid proglacial lake
], dtype=np.float64)

#: Thick cloud reflectance per band (scaled per scene by ~0.8-1.1).
CLOUD_SPECTRUM = np.array([0.64, 0.62, 0.60, 0.59, 0.58, 0.46, 0.34])
#: Thin cirrus / haze: added reflectance per unit optical thickness.
HAZE_SPECTRUM = np.array([0.55, 0.50, 0.44, 0.40, 0.32, 0.20, 0.14])
#: Fraction of diffuse (sky) light per band; terrain and cloud shadows keep only this share, so
#: shadowed snow stays NDSI-positive and shadowed rock drifts towards positive NDSI too.
DIFFUSE_FRACTION = np.array([0.26, 0.22, 0.17, 0.13, 0.08, 0.05, 0.04])


@dataclass(frozen=True)
class SensorTraits:
    """Radiometric character of one Landsat sensor's C2 L2 product.

    ``noise``: Gaussian noise sd per rendered band (reflectance); ``gain``: relative band response
    versus the library spectra; ``thermal_noise_k``: noise of the surface temperature, K;
    ``thermal_blur_px``: Gaussian sd (30 m pixels) of the resampled thermal band
    (TM 120 m, ETM+ 60 m, TIRS 100 m).
    """

    noise: np.ndarray
    gain: np.ndarray
    thermal_noise_k: float
    thermal_blur_px: float


SENSOR_TRAITS: dict[str, SensorTraits] = {
    "L5": SensorTraits(np.array([0.007, 0.007, 0.006, 0.006, 0.008, 0.007, 0.006]),
                       np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), 0.6, 1.7),
    "L7": SensorTraits(np.array([0.006, 0.006, 0.005, 0.005, 0.006, 0.005, 0.005]),
                       np.array([1.0, 1.0, 0.99, 1.0, 1.01, 1.0, 1.0]), 0.5, 1.0),
    "L8": SensorTraits(np.array([0.003, 0.003, 0.0025, 0.0025, 0.003, 0.0025, 0.0025]),
                       np.array([1.0, 0.985, 1.0, 1.005, 1.02, 0.99, 1.0]), 0.3, 1.4),
    "L9": SensorTraits(np.array([0.003, 0.003, 0.0025, 0.0025, 0.003, 0.0025, 0.0025]),
                       np.array([1.0, 0.99, 1.0, 1.0, 1.02, 0.99, 1.005]), 0.3, 1.4),
}
