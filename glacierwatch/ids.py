"""GLIMS glacier identifiers.

A GLIMS id encodes a point of the glacier: ``G`` + longitude east in thousandths of a degree
(0-360, 6 digits) + ``E`` + latitude in thousandths (5 digits) + ``N``/``S``, e.g. ``G007026E45991N``.
Ids become path components, so they are validated (the whole string, no trailing newline) before
any path is built from them, and :func:`glacier_path` is the one place an id becomes a path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from glacierwatch.errors import InputError

#: The whole id: anchored with ``\A``/``\Z`` (``$`` would also accept a trailing newline), so
#: ``match`` and ``fullmatch`` both check the whole string.
GLIMS_ID_PATTERN = re.compile(r"\AG\d{6}E\d{5}[NS]\Z")


def is_glims_id(value: object) -> bool:
    """True if ``value`` is a string that is exactly a GLIMS id (no whitespace, no newline)."""
    return isinstance(value, str) and GLIMS_ID_PATTERN.fullmatch(value) is not None


def validate_glims_id(glims_id: str) -> str:
    """Return ``glims_id`` unchanged if it is exactly ``G\\d{6}E\\d{5}[NS]``, else raise InputError."""
    if not is_glims_id(glims_id):
        raise InputError(f"not a GLIMS glacier id (expected e.g. G007026E45991N): {glims_id!r}")
    return glims_id


def glacier_path(root: str | os.PathLike[str], glims_id: str, suffix: str = "", *, folder: bool = False) -> Path:
    """``root/<GLIMS_ID><suffix>`` (or the folder ``root/<GLIMS_ID>``), after validating the id.

    The only place an id becomes a path: the id is checked first, and the result is refused
    (InputError) if it would not lie inside ``root`` (belt and braces against traversal).
    """
    validate_glims_id(glims_id)
    root_path = Path(root)
    path = root_path / (glims_id if folder else f"{glims_id}{suffix}")
    resolved_root = os.path.realpath(root_path)
    if os.path.commonpath([resolved_root, os.path.realpath(path)]) != resolved_root:
        raise InputError(f"glacier path {path} would leave {root_path}")
    return path


def glims_id_from_lonlat(lon: float, lat: float) -> str:
    """Build the GLIMS id of a point (degrees, WGS 84)."""
    lon_e = round((lon % 360.0) * 1000) % 360000
    lat_abs = round(abs(lat) * 1000)
    return f"G{lon_e:06d}E{lat_abs:05d}{'N' if lat >= 0 else 'S'}"
