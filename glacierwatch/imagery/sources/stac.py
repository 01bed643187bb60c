"""STAC source: Landsat Collection 2 Level-2 items from a STAC API (Planetary Computer, Earth Search).

* **Search** (:meth:`StacSource.search`) — ``pystac-client`` item search of ``collection`` over the
  glacier's WGS 84 box and date window (whole days, inclusive), the scene cloud limit pushed down to
  the server (``query`` extension, else CQL2 ``filter``), pages of ``page_size`` items followed via
  their ``next`` links by pystac-client. Kept: Landsat 5 TM, 7 ETM+, 8 and 9 OLI/TIRS items of
  **Tier 1** (``landsat:collection_category``) with every standard band as an asset; Landsat 4, MSS,
  Tier 2 / real-time items and duplicates (same item id) are dropped.
* **Metadata** — each item's properties under the USGS / Earth Engine key names the catalog reads
  (:func:`usgs_properties`, the inverse of :func:`glacierwatch.catalog.metadata.record_from_stac`).
* **Pixels** (:meth:`StacSource.read`) — each band asset (a cloud-optimised GeoTIFF) is opened with
  rasterio, only the window covering the glacier grid (plus a few pixels) is read, and
  :func:`glacierwatch.imagery.standard.warp_to_grid` puts it on the grid (nearest neighbour, like
  every source). Asset hrefs are stored **unsigned** in the record handle (and so in the fetch plan);
  a Planetary Computer SAS token is added just before each read, because tokens expire.
* **DEM** (:meth:`StacSource.read_dem`) — the ``data`` assets of ``dem_collection`` (Copernicus
  GLO-30) items over the box, mosaicked on their own lattice and warped bilinearly onto the grid.

Errors: HTTP 5xx / 429 / 408, timeouts and dropped connections are :class:`TransientSourceError`
(retried ``max_retries`` times with back-off); a 401/403 on a signed href is re-signed once with a
fresh token and retried, and a second 401/403 is a :class:`SourceAuthError`; 404, a missing band
asset or an unreadable file is a :class:`SourceError`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np

from glacierwatch.config import SigningMode, StacConfig, choices
from glacierwatch.errors import ConfigError
from glacierwatch.grid import GlacierGrid, raster_window
from glacierwatch.imagery.records import GlacierRequest, SceneRecord
from glacierwatch.imagery.sources.base import (
    SourceAuthError,
    SourceError,
    SourceUnavailableError,
    TransientSourceError,
    with_retries,
)
from glacierwatch.landsat import FILL_DN, SCENE_BANDS, SENSORS, STAC_TO_USGS, common_band_name

log = logging.getLogger(__name__)

#: glacierwatch is not on PyPI: the extra is installed from a clone of the repository.
INSTALL_HINT = "from a clone: pip install -e '.[stac]'"
PC_HOST = "planetarycomputer.microsoft.com"
SIGNING_MODES = choices(SigningMode)

#: Instrument that makes an item usable per satellite (STAC ``instruments``, lower case, '+' removed):
#: Landsat 5 also carried MSS, whose items share the platform ``landsat-5``.
_INSTRUMENT = {"L5": "tm", "L7": "etm", "L8": "oli", "L9": "oli"}
#: Product id prefix per satellite, used when an item lacks ``instruments`` (LT05 = TM, LM05 = MSS).
_ID_PREFIX = {"L5": ("LT05",), "L7": ("LE07",), "L8": ("LC08",), "L9": ("LC09",)}
#: Bands read per scene: the standard set, plus coastal where the sensor has it (OLI).
_OPTIONAL_BANDS = ("coastal",)
#: Asset keys that must never be taken for a standard band although landsat.common_band_name maps
#: them: in landsat-c2-l2 items ``qa`` is the surface-temperature uncertainty band (ST_QA), not QA_PIXEL.
_NOT_BANDS = frozenset({"qa"})
#: HTTP status codes worth retrying.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_HTTP_CODE = (re.compile(r"HTTP response code:\s*(\d{3})"), re.compile(r"response_code=(\d{3})"))


class Signer(Protocol):
    """Turns an asset href into one that can be read now (e.g. appends a SAS token).

    ``fresh=True`` asks for a new credential (the previous one was refused, e.g. expired)."""

    def __call__(self, href: str, *, fresh: bool = False) -> str: ...


def no_signing(href: str, *, fresh: bool = False) -> str:
    """The identity signer (public assets, or credentials supplied through the GDAL environment)."""
    return href


def planetary_computer_signer() -> Signer:
    """A signer using the ``planetary-computer`` package: ``planetary_computer.sign(href)`` appends a
    SAS token of the href's storage account/container (cached by the package until a minute before it
    expires; set ``PC_SDK_SUBSCRIPTION_KEY`` for higher rate limits). ``fresh=True`` drops the cached
    token of that account/container first, so a refused token is replaced."""
    try:
        import planetary_computer
        from planetary_computer import sas
    except ImportError as exc:
        raise SourceUnavailableError(
            "Planetary Computer asset signing needs the planetary-computer package: "
            "pip install planetary-computer (or set [imagery.stac] signing = \"none\")") from exc

    def sign(href: str, *, fresh: bool = False) -> str:
        if fresh:
            parsed = urlparse(href)
            account = parsed.netloc.split(".", 1)[0]
            container = parsed.path.lstrip("/").split("/", 1)[0]
            suffix = f"/{account}/{container}"
            for key in list(sas.TOKEN_CACHE):  # snapshot: other threads may sign at the same time
                if key.endswith(suffix):
                    sas.TOKEN_CACHE.pop(key, None)
        try:
            return str(planetary_computer.sign(href))
        except Exception as exc:  # requests.HTTPError / ConnectionError from the token endpoint
            raise _token_error(exc, href) from exc

    return sign


def _token_error(exc: Exception, href: str) -> SourceError:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    what = f"SAS token for {_redact(href)}: {type(exc).__name__}: {_redact(str(exc))[:200]}"
    if status in (401, 403):
        return SourceAuthError(f"Planetary Computer refused the {what}")
    if status is None or status in _TRANSIENT_STATUS:
        return TransientSourceError(f"could not get a {what}")
    return SourceError(f"could not get a {what}")


def resolve_signing(signing: str, api_url: str) -> str:
    """``planetary-computer`` or ``none`` for a configured ``signing`` (``auto``: Planetary Computer
    exactly when ``api_url`` is its API)."""
    if signing not in SIGNING_MODES:
        raise ConfigError(f"[imagery.stac] signing must be one of {', '.join(SIGNING_MODES)}, got {signing!r}")
    if signing == "auto":
        return "planetary-computer" if urlparse(api_url).netloc.lower() == PC_HOST else "none"
    return signing


# ------------------------------------------------------------------ item -> record

def _props(item: Mapping[str, Any]) -> Mapping[str, Any]:
    props = item.get("properties")
    return props if isinstance(props, Mapping) else {}


def item_satellite(item: Mapping[str, Any]) -> str | None:
    """``L4`` ... ``L9`` from the item's ``platform`` (``landsat-8``, ``LANDSAT_8``), else its id prefix."""
    platform = _props(item).get("platform") or _props(item).get("eo:platform")
    if isinstance(platform, str):
        m = re.fullmatch(r"(?:LANDSAT[-_ ]?|L)(\d)", platform.strip().upper())
        if m:
            return f"L{m.group(1)}"
    m = re.match(r"L[CTEMO]0?(\d)", str(item.get("id", "")))
    return f"L{m.group(1)}" if m else None


