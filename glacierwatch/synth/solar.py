"""Sun position, Landsat overpass time and WRS-2 path/row for the synthetic scenes.

Accuracy is that of the usual low-precision almanac (~0.1 deg), plenty for illumination and for
metadata that looks like Landsat's.
"""

from __future__ import annotations

import datetime as dt
import math

#: Landsat orbit: inclination (deg) and period (min) of the WRS-2 reference orbit.
_INCLINATION_DEG = 98.2
_PERIOD_MIN = 98.9
#: WRS-2 path 1 crosses the equator (descending node) at this longitude, deg.
_PATH1_NODE_LON = -64.60
_N_PATHS = 233
#: Row 60 is on the equator; rows are 360/248 deg of orbit apart.
_ROW_SPACING_DEG = 360.0 / 248.0

#: Lowest sun elevation (deg) for which Collection 2 Level-2 surface reflectance is produced
#: (USGS does not process SR for solar zenith angles above 76 deg).
MIN_SUN_ELEVATION_DEG = 14.0


def sun_position(when: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """Solar (elevation, azimuth) in degrees at UTC time ``when`` and (lon, lat) in degrees.

    Azimuth is clockwise from north (0-360), as in Landsat's ``SUN_AZIMUTH``.
    """
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    j2000 = dt.datetime(2000, 1, 1, 12, 0, 0)
    n = (when - j2000).total_seconds() / 86400.0
    mean_lon = (280.460 + 0.9856474 * n) % 360.0
    anomaly = math.radians((357.528 + 0.9856003 * n) % 360.0)
    ecl_lon = math.radians(mean_lon + 1.915 * math.sin(anomaly) + 0.020 * math.sin(2 * anomaly))
    obliquity = math.radians(23.439 - 0.0000004 * n)
    ra = math.atan2(math.cos(obliquity) * math.sin(ecl_lon), math.cos(ecl_lon))
    dec = math.asin(math.sin(obliquity) * math.sin(ecl_lon))
    gmst_h = (18.697374558 + 24.06570982441908 * n) % 24.0
    hour_angle = math.radians(gmst_h * 15.0 + lon) - ra
    phi = math.radians(lat)
    sin_el = math.sin(phi) * math.sin(dec) + math.cos(phi) * math.cos(dec) * math.cos(hour_angle)
    elevation = math.degrees(math.asin(max(-1.0, min(1.0, sin_el))))
    azimuth = math.degrees(math.atan2(-math.sin(hour_angle),
                                      math.tan(dec) * math.cos(phi) - math.sin(phi) * math.cos(hour_angle)))
    return elevation, azimuth % 360.0


def _orbit_offsets(lat: float) -> tuple[float, float, float]:
    """(argument of latitude u, east offset of the ground track from its descending node, and the
    part of that offset due to the orbit's tilt alone), deg; negative south of the equator."""
    inc = math.radians(_INCLINATION_DEG)
    sin_u = max(-1.0, min(1.0, math.sin(math.radians(abs(lat))) / math.sin(inc)))
    u = math.asin(sin_u)
    orbit = abs(math.degrees(math.atan(math.cos(inc) * math.tan(u))))
    rotation = math.degrees(u) * _PERIOD_MIN / 1440.0
    shift = orbit + rotation
    sign = 1.0 if lat >= 0 else -1.0
    return sign * math.degrees(u), sign * shift, sign * orbit


def wrs2_path_row(lon: float, lat: float) -> tuple[int, int]:
    """Approximate WRS-2 (path, row) of the descending (daytime) scene containing (lon, lat).

    E.g. the Valais Alps (7.5 E, 46 N) -> (195, 28), Chugach (-147 E, 61 N) -> (67, 17).
    """
    u, shift, _ = _orbit_offsets(lat)
    node_lon = lon - shift
    path = int(round(((_PATH1_NODE_LON - node_lon) / (360.0 / _N_PATHS)) % _N_PATHS)) % _N_PATHS + 1
    row = int(round(60.0 - u / _ROW_SPACING_DEG))
    return path, row


def overpass_time(date: dt.date, lon: float, lat: float, minutes_jitter: float = 0.0) -> dt.datetime:
    """UTC scene-centre time of a Landsat descending pass over (lon, lat) on ``date``.

    The descending node is crossed at ~10:10 local mean solar time; the tilted orbit puts points north
    of the equator at a later local time (~10:45 at 46 N) and points south at an earlier one.
    """
    _, _, orbit = _orbit_offsets(lat)
    local_h = 10.0 + 10.0 / 60.0 + orbit / 15.0 + minutes_jitter / 60.0
    utc_h = local_h - lon / 15.0
    base = dt.datetime(date.year, date.month, date.day)
    return base + dt.timedelta(hours=utc_h)
