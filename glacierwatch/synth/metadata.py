"""Earth Engine image properties of a synthetic scene (``LANDSAT/L*0*/C02/T1_L2`` property names).

The JSON written beside each scene file is what an Earth Engine export script saves:
``image.toDictionary()`` of the Collection 2 Level-2 image, plus the GLIMS id of the box. About 3 %
of real exports hold two records for one file (overlapping WRS rows on the same date); those are a
JSON list of two dicts that differ in row, product id and ``CLOUD_COVER``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from glacierwatch.landsat import SENSORS

#: Product prefix and scene-id letters per satellite.
_PRODUCT_PREFIX = {"L5": "LT05", "L7": "LE07", "L8": "LC08", "L9": "LC09"}
_SCENE_PREFIX = {"L5": "LT5", "L7": "LE7", "L8": "LC8", "L9": "LC9"}
_STATIONS = ("LGN", "EDC", "KIS", "ASN", "SG1", "MPS", "GNC", "PAC", "XXO")
#: Collection 2 reprocessing of the archive: products generated in this window for old scenes.
_C2_START = dt.date(2020, 8, 1)
_C2_END = dt.date(2021, 9, 30)
DUPLICATE_PROBABILITY = 0.03


def _product_date(acquired: dt.date, rng: np.random.Generator) -> dt.date:
    """When the C2 L2 product was generated: archive reprocessing, or ~1-3 weeks after acquisition."""
    if acquired < dt.date(2020, 7, 1):
        span = (_C2_END - _C2_START).days
        return _C2_START + dt.timedelta(days=int(rng.integers(0, span)))
    return acquired + dt.timedelta(days=int(rng.integers(7, 22)))


def scene_properties(*, glims_id: str, satellite: str, acquired: dt.datetime, path: int, row: int,
                     sun_elevation: float, sun_azimuth: float, cloud_cover: float,
                     cloud_cover_land: float, image_quality: int,
                     rng: np.random.Generator) -> dict[str, Any] | list[dict[str, Any]]:
    """Earth Engine properties of one scene (a dict, or a list of two dicts for a duplicate record).

    Angles in degrees, cloud cover in percent, ``system:time_start`` in ms since 1970-01-01 UTC.
    """
    sensor = SENSORS[satellite]
    date = acquired.date()
    generated = _product_date(date, rng)
    oli = satellite in ("L8", "L9")
    tirs_quality = 9
    if oli and rng.random() < 0.08:
        tirs_quality = 7
    epoch = dt.datetime(1970, 1, 1)
    time_start = int(round((acquired - epoch).total_seconds() * 1000.0))
    seconds = acquired.hour * 3600 + acquired.minute * 60 + acquired.second + acquired.microsecond / 1e6
    centre = f"{acquired:%H:%M}:{seconds % 60:010.7f}Z"
    station = _STATIONS[int(rng.integers(len(_STATIONS)))]
    version = int(rng.integers(0, 3))

    def record(row_: int, cover: float, cover_land: float) -> dict[str, Any]:
        product = f"{_PRODUCT_PREFIX[satellite]}_L2SP_{path:03d}{row_:03d}_{date:%Y%m%d}_{generated:%Y%m%d}_02_T1"
        props: dict[str, Any] = {
            "ALGORITHM_SOURCE_SURFACE_REFLECTANCE": "LaSRC_1.5.0" if oli else "LEDAPS_3.4.0",
            "ALGORITHM_SOURCE_SURFACE_TEMPERATURE": "st_1.3.0",
            "CLOUD_COVER": round(float(cover), 2),
            "CLOUD_COVER_LAND": round(float(cover_land), 2),
            "COLLECTION_CATEGORY": "T1",
            "COLLECTION_NUMBER": "02",
            "DATA_SOURCE_ELEVATION": "GLS2000" if date.year < 2013 else "COP30",
            "DATE_ACQUIRED": date.isoformat(),
            "DATE_PRODUCT_GENERATED": int((dt.datetime.combine(generated, dt.time()) - epoch).total_seconds() * 1000),
            "GEOMETRIC_RMSE_MODEL": round(float(rng.uniform(3.5, 9.5)), 3),
            "L1_PROCESSING_LEVEL": "L1TP",
            "LANDSAT_PRODUCT_ID": product,
            "LANDSAT_SCENE_ID": (f"{_SCENE_PREFIX[satellite]}{path:03d}{row_:03d}{date:%Y}"
                                 f"{date.timetuple().tm_yday:03d}{station}{version:02d}"),
            "PROCESSING_LEVEL": "L2SP",
            "SCENE_CENTER_TIME": centre,
            "SENSOR_ID": sensor.instrument,
            "SPACECRAFT_ID": sensor.spacecraft_id,
            "SUN_AZIMUTH": round(float(sun_azimuth), 8),
            "SUN_ELEVATION": round(float(sun_elevation), 8),
            "WRS_PATH": int(path),
            "WRS_ROW": int(row_),
            "WRS_TYPE": 2,
            "glims_id": glims_id,
            "system:index": f"{_PRODUCT_PREFIX[satellite]}_{path:03d}{row_:03d}_{date:%Y%m%d}",
            "system:time_start": time_start,
        }
        if oli:
            props["IMAGE_QUALITY_OLI"] = int(image_quality)
            props["IMAGE_QUALITY_TIRS"] = int(tirs_quality)
        else:
            props["IMAGE_QUALITY"] = int(image_quality)
        return props

    first = record(row, cloud_cover, cloud_cover_land)
    if rng.random() >= DUPLICATE_PROBABILITY:
        return first
    other_cover = float(np.clip(cloud_cover + rng.normal(0.0, 15.0), 0.0, 100.0))
    if round(other_cover, 2) == round(cloud_cover, 2):
        other_cover = min(cloud_cover + 1.0, 100.0) if cloud_cover < 99.0 else cloud_cover - 1.0
    other_row = row + (1 if rng.random() < 0.5 else -1)
    second = record(other_row, other_cover, float(np.clip(other_cover + rng.normal(0.0, 1.5), 0.0, 100.0)))
    return [first, second]