def _instruments(item: Mapping[str, Any]) -> list[str]:
    value = _props(item).get("instruments") or _props(item).get("eo:instrument")
    if isinstance(value, str):
        value = re.split(r"[_,/ ]+", value)
    if not isinstance(value, (list, tuple)):
        return []
    return [str(v).strip().lower().replace("+", "") for v in value if str(v).strip()]


def item_tier(item: Mapping[str, Any]) -> str | None:
    """``T1``, ``T2`` or ``RT`` from ``landsat:collection_category``, else the item id's last part."""
    tier = _props(item).get("landsat:collection_category")
    if isinstance(tier, str) and tier.strip():
        return tier.strip().upper()
    m = re.search(r"_(T1|T2|RT)(?:_S[RT])?$", str(item.get("id", "")))
    return m.group(1) if m else None


def item_datetime(item: Mapping[str, Any]) -> dt.datetime | None:
    """The item's acquisition time (UTC), from ``datetime`` (else ``start_datetime``)."""
    props = _props(item)
    text = props.get("datetime") or props.get("start_datetime")
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _asset_href(asset: Mapping[str, Any]) -> str | None:
    """The href to read: the asset's own, except a USGS LandsatLook https href (which needs an EROS
    login) with an ``alternate.s3`` href (the requester-pays bucket ``usgs-landsat``), which is used."""
    href = asset.get("href")
    if not isinstance(href, str):
        return None
    if urlparse(href).netloc.lower().endswith("landsatlook.usgs.gov"):
        alternate = asset.get("alternate")
        s3 = alternate.get("s3") if isinstance(alternate, Mapping) else None
        if isinstance(s3, Mapping) and isinstance(s3.get("href"), str):
            return str(s3["href"])
    return href


