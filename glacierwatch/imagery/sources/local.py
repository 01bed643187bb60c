"""Local folder source: GeoTIFFs in any CRS or UTM zone, imported onto the glacier grids.

The folder ``input_dir`` is searched for files matching ``pattern``; each file is one image of one
date and satellite, read from its name (``date_regex``, ``satellite``) or from a metadata file beside
it. A file whose footprint meets a glacier's grid and whose date lies in the request window becomes a
:class:`~glacierwatch.imagery.records.SceneRecord` (``scene_id`` = its path relative to
``input_dir``). Reading a record:

1. the mapped bands (``band_map``: common name = 1-based band number or band description, for every
   file; or the ``"earthengine"`` preset, Earth Engine band names chosen by each file's satellite) are
   read in a window around the glacier grid;
2. values become Collection 2 Level-2 digital numbers: ``values = "c2_dn"`` takes them as they are,
   ``values = "physical"`` converts reflectance (0-1) and kelvin with
   :func:`glacierwatch.landsat.reflectance_to_dn` / :func:`~glacierwatch.landsat.kelvin_to_dn` (the
   only place scale factors live);
3. ``qa_pixel`` is built in the Collection 2 QA_PIXEL layout: taken as is (``c2_qa_pixel``),
   translated from Collection 1 BQA bits (``c1_bqa``, :func:`c1_bqa_to_qa_pixel`), or made from the
   data's validity alone (``none``: fill and clear bits only);
4. a pixel where any mapped band is NaN, +-inf or the file's nodata value (Earth Engine exports
   write masked pixels as -inf), or whose QA says fill, is fill: DN 0 in every band, QA fill bit;
5. the bands are put on the glacier grid by :func:`glacierwatch.imagery.standard.warp_to_grid`
   (nearest neighbour, like every other source).

Metadata: a side-car beside ``X.tif`` (``X.json`` or ``X.tif.json`` Earth Engine properties, ``X_MTL.json/.xml/.txt``,
a STAC item; see :data:`glacierwatch.catalog.metadata.SIDECAR_SUFFIXES`) is parsed with
:func:`glacierwatch.catalog.metadata.parse_metadata_file` and its USGS-keyed values become the
record's properties. Without one, ``DATE_ACQUIRED``, ``SPACECRAFT_ID`` and ``SENSOR_ID`` are derived
and ``CLOUD_COVER`` is computed from the QA **over the glacier grid** (% of the observed pixels with
the cloud bit; ``GLACIERWATCH_CLOUD_COVER_SCOPE = "glacier_grid"`` says so). No ``IMAGE_QUALITY`` is
ever invented: without a side-car such scenes do not pass the paper's inference filter
(``image_quality = 9``). ``GLACIERWATCH_*`` keys record where the values came from
(``GLACIERWATCH_VALUES``: ``c2_l2_dn``, ``surface_reflectance``, ``toa_reflectance`` or
``reflectance_unspecified``) — top-of-atmosphere reflectance stored as DN is *not* surface
reflectance, and the key flags it. A file kept without a side-car is warned about once.

DEM: ``dem_dir``'s ``<GLIMS_ID>*.tif`` (per-glacier exports on their own grids) and ``dem_file`` are
warped bilinearly onto each glacier grid, a later file filling an earlier one's gaps.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.errors import RasterioError
from rasterio.warp import Resampling, transform_bounds

from glacierwatch.catalog.metadata import (
    SIDECAR_SUFFIXES,
    MetadataError,
    ProviderRecord,
    deduplicate,
    parse_metadata_file,
)
from glacierwatch.config import LocalConfig, LocalValues, QaFormat, ReflectanceKind, choices
from glacierwatch.errors import ConfigError, DatasetNotFoundError
from glacierwatch.grid import GlacierGrid, raster_window
from glacierwatch.imagery.records import GlacierRequest, SceneRecord
from glacierwatch.imagery.sources.base import SourceError
from glacierwatch.imagery.standard import normalise_fill, warp_to_grid
from glacierwatch.landsat import (
    FILL_DN,
    QA,
    QA_BAND,
    QA_CONFIDENCE_SHIFT,
    REFLECTIVE_BANDS,
    SCENE_BANDS,
    SENSORS,
    THERMAL_BAND,
    common_band_name,
    kelvin_to_dn,
    qa_fill_mask,
    reflectance_to_dn,
)

log = logging.getLogger(__name__)


class _BenignTiffWarning(logging.Filter):
    """Drops libtiff's 'Sum of Photometric type-related color channels and ExtraSamples doesn't match
    SamplesPerPixel' warning: geemap / Earth Engine exports of multi-band images carry it, GDAL reads
    them correctly, and it would be logged three times for every file opened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ExtraSamples doesn't match SamplesPerPixel" not in record.getMessage()


logging.getLogger("rasterio._env").addFilter(_BenignTiffWarning())

