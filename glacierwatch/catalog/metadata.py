"""Provider metadata of a scene: Earth Engine image properties, USGS MTL (JSON, XML, ODL text) or a
STAC item, normalised to one record type, and the deduplication of repeated records.

The format of a metadata file is recognised from its content, not its name:

* Earth Engine: a dict of image properties (``CLOUD_COVER``, ``IMAGE_QUALITY`` ...), a list of such
  dicts (Earth Engine sometimes returns two records for one image), or ``getInfo()`` blobs
  (``{"type": "Image", "properties": {...}}``), alone or in a list;
* USGS MTL JSON (``{"LANDSAT_METADATA_FILE": {...}}``), MTL XML (root ``LANDSAT_METADATA_FILE``) and
  MTL ODL text (``GROUP = ...``); only the ``PRODUCT_CONTENTS`` and ``IMAGE_ATTRIBUTES`` groups are
  read (the Level-1 processing record repeats keys with Level-1 values);
* STAC items (``"type": "Feature"``), in the Planetary Computer / stactools layout
  (``view:sun_elevation``, ``platform``) and the older USGS layout (``eo:sun_elevation``,
  ``eo:platform``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from glacierwatch.errors import InputError
from glacierwatch.landsat import STAC_TO_USGS

#: Tie-break order of sources when two records have the same cloud cover (first wins).
SOURCE_ORDER: tuple[str, ...] = ("ee", "mtl_json", "mtl_xml", "mtl_txt", "stac")

#: Metadata file names beside a scene ``<stem>.tif`` are ``<stem>`` + one of these suffixes.
SIDECAR_SUFFIXES: tuple[str, ...] = (
    ".json", ".xml", "_MTL.json", "_MTL.xml", "_MTL.txt", ".stac.json", "_stac.json",
    "_SR_stac.json", "_ST_stac.json",
)

_MTL_GROUPS = ("PRODUCT_CONTENTS", "IMAGE_ATTRIBUTES")


class MetadataError(InputError):
    """A metadata file cannot be parsed or holds an unusable value."""


@dataclass(frozen=True)
class ProviderRecord:
    """One provider record, normalised. ``None`` where the source lacks a field."""

    source: str
    path: str | None = None
    product_id: str | None = None
    spacecraft_id: str | None = None
    satellite: str | None = None  # L4 ... L9, from the spacecraft id
    sensor_id: str | None = None
    date: dt.date | None = None
    acquired: dt.datetime | None = None  # UTC
    wrs_path: int | None = None
    wrs_row: int | None = None
    collection: str | None = None
    tier: str | None = None
    processing_level: str | None = None
    cloud_cover: float | None = None
    cloud_cover_land: float | None = None
    image_quality: int | None = None
    image_quality_tirs: int | None = None
    sun_elevation: float | None = None
    sun_azimuth: float | None = None

    def canonical(self) -> str:
        """A deterministic JSON form (the last tie-break of deduplication)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "path"}, sort_keys=True, default=str)


# ------------------------------------------------------------------ value parsing

def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "NULL", "null", "None"))


def _float(value: Any, key: str) -> float | None:
    if _is_missing(value):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"{key}: not a number: {value!r}") from exc
    return None if math.isnan(out) else out


def _pct(value: Any, key: str) -> float | None:
    """A cloud percentage; USGS writes -1 for 'not computed', which becomes None."""
    out = _float(value, key)
    if out is None or out < 0:
        return None
    if out > 100:
        raise MetadataError(f"{key}: {value!r} is not a percentage")
    return out


def _int(value: Any, key: str) -> int | None:
    out = _float(value, key)
    if out is None:
        return None
    if out != int(out):
        raise MetadataError(f"{key}: not an integer: {value!r}")
    return int(out)


def _str(value: Any) -> str | None:
    if _is_missing(value):
        return None
    return str(value).strip().strip('"')


def _collection(value: Any) -> str | None:
    text = _str(value)
    if text is None:
        return None
    return f"{int(float(text)):02d}" if re.fullmatch(r"\d+(\.0+)?", text) else text


