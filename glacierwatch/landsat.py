"""Landsat Collection 2 Level-2 conventions, in one place.

* Bands are identified by **common name** (``blue``, ``green``, ``red``, ``nir08``, ``swir16``,
  ``swir22``, ``lwir``, ``qa_pixel``), never by band number: band numbers differ between TM/ETM+
  (SR_B1 = blue) and OLI (SR_B1 = coastal, SR_B2 = blue).
* Scale factors are applied only by :func:`dn_to_reflectance` and :func:`dn_to_kelvin`
  (USGS Collection 2 Level-2: SR = DN x 0.0000275 - 0.2; ST = DN x 0.00341802 + 149.0 K; fill DN 0).
* QA_PIXEL bits follow the USGS Collection 2 layout (see :class:`QA`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SR_SCALE = 0.0000275
SR_OFFSET = -0.2
ST_SCALE = 0.00341802
ST_OFFSET = 149.0
FILL_DN = 0

#: Reflective bands shared by all sensors, then thermal; the standard scene band set.
REFLECTIVE_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir08", "swir16", "swir22")
THERMAL_BAND = "lwir"
QA_BAND = "qa_pixel"
COMMON_BANDS: tuple[str, ...] = (*REFLECTIVE_BANDS, THERMAL_BAND)
SCENE_BANDS: tuple[str, ...] = (*COMMON_BANDS, QA_BAND)

#: Landsat 7 Scan Line Corrector failure: ETM+ scenes after this date have wedge-shaped gaps.
SLC_OFF_DATE = dt.date(2003, 5, 31)

#: Names found in files and STAC/EE metadata, mapped to our common names.
BAND_ALIASES: dict[str, str] = {
    "lwir11": "lwir",
    "lwir10": "lwir",
    "thermal": "lwir",
    "tir": "lwir",
    "nir": "nir08",
    "swir1": "swir16",
    "swir2": "swir22",
    "qa": "qa_pixel",
    "qa_pixel": "qa_pixel",
}


def common_band_name(name: str) -> str:
    """Normalise a band name or alias (case-insensitive) to its common name."""
    key = name.strip().lower()
    return BAND_ALIASES.get(key, key)


def band_names(descriptions: Sequence[str | None]) -> list[str]:
    """The common name of each band of a file from its band descriptions (rasterio's
    ``src.descriptions``), in file order; ``""`` for a band without a description."""
    return [common_band_name(d) if d else "" for d in descriptions]


#: USGS / Earth Engine metadata name -> the STAC item properties that carry it, first present wins
#: (the mapping the STAC source writes side-cars with and the catalog reads STAC items with).
STAC_TO_USGS: dict[str, tuple[str, ...]] = {
    "CLOUD_COVER": ("eo:cloud_cover",),
    "CLOUD_COVER_LAND": ("landsat:cloud_cover_land",),
    "WRS_PATH": ("landsat:wrs_path",),
    "WRS_ROW": ("landsat:wrs_row",),
    "SUN_ELEVATION": ("view:sun_elevation", "eo:sun_elevation"),
    "SUN_AZIMUTH": ("view:sun_azimuth", "eo:sun_azimuth"),
    "COLLECTION_NUMBER": ("landsat:collection_number",),
    "LANDSAT_SCENE_ID": ("landsat:scene_id",),
    "COLLECTION_CATEGORY": ("landsat:collection_category",),
    "PROCESSING_LEVEL": ("landsat:correction", "landsat:processing_level"),
}


class QA(enum.IntFlag):
    """QA_PIXEL single-bit flags (USGS Landsat Collection 2 Level-2)."""

    FILL = 1 << 0
    DILATED_CLOUD = 1 << 1
    CIRRUS = 1 << 2
    CLOUD = 1 << 3
    CLOUD_SHADOW = 1 << 4
    SNOW = 1 << 5
    CLEAR = 1 << 6
    WATER = 1 << 7


#: Bit offsets of the 2-bit confidence fields (0 none, 1 low, 2 medium, 3 high).
QA_CONFIDENCE_SHIFT = {"cloud": 8, "cloud_shadow": 10, "snow": 12, "cirrus": 14}

#: Pixels whose surface was not seen: fill, cloud (incl. dilated), cirrus and cloud shadow.
QA_INVALID = QA.FILL | QA.DILATED_CLOUD | QA.CIRRUS | QA.CLOUD | QA.CLOUD_SHADOW


def qa_bits(qa: np.ndarray) -> np.ndarray:
    """QA_PIXEL as its uint16 bit field. A float QA band (a float export) is converted with NaN,
    +-inf and values outside 0..65535 as fill (QA.FILL): casting NaN to uint16 would give 0,
    i.e. a pixel without any flag, and it would pass as seen."""
    arr = np.asarray(qa)
    if np.issubdtype(arr.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(arr) & (arr >= 0) & (arr <= 65535)
        return np.where(ok, arr, int(QA.FILL)).astype(np.uint16)
    return arr.astype(np.uint16, copy=False)


def qa_confidence(qa: np.ndarray, field: str) -> np.ndarray:
    """Return the 2-bit confidence (0-3) of ``field`` (cloud, cloud_shadow, snow, cirrus)."""
    return (qa_bits(qa) >> QA_CONFIDENCE_SHIFT[field]) & 0b11


def qa_fill_mask(qa: np.ndarray) -> np.ndarray:
    """True where the QA_PIXEL value has the fill bit (no data: outside the footprint, or a gap)."""
    return (qa_bits(qa) & np.uint16(int(QA.FILL))) != 0


def qa_invalid_mask(qa: np.ndarray) -> np.ndarray:
    """True where the QA_PIXEL value marks fill, cloud, dilated cloud, cirrus or shadow."""
    return (qa_bits(qa) & np.uint16(int(QA_INVALID))) != 0


def dn_to_reflectance(dn: np.ndarray) -> np.ndarray:
    """Surface reflectance (unitless, float32) from C2 L2 SR digital numbers; fill (0) -> NaN."""
    dn = np.asarray(dn)
    out = dn.astype(np.float32) * np.float32(SR_SCALE) + np.float32(SR_OFFSET)
    out[dn == FILL_DN] = np.nan
    return out


def dn_to_kelvin(dn: np.ndarray) -> np.ndarray:
    """Surface temperature (K, float32) from C2 L2 ST digital numbers; fill (0) -> NaN."""
    dn = np.asarray(dn)
    out = dn.astype(np.float32) * np.float32(ST_SCALE) + np.float32(ST_OFFSET)
    out[dn == FILL_DN] = np.nan
    return out


def reflectance_to_dn(reflectance: np.ndarray) -> np.ndarray:
    """Inverse of :func:`dn_to_reflectance`: uint16 DN, clipped to 1..65535 (0 is reserved for fill)."""
    dn = np.rint((np.asarray(reflectance, dtype=np.float64) - SR_OFFSET) / SR_SCALE)
    return np.clip(dn, 1, 65535).astype(np.uint16)


def kelvin_to_dn(kelvin: np.ndarray) -> np.ndarray:
    """Inverse of :func:`dn_to_kelvin`: uint16 DN, clipped to 1..65535."""
    dn = np.rint((np.asarray(kelvin, dtype=np.float64) - ST_OFFSET) / ST_SCALE)
    return np.clip(dn, 1, 65535).astype(np.uint16)


def to_physical(band: str, dn: np.ndarray) -> np.ndarray:
    """Apply the right scale for ``band``: reflectance for reflective bands, kelvin for ``lwir``."""
    name = common_band_name(band)
    if name in REFLECTIVE_BANDS:
        return dn_to_reflectance(dn)
    if name == THERMAL_BAND:
        return dn_to_kelvin(dn)
    raise ValueError(f"band {band!r} has no physical scale (QA bands are bit fields)")


@dataclass(frozen=True)
class Sensor:
    """One Landsat mission of Collection 2 Level-2.

    ``ee_bands`` maps common names to Earth Engine / USGS band names, ``file_bands`` lists the
    bands (common names) of a standard scene file of this sensor in file order.
    """

    satellite: str  # L5, L7, L8, L9
    spacecraft_id: str  # as in metadata: LANDSAT_5 ...
    instrument: str
    first_date: dt.date
    last_date: dt.date | None
    ee_collection: str
    ee_bands: dict[str, str]
    file_bands: tuple[str, ...]

    def active_on(self, date: dt.date) -> bool:
        """True if the sensor acquired images on ``date``."""
        return self.first_date <= date and (self.last_date is None or date <= self.last_date)


_TM_ETM_BANDS = {
    "blue": "SR_B1", "green": "SR_B2", "red": "SR_B3", "nir08": "SR_B4",
    "swir16": "SR_B5", "swir22": "SR_B7", "lwir": "ST_B6", "qa_pixel": "QA_PIXEL",
}
_OLI_BANDS = {
    "coastal": "SR_B1", "blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir08": "SR_B5",
    "swir16": "SR_B6", "swir22": "SR_B7", "lwir": "ST_B10", "qa_pixel": "QA_PIXEL",
}

SENSORS: dict[str, Sensor] = {
    "L5": Sensor("L5", "LANDSAT_5", "TM", dt.date(1984, 3, 1), dt.date(2011, 11, 18),
                 "LANDSAT/LT05/C02/T1_L2", _TM_ETM_BANDS, SCENE_BANDS),
    "L7": Sensor("L7", "LANDSAT_7", "ETM", dt.date(1999, 5, 28), dt.date(2024, 1, 19),
                 "LANDSAT/LE07/C02/T1_L2", _TM_ETM_BANDS, SCENE_BANDS),
    "L8": Sensor("L8", "LANDSAT_8", "OLI_TIRS", dt.date(2013, 4, 11), None,
                 "LANDSAT/LC08/C02/T1_L2", _OLI_BANDS, ("coastal", *SCENE_BANDS)),
    "L9": Sensor("L9", "LANDSAT_9", "OLI_TIRS", dt.date(2021, 10, 31), None,
                 "LANDSAT/LC09/C02/T1_L2", _OLI_BANDS, ("coastal", *SCENE_BANDS)),
}


def sensor_from_spacecraft(spacecraft_id: str) -> Sensor:
    """Look up a sensor by SPACECRAFT_ID (``LANDSAT_8``), satellite code (``L8``) or STAC platform."""
    key = spacecraft_id.strip().upper().replace("-", "_")
    for sensor in SENSORS.values():
        if key in (sensor.satellite, sensor.spacecraft_id):
            return sensor
    raise ValueError(f"unknown Landsat spacecraft {spacecraft_id!r}")


def is_slc_off(satellite: str, date: dt.date) -> bool:
    """True for Landsat 7 scenes acquired after the SLC failure (2003-05-31)."""
    return satellite == "L7" and date > SLC_OFF_DATE