VALUES = choices(LocalValues)
QA_FORMATS = choices(QaFormat)
#: ``reflectance`` keyword: what ``values = "physical"`` reflectance is. ``auto``: top of atmosphere
#: when the QA is Collection 1 BQA (a Level-1 band: C1 surface reflectance came with pixel_qa
#: instead), else unspecified.
REFLECTANCE_KINDS = choices(ReflectanceKind)
#: Common names a band map may name (Landsat 8/9 files may also give ``coastal``).
MAPPABLE_BANDS: tuple[str, ...] = (*SCENE_BANDS, "coastal")
#: Extra pixels read around the glacier grid's footprint, so that nearest (and the DEM's bilinear)
#: resampling at the edge has its neighbours.
_PAD_PX = 2

# ------------------------------------------------------------------ QA translation

# Collection 1 Level-1 BQA (USGS; Landsat 4-8): bit 0 designated fill, bit 1 terrain occlusion (OLI) /
# dropped pixel (TM, ETM+), bits 2-3 radiometric saturation, bit 4 cloud, bits 5-6 cloud confidence,
# bits 7-8 cloud shadow confidence, bits 9-10 snow/ice confidence, bits 11-12 cirrus confidence (L8).
C1_FILL_BIT = 0
C1_CLOUD_BIT = 4
C1_CONFIDENCE_SHIFT = {"cloud": 5, "cloud_shadow": 7, "snow": 9, "cirrus": 11}
HIGH_CONFIDENCE = 3


def c1_bqa_to_qa_pixel(bqa: np.ndarray) -> np.ndarray:
    """Translate Collection 1 BQA values to the Collection 2 QA_PIXEL layout (uint16).

    fill -> bit 0 (and nothing else); cloud (bit 4) -> bit 3; each 2-bit confidence is copied (cloud
    5-6 -> 8-9, shadow 7-8 -> 10-11, snow/ice 9-10 -> 12-13, cirrus 11-12 -> 14-15) and a *high*
    confidence sets the C2 single bit (shadow -> 4, snow -> 5, cirrus -> 2); clear (bit 6) where the
    pixel is neither fill, cloud nor high-confidence shadow. C1 has no dilated-cloud or water bits;
    terrain occlusion / dropped pixel and saturation have no C2 QA_PIXEL bit and are dropped.
    """
    q = np.asarray(bqa).astype(np.uint32)
    fill = ((q >> C1_FILL_BIT) & 1) != 0
    cloud = ((q >> C1_CLOUD_BIT) & 1) != 0
    conf = {name: (q >> shift) & 0b11 for name, shift in C1_CONFIDENCE_SHIFT.items()}
    out = np.zeros(q.shape, dtype=np.uint32)
    out |= np.where(cloud, int(QA.CLOUD), 0).astype(np.uint32)
    for name, value in conf.items():
        out |= value << QA_CONFIDENCE_SHIFT[name]
    shadow_high = conf["cloud_shadow"] == HIGH_CONFIDENCE
    out |= np.where(shadow_high, int(QA.CLOUD_SHADOW), 0).astype(np.uint32)
    out |= np.where(conf["snow"] == HIGH_CONFIDENCE, int(QA.SNOW), 0).astype(np.uint32)
    out |= np.where(conf["cirrus"] == HIGH_CONFIDENCE, int(QA.CIRRUS), 0).astype(np.uint32)
    out |= np.where(~(fill | cloud | shadow_high), int(QA.CLEAR), 0).astype(np.uint32)
    out = np.where(fill, int(QA.FILL), out)
    return out.astype(np.uint16)


def qa_from_validity(valid: np.ndarray) -> np.ndarray:
    """A QA_PIXEL band for data without one: clear where ``valid``, fill elsewhere (uint16)."""
    return np.where(np.asarray(valid, dtype=bool), int(QA.CLEAR), int(QA.FILL)).astype(np.uint16)


# ------------------------------------------------------------------ file names

_SATELLITE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"L[TEC]0?([5789])(?![0-9])", re.IGNORECASE),  # LT05, LE07, LC08, LC09 (product ids)
    re.compile(r"LANDSAT[ _-]?([5789])(?![0-9])", re.IGNORECASE),  # Landsat5, LANDSAT_8, Landsat-7
    re.compile(r"(?<![A-Za-z0-9])L([5789])(?![0-9])"),  # L5, _L8_
)


def satellite_from_name(name: str) -> str | None:
    """``L5``/``L7``/``L8``/``L9`` from a file name (LT05, LE07, LC08, LC09, Landsat5, L5 ...), or None."""
    for pattern in _SATELLITE_PATTERNS:
        m = pattern.search(name)
        if m:
            return f"L{m.group(1)}"
    return None