def band_hrefs(item: Mapping[str, Any]) -> dict[str, str]:
    """Common band name -> asset href (as given: unsigned) for the bands a standard scene uses.

    Asset keys are common names in Planetary Computer and Earth Search ``landsat-c2-l2`` items; the
    thermal band is ``lwir11`` on OLI/TIRS and ``lwir`` on TM/ETM+ (both become ``lwir``). An asset
    whose key is exactly the common name wins over an alias.
    """
    wanted = set(SCENE_BANDS) | set(_OPTIONAL_BANDS)
    assets = item.get("assets")
    if not isinstance(assets, Mapping):
        return {}
    out: dict[str, str] = {}
    exact: set[str] = set()
    for key, asset in assets.items():
        if key in _NOT_BANDS or not isinstance(asset, Mapping):
            continue
        href = _asset_href(asset)
        name = common_band_name(key)
        if href is None or name not in wanted or (name in exact and key != name):
            continue
        out[name] = href
        if key == name:
            exact.add(name)
    return out


def _scene_center_time(when: dt.datetime) -> str:
    """USGS SCENE_CENTER_TIME form, ``HH:MM:SS.fffffffZ`` (7 decimals, as in the MTL / Earth Engine)."""
    return f"{when:%H:%M:%S}.{when.microsecond:06d}0Z"


def usgs_properties(item: Mapping[str, Any]) -> dict[str, Any]:
    """The item's metadata under USGS / Earth Engine property names (the scene side-car JSON).

    ``CLOUD_COVER`` <- ``eo:cloud_cover``, ``CLOUD_COVER_LAND`` <- ``landsat:cloud_cover_land`` (%),
    ``SPACECRAFT_ID`` <- ``platform``, ``SENSOR_ID`` <- ``instruments`` (``OLI_TIRS``, ``ETM``, ``TM``),
    ``WRS_PATH``/``WRS_ROW`` <- ``landsat:wrs_path/row``, ``SUN_ELEVATION``/``SUN_AZIMUTH`` <-
    ``view:sun_elevation/azimuth`` (degrees), ``DATE_ACQUIRED``/``SCENE_CENTER_TIME`` <- ``datetime``
    (UTC), ``LANDSAT_PRODUCT_ID`` <- the item id, ``LANDSAT_SCENE_ID`` <- ``landsat:scene_id``,
    ``COLLECTION_NUMBER``/``COLLECTION_CATEGORY`` <- ``landsat:collection_number/category``,
    ``PROCESSING_LEVEL`` <- ``landsat:correction``. Absent values are left out; STAC items carry no
    ``IMAGE_QUALITY``, so there is none. Parsed back by
    :func:`glacierwatch.catalog.metadata.record_from_usgs_keys`, it gives what
    :func:`~glacierwatch.catalog.metadata.record_from_stac` reads from the item itself.
    """
    props = _props(item)

    def first(*keys: str) -> Any:
        for key in keys:
            value = props.get(key)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                return value
        return None

    def number(value: Any) -> float | None:
        try:
            out = float(value)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(out) else out

    def integer(value: Any) -> int | None:
        out = number(value)
        return int(out) if out is not None and out == int(out) else None

    out: dict[str, Any] = {}
    item_id = item.get("id")
    if isinstance(item_id, str):
        # USGS's own STAC items are named <product id>_SR / _ST; the product id is without it
        out["LANDSAT_PRODUCT_ID"] = re.sub(r"_(SR|ST)$", "", item_id)
    satellite = item_satellite(item)
    if satellite is not None:
        out["SPACECRAFT_ID"] = f"LANDSAT_{satellite[1:]}"
    instruments = _instruments(item)
    if instruments:
        out["SENSOR_ID"] = "_".join(i.upper() for i in instruments)
    when = item_datetime(item)
    if when is not None:
        out["DATE_ACQUIRED"] = when.date().isoformat()
        out["SCENE_CENTER_TIME"] = _scene_center_time(when)
    for key, convert in (("CLOUD_COVER", number), ("CLOUD_COVER_LAND", number), ("WRS_PATH", integer),
                         ("WRS_ROW", integer), ("SUN_ELEVATION", number), ("SUN_AZIMUTH", number),
                         ("COLLECTION_NUMBER", integer)):
        value = convert(first(*STAC_TO_USGS[key]))
        if value is not None:
            out[key] = value
    for key in ("LANDSAT_SCENE_ID", "COLLECTION_CATEGORY", "PROCESSING_LEVEL"):
        value = first(*STAC_TO_USGS[key])
        if value is not None:
            out[key] = str(value).strip()
    return out


