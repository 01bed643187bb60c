"""Writes the recorded Earth Engine answers used by tests/test_imagery_earthengine.py.

They are hand-made, in the formats the installed earthengine-api returns (no live server was asked):

* ``collection_<LC08|LT05|LE07>.json`` — ``ImageCollection.getInfo()`` (``ee.data.computeValue``) of a
  filtered C2 L2 collection after ``.select(['QA_PIXEL'])``: ``{"type": "ImageCollection", ...,
  "features": [{"type": "Image", "bands": [...], "id": ..., "version": ..., "properties": {...}}]}``
  with the real property names (LC08 holds the image LC08_046027_20200818 twice, as a duplicated answer
  would, and a cloudy image whose pixels lack a band);
* ``pixels_<system:index>.npy`` — ``ee.data.computePixels(fileFormat='NUMPY_NDARRAY')`` answers: a
  structured array (12 x 10), one uint16 field per band named as the expression renamed it, with
  masked pixels as 0 (the expression unmasks them to 0); ``dem_NASADEM.npy`` a float32 ``elevation``
  field with the DEM's masked pixels at -32768;
* ``errors/<status>_<name>.json|html`` — HTTP error bodies of the Earth Engine REST API (Google API
  error JSON), and ``errors/token_invalid_grant.json`` the OAuth token endpoint's refusal.

Run ``python tests/data/earthengine/make_recordings.py`` to write them again (deterministic).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHAPE = (12, 10)  # rows, columns of the test grid (EPSG:32610, x0 594300, y0 5189550, 30 m)

QA_L8_CLEAR, QA_L8_SNOW = 21824, 30048
QA_TM_CLEAR, QA_TM_SNOW = 5440, 13664


def _ms(date: str, time: str) -> int:
    when = dt.datetime.fromisoformat(f"{date}T{time}+00:00")
    return int(when.timestamp() * 1000)


def _footprint(lon0: float, lat0: float) -> dict:
    return {"type": "LinearRing", "coordinates": [
        [lon0, lat0], [lon0 + 2.95, lat0 - 0.38], [lon0 + 2.42, lat0 - 2.14], [lon0 - 0.5, lat0 - 1.77],
        [lon0, lat0]]}


def _band(name: str, crs: str, x0: int, y0: int) -> dict:
    return {"id": name, "data_type": {"type": "PixelType", "precision": "int", "min": 0, "max": 65535},
            "dimensions": [7751, 7881], "crs": crs, "crs_transform": [30, 0, x0, 0, -30, y0]}


def l8_props(path: int, row: int, date: str, time: str, cloud: float, cloud_land: float, processed: str,
             sun_az: float, sun_el: float) -> dict:
    ymd = date.replace("-", "")
    doy = dt.date.fromisoformat(date).timetuple().tm_yday
    index = f"LC08_{path:03d}{row:03d}_{ymd}"
    props = {
        "ALGORITHM_SOURCE_SURFACE_REFLECTANCE": "LaSRC_1.5.0",
        "ALGORITHM_SOURCE_SURFACE_TEMPERATURE": "st_1.3.0",
        "CLOUD_COVER": cloud, "CLOUD_COVER_LAND": cloud_land, "COLLECTION_CATEGORY": "T1",
        "DATA_SOURCE_AIR_TEMPERATURE": "MODIS", "DATA_SOURCE_ELEVATION": "GLS2000", "DATA_SOURCE_OZONE": "MODIS",
        "DATA_SOURCE_PRESSURE": "Calculated", "DATA_SOURCE_REANALYSIS": "GEOS-5 FP-IT",
        "DATA_SOURCE_WATER_VAPOR": "MODIS", "DATE_ACQUIRED": date,
        "DATE_PRODUCT_GENERATED": _ms(processed, "04:12:09"), "EARTH_SUN_DISTANCE": 1.0122338,
        "ELLIPSOID": "WGS84", "GEOMETRIC_RMSE_MODEL": 5.782, "GEOMETRIC_RMSE_MODEL_X": 4.011,
        "GEOMETRIC_RMSE_MODEL_Y": 4.165, "GEOMETRIC_RMSE_VERIFY": 3.546, "GRID_CELL_SIZE_REFLECTIVE": 30,
        "GRID_CELL_SIZE_THERMAL": 30, "GROUND_CONTROL_POINTS_MODEL": 749, "GROUND_CONTROL_POINTS_VERIFY": 221,
        "GROUND_CONTROL_POINTS_VERSION": 5, "IMAGE_QUALITY_OLI": 9, "IMAGE_QUALITY_TIRS": 9,
        "L1_DATE_PRODUCT_GENERATED": processed + "T04:02:11Z",
        "L1_LANDSAT_PRODUCT_ID": f"LC08_L1TP_{path:03d}{row:03d}_{ymd}_{processed.replace('-', '')}_02_T1",
        "L1_PROCESSING_LEVEL": "L1TP", "L1_PROCESSING_SOFTWARE_VERSION": "LPGS_15.3.1c",
        "L1_REQUEST_ID": "L2",
        "LANDSAT_PRODUCT_ID": f"LC08_L2SP_{path:03d}{row:03d}_{ymd}_{processed.replace('-', '')}_02_T1",
        "LANDSAT_SCENE_ID": f"LC8{path:03d}{row:03d}{ymd[:4]}{doy:03d}LGN00", "MAP_PROJECTION": "UTM",
        "NADIR_OFFNADIR": "NADIR", "ORIENTATION": "NORTH_UP", "PROCESSING_LEVEL": "L2SP",
        "PROCESSING_SOFTWARE_VERSION": "LPGS_15.3.1c", "REFLECTANCE_ADD_BAND_1": -0.2,
        "REFLECTANCE_MULT_BAND_1": 2.75e-05, "REFLECTIVE_LINES": 7881, "REFLECTIVE_SAMPLES": 7751,
        "RESAMPLING_OPTION": "CUBIC_CONVOLUTION", "ROLL_ANGLE": -0.001, "SATURATION_BAND_1": "N",
        "SCENE_CENTER_TIME": time + "Z", "SENSOR_ID": "OLI_TIRS", "SPACECRAFT_ID": "LANDSAT_8",
        "STATION_ID": "LGN", "SUN_AZIMUTH": sun_az, "SUN_ELEVATION": sun_el, "TARGET_WRS_PATH": path,
        "TARGET_WRS_ROW": row, "TEMPERATURE_ADD_BAND_ST_B10": 149, "TEMPERATURE_MAXIMUM_BAND_ST_B10": 372.999941,
        "TEMPERATURE_MINIMUM_BAND_ST_B10": 149.003418, "TEMPERATURE_MULT_BAND_ST_B10": 0.00341802,
        "THERMAL_LINES": 7881, "THERMAL_SAMPLES": 7751, "TIRS_SSM_MODEL": "FINAL",
        "TIRS_SSM_POSITION_STATUS": "ESTIMATED", "TRUNCATION_OLI": "UPPER", "UTM_ZONE": 10, "WRS_PATH": path,
        "WRS_ROW": row, "WRS_TYPE": 2,
        "system:asset_size": 1018742631, "system:footprint": _footprint(-123.2, 48.6 - (row - 27) * 1.45),
        "system:index": index, "system:time_end": _ms(date, time[:12]), "system:time_start": _ms(date, time[:12]),
    }
    return props


def l5_props(path: int, row: int, date: str, time: str, cloud: float, processed: str) -> dict:
    ymd = date.replace("-", "")
    doy = dt.date.fromisoformat(date).timetuple().tm_yday
    return {
        "ALGORITHM_SOURCE_SURFACE_REFLECTANCE": "LEDAPS_3.4.0",
        "ALGORITHM_SOURCE_SURFACE_TEMPERATURE": "st_1.3.0", "CLOUD_COVER": cloud, "CLOUD_COVER_LAND": cloud,
        "COLLECTION_CATEGORY": "T1", "DATA_SOURCE_ELEVATION": "GLS2000", "DATE_ACQUIRED": date,
        "DATE_PRODUCT_GENERATED": _ms(processed, "10:21:40"), "EARTH_SUN_DISTANCE": 1.0143571,
        "ELLIPSOID": "WGS84", "GEOMETRIC_RMSE_MODEL": 4.305, "GEOMETRIC_RMSE_MODEL_X": 3.052,
        "GEOMETRIC_RMSE_MODEL_Y": 3.036, "GRID_CELL_SIZE_REFLECTIVE": 30, "GRID_CELL_SIZE_THERMAL": 30,
        "GROUND_CONTROL_POINTS_MODEL": 388, "GROUND_CONTROL_POINTS_VERSION": 5, "IMAGE_QUALITY": 9,
        "L1_LANDSAT_PRODUCT_ID": f"LT05_L1TP_{path:03d}{row:03d}_{ymd}_{processed.replace('-', '')}_02_T1",
        "L1_PROCESSING_LEVEL": "L1TP",
        "LANDSAT_PRODUCT_ID": f"LT05_L2SP_{path:03d}{row:03d}_{ymd}_{processed.replace('-', '')}_02_T1",
        "LANDSAT_SCENE_ID": f"LT5{path:03d}{row:03d}{ymd[:4]}{doy:03d}PAC02", "MAP_PROJECTION": "UTM",
        "ORIENTATION": "NORTH_UP", "PROCESSING_LEVEL": "L2SP", "PROCESSING_SOFTWARE_VERSION": "LPGS_15.3.1c",
        "REFLECTANCE_ADD_BAND_1": -0.2, "REFLECTANCE_MULT_BAND_1": 2.75e-05, "SCENE_CENTER_TIME": time + "Z",
        "SENSOR_ID": "TM", "SPACECRAFT_ID": "LANDSAT_5", "STATION_ID": "PAC", "SUN_AZIMUTH": 142.3127,
        "SUN_ELEVATION": 55.0191, "TEMPERATURE_ADD_BAND_ST_B6": 149, "TEMPERATURE_MULT_BAND_ST_B6": 0.00341802,
        "UTM_ZONE": 10, "WRS_PATH": path, "WRS_ROW": row, "WRS_TYPE": 2,
        "system:asset_size": 612203512, "system:footprint": _footprint(-123.1, 48.5),
        "system:index": f"LT05_{path:03d}{row:03d}_{ymd}", "system:time_end": _ms(date, time[:12]),
        "system:time_start": _ms(date, time[:12]),
    }


def image(collection: str, props: dict, crs: str = "EPSG:32610") -> dict:
    return {"type": "Image", "bands": [_band("QA_PIXEL", crs, 469785, 5373615)], "version": 1680021517612873,
            "id": f"{collection}/{props['system:index']}", "properties": props}


def collection(collection_id: str, images: list[dict]) -> dict:
    return {"type": "ImageCollection", "bands": [], "id": collection_id, "version": 1717163512846520,
            "properties": {"date_range": [1365638400000, 1717113600000], "period": 0, "type_name": "ImageCollection",
                           "keywords": ["cfmask", "cloud", "global", "l8sr", "landsat", "lasrc", "lc08", "lst",
                                        "reflectance", "sr", "usgs"],
                           "visualization_0_bands": "SR_B4,SR_B3,SR_B2",
                           "system:visualization_0_name": "True Color (432)",
                           "product_tags": ["global", "sr", "landsat", "usgs"], "provider": "USGS",
                           "title": "USGS Landsat 8 Level 2, Collection 2, Tier 1"},
            "features": images}


def _scene(bands: list[str], qa_clear: int, qa_snow: int, rng: np.random.Generator, offset: int) -> np.ndarray:
    rows, cols = SHAPE
    out = np.zeros(SHAPE, dtype=[(b, "<u2") for b in bands])
    ice = np.zeros(SHAPE, dtype=bool)
    ice[:, : cols // 2 + 1] = True  # the glacier on the left half
    for i, band in enumerate(bands):
        if band == "qa_pixel":
            out[band] = np.where(ice, qa_snow, qa_clear)
        elif band == "lwir":
            out[band] = np.where(ice, 36800, 41500) + rng.integers(0, 200, SHAPE) + offset
        else:
            base = np.where(ice, 33000 - 1500 * i, 9000 + 800 * i)
            out[band] = base + rng.integers(0, 400, SHAPE) + offset
    return out


def main() -> None:
    rng = np.random.default_rng(20240611)
    oli = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "qa_pixel"]
    tm = ["blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "qa_pixel"]
    rows, cols = SHAPE

    l8_27 = _scene(oli, QA_L8_CLEAR, QA_L8_SNOW, rng, 0)
    r, c = np.indices(SHAPE)
    for band in oli:  # outside the WRS-2 row 27 footprint: the lower left corner is masked
        l8_27[band][r - c > 6] = 0
    l8_28 = _scene(oli, QA_L8_CLEAR, QA_L8_SNOW, rng, 7)
    for band in oli:  # row 28 starts further south: its top four rows are masked; its swath edge
        l8_28[band][:4] = 0  # cuts the lower left corner, which neither row sees
        l8_28[band][9:, :1] = 0
    tm_scene = _scene(tm, QA_TM_CLEAR, QA_TM_SNOW, rng, 3)
    for band in tm:  # the left two columns are outside the swath
        tm_scene[band][:, :2] = 0
    tm_scene["lwir"][5, 7] = 0  # ST alone is masked here (no emissivity): the pixel stays valid
    cloudy = _scene([b for b in oli if b != "swir22"], QA_L8_CLEAR, QA_L8_SNOW, rng, 11)  # an answer without swir22

    dem = np.zeros(SHAPE, dtype=[("elevation", "<f4")])
    dem["elevation"] = (2600.0 - 30.0 * c - 12.5 * r).astype(np.float32)
    dem["elevation"][:2, -2:] = -32768.0  # a void of the DEM, unmasked to the sentinel

    np.save(HERE / "pixels_LC08_046027_20200818.npy", l8_27)
    np.save(HERE / "pixels_LC08_046028_20200818.npy", l8_28)
    np.save(HERE / "pixels_LT05_046027_20090806.npy", tm_scene)
    np.save(HERE / "pixels_LC08_046027_20200903.npy", cloudy)
    np.save(HERE / "dem_NASADEM.npy", dem)

    c8, c5, c7 = "LANDSAT/LC08/C02/T1_L2", "LANDSAT/LT05/C02/T1_L2", "LANDSAT/LE07/C02/T1_L2"
    a = image(c8, l8_props(46, 27, "2020-08-18", "18:44:52.6129280", 4.21, 3.87, "2020-08-23", 148.6312, 53.2197))
    b = image(c8, l8_props(46, 28, "2020-08-18", "18:45:16.4867400", 7.55, 7.55, "2020-08-23", 147.2205, 54.3931))
    d = image(c8, l8_props(46, 27, "2020-09-03", "18:45:00.1031650", 35.17, 33.02, "2020-09-08", 153.9124, 47.8812))
    # the duplicated image: Earth Engine occasionally lists an image twice
    files = {"collection_LC08.json": collection(c8, [a, b, a, d]),
             "collection_LT05.json": collection(c5, [image(c5, l5_props(46, 27, "2009-08-06", "18:31:07.0310000",
                                                                         2.0, "2020-08-27"))]),
             "collection_LE07.json": collection(c7, [])}
    files["collection_LT05.json"]["properties"]["title"] = "USGS Landsat 5 Level 2, Collection 2, Tier 1"
    files["collection_LE07.json"]["properties"]["title"] = "USGS Landsat 7 Level 2, Collection 2, Tier 1"
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    errors = HERE / "errors"
    errors.mkdir(exist_ok=True)

    def err(code: int, status: str, message: str) -> str:
        return json.dumps({"error": {"code": code, "message": message, "status": status}}, indent=2) + "\n"

    bodies = {
        "429_too_many_concurrent.json": err(429, "RESOURCE_EXHAUSTED", "Too many concurrent aggregations."),
        "429_quota.json": err(429, "RESOURCE_EXHAUSTED",
                              "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute per user' "
                              "of service 'earthengine.googleapis.com' for consumer 'project_number:381238523516'."),
        "500_internal.json": err(500, "INTERNAL", "An internal error has occurred (request ID: 5bb1c8a3d6c4e2f0)."),
        "503_unavailable.html": "<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 503 (Service "
                                "Unavailable)!!1</title><p><b>503.</b> <ins>That's an error.</ins><p>The service "
                                "is currently unavailable. <ins>That's all we know.</ins></html>\n",
        "400_missing_band.json": err(400, "INVALID_ARGUMENT", "Image.select: Pattern 'ST_B6' did not match any bands."),
        "401_unauthenticated.json": err(401, "UNAUTHENTICATED",
                                        "Request had invalid authentication credentials. Expected OAuth 2 access "
                                        "token, login cookie or other valid authentication credential. See "
                                        "https://developers.google.com/identity/sign-in/web/devconsole-project."),
        "403_not_registered.json": err(403, "PERMISSION_DENIED",
                                       "Project projects/glacierwatch-test is not registered to use Earth Engine. "
                                       "Visit https://code.earthengine.google.com/register to register your project."),
        "token_invalid_grant.json": json.dumps({"error": "invalid_grant",
                                                "error_description": "Token has been expired or revoked."},
                                               indent=2) + "\n",
    }
    for name, body in bodies.items():
        (errors / name).write_text(body, encoding="utf-8")


if __name__ == "__main__":
    main()