def _spacecraft(value: Any) -> tuple[str | None, str | None]:
    """(SPACECRAFT_ID like LANDSAT_8, satellite code like L8) from any spelling."""
    text = _str(value)
    if text is None:
        return None, None
    key = text.upper().replace("-", "_").replace(" ", "_")
    m = re.fullmatch(r"(?:LANDSAT_?|L)(\d)", key)
    if not m:
        return key, None
    return f"LANDSAT_{m.group(1)}", f"L{m.group(1)}"


def _date(value: Any, key: str) -> dt.date | None:
    text = _str(value)
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError as exc:
        raise MetadataError(f"{key}: not a date: {value!r}") from exc


def _parse_time(date: dt.date, text: str) -> dt.datetime | None:
    """DATE_ACQUIRED + SCENE_CENTER_TIME ('14:34:35.9783990Z', 7 decimals) -> aware UTC datetime."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?Z?", text.strip().strip('"'))
    if not m:
        return None
    micro = int((m.group(4) or "0")[:6].ljust(6, "0"))
    return dt.datetime(date.year, date.month, date.day, int(m.group(1)), int(m.group(2)), int(m.group(3)),
                       micro, tzinfo=dt.UTC)


def _parse_iso_datetime(text: str) -> dt.datetime | None:
    if len(text) <= 10:
        return None
    text = text.replace("Z", "+00:00")
    m = re.match(r"(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$", text)
    if m and m.group(2):  # fromisoformat in 3.11 takes any number of decimals, but be safe
        text = m.group(1) + m.group(2)[:7].ljust(4, "0") + m.group(3)
    try:
        out = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (out.replace(tzinfo=dt.UTC) if out.tzinfo is None else out.astimezone(dt.UTC))


def _level_from_product_id(product_id: str | None) -> str | None:
    if product_id:
        parts = product_id.split("_")
        if len(parts) > 1 and re.fullmatch(r"L[12][A-Z0-9]{2}", parts[1]):
            return parts[1]
    return None


# ------------------------------------------------------------------ normalisers

def record_from_usgs_keys(props: Mapping[str, Any], *, source: str, path: str | None = None) -> ProviderRecord:
    """A record from flat USGS/Earth Engine keys (EE image properties, or MTL groups flattened)."""
    spacecraft_id, satellite = _spacecraft(props.get("SPACECRAFT_ID"))
    date = _date(props.get("DATE_ACQUIRED"), "DATE_ACQUIRED")
    acquired = None
    time_start = props.get("system:time_start")
    if not _is_missing(time_start):
        ms = _float(time_start, "system:time_start")
        if ms is not None:
            acquired = dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC)
    if acquired is None and date is not None and not _is_missing(props.get("SCENE_CENTER_TIME")):
        acquired = _parse_time(date, str(props["SCENE_CENTER_TIME"]))
    if date is None and acquired is not None:
        date = acquired.date()
    quality = props.get("IMAGE_QUALITY")
    if _is_missing(quality):
        quality = props.get("IMAGE_QUALITY_OLI")
    product_id = _str(props.get("LANDSAT_PRODUCT_ID"))
    return ProviderRecord(
        source=source, path=path, product_id=product_id, spacecraft_id=spacecraft_id, satellite=satellite,
        sensor_id=_str(props.get("SENSOR_ID")), date=date, acquired=acquired,
        wrs_path=_int(props.get("WRS_PATH"), "WRS_PATH"), wrs_row=_int(props.get("WRS_ROW"), "WRS_ROW"),
        collection=_collection(props.get("COLLECTION_NUMBER")), tier=_str(props.get("COLLECTION_CATEGORY")),
        processing_level=_str(props.get("PROCESSING_LEVEL")) or _level_from_product_id(product_id),
        cloud_cover=_pct(props.get("CLOUD_COVER"), "CLOUD_COVER"),
        cloud_cover_land=_pct(props.get("CLOUD_COVER_LAND"), "CLOUD_COVER_LAND"),
        image_quality=_int(quality, "IMAGE_QUALITY"),
        image_quality_tirs=_int(props.get("IMAGE_QUALITY_TIRS"), "IMAGE_QUALITY_TIRS"),
        sun_elevation=_float(props.get("SUN_ELEVATION"), "SUN_ELEVATION"),
        sun_azimuth=_float(props.get("SUN_AZIMUTH"), "SUN_AZIMUTH"),
    )


def record_from_stac(item: Mapping[str, Any], *, path: str | None = None) -> ProviderRecord:
    """A record from a STAC item (``landsat``, ``eo`` and ``view`` extensions)."""
    props = item.get("properties")
    if not isinstance(props, Mapping):
        raise MetadataError("STAC item without properties")

    def first(*keys: str) -> Any:
        for key in keys:
            if not _is_missing(props.get(key)):
                return props[key]
        return None

    def stac(usgs_key: str) -> Any:  # the value of a USGS field, from the STAC properties that carry it
        return first(*STAC_TO_USGS[usgs_key])

    def stac_name(usgs_key: str) -> str:  # the STAC property an error message names
        return STAC_TO_USGS[usgs_key][0]

    spacecraft_id, satellite = _spacecraft(first("platform", "eo:platform"))
    instruments = first("instruments", "eo:instrument")
    if isinstance(instruments, (list, tuple)):
        instruments = "_".join(str(i).upper() for i in instruments)
    sensor = _str(instruments)
    if sensor is not None:
        sensor = sensor.upper().replace("+", "")
    when = _str(first("datetime", "start_datetime"))
    date = _date(when, "datetime") if when else None
    acquired = _parse_iso_datetime(when) if when else None
    product_id = _str(item.get("id"))
    if product_id is not None:  # USGS items are named <product id>_SR / _ST
        product_id = re.sub(r"_(SR|ST)$", "", product_id)
    return ProviderRecord(
        source="stac", path=path, product_id=product_id, spacecraft_id=spacecraft_id, satellite=satellite,
        sensor_id=sensor, date=date, acquired=acquired,
        wrs_path=_int(stac("WRS_PATH"), stac_name("WRS_PATH")),
        wrs_row=_int(stac("WRS_ROW"), stac_name("WRS_ROW")),
        collection=_collection(stac("COLLECTION_NUMBER")),
        tier=_str(stac("COLLECTION_CATEGORY")),
        processing_level=_str(stac("PROCESSING_LEVEL")) or _level_from_product_id(product_id),
        cloud_cover=_pct(stac("CLOUD_COVER"), stac_name("CLOUD_COVER")),
        cloud_cover_land=_pct(stac("CLOUD_COVER_LAND"), stac_name("CLOUD_COVER_LAND")),
        image_quality=None, image_quality_tirs=None,
        sun_elevation=_float(stac("SUN_ELEVATION"), stac_name("SUN_ELEVATION")),
        sun_azimuth=_float(stac("SUN_AZIMUTH"), stac_name("SUN_AZIMUTH")),
    )


def _flatten_mtl(groups: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for group in _MTL_GROUPS:
        content = groups.get(group)
        if isinstance(content, Mapping):
            for key, value in content.items():
                flat.setdefault(key, value)
    if not flat:
        raise MetadataError("MTL without PRODUCT_CONTENTS / IMAGE_ATTRIBUTES groups")
    return flat


def _mtl_xml(text: str) -> dict[str, Any]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise MetadataError(f"not valid XML ({exc})") from exc
    if root.tag != "LANDSAT_METADATA_FILE":
        raise MetadataError(f"XML root is {root.tag!r}, not LANDSAT_METADATA_FILE")
    return _flatten_mtl({g.tag: {c.tag: (c.text or "") for c in g} for g in root})


def _mtl_odl(text: str) -> dict[str, Any]:
    groups: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for line in text.splitlines():
        if "=" not in line:
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if key == "GROUP":
            stack.append(value)
            groups.setdefault(value, {})
        elif key == "END_GROUP":
            if stack:
                stack.pop()
        elif stack:
            groups[stack[-1]].setdefault(key, value.strip('"'))
    if "LANDSAT_METADATA_FILE" not in groups:
        raise MetadataError("not a Landsat MTL text file (no GROUP = LANDSAT_METADATA_FILE)")
    return _flatten_mtl(groups)


def _from_json_value(data: Any, path: str) -> list[ProviderRecord]:
    if isinstance(data, list):
        if not data:
            raise MetadataError("empty metadata list")
        out: list[ProviderRecord] = []
        for item in data:
            out.extend(_from_json_value(item, path))
        return out
    if not isinstance(data, Mapping):
        raise MetadataError(f"expected a JSON object or list, got {type(data).__name__}")
    if "LANDSAT_METADATA_FILE" in data:
        return [record_from_usgs_keys(_flatten_mtl(data["LANDSAT_METADATA_FILE"]), source="mtl_json", path=path)]
    if data.get("type") == "Feature" and "properties" in data:
        return [record_from_stac(data, path=path)]
    if isinstance(data.get("properties"), Mapping):  # EE getInfo() blob
        return [record_from_usgs_keys(data["properties"], source="ee", path=path)]
    if any(k in data for k in ("CLOUD_COVER", "SPACECRAFT_ID", "LANDSAT_PRODUCT_ID", "system:index")):
        return [record_from_usgs_keys(data, source="ee", path=path)]
    raise MetadataError("JSON is neither Earth Engine properties, an MTL nor a STAC item")


def parse_metadata_file(path: str | Path) -> list[ProviderRecord]:
    """All provider records in one metadata file (a list of one, or more for a duplicated EE record).

    Raises :class:`MetadataError` (an :class:`~glacierwatch.errors.InputError`) with the reason.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{path}: cannot read ({exc})") from exc
    try:
        suffix = path.suffix.lower()
        stripped = text.lstrip()
        if suffix == ".xml" or stripped.startswith("<"):
            return [record_from_usgs_keys(_mtl_xml(text), source="mtl_xml", path=str(path))]
        if suffix == ".txt" or stripped.startswith("GROUP"):
            return [record_from_usgs_keys(_mtl_odl(text), source="mtl_txt", path=str(path))]
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"not valid JSON ({exc})") from exc
        return _from_json_value(data, str(path))
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from None


