"""The one module that talks to the Earth Engine client library (``ee``).

Everything the Earth Engine source asks of the server is one of two plain requests, built here into
``ee`` expressions and sent with the documented ``ee.data`` calls:

* :class:`CollectionQuery` — the images of one Landsat collection over a WGS 84 box in an inclusive
  date window, optionally below a scene cloud cover. Sent as ``ee.data.computeValue`` (what
  ``ImageCollection.getInfo()`` does) on
  ``ImageCollection(id).filterBounds(Rectangle(box, EPSG:4326, geodesic=False))
  .filterDate(start, end + 1 day).filter(Filter.lt('CLOUD_COVER', max)).select(['QA_PIXEL'])``.
  One aggregated call per collection and date window; the answer is the ``getInfo`` JSON
  (``{"type": "ImageCollection", "features": [{"type": "Image", "id": ..., "properties": {...}}]}``).
* :class:`PixelQuery` — bands of one image renamed to our names, computed on an explicit pixel grid
  (``ee.data.computePixels`` with ``fileFormat='NUMPY_NDARRAY'`` and a ``grid`` dict of dimensions,
  affine transform and CRS code). The answer is a structured NumPy array, one field per band.

Masked pixels: the expression is ``unmask(fill, sameFootprint=False)`` before the type cast, so a
pixel Earth Engine masks (outside the image footprint, or a per-band mask) arrives as the fill value
(DN 0 for Landsat, a sentinel for the DEM) whatever the output format would otherwise hold there.

Errors are translated once, by :func:`translate_error`: quota and rate limits (HTTP 429, "Too many
concurrent aggregations", "Quota exceeded"), server errors (5xx, "Internal error") and timeouts become
:class:`~.base.TransientSourceError`; refused or missing credentials and projects become
:class:`~.base.SourceAuthError`; anything else :class:`~.base.SourceError`. The client library's own
retries are switched off (``ee.data.setMaxRetries(0)``) so that the source's
:func:`~.base.with_retries` (``max_retries`` of the configuration) is the only retry policy.

Initialisation (credentials, project) happens lazily, once per process, on the first request: the
client object itself holds only settings, so it pickles to Dask workers without credentials, and
each worker initialises the library itself. No secret (private key, token) is ever logged or stored.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery.sources.base import SourceAuthError, SourceError, SourceUnavailableError, TransientSourceError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: glacierwatch is not on PyPI: the extra is installed from a clone of the repository.
INSTALL_HINT = "from a clone: pip install -e '.[earthengine]'"
AUTH_HINT = ("authenticate with 'earthengine authenticate' and set [imagery.earthengine] project to a Cloud "
             "project registered for Earth Engine, or set service_account_key to a service-account JSON key file")

#: Band kept in the search answer: every C2 L2 image has it, and dropping the other 18 band
#: descriptions shrinks the getInfo JSON (about 4 kB instead of 10 kB an image).
SEARCH_BANDS: tuple[str, ...] = ("QA_PIXEL",)

#: Value types a pixel request can ask for: the server-side cast and the NumPy field type expected.
PIXEL_TYPES: dict[str, str] = {"uint16": "toUint16", "float32": "toFloat"}


# ------------------------------------------------------------------ plain requests

@dataclass(frozen=True)
class CollectionQuery:
    """The images of one collection over ``bbox`` (lon_min, lat_min, lon_max, lat_max, degrees WGS 84)
    acquired from ``start`` to ``end`` (both inclusive, UTC dates), with scene ``CLOUD_COVER`` (%)
    below ``max_cloud_cover`` when that is set."""

    collection_id: str
    bbox: tuple[float, float, float, float]
    start: dt.date
    end: dt.date
    max_cloud_cover: float | None = None
    select_bands: tuple[str, ...] = SEARCH_BANDS

    def date_range(self) -> tuple[str, str]:
        """(start, end) as ``filterDate`` takes them: ISO dates, the end *exclusive* (``end`` + 1 day),
        so images of the last requested day are included."""
        return self.start.isoformat(), (self.end + dt.timedelta(days=1)).isoformat()

    def describe(self) -> str:
        cloud = f", CLOUD_COVER < {self.max_cloud_cover:g} %" if self.max_cloud_cover is not None else ""
        return f"{self.collection_id} {self.start}..{self.end}{cloud}"


@dataclass(frozen=True)
class PixelQuery:
    """Bands of the image ``image_id`` on ``grid``: ``bands`` pairs (Earth Engine band name, output
    name), selected by name, resampled with ``resampling`` ('' = Earth Engine's nearest neighbour,
    or ``bilinear``/``bicubic``), masked pixels replaced by ``fill``, cast to ``value_type``
    (``uint16`` or ``float32``)."""

    image_id: str
    bands: tuple[tuple[str, str], ...]
    grid: GlacierGrid
    value_type: str = "uint16"
    fill: float = 0.0
    resampling: str = ""

    def __post_init__(self) -> None:
        if self.value_type not in PIXEL_TYPES:
            raise ValueError(f"value_type must be one of {sorted(PIXEL_TYPES)}, not {self.value_type!r}")
        if self.resampling not in ("", "bilinear", "bicubic"):
            raise ValueError(f"resampling must be '', 'bilinear' or 'bicubic', not {self.resampling!r}")
        if not self.bands:
            raise ValueError(f"{self.image_id}: no bands requested")

    @property
    def source_bands(self) -> list[str]:
        return [b for b, _ in self.bands]

    @property
    def output_bands(self) -> list[str]:
        return [n for _, n in self.bands]

    def grid_request(self) -> dict[str, Any]:
        """The ``grid`` of a computePixels request (the REST ``PixelGrid``): pixel corners, metres.

        ``translateX``/``translateY`` are the outer corner of the upper-left pixel, as in GDAL and
        in :attr:`GlacierGrid.transform`, so the answer lands on the glacier grid pixel for pixel.
        """
        g = self.grid
        return {"dimensions": {"width": int(g.width), "height": int(g.height)},
                "affineTransform": {"scaleX": float(g.resolution), "shearX": 0.0, "translateX": float(g.x0),
                                    "shearY": 0.0, "scaleY": -float(g.resolution), "translateY": float(g.y0)},
                "crsCode": g.crs}

    def bytes_per_pixel(self) -> int:
        return len(self.bands) * np.dtype(self.value_type).itemsize


class EarthEngineTransport(Protocol):
    """What :class:`~glacierwatch.imagery.sources.earthengine.EarthEngineSource` needs from a client:
    the real :class:`EarthEngineClient`, or a recorded one in tests. Both raise only the typed
    :class:`~.base.SourceError` family."""

    def search(self, query: CollectionQuery) -> Mapping[str, Any]:
        """The ``getInfo`` JSON of the filtered collection."""
        ...

    def compute_pixels(self, query: PixelQuery) -> np.ndarray:
        """A structured array of ``query.grid.shape`` with one field per output band name."""
        ...


# ------------------------------------------------------------------ error translation

_TRANSIENT_TEXT = re.compile(
    r"too many concurrent|quota exceeded|rate limit|resource[_ ]exhausted|capacity exceeded|internal error"
    r"|service (is )?(currently )?unavailable|backend error|deadline exceeded|timed? ?out|try again later"
    r"|connection (reset|aborted|refused)|temporar(il)?y", re.IGNORECASE)
_AUTH_TEXT = re.compile(
    r"please authorize|not signed up|not registered to use earth engine|no project found|authenticat"
    r"|credential|permission denied|does not have (the )?(required )?permission|has not been used in project"
    r"|invalid_grant|unauthori[sz]ed|access token|serviceusage", re.IGNORECASE)
_BAND_TEXT = re.compile(r"Pattern '([^']+)' did not match any bands", re.IGNORECASE)
_TRANSIENT_CLASSES = {"TimeoutError", "ConnectionError", "TransportError", "IncompleteRead", "RemoteDisconnected",
                      "ProtocolError", "ReadTimeout", "ConnectTimeout", "ChunkedEncodingError"}
_AUTH_CLASSES = {"RefreshError", "DefaultCredentialsError"}


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind ``exc``: ``ee.data`` raises its ``EEException`` inside the ``except
    HttpError`` block, so the original ``googleapiclient`` error (with ``.resp.status``) is the
    exception's context."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        status = getattr(getattr(current, "resp", None), "status", None)
        if status is not None:
            try:
                return int(status)
            except (TypeError, ValueError):
                return None
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def translate_error(exc: BaseException, what: str) -> SourceError:
    """The typed error for a failed Earth Engine call about ``what`` (a scene id, a collection query).

    The HTTP status decides when known (429 and 5xx transient; 401 auth; 403 auth unless the text
    says quota); otherwise the message text and the exception class do.
    """
    if isinstance(exc, SourceError):
        return exc
    message = _one_line(str(exc)) or type(exc).__name__
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = _http_status(exc)
    prefix = f"{what}: Earth Engine"
    if status is not None:
        message = f"HTTP {status}: {message}"
    transient_text = bool(_TRANSIENT_TEXT.search(message))
    if status == 429 or (status is not None and status >= 500):
        return TransientSourceError(f"{prefix}: {message}")
    if status == 403 and transient_text:
        return TransientSourceError(f"{prefix}: {message}")
    if status in (401, 403) or names & _AUTH_CLASSES:
        if getattr(exc, "retryable", False):  # google-auth marks e.g. a token endpoint 5xx as retryable
            return TransientSourceError(f"{prefix}: {message}")
        return SourceAuthError(f"{prefix} refused the credentials ({message}); {AUTH_HINT}")
    if names & _TRANSIENT_CLASSES or isinstance(exc, (TimeoutError, ConnectionError)):
        return TransientSourceError(f"{prefix}: {type(exc).__name__}: {message}")
    if _AUTH_TEXT.search(message):
        return SourceAuthError(f"{prefix} refused the credentials ({message}); {AUTH_HINT}")
    if transient_text:
        return TransientSourceError(f"{prefix}: {message}")
    band = _BAND_TEXT.search(message)
    if band:
        return SourceError(f"{what}: Earth Engine image has no band {band.group(1)} ({message})")
    return SourceError(f"{prefix}: {message}")


# ------------------------------------------------------------------ process-wide state

_SLOTS_LOCK = threading.Lock()
_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_INIT_LOCK = threading.Lock()
_INIT_KEY: tuple[Any, ...] | None = None


def request_slots(limit: int) -> threading.BoundedSemaphore:
    """The process-wide semaphore bounding Earth Engine requests in flight to ``limit`` (shared by all
    clients with that limit in this process; Earth Engine allows about 40 concurrent requests a user)."""
    if limit < 1:
        raise ValueError(f"max_concurrent_requests must be at least 1, got {limit}")
    with _SLOTS_LOCK:
        slots = _SLOTS.get(limit)
        if slots is None:
            slots = _SLOTS[limit] = threading.BoundedSemaphore(limit)
        return slots


def import_ee() -> Any:
    """The ``ee`` module, or :class:`SourceUnavailableError` with the install command."""
    try:
        return importlib.import_module("ee")
    except ImportError as exc:
        raise SourceUnavailableError(f"the Earth Engine source needs earthengine-api: {INSTALL_HINT}") from exc


def ee_available() -> bool:
    """True if the ``ee`` package can be imported (checked without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("ee") is not None
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------ the client

class EarthEngineClient:
    """The real transport: builds ``ee`` expressions from plain queries and runs them.

    ``project``: Cloud project registered for Earth Engine ('' = the credentials' default, or the
    key file's ``project_id``); ``service_account_key``: a service-account JSON key file ('' = the user
    credentials stored by ``earthengine authenticate``); ``max_concurrent_requests``: the process-wide
    bound on requests in flight; ``endpoint``: Earth Engine API URL ('' = the standard endpoint; the
    high-volume endpoint ``https://earthengine-highvolume.googleapis.com`` suits many parallel
    computePixels calls); ``request_timeout_s``: HTTP deadline per request, s (0 = none);
    ``http_transport``: an httplib2-like object for all HTTP (proxies, tests).
    """

    def __init__(self, *, project: str = "", service_account_key: str = "", max_concurrent_requests: int = 8,
                 endpoint: str = "", request_timeout_s: float = 300.0, http_transport: Any = None) -> None:
        request_slots(max_concurrent_requests)  # validates the limit now, not on the first request
        self.project = project
        self.service_account_key = service_account_key
        self.max_concurrent_requests = max_concurrent_requests
        self.endpoint = endpoint
        self.request_timeout_s = request_timeout_s
        self.http_transport = http_transport

    def __repr__(self) -> str:
        who = f"service account key {self.service_account_key}" if self.service_account_key else "user credentials"
        return f"EarthEngineClient({who}, project={self.project or '(default)'})"

    # -------------------------------------------------------------- initialisation

    def _init_key(self) -> tuple[Any, ...]:
        return (self.project, self.service_account_key, self.endpoint, self.request_timeout_s,
                id(self.http_transport) if self.http_transport is not None else None)

    def ensure_initialised(self) -> None:
        """Initialise the ``ee`` library with this client's credentials, once per process (thread-safe)."""
        global _INIT_KEY
        key = self._init_key()
        if _INIT_KEY == key:
            return
        with _INIT_LOCK:
            if _INIT_KEY == key:
                return
            ee = import_ee()
            if _INIT_KEY is not None:
                # ee keeps one set of credentials per process: the last client to initialise wins
                log.warning("Earth Engine: initialising again with other settings (%r)", self)
            try:
                credentials, project, who = self._credentials(ee)
                ee.Initialize(credentials, url=self.endpoint or None, project=project or None,
                              http_transport=self.http_transport)
                # one retry policy: the source's with_retries (max_retries), not also the library's
                ee.data.setMaxRetries(0)
                if self.request_timeout_s:
                    ee.data.setDeadline(int(self.request_timeout_s * 1000))
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is translated to a typed error
                raise translate_error(exc, "Earth Engine initialisation") from None
            _INIT_KEY = key
            log.info("Earth Engine initialised: %s, project %s", who, project or "(credentials' default)")

    def _credentials(self, ee: Any) -> tuple[Any, str, str]:
        """(credentials for ``ee.Initialize``, project, a loggable description). The key file's
        content is read only for ``client_email``/``project_id`` and never kept, logged or raised."""
        if not self.service_account_key:
            return "persistent", self.project, "user credentials (earthengine authenticate)"
        path = Path(self.service_account_key).expanduser()
        if not path.is_file():
            raise SourceAuthError(f"{path}: service-account key file not found; {AUTH_HINT}")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise SourceAuthError(f"{path}: not a readable service-account JSON key file; {AUTH_HINT}") from None
        email = info.get("client_email") if isinstance(info, dict) else None
        key_project = info.get("project_id") if isinstance(info, dict) else None
        del info  # holds the private key
        if not isinstance(email, str) or not email:
            raise SourceAuthError(f"{path}: no client_email in the service-account key file; {AUTH_HINT}")
        try:
            credentials = ee.ServiceAccountCredentials(email, str(path))
        except Exception as exc:  # noqa: BLE001 - messages of key parsers are not shown (they may quote the key)
            raise SourceAuthError(f"{path}: unusable service-account key ({type(exc).__name__}); "
                                  f"{AUTH_HINT}") from None
        project = self.project or (key_project if isinstance(key_project, str) else "")
        return credentials, project, f"service account {email}"

    # -------------------------------------------------------------- calls

    def _call(self, what: str, func: Callable[[], T]) -> T:
        """Run ``func`` (one Earth Engine request) inside a request slot; typed errors out."""
        self.ensure_initialised()
        try:
            with request_slots(self.max_concurrent_requests):
                return func()
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is translated to a typed error
            raise translate_error(exc, what) from exc

    def collection_expression(self, query: CollectionQuery) -> Any:
        """The filtered ``ee.ImageCollection`` of ``query`` (built locally; needs an initialised library)."""
        ee = import_ee()
        lon_min, lat_min, lon_max, lat_max = (float(v) for v in query.bbox)
        # planar (geodesic=False) in EPSG:4326: the box's edges are the grid's lon/lat bounds
        box = ee.Geometry.Rectangle([lon_min, lat_min, lon_max, lat_max], "EPSG:4326", False)
        start, end_exclusive = query.date_range()
        collection = ee.ImageCollection(query.collection_id).filterBounds(box).filterDate(start, end_exclusive)
        if query.max_cloud_cover is not None:
            collection = collection.filter(ee.Filter.lt("CLOUD_COVER", float(query.max_cloud_cover)))
        if query.select_bands:
            collection = collection.select(list(query.select_bands))
        return collection

    def pixels_expression(self, query: PixelQuery) -> Any:
        """The ``ee.Image`` of ``query``: bands selected by name and renamed, resampled if asked
        (before unmasking, so no fill value is blended into a neighbour), masked pixels set to
        ``fill`` everywhere on the grid (``sameFootprint=False``), then cast to ``value_type``."""
        ee = import_ee()
        image = ee.Image(query.image_id).select(query.source_bands, query.output_bands)
        if query.resampling:
            image = image.resample(query.resampling)
        image = image.unmask(query.fill, False)
        return getattr(image, PIXEL_TYPES[query.value_type])()

    def pixels_request(self, query: PixelQuery) -> dict[str, Any]:
        """The ``ee.data.computePixels`` parameters of ``query``."""
        return {"expression": self.pixels_expression(query), "fileFormat": "NUMPY_NDARRAY",
                "grid": query.grid_request()}

    def search(self, query: CollectionQuery) -> Mapping[str, Any]:
        what = f"search {query.describe()}"

        def run() -> Any:
            ee = import_ee()
            return ee.data.computeValue(self.collection_expression(query))

        info = self._call(what, run)
        if not isinstance(info, Mapping):
            raise SourceError(f"{what}: Earth Engine answered {type(info).__name__}, not a collection")
        return info

    def compute_pixels(self, query: PixelQuery) -> np.ndarray:
        def run() -> Any:
            ee = import_ee()
            return ee.data.computePixels(self.pixels_request(query))

        data = self._call(query.image_id, run)
        if not isinstance(data, np.ndarray):
            raise SourceError(f"{query.image_id}: Earth Engine answered {type(data).__name__}, not a NumPy array")
        return data