def normalise_satellite(text: str) -> str:
    """``L5`` from ``L5``, ``5``, ``LANDSAT_5``, ``Landsat5``, ``LT05`` ...; ConfigError otherwise."""
    key = text.strip()
    sat = satellite_from_name(key) or (f"L{key}" if key in ("5", "7", "8", "9") else None)
    if sat is None or sat not in SENSORS:
        raise ConfigError(f"imagery.local.satellite: {text!r} is not L5, L7, L8 or L9")
    return sat


def compile_date_regex(text: str) -> re.Pattern[str]:
    """Compile ``date_regex``; ConfigError unless it has groups ``year`` and ``day`` (+ ``month``) or ``doy``."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ConfigError(f"imagery.local.date_regex: not a regular expression ({exc}): {text!r}") from exc
    groups = set(pattern.groupindex)
    if "year" not in groups or not ({"day", "doy"} & groups) or ("day" in groups and "month" not in groups):
        raise ConfigError(f"imagery.local.date_regex needs named groups year and month+day, or year and doy: {text!r}")
    return pattern


def date_from_name(name: str, pattern: re.Pattern[str]) -> dt.date | None:
    """The first match of ``pattern`` in ``name`` that is a real date (None if there is none).

    With a ``doy`` group the date is day ``doy`` of ``year``; a ``month`` group given too must agree
    with it (geemap's ``YYYYMMDD`` Joda pattern writes ``MM`` month + ``DD`` day of year).
    """
    for m in pattern.finditer(name):
        parts = m.groupdict()
        try:
            year = int(parts["year"])
            if parts.get("doy") is not None:
                doy = int(parts["doy"])
                if not 1 <= doy <= 366:
                    continue
                date = dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)
                if date.year != year or (parts.get("month") is not None and int(parts["month"]) != date.month):
                    continue
            else:
                date = dt.date(year, int(parts["month"]), int(parts["day"]))
        except (TypeError, ValueError):
            continue
        return date
    return None


# ------------------------------------------------------------------ band map

@dataclass(frozen=True)
class BandRef:
    """Where a common band is in a file: a 1-based band number, or a band description. An
    ``optional`` band (OLI's coastal in the Earth Engine preset) is read when the file has it."""

    common: str
    index: int | None
    description: str | None
    optional: bool = False

    def find(self, descriptions: Sequence[str | None], count: int, path: str) -> int | None:
        """:meth:`resolve`, but None for an optional band the file lacks."""
        try:
            return self.resolve(descriptions, count, path)
        except SourceError:
            if self.optional:
                return None
            raise

    def resolve(self, descriptions: Sequence[str | None], count: int, path: str) -> int:
        """The 1-based band number in a file with these descriptions; SourceError if absent."""
        if self.index is not None:
            if self.index > count:
                raise SourceError(f"{path}: band {self.index} (mapped to {self.common}) missing; the file has {count} band(s)")
            return self.index
        wanted = (self.description or "").strip().lower()
        for i, desc in enumerate(descriptions, start=1):
            if desc and desc.strip().lower() == wanted:
                return i
        raise SourceError(f"{path}: no band described {self.description!r} (mapped to {self.common}); "
                          f"descriptions {list(descriptions)}")


#: Named band maps (``band_map = "earthengine"``): per satellite, the Earth Engine / USGS band names
#: of Collection 2 Level-2 exports (TM/ETM+ ``SR_B1`` = blue, OLI ``SR_B2`` = blue), looked up in the
#: files' band descriptions. The names come from :data:`glacierwatch.landsat.SENSORS` (``ee_bands``).
BAND_MAP_PRESETS: tuple[str, ...] = ("earthengine",)


def band_maps_by_satellite(band_map: str | Sequence[str], *, need_qa: bool) -> dict[str, dict[str, BandRef]]:
    """{satellite: {common name: :class:`BandRef`}} from a preset name or a list of ``COMMON=BAND`` pairs.

    A preset (:data:`BAND_MAP_PRESETS`; given as a string or a one-element list) gives each satellite
    its own map, chosen by the file's satellite; an explicit list applies to every satellite.
    """
    pairs = [band_map] if isinstance(band_map, str) else list(band_map)
    if len(pairs) == 1 and "=" not in str(pairs[0]):
        preset = str(pairs[0]).strip().lower()
        if preset not in BAND_MAP_PRESETS:
            raise ConfigError(f"imagery.local.band_map: {pairs[0]!r} is neither a preset "
                              f"({', '.join(BAND_MAP_PRESETS)}) nor a list of COMMON=BAND pairs")
        maps: dict[str, dict[str, BandRef]] = {}
        for sat, sensor in SENSORS.items():
            maps[sat] = parse_band_map([f"{common}={name}" for common, name in sensor.ee_bands.items()
                                        if common in SCENE_BANDS], need_qa=need_qa)
            if "coastal" in sensor.ee_bands:  # OLI's extra band, kept when exported
                maps[sat]["coastal"] = BandRef("coastal", None, sensor.ee_bands["coastal"], optional=True)
        return maps
    one = parse_band_map(pairs, need_qa=need_qa)
    return {sat: one for sat in SENSORS}


def parse_band_map(pairs: Iterable[str], *, need_qa: bool) -> dict[str, BandRef]:
    """``["blue=1", "qa_pixel=BQA", ...]`` -> {common name: :class:`BandRef`}; ConfigError if malformed,
    duplicated, or missing a standard band (``qa_pixel`` only when ``need_qa``)."""
    out: dict[str, BandRef] = {}
    for pair in pairs:
        common, sep, band = (part.strip() for part in str(pair).partition("="))
        if not sep or not common or not band:
            raise ConfigError(f"imagery.local.band_map: expected COMMON=BAND, got {pair!r}")
        name = common_band_name(common)
        if name not in MAPPABLE_BANDS:
            raise ConfigError(f"imagery.local.band_map: {common!r} is not a band name; use {', '.join(MAPPABLE_BANDS)}")
        if name in out:
            raise ConfigError(f"imagery.local.band_map: {name} is mapped twice")
        if band.isdigit():
            if int(band) < 1:
                raise ConfigError(f"imagery.local.band_map: band numbers start at 1, got {pair!r}")
            out[name] = BandRef(name, int(band), None)
        else:
            out[name] = BandRef(name, None, band)
    required = [b for b in SCENE_BANDS if b != QA_BAND or need_qa]
    missing = [b for b in required if b not in out]
    if missing:
        raise ConfigError(f"imagery.local.band_map lacks {', '.join(missing)}")
    if not need_qa:
        out.pop(QA_BAND, None)
    return out


# ------------------------------------------------------------------ file index

@dataclass(frozen=True)
class _Header:
    """What the index keeps of a file (read once; ``error`` set when it cannot be opened)."""

    crs_wkt: str | None
    bounds: tuple[float, float, float, float] | None
    width: int
    height: int
    error: str | None


@dataclass(frozen=True)
class IndexEntry:
    """One indexed file: path, date, satellite, side-car, header."""

    path: Path
    rel: str
    date: dt.date
    satellite: str
    sidecar: Path | None
    properties: Mapping[str, Any] | None  # from the side-car, USGS keys
    size: int
    header: _Header


# File headers are cached per process by (path, size, mtime): the fetch builds a new source for each
# glacier, and a large folder's headers need not be read again for every one.
_HEADER_CACHE: dict[tuple[str, int, int], _Header] = {}
_HEADER_LOCK = threading.Lock()
# One warning per skipped file and reason per process, not one per glacier.
_WARNED: set[tuple[str, str]] = set()


def _warn_once(path: Path, message: str) -> None:
    key = (str(path), message)
    with _HEADER_LOCK:
        if key in _WARNED:
            return
        _WARNED.add(key)
    log.warning("local imagery: %s: %s", path, message)


def _read_header(path: Path, stat: os.stat_result) -> _Header:
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _HEADER_LOCK:
        cached = _HEADER_CACHE.get(key)
    if cached is not None:
        return cached
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                header = _Header(None, None, src.width, src.height, f"{path}: the GeoTIFF has no CRS")
            else:
                header = _Header(src.crs.to_wkt(), tuple(src.bounds), src.width, src.height, None)
    except (RasterioError, OSError, ValueError) as exc:
        header = _Header(None, None, 0, 0, f"{path}: unreadable GeoTIFF ({exc})")
    with _HEADER_LOCK:
        _HEADER_CACHE[key] = header
    return header


def find_sidecar(path: Path) -> Path | None:
    """The metadata file beside ``X.tif``, if any: ``X`` + a :data:`SIDECAR_SUFFIXES` suffix
    (``X.json``, ``X_MTL.txt`` ...), else ``X.tif.json`` (as some Earth Engine export tools name the
    properties; ``X.tif.xml`` is not tried: ArcGIS writes its own metadata under that name)."""
    stem = path.name.rsplit(".", 1)[0]
    for candidate in (*(path.with_name(stem + suffix) for suffix in SIDECAR_SUFFIXES),
                      path.with_name(path.name + ".json")):
        if candidate.is_file():
            return candidate
    return None


def usgs_properties(record: ProviderRecord) -> dict[str, Any]:
    """A provider record as Earth Engine / USGS property names (what the catalog reads back)."""
    props: dict[str, Any] = {
        "LANDSAT_PRODUCT_ID": record.product_id, "SPACECRAFT_ID": record.spacecraft_id,
        "SENSOR_ID": record.sensor_id, "DATE_ACQUIRED": record.date.isoformat() if record.date else None,
        "SCENE_CENTER_TIME": record.acquired.strftime("%H:%M:%S.%fZ") if record.acquired else None,
        "WRS_PATH": record.wrs_path, "WRS_ROW": record.wrs_row, "COLLECTION_NUMBER": record.collection,
        "COLLECTION_CATEGORY": record.tier, "PROCESSING_LEVEL": record.processing_level,
        "CLOUD_COVER": record.cloud_cover, "CLOUD_COVER_LAND": record.cloud_cover_land,
        "IMAGE_QUALITY_TIRS": record.image_quality_tirs, "SUN_ELEVATION": record.sun_elevation,
        "SUN_AZIMUTH": record.sun_azimuth,
    }
    quality_key = "IMAGE_QUALITY_OLI" if record.satellite in ("L8", "L9") else "IMAGE_QUALITY"
    props[quality_key] = record.image_quality
    return {k: v for k, v in props.items() if v is not None}


def _raw_ee_properties(path: Path) -> dict[str, Any] | None:
    """The flat Earth Engine property dict of a JSON side-car (passed through unchanged), else None."""
    if path.suffix.lower() != ".json":
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(data, dict) and data.get("type") != "Feature" and "LANDSAT_METADATA_FILE" not in data:
        props = data.get("properties")
        props = props if isinstance(props, dict) else data
        return {k: v for k, v in props.items() if isinstance(k, str)}
    return None


def sidecar_properties(path: Path) -> tuple[dict[str, Any], dt.date | None, str | None]:
    """(properties, date, satellite) from a side-car file; MetadataError if it does not parse."""
    records = parse_metadata_file(path)
    record, _ = deduplicate(records)
    assert record is not None  # parse_metadata_file returns at least one record or raises
    props = usgs_properties(record)
    raw = _raw_ee_properties(path)
    if raw is not None:  # Earth Engine properties are already USGS-keyed: keep every one of them
        props = {**props, **raw}
    return props, record.date, record.satellite


# ------------------------------------------------------------------ the source

class LocalSource:
    """Imports GeoTIFFs from a folder (see the module docstring). Thread-safe: the folder is
    indexed once per instance, under a lock; reads share nothing."""

    name = "local"

    def __init__(self, input_dir: str | os.PathLike[str], *, pattern: str = "**/*.tif",
                 band_map: str | Sequence[str] = tuple(LocalConfig().band_map), values: str = "c2_dn",
                 qa_format: str = "c2_qa_pixel", date_regex: str = LocalConfig().date_regex,
                 satellite: str = "", dem_file: str | os.PathLike[str] = "", dem_dir: str | os.PathLike[str] = "",
                 reflectance: str = "auto") -> None:
        if not str(input_dir):
            raise ConfigError("imagery.local.input_dir is empty: give the folder to import (--input-dir)")
        self.input_dir = Path(input_dir).expanduser().resolve()
        if not self.input_dir.is_dir():
            raise DatasetNotFoundError(f"imagery.local.input_dir: folder not found: {self.input_dir}")
        if values not in VALUES:
            raise ConfigError(f"imagery.local.values: {values!r}; expected one of {', '.join(VALUES)}")
        if qa_format not in QA_FORMATS:
            raise ConfigError(f"imagery.local.qa_format: {qa_format!r}; expected one of {', '.join(QA_FORMATS)}")
        if reflectance not in REFLECTANCE_KINDS:
            raise ConfigError(f"local source reflectance: {reflectance!r}; expected one of {', '.join(REFLECTANCE_KINDS)}")
        if not pattern:
            raise ConfigError("imagery.local.pattern is empty")
        self.pattern = pattern
        self.values = values
        self.qa_format = qa_format
        self.band_maps = band_maps_by_satellite(band_map, need_qa=qa_format != "none")
        self.date_regex = compile_date_regex(date_regex)
        self.satellite = normalise_satellite(satellite) if satellite else None
        self.dem_file = Path(dem_file).expanduser().resolve() if str(dem_file) else None
        if self.dem_file is not None and not self.dem_file.is_file():
            raise DatasetNotFoundError(f"imagery.local.dem_file: file not found: {self.dem_file}")
        self.dem_dir = Path(dem_dir).expanduser().resolve() if str(dem_dir) else None
        if self.dem_dir is not None and not self.dem_dir.is_dir():
            raise DatasetNotFoundError(f"imagery.local.dem_dir: folder not found: {self.dem_dir}")
        if values == "c2_dn":
            self.values_kind = "c2_l2_dn"
        elif reflectance == "surface":
            self.values_kind = "surface_reflectance"
        elif reflectance == "toa" or (reflectance == "auto" and qa_format == "c1_bqa"):
            self.values_kind = "toa_reflectance"
        else:
            self.values_kind = "reflectance_unspecified"
        self._index: list[IndexEntry] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: LocalConfig, **kw: Any) -> LocalSource:
        """Build from the ``[imagery.local]`` table; ``kw`` overrides its values."""
        band_map = cfg.band_map if isinstance(cfg.band_map, str) else list(cfg.band_map)
        return cls(cfg.input_dir, pattern=cfg.pattern, band_map=band_map, values=cfg.values,
                   qa_format=cfg.qa_format, date_regex=cfg.date_regex, satellite=cfg.satellite,
                   dem_file=cfg.dem_file, dem_dir=cfg.dem_dir, **{"reflectance": cfg.reflectance, **kw})

    # -------------------------------------------------------------- index

    def index(self) -> list[IndexEntry]:
        """Every usable file of the folder (built on first use, then cached for this instance)."""
        with self._lock:
            if self._index is None:
                self._index = self._build_index()
            return self._index

    def _build_index(self) -> list[IndexEntry]:
        # a DEM folder inside input_dir holds no scenes: its files are not indexed (nor warned about)
        files = sorted(p for p in self.input_dir.glob(self.pattern)
                       if p.is_file() and (self.dem_dir is None or not p.resolve().is_relative_to(self.dem_dir)))
        entries: list[IndexEntry] = []
        for path in files:
            entry = self._index_file(path)
            if entry is not None:
                entries.append(entry)
        log.info("local imagery: %d of %d file(s) under %s usable", len(entries), len(files), self.input_dir)
        return entries

    def _index_file(self, path: Path) -> IndexEntry | None:
        name_date = date_from_name(path.name, self.date_regex)
        name_sat = self.satellite or satellite_from_name(path.name)
        sidecar = find_sidecar(path)
        props: dict[str, Any] | None = None
        meta_date = meta_sat = None
        if sidecar is not None:
            try:
                props, meta_date, meta_sat = sidecar_properties(sidecar)
            except MetadataError as exc:
                _warn_once(path, f"metadata file ignored, properties derived instead ({exc})")
                sidecar, props = None, None
        if meta_date is not None and name_date is not None and meta_date != name_date:
            _warn_once(path, f"skipped: its name gives {name_date} but {sidecar.name} gives {meta_date}")  # type: ignore[union-attr]
            return None
        if meta_sat is not None and name_sat is not None and meta_sat != name_sat:
            _warn_once(path, f"skipped: its name (or imagery.local.satellite) gives {name_sat} but "
                             f"{sidecar.name} gives {meta_sat}")  # type: ignore[union-attr]
            return None
        date = meta_date or name_date
        satellite = meta_sat or name_sat
        if date is None:
            _warn_once(path, f"skipped: no date in its name (imagery.local.date_regex {self.date_regex.pattern!r}) "
                             "and no metadata file beside it")
            return None
        if satellite is None or satellite not in SENSORS:
            _warn_once(path, "skipped: no Landsat 5/7/8/9 satellite in its name (LT05, LE07, LC08, LC09, Landsat5, L5 ...); "
                             "set imagery.local.satellite")
            return None
        if not SENSORS[satellite].active_on(date):
            _warn_once(path, f"skipped: {satellite} did not acquire images on {date} (check date_regex and satellite)")
            return None
        if sidecar is None:  # said of the files kept only: a skipped file has its one warning already
            stem = path.name.rsplit(".", 1)[0]
            _warn_once(path, f"no metadata file beside it ({stem}.json or {path.name}.json): date and satellite "
                             "from its name, cloud cover from its QA, no IMAGE_QUALITY (set catalog.image_quality "
                             "= \"none\" for the inference filter)")
        stat = path.stat()
        return IndexEntry(path=path, rel=path.relative_to(self.input_dir).as_posix(), date=date,
                          satellite=satellite, sidecar=sidecar, properties=props, size=stat.st_size,
                          header=_read_header(path, stat))

    # -------------------------------------------------------------- search

    def search(self, request: GlacierRequest) -> list[SceneRecord]:
        """Files meeting the glacier grid, dated in the request window, of a requested satellite.

        Files that cannot be opened or have no CRS are returned too (their footprint is unknown):
        reading them raises :class:`SourceError`, which the fetch ledgers. With
        ``request.max_cloud_cover`` set, records whose ``CLOUD_COVER`` is known and not below it are
        left out (unknown cloud cover is kept).
        """
        records: dict[str, SceneRecord] = {}
        dropped_cloud = 0
        for entry in self.index():
            if not (request.start <= entry.date <= request.end) or entry.satellite not in request.satellites:
                continue
            if entry.header.error is None and not self._meets_grid(entry, request.grid):
                continue
            props = self._properties(entry, request.grid)
            if request.max_cloud_cover is not None:
                cloud = props.get("CLOUD_COVER")
                if cloud is not None and not float(cloud) < request.max_cloud_cover:
                    dropped_cloud += 1
                    continue
            records.setdefault(entry.rel, SceneRecord(
                source=self.name, scene_id=entry.rel, glims_id=request.glims_id, date=entry.date,
                satellite=entry.satellite, properties=props, handle={"path": str(entry.path)}))
        if dropped_cloud:
            log.info("%s: %d local file(s) with cloud cover >= %g %% left out", request.glims_id, dropped_cloud,
                     request.max_cloud_cover)
        return sorted(records.values(), key=lambda r: (r.date, r.scene_id))

    @staticmethod
    def _meets_grid(entry: IndexEntry, grid: GlacierGrid) -> bool:
        """True if the file's footprint (its bounds in the grid CRS, edges densified) overlaps the grid."""
        header = entry.header
        assert header.bounds is not None and header.crs_wkt is not None
        left, bottom, right, top = transform_bounds(CRS.from_wkt(header.crs_wkt), CRS.from_user_input(grid.crs),
                                                    *header.bounds, densify_pts=21)
        g_left, g_bottom, g_right, g_top = grid.bounds
        return left < g_right and right > g_left and bottom < g_top and top > g_bottom

    def _properties(self, entry: IndexEntry, grid: GlacierGrid) -> dict[str, Any]:
        sensor = SENSORS[entry.satellite]
        props: dict[str, Any] = dict(entry.properties) if entry.properties is not None else {
            "DATE_ACQUIRED": entry.date.isoformat(), "SPACECRAFT_ID": sensor.spacecraft_id,
            "SENSOR_ID": sensor.instrument}
        props.update({"GLACIERWATCH_SOURCE": self.name, "GLACIERWATCH_SOURCE_FILE": entry.rel,
                      "GLACIERWATCH_VALUES": self.values_kind, "GLACIERWATCH_QA_FORMAT": self.qa_format})
        if entry.sidecar is not None:
            props["GLACIERWATCH_METADATA_FILE"] = entry.sidecar.name
        if props.get("CLOUD_COVER") is None and self.qa_format != "none" and entry.header.error is None:
            try:
                cloud = cloud_cover_pct(self._read_on_grid(entry.path, grid, entry.satellite)[QA_BAND])
            except SourceError as exc:  # the read will fail the same way and be ledgered then
                log.warning("%s: cloud cover not computed: %s", entry.rel, exc)
                cloud = None
            if cloud is not None:
                props["CLOUD_COVER"] = cloud
                props["GLACIERWATCH_CLOUD_COVER_SCOPE"] = "glacier_grid"
        return props

    # -------------------------------------------------------------- read

    def read(self, record: SceneRecord, grid: GlacierGrid) -> dict[str, np.ndarray]:
        """The file's mapped bands as uint16 C2 L2 DN on ``grid``, fill = DN 0 and the QA fill bit.

        Raises :class:`SourceError` naming the file when it cannot be read, has no CRS or lacks a
        mapped band.
        """
        path = record.handle.get("path") if record.handle else None
        if not path:
            path = str(self.input_dir / record.scene_id)
        return self._read_on_grid(Path(path), grid, record.satellite)

    def _read_on_grid(self, path: Path, grid: GlacierGrid, satellite: str) -> dict[str, np.ndarray]:
        """Read, convert and warp one file of ``satellite`` onto ``grid`` (see :meth:`read`)."""
        band_map = self.band_maps[satellite]
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise SourceError(f"{path}: the GeoTIFF has no CRS")
                found = {n: ref.find(src.descriptions, src.count, str(path)) for n, ref in band_map.items()}
                names = [n for n, i in found.items() if i is not None]
                indexes = [found[n] for n in names]
                window = raster_window(grid, src.transform, src.shape, crs=src.crs, pad=_PAD_PX)
                if window is None:  # the file's footprint misses the grid: nothing observed
                    empty = {n: np.zeros(grid.shape, np.uint16) for n in (*names, QA_BAND)}
                    return normalise_fill(empty)
                data = src.read(indexes, window=window)
                transform = src.window_transform(window)
                crs = src.crs
                nodata = src.nodata
        except SourceError:
            raise
        except (RasterioError, OSError, ValueError) as exc:
            cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
            raise SourceError(f"{path}: unreadable GeoTIFF ({exc}{cause})") from exc
        bands = self._to_dn({n: data[i] for i, n in enumerate(names)}, nodata)
        order = list(bands)
        warped = warp_to_grid(np.stack([bands[n] for n in order]), src_crs=crs, src_transform=transform, grid=grid)
        return normalise_fill({n: warped[i] for i, n in enumerate(order)})

    def _to_dn(self, raw: Mapping[str, np.ndarray], nodata: float | None) -> dict[str, np.ndarray]:
        """File values -> uint16 DN per band plus ``qa_pixel``, fill marked in every band (source pixels)."""
        data_names = [n for n in raw if n != QA_BAND]
        invalid = np.zeros(next(iter(raw.values())).shape, dtype=bool)
        for name in raw:
            arr = raw[name]
            if np.issubdtype(arr.dtype, np.floating):
                invalid |= ~np.isfinite(arr)
            if name != QA_BAND and nodata is not None and np.isfinite(nodata):
                invalid |= arr == nodata
        out: dict[str, np.ndarray] = {}
        for name in data_names:
            arr = np.where(invalid, 0, raw[name])
            if self.values == "physical":
                if name in REFLECTIVE_BANDS or name == "coastal":
                    dn = reflectance_to_dn(arr)
                elif name == THERMAL_BAND:
                    dn = kelvin_to_dn(arr)
                else:  # pragma: no cover - parse_band_map admits only these names
                    raise SourceError(f"band {name} has no physical scale")
            else:
                dn = np.clip(np.rint(np.asarray(arr, dtype=np.float64)), 0, 65535).astype(np.uint16)
            out[name] = dn
        if self.qa_format == "none":
            qa = qa_from_validity(~invalid)
        else:
            raw_qa = np.where(invalid, 0, raw[QA_BAND])
            bits = np.clip(np.rint(np.asarray(raw_qa, dtype=np.float64)), 0, 65535).astype(np.uint16)
            qa = c1_bqa_to_qa_pixel(bits) if self.qa_format == "c1_bqa" else bits
        invalid |= qa_fill_mask(qa)
        for name in data_names:
            out[name][invalid] = FILL_DN
        qa = qa.copy()
        qa[invalid] = np.uint16(int(QA.FILL))
        out[QA_BAND] = qa
        return out

    # -------------------------------------------------------------- DEM

    def dem_files(self, glims_id: str) -> list[Path]:
        """The DEM files of one glacier: ``dem_dir/<GLIMS_ID>*.tif`` (sorted, searched recursively),
        then ``dem_file``."""
        files: list[Path] = []
        if self.dem_dir is not None:
            files.extend(sorted(p for p in self.dem_dir.glob(f"**/{glims_id}*.tif") if p.is_file()))
        if self.dem_file is not None:
            files.append(self.dem_file)
        return files

    def read_dem(self, request: GlacierRequest) -> np.ndarray | None:
        """The glacier's DEM on its grid (bilinear, float32 m, NaN = no data); None without one.

        Each of :meth:`dem_files` (any CRS and grid: per-glacier Earth Engine exports on their own
        grids, or one large DEM) is warped onto the grid; where a file has no data the next one fills in.
        """
        files = self.dem_files(request.glims_id)
        if not files:
            if self.dem_dir is not None:
                log.warning("%s: no DEM in %s (%s*.tif)", request.glims_id, self.dem_dir, request.glims_id)
            return None
        dem = np.full(request.grid.shape, np.nan, dtype=np.float32)
        for path in files:
            part = self._warp_dem(path, request.grid)
            gap = np.isnan(dem)
            dem[gap] = part[gap]
            if not np.isnan(dem).any():
                break
        return dem

    @staticmethod
    def _warp_dem(path: Path, grid: GlacierGrid) -> np.ndarray:
        """One DEM GeoTIFF's first band warped onto ``grid`` (bilinear, float32, NaN = no data)."""
        try:
            with rasterio.open(path) as src:
                if src.crs is None:
                    raise SourceError(f"{path}: the DEM GeoTIFF has no CRS")
                window = raster_window(grid, src.transform, src.shape, crs=src.crs, pad=_PAD_PX)
                if window is None:
                    return np.full(grid.shape, np.nan, dtype=np.float32)
                data = src.read(1, window=window).astype(np.float32)
                transform = src.window_transform(window)
                crs, nodata = src.crs, src.nodata
        except SourceError:
            raise
        except (RasterioError, OSError, ValueError) as exc:
            raise SourceError(f"{path}: unreadable DEM GeoTIFF ({exc})") from exc
        if nodata is not None and np.isfinite(nodata):
            data[data == np.float32(nodata)] = np.nan
        data[~np.isfinite(data)] = np.nan
        dem = warp_to_grid(data, src_crs=crs, src_transform=transform, grid=grid, src_nodata=np.nan,
                           dst_nodata=np.nan, resampling=Resampling.bilinear)
        return dem.astype(np.float32)


# ------------------------------------------------------------------ helpers

def cloud_cover_pct(qa: np.ndarray) -> float | None:
    """% of the observed (non-fill) pixels of a QA_PIXEL array with the cloud bit set; None if none observed."""
    qa = np.asarray(qa, dtype=np.uint16)
    observed = ~qa_fill_mask(qa)
    n = int(np.count_nonzero(observed))
    if n == 0:
        return None
    cloudy = int(np.count_nonzero(observed & ((qa & np.uint16(int(QA.CLOUD))) != 0)))
    return round(100.0 * cloudy / n, 4)


__all__ = ["BAND_MAP_PRESETS", "LocalSource", "band_maps_by_satellite", "c1_bqa_to_qa_pixel", "cloud_cover_pct", "date_from_name",
           "parse_band_map", "qa_from_validity", "satellite_from_name"]