def _rank(record: ProviderRecord) -> tuple[Any, ...]:
    cloud = record.cloud_cover
    source = SOURCE_ORDER.index(record.source) if record.source in SOURCE_ORDER else len(SOURCE_ORDER)
    return (cloud is None, -(cloud or 0.0), source, record.canonical())


def deduplicate(records: Sequence[ProviderRecord]) -> tuple[ProviderRecord | None, int]:
    """Keep one record of several for the same file: the one with the **largest** cloud cover
    (conservative: a scene is never made to look clearer than one of its records says), ties broken
    by source (:data:`SOURCE_ORDER`) then by the record's canonical JSON, so the choice does not depend
    on file or list order. Fields the kept record lacks are filled from the others in the same order.

    Returns ``(record, number of records dropped)``; ``(None, 0)`` for no records.
    """
    if not records:
        return None, 0
    if len(records) == 1:
        return records[0], 0
    ordered = sorted(records, key=_rank)
    kept = ordered[0]
    missing = {f.name: None for f in fields(kept) if getattr(kept, f.name) is None}
    for other in ordered[1:]:
        for name in list(missing):
            value = getattr(other, name)
            if value is not None:
                missing.pop(name)
                kept = replace(kept, **{name: value})
    return kept, len(records) - 1


def read_records(paths: Iterable[str | Path]) -> list[ProviderRecord]:
    """All records of several metadata files (raises on the first file that does not parse)."""
    out: list[ProviderRecord] = []
    for path in paths:
        out.extend(parse_metadata_file(path))
    return out