def _skip(item: Mapping[str, Any], request: GlacierRequest) -> tuple[str, str] | None:
    """(category, reason) why ``item`` cannot become a standard scene for ``request``; None if it can."""
    satellite = item_satellite(item)
    if satellite not in SENSORS:
        return "platform", f"not Landsat 5/7/8/9 ({satellite or 'unknown platform'})"
    if satellite not in request.satellites:
        return "satellite", f"{satellite} not requested"
    instruments = _instruments(item)
    if instruments:
        if _INSTRUMENT[satellite] not in instruments:
            return "instrument", f"instrument {'/'.join(instruments)} (MSS or other) on {satellite}"
    elif not str(item.get("id", "")).startswith(_ID_PREFIX[satellite]):
        return "instrument", f"not a {satellite} {_INSTRUMENT[satellite].upper()} product"
    tier = item_tier(item)
    if tier != "T1":
        return "tier", f"collection category {tier or 'unknown'} (Tier 1 only)"
    when = item_datetime(item)
    if when is None:
        return "date", "no datetime"
    if not request.start <= when.date() <= request.end:
        return "date", f"date {when.date()} outside {request.start}..{request.end}"
    if request.max_cloud_cover is not None:
        cloud = _props(item).get("eo:cloud_cover")
        if not isinstance(cloud, (int, float)) or not cloud < request.max_cloud_cover:
            return "cloud", f"cloud cover {cloud} not below {request.max_cloud_cover}"
    hrefs = band_hrefs(item)
    missing = [b for b in SCENE_BANDS if b not in hrefs]
    if missing:  # e.g. L2SR products (no surface temperature): a standard scene needs every band
        return "bands", f"no asset for band(s) {', '.join(missing)}"
    return None


def skip_reason(item: Mapping[str, Any], request: GlacierRequest) -> str | None:
    """Why ``item`` cannot become a standard scene for ``request`` (None when it can): not Landsat
    5/7/8/9 TM/ETM+/OLI, a satellite not requested, not Tier 1, outside the dates, not below the cloud
    limit, or a standard band without an asset."""
    skip = _skip(item, request)
    return skip[1] if skip else None


# ------------------------------------------------------------------ error classification

def _redact(text: str) -> str:
    """Drop URL query strings (SAS tokens, signatures) from a message."""
    return re.sub(r"\?[^\s'\"]*", "?...", text)


def _http_status(texts: Sequence[str]) -> int | None:
    for text in texts:
        for pattern in _HTTP_CODE:
            m = pattern.search(text)
            if m:
                return int(m.group(1))
    return None


def _exception_texts(exc: BaseException) -> list[str]:
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return texts


