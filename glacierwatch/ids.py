"""GLIMS glacier identifiers.

A GLIMS id encodes a point of the glacier: ``G`` + longitude east in thousandths of a degree
(0-360, 6 digits) + ``E`` + latitude in thousandths (5 digits) + ``N``/``S``, e.g. ``G007026E45991N``.
Ids become path components, so they are validated against the pattern first.
"""

from __future__ import annotations

import re

from glacierwatch.errors import InputError

GLIMS_ID_PATTERN = re.compile(r"^G\d{6}E\d{5}[NS]$")


def validate_glims_id(glims_id: str) -> str:
    """Return ``glims_id`` unchanged if it matches ``G\\d{6}E\\d{5}[NS]``, else raise InputError."""
    if not isinstance(glims_id, str) or not GLIMS_ID_PATTERN.match(glims_id):
        raise InputError(f"not a GLIMS glacier id (expected e.g. G007026E45991N): {glims_id!r}")
    return glims_id


def glims_id_from_lonlat(lon: float, lat: float) -> str:
    """Build the GLIMS id of a point (degrees, WGS 84)."""
    lon_e = round((lon % 360.0) * 1000) % 360000
    lat_abs = round(abs(lat) * 1000)
    return f"G{lon_e:06d}E{lat_abs:05d}{'N' if lat >= 0 else 'S'}"