class _GdalMessages(logging.Handler):
    """Collects the GDAL warnings rasterio logs in *this* thread during a read: the HTTP status of a
    failed range request after the file was opened (``Request for 123-456 failed with response_code=503``)
    only appears there; the exception itself says ``Read failed``."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            try:
                self.messages.append(record.getMessage())
            except Exception:  # a malformed log record must not break a read
                pass


class _AuthRefused(Exception):
    """An asset read answered 401/403 (internal: re-sign, or raise SourceAuthError)."""


def _classify(exc: BaseException, messages: Sequence[str], what: str) -> Exception:
    """Map a rasterio / GDAL failure to the source error types (or _AuthRefused)."""
    texts = _exception_texts(exc)
    status = _http_status(texts) or _http_status(messages)
    detail = _redact(texts[0])[:300]
    if status in (401, 403):
        return _AuthRefused(f"{what}: HTTP {status} ({detail})")
    if status in (404, 410):
        return SourceError(f"{what}: asset not found (HTTP {status})")
    if status in _TRANSIENT_STATUS:
        return TransientSourceError(f"{what}: HTTP {status} ({detail})")
    if status is not None:
        return SourceError(f"{what}: HTTP {status} ({detail})")
    if any("CURL error" in t for t in texts):  # timeout, refused/reset connection, DNS
        return TransientSourceError(f"{what}: {detail}")
    if any("Read failed" in t or "IReadBlock failed" in t for t in texts):
        # a remote read broke after the file was opened and GDAL did not say why (no HTTP status
        # logged): almost always the network, so try again
        return TransientSourceError(f"{what}: {detail}")
    return SourceError(f"{what}: {type(exc).__name__}: {detail}")


def _api_error(exc: Exception, what: str) -> SourceError:
    """Map a pystac-client APIError (or connection error) of a search to the source error types."""
    status = getattr(exc, "status_code", None)
    detail = _redact(" ".join(str(exc).split()))[:300]
    if status in (401, 403):
        return SourceAuthError(f"{what}: HTTP {status} ({detail})")
    if status is None or status in _TRANSIENT_STATUS:
        return TransientSourceError(f"{what}: {'HTTP ' + str(status) if status else 'no answer'} ({detail})")
    return SourceError(f"{what}: HTTP {status} ({detail})")


# ------------------------------------------------------------------ the source

class StacSource:
    """Landsat C2 L2 scenes and a DEM from a STAC API (see the module docstring).

    ``signer`` replaces the signing chosen by ``signing`` (tests, other providers); ``sleep`` is the
    back-off wait of :func:`with_retries`; ``http_timeout_s`` bounds every HTTP request (s);
    ``margin_px`` source pixels are read around the grid's footprint; ``requester_pays`` sets
    ``AWS_REQUEST_PAYER=requester`` for ``s3://`` hrefs (Earth Search's Landsat assets are in the
    requester-pays bucket ``usgs-landsat``); ``gdal_options`` are added to the GDAL configuration of reads.
    """

    name = "stac"

    def __init__(self, *, api_url: str = StacConfig.api_url, collection: str = StacConfig.collection,
                 dem_collection: str = StacConfig.dem_collection, signing: str = StacConfig.signing,
                 page_size: int = StacConfig.page_size, max_retries: int = StacConfig.max_retries,
                 dem_asset: str = "data", signer: Signer | None = None,
                 sleep: Callable[[float], None] = time.sleep, base_delay_s: float = 2.0,
                 http_timeout_s: float = 60.0, margin_px: int = 3, requester_pays: bool = True,
                 search_method: str = "POST", gdal_options: Mapping[str, str] | None = None) -> None:
        try:
            import pystac_client  # noqa: F401
        except ImportError as exc:
            raise SourceUnavailableError(f"the STAC source needs pystac-client: {INSTALL_HINT}") from exc
        if page_size < 1:
            raise ConfigError(f"[imagery.stac] page_size must be at least 1, got {page_size}")
        if max_retries < 1:
            raise ConfigError(f"[imagery.stac] max_retries must be at least 1, got {max_retries}")
        if search_method not in ("GET", "POST"):
            raise ConfigError(f"STAC search method must be GET or POST, got {search_method!r}")
        self.api_url = api_url
        self.collection = collection
        self.dem_collection = dem_collection
        self.dem_asset = dem_asset
        self.page_size = int(page_size)
        self.max_retries = int(max_retries)
        self.sleep = sleep
        self.base_delay_s = base_delay_s
        self.http_timeout_s = http_timeout_s
        self.margin_px = int(margin_px)
        self.requester_pays = requester_pays
        self.search_method = search_method
        self.gdal_options = dict(gdal_options or {})
        if signer is not None:
            self.signing = "custom"
            self._signer: Signer = signer
        else:
            self.signing = resolve_signing(signing, api_url)
            self._signer = planetary_computer_signer() if self.signing == "planetary-computer" else no_signing
        self._client_obj: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: StacConfig, **kw: Any) -> StacSource:
        """A source from the ``[imagery.stac]`` section; ``kw`` are the extra constructor options."""
        options = {"api_url": cfg.api_url, "collection": cfg.collection, "dem_collection": cfg.dem_collection,
                   "signing": cfg.signing, "page_size": cfg.page_size, "max_retries": cfg.max_retries,
                   "http_timeout_s": cfg.http_timeout_s, "requester_pays": cfg.requester_pays, **kw}
        return cls(**options)

    # -------------------------------------------------------------- search

    def _retry(self, func: Callable[[], Any], what: str) -> Any:
        return with_retries(func, what=what, attempts=self.max_retries, base_delay_s=self.base_delay_s,
                            sleep=self.sleep)

    def _client(self) -> Any:
        with self._client_lock:
            if self._client_obj is None:
                from pystac_client import Client
                from pystac_client.exceptions import APIError

                def open_client() -> Any:
                    try:
                        return Client.open(self.api_url, timeout=self.http_timeout_s)
                    except APIError as exc:
                        raise _api_error(exc, f"STAC API {self.api_url}") from exc

                self._client_obj = self._retry(open_client, f"opening {self.api_url}")
            return self._client_obj

    def _search_items(self, what: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a search, all pages (pystac-client follows the ``next`` links)."""
        from pystac_client.exceptions import APIError

        client = self._client()

        def run() -> list[dict[str, Any]]:
            try:
                search = client.search(method=self.search_method, limit=self.page_size, **params)
                return list(search.items_as_dicts())
            except APIError as exc:
                raise _api_error(exc, what) from exc

        return self._retry(run, what)

    def _cloud_pushdown(self, limit: float) -> dict[str, Any]:
        """The server-side 'eo:cloud_cover < limit' in the dialect the API conforms to ({} if none)."""
        client = self._client()
        if client.conforms_to("QUERY"):
            return {"query": {"eo:cloud_cover": {"lt": limit}}}
        if client.conforms_to("FILTER"):
            if self.search_method == "POST":
                return {"filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, limit]},
                        "filter_lang": "cql2-json"}
            return {"filter": f'"eo:cloud_cover" < {limit!r}', "filter_lang": "cql2-text"}
        log.info("%s conforms to neither the query nor the filter extension: cloud cover is filtered "
                 "after the search", self.api_url)
        return {}

    def search(self, request: GlacierRequest) -> list[SceneRecord]:
        """Tier 1 Landsat 5/7/8/9 items over the glacier (see the module docstring), one record per item id."""
        params: dict[str, Any] = {
            "collections": [self.collection],
            "bbox": [float(v) for v in request.bbox],
            # whole days, inclusive, in UTC (the dates of Landsat product ids)
            "datetime": f"{request.start.isoformat()}T00:00:00Z/{request.end.isoformat()}T23:59:59.999999Z",
        }
        if request.max_cloud_cover is not None:
            params.update(self._cloud_pushdown(float(request.max_cloud_cover)))
        items = self._search_items(f"{request.glims_id}: search of {self.collection} at {self.api_url}", **params)
        records: list[SceneRecord] = []
        seen: set[str] = set()
        skipped: dict[str, int] = {}
        for item in items:
            item_id = item.get("id")
            if not isinstance(item_id, str) or item_id in seen:
                continue  # the same item on two pages (an unstable sort order while paging)
            seen.add(item_id)
            skip = _skip(item, request)
            if skip is not None:
                skipped[skip[0]] = skipped.get(skip[0], 0) + 1
                log.debug("%s: %s skipped: %s", request.glims_id, item_id, skip[1])
                continue
            when = item_datetime(item)
            assert when is not None  # skip_reason checked it
            satellite = item_satellite(item)
            assert satellite is not None
            hrefs = band_hrefs(item)
            if "coastal" not in SENSORS[satellite].file_bands:
                hrefs.pop("coastal", None)
            records.append(SceneRecord(
                source=self.name, scene_id=item_id, glims_id=request.glims_id, date=when.date(),
                satellite=satellite, properties=usgs_properties(item),
                handle={"item_id": item_id, "collection": str(item.get("collection") or self.collection),
                        "hrefs": dict(sorted(hrefs.items()))}))
        if skipped:
            log.info("%s: %d item(s) kept, %d skipped (%s)", request.glims_id, len(records),
                     sum(skipped.values()), "; ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
        return records

    # -------------------------------------------------------------- pixels

    def _gdal_env(self, href: str) -> dict[str, Any]:
        options: dict[str, Any] = {
            # a COG is one file: do not list its "directory" on the server
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            # we retry ourselves (with_retries), with back-off and error classification
            "GDAL_HTTP_MAX_RETRY": "0",
            # /vsicurl/ remembers a failed URL for the life of the process and answers the next open of
            # it with the same error without asking the server again: a retry would never reach it
            "CPL_VSIL_CURL_NON_CACHED": "/vsicurl/:/vsis3/",
            "GDAL_HTTP_TIMEOUT": str(max(1, int(math.ceil(self.http_timeout_s)))),
            "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, int(math.ceil(min(self.http_timeout_s, 30.0))))),
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        }
        if href.startswith("s3://") and self.requester_pays:
            options["AWS_REQUEST_PAYER"] = "requester"
        options.update(self.gdal_options)
        return options

    def _sign(self, href: str, *, fresh: bool) -> str:
        return self._signer(href, fresh=fresh)

    @contextmanager
    def _capture(self) -> Iterator[_GdalMessages]:
        handler = _GdalMessages()
        logger = logging.getLogger("rasterio")
        logger.addHandler(handler)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)

    def _with_assets(self, hrefs: Sequence[str], what: str, read: Callable[[list[Any]], Any]) -> Any:
        """Open ``hrefs`` (each signed just now) and call ``read(datasets)``, with the retry rules of the
        module docstring: transient failures are retried with back-off, a 401/403 re-signs every href
        with a fresh token once. Messages name ``what`` and unsigned hrefs, never a token."""
        import rasterio

        signed_by_us = self.signing != "none"
        shown = _redact(hrefs[0]) + (f" and {len(hrefs) - 1} more" if len(hrefs) > 1 else "")

        def attempt() -> Any:
            fresh = False
            while True:
                urls = [self._sign(href, fresh=fresh) for href in hrefs]
                with self._capture() as gdal:
                    try:
                        with rasterio.Env(**self._gdal_env(hrefs[0])), ExitStack() as stack:
                            return read([stack.enter_context(rasterio.open(url)) for url in urls])
                    except (SourceError, _AuthRefused):
                        raise
                    except Exception as exc:  # rasterio/GDAL raise RasterioIOError, CPLE_* and others
                        error = _classify(exc, gdal.messages, f"{what} ({shown})")
                if not isinstance(error, _AuthRefused):
                    raise error
                if signed_by_us and not fresh:
                    log.info("%s: access refused, signing again with a fresh token", what)
                    fresh = True
                    continue
                raise SourceAuthError(f"{error}{'; refused again after re-signing' if fresh else ''}")

        return self._retry(attempt, what)

    def _read_band(self, href: str, grid: GlacierGrid, what: str) -> np.ndarray:
        """One band asset on ``grid``: uint16 DN, fill 0 (nearest neighbour, via warp_to_grid)."""
        from glacierwatch.imagery.standard import warp_to_grid

        def read(ds: Any) -> np.ndarray:
            if ds.crs is None:
                raise SourceError(f"{what}: asset {_redact(href)} has no CRS")
            dtype = np.dtype(ds.dtypes[0])
            if dtype.kind != "u" or dtype.itemsize > 2:
                raise SourceError(f"{what}: asset is {dtype}, not uint16 Collection 2 digital numbers")
            window = raster_window(grid, ds.transform, ds.shape, crs=ds.crs, pad=self.margin_px)
            if window is None:  # the asset does not reach the grid: all fill
                return np.full(grid.shape, FILL_DN, dtype=np.uint16)
            data = ds.read(1, window=window).astype(np.uint16, copy=False)
            return warp_to_grid(data, src_crs=ds.crs, src_transform=ds.window_transform(window), grid=grid,
                                src_nodata=FILL_DN, dst_nodata=FILL_DN)

        return self._with_assets([href], what, lambda datasets: read(datasets[0]))

    def read(self, record: SceneRecord, grid: GlacierGrid) -> dict[str, np.ndarray]:
        """The scene's bands on ``grid`` (uint16 DN; ``coastal`` too on Landsat 8/9 when the item has it)."""
        hrefs = record.handle.get("hrefs") if isinstance(record.handle, Mapping) else None
        if not isinstance(hrefs, Mapping):
            raise SourceError(f"{record.scene_id}: the record has no asset hrefs (search again with --refresh)")
        missing = [b for b in SCENE_BANDS if b not in hrefs]
        if missing:
            raise SourceError(f"{record.scene_id}: STAC item has no asset for band(s) {', '.join(missing)}")
        bands = list(SCENE_BANDS)
        sensor = SENSORS.get(record.satellite)
        if sensor is None:
            raise SourceError(f"{record.scene_id}: not a Landsat 5/7/8/9 scene ({record.satellite!r})")
        bands += [b for b in _OPTIONAL_BANDS if b in hrefs and b in sensor.file_bands]
        return {band: self._read_band(str(hrefs[band]), grid, f"{record.scene_id} {band}") for band in bands}

    # -------------------------------------------------------------- DEM

    def read_dem(self, request: GlacierRequest) -> np.ndarray | None:
        """Elevation (float32, m, NaN = no data) on ``request.grid`` from ``dem_collection`` (None if '').

        The tiles over the grid are mosaicked on their own lattice (first tile wins where they overlap;
        tiles of another resolution are resampled to the first's), then warped **bilinearly** onto the
        grid (elevation is continuous; scenes use nearest neighbour)."""
        if not self.dem_collection:
            return None
        what = f"{request.glims_id}: DEM"
        items = self._search_items(f"{what} search of {self.dem_collection} at {self.api_url}",
                                   collections=[self.dem_collection], bbox=[float(v) for v in request.bbox])
        hrefs: list[str] = []
        for item in sorted({str(i.get("id")): i for i in items}.values(), key=lambda i: str(i.get("id"))):
            asset = (item.get("assets") or {}).get(self.dem_asset)
            if isinstance(asset, Mapping) and isinstance(asset.get("href"), str):
                hrefs.append(asset["href"])
        if not hrefs:
            raise SourceError(f"{what}: no {self.dem_collection} item with a {self.dem_asset!r} asset "
                              f"intersects {tuple(round(v, 4) for v in request.bbox)}")
        return self._with_assets(hrefs, what, lambda datasets: self._dem_on_grid(datasets, request.grid, what))

    def _dem_on_grid(self, datasets: Sequence[Any], grid: GlacierGrid, what: str) -> np.ndarray:
        """Mosaic the DEM tiles per pixel lattice (exact pixel copies, no resampling) over the grid's
        footprint and warp each mosaic bilinearly onto ``grid``; the first tile's lattice leads and the
        others (Copernicus tiles of another latitude band have another longitude spacing) only fill what
        it leaves missing. Each mosaic always spans the whole footprint (NaN where no tile), so the
        result does not depend on how the tiles are cut: GDAL's warper scales its bilinear kernel from
        the source window it sees."""
        from rasterio.warp import Resampling

        from glacierwatch.imagery.standard import warp_to_grid

        groups: list[list[Any]] = []
        for ds in datasets:
            if ds.crs is None:
                raise SourceError(f"{what}: DEM tile has no CRS")
            t = ds.transform
            if t.b or t.d or t.a <= 0 or t.e >= 0:
                raise SourceError(f"{what}: DEM tile is not north-up ({t!r})")
            for group in groups:
                if _same_lattice(group[0], ds):
                    group.append(ds)
                    break
            else:
                groups.append([ds])
        elevation: np.ndarray | None = None
        for group in groups:
            mosaic_arr, mosaic_transform = self._lattice_mosaic(group, grid)
            part = warp_to_grid(mosaic_arr, src_crs=group[0].crs, src_transform=mosaic_transform, grid=grid,
                                src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear)
            elevation = part if elevation is None else np.where(np.isnan(elevation), part, elevation)
        assert elevation is not None  # read_dem checked there is a tile
        return np.asarray(elevation, dtype=np.float32)

    def _lattice_mosaic(self, group: Sequence[Any], grid: GlacierGrid) -> tuple[np.ndarray, Any]:
        """Tiles of one pixel lattice pasted into a float32 array covering the grid's footprint plus
        ``margin_px`` (NaN where no tile; the first tile wins where tiles overlap) and its transform."""
        from rasterio.transform import Affine
        from rasterio.warp import transform_bounds
        from rasterio.windows import Window

        first = group[0]
        res_x, res_y = first.transform.a, -first.transform.e
        x0, y0 = first.transform.c, first.transform.f
        left, bottom, right, top = transform_bounds(grid.crs, first.crs, *grid.bounds, densify_pts=21)
        c0 = math.floor((left - x0) / res_x) - self.margin_px
        c1 = math.ceil((right - x0) / res_x) + self.margin_px
        r0 = math.floor((y0 - top) / res_y) - self.margin_px
        r1 = math.ceil((y0 - bottom) / res_y) + self.margin_px
        out = np.full((r1 - r0, c1 - c0), np.nan, dtype=np.float32)
        for ds in group:
            # the tile's first column/row in mosaic coordinates (whole pixels: same lattice)
            tc = int(round((ds.transform.c - x0) / res_x)) - c0
            tr = int(round((y0 - ds.transform.f) / res_y)) - r0
            a0, a1 = max(0, tc), min(out.shape[1], tc + ds.width)
            b0, b1 = max(0, tr), min(out.shape[0], tr + ds.height)
            if a1 <= a0 or b1 <= b0:
                continue
            block = ds.read(1, window=Window(a0 - tc, b0 - tr, a1 - a0, b1 - b0)).astype(np.float32)
            if ds.nodata is not None and not math.isnan(ds.nodata):
                block[block == np.float32(ds.nodata)] = np.nan
            target = out[b0:b1, a0:a1]
            hole = np.isnan(target)
            target[hole] = block[hole]
        return out, Affine(res_x, 0.0, x0 + c0 * res_x, 0.0, -res_y, y0 - r0 * res_y)


def _same_lattice(a: Any, b: Any) -> bool:
    """True when rasters ``a`` and ``b`` share CRS, pixel size and pixel edges (whole-pixel offsets)."""
    from rasterio.crs import CRS

    ta, tb = a.transform, b.transform
    if CRS.from_user_input(a.crs) != CRS.from_user_input(b.crs):
        return False
    if not (math.isclose(ta.a, tb.a, rel_tol=1e-9) and math.isclose(ta.e, tb.e, rel_tol=1e-9)):
        return False
    dc, dr = (tb.c - ta.c) / ta.a, (tb.f - ta.f) / ta.e
    return abs(dc - round(dc)) < 1e-6 and abs(dr - round(dr)) < 1e-6
