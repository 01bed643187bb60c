"""Earth Engine imagery source: Landsat 5/7/8/9 Collection 2 Level-2 Tier 1 and the NASADEM DEM,
computed by Earth Engine directly on each glacier grid.

* **Search** — for every satellite requested and active in the window, its collection
  (``landsat.SENSORS[sat].ee_collection``) is filtered on the server by the glacier's WGS 84 box,
  the dates (end inclusive) and, when the request has one, ``CLOUD_COVER``; one aggregated
  ``getInfo`` call per collection and date window of at most ``search_window_years`` years (a
  ``getInfo`` of a collection is refused beyond 5000 images, which a whole-archive query of a
  high-latitude glacier can reach). Each image becomes one :class:`SceneRecord` (id = the image id,
  e.g. ``LANDSAT/LC08/C02/T1_L2/LC08_046027_20200818``; date from ``DATE_ACQUIRED``; satellite from
  ``SPACECRAFT_ID``; the plain-JSON image properties; de-duplicated by id).
* **Read** — ``computePixels`` of the image's bands selected *by name* (``SENSORS[sat].ee_bands``:
  SR_B1 is blue on TM/ETM+ but coastal on OLI) and renamed to common names, on the glacier grid
  itself (nearest neighbour, Earth Engine's default), as uint16 DN. Large grids are cut into tiles
  below ``max_request_bytes`` (Earth Engine refuses requests over 48 MiB). Masked pixels arrive as
  DN 0; fill is then marked as in every source (:func:`glacierwatch.imagery.standard.normalise_fill`:
  QA 0 or QA fill bit or all bands 0 -> DN 0 everywhere and ``qa_pixel`` = 1).
* **DEM** — ``computePixels`` of ``dem_collection`` (an image, band ``elevation``) on the same grid,
  resampled bilinearly (as the other sources warp their DEMs), float32 m, no data -> NaN.

Every Earth Engine call goes through :mod:`.ee_client` (the only module importing ``ee``) and is
retried on quota, rate and server errors with :func:`~.base.with_retries` (``max_retries`` attempts).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from glacierwatch.config import EarthEngineConfig
from glacierwatch.errors import ConfigError
from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery.records import GlacierRequest, SceneRecord
from glacierwatch.imagery.sources.base import SourceError, SourceUnavailableError, with_retries
from glacierwatch.imagery.sources.ee_client import (
    INSTALL_HINT,
    CollectionQuery,
    EarthEngineClient,
    EarthEngineTransport,
    PixelQuery,
    ee_available,
)
from glacierwatch.imagery.standard import normalise_fill
from glacierwatch.landsat import QA_BAND, SENSORS, sensor_from_spacecraft

log = logging.getLogger(__name__)

#: Value the DEM's masked pixels are set to on the server (NaN cannot be sent in a JSON request);
#: no real elevation is this low.
DEM_NODATA = -32768.0

#: Earth Engine refuses computePixels answers over 48 MiB; tiles stay below this (bytes).
MAX_REQUEST_BYTES = 32 * 1024 * 1024
#: Earth Engine's limit on either grid dimension of one computePixels request (pixels).
MAX_REQUEST_SIDE = 32768


def json_scalars(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The plain-JSON scalar properties (str, int, finite float, bool, None), in key order.

    Drops geometries (``system:footprint``), lists and dicts: the side-car JSON holds the USGS
    metadata keys the catalog reads, not the footprint.
    """
    out: dict[str, Any] = {}
    for key in sorted(properties):
        value = properties[key]
        if value is None or isinstance(value, (str, bool, int)):
            out[str(key)] = value
        elif isinstance(value, float) and math.isfinite(value):
            out[str(key)] = value
    return out


def _acquisition_date(props: Mapping[str, Any]) -> dt.date | None:
    """UTC acquisition date: ``DATE_ACQUIRED`` (YYYY-MM-DD), else ``system:time_start`` (ms)."""
    text = props.get("DATE_ACQUIRED")
    if isinstance(text, str) and text.strip():
        try:
            return dt.date.fromisoformat(text.strip()[:10])
        except ValueError:
            pass
    ms = props.get("system:time_start")
    if isinstance(ms, (int, float)) and not isinstance(ms, bool) and math.isfinite(ms):
        return dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC).date()
    return None


def search_windows(start: dt.date, end: dt.date, years: int) -> list[tuple[dt.date, dt.date]]:
    """``start``..``end`` (inclusive) cut into consecutive inclusive windows of at most ``years`` years."""
    if years < 1:
        raise ValueError(f"search_window_years must be at least 1, got {years}")
    out = []
    first = start
    while first <= end:
        try:
            nxt = first.replace(year=first.year + years)
        except ValueError:  # 29 February
            nxt = first.replace(year=first.year + years, day=28)
        last = min(end, nxt - dt.timedelta(days=1))
        out.append((first, last))
        first = last + dt.timedelta(days=1)
    return out


def grid_tiles(grid: GlacierGrid, bytes_per_pixel: int, max_bytes: int,
               max_side: int = MAX_REQUEST_SIDE) -> list[tuple[int, int, GlacierGrid]]:
    """(row offset, column offset, sub-grid) tiles covering ``grid``, each at most ``max_bytes``
    (``bytes_per_pixel`` x pixels) and ``max_side`` pixels a side, on the same pixel lattice."""
    if bytes_per_pixel < 1 or max_bytes < bytes_per_pixel:
        raise ValueError(f"cannot fit one pixel of {bytes_per_pixel} bytes in {max_bytes} bytes")
    width = min(grid.width, max_side, max_bytes // bytes_per_pixel)
    height = min(grid.height, max_side, max(1, max_bytes // (bytes_per_pixel * width)))
    tiles = []
    for r0 in range(0, grid.height, height):
        for c0 in range(0, grid.width, width):
            sub = GlacierGrid(crs=grid.crs, x0=grid.x0 + c0 * grid.resolution, y0=grid.y0 - r0 * grid.resolution,
                              resolution=grid.resolution, width=min(width, grid.width - c0),
                              height=min(height, grid.height - r0))
            tiles.append((r0, c0, sub))
    return tiles


class EarthEngineSource:
    """Landsat C2 L2 scenes and a DEM from Google Earth Engine (see the module docstring).

    ``client``: the transport (default: an :class:`~.ee_client.EarthEngineClient` built from
    ``config``; tests pass a recorded one). ``max_retries``: attempts per request on transient errors;
    ``base_delay_s``/``max_delay_s``: back-off between them (s); ``sleep``: the waiting function.
    ``search_window_years``: longest date window of one search call; ``max_request_bytes``: largest
    computePixels answer (bytes) before a grid is tiled; ``dem_band``: the DEM image's band name.
    Construction never needs the ``ee`` package (the default client imports it on first use).
    """

    name = "earthengine"

    def __init__(self, client: EarthEngineTransport | None = None, *, config: EarthEngineConfig | None = None,
                 max_retries: int | None = None, base_delay_s: float = 2.0, max_delay_s: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep, search_window_years: int = 5,
                 max_request_bytes: int = MAX_REQUEST_BYTES, dem_band: str = "elevation",
                 endpoint: str = "", request_timeout_s: float = 300.0) -> None:
        config = config or EarthEngineConfig()
        if config.max_concurrent_requests < 1:
            raise ConfigError(f"imagery.earthengine.max_concurrent_requests must be at least 1, "
                              f"got {config.max_concurrent_requests}")
        if client is None:
            client = EarthEngineClient(project=config.project, service_account_key=config.service_account_key,
                                       max_concurrent_requests=config.max_concurrent_requests,
                                       endpoint=endpoint, request_timeout_s=request_timeout_s)
        self.client = client
        self.max_retries = int(max_retries if max_retries is not None else config.max_retries)
        if self.max_retries < 1:
            raise ConfigError(f"imagery.earthengine.max_retries must be at least 1, got {self.max_retries}")
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep
        if search_window_years < 1:
            raise ConfigError(f"search_window_years must be at least 1, got {search_window_years}")
        self.search_window_years = search_window_years
        self.max_request_bytes = int(max_request_bytes)
        self.dem_collection = config.dem_collection
        self.dem_band = dem_band

    @classmethod
    def from_config(cls, cfg: EarthEngineConfig, **kw: Any) -> EarthEngineSource:
        """The source for the ``[imagery.earthengine]`` settings. Raises
        :class:`SourceUnavailableError` at once if earthengine-api is not installed (so a fetch fails
        before any glacier starts); credentials are checked lazily, on the first request."""
        if kw.get("client") is None and not ee_available():
            raise SourceUnavailableError(f"the Earth Engine source needs earthengine-api: {INSTALL_HINT}")
        options = {"endpoint": cfg.endpoint, "request_timeout_s": cfg.request_timeout_s, **kw}
        return cls(config=cfg, **options)

    def __repr__(self) -> str:
        return f"EarthEngineSource({self.client!r})"

    def _retry(self, func: Callable[[], Any], what: str) -> Any:
        return with_retries(func, what=what, attempts=self.max_retries, base_delay_s=self.base_delay_s,
                            max_delay_s=self.max_delay_s, sleep=self.sleep)

    # -------------------------------------------------------------- search

    def queries(self, request: GlacierRequest) -> list[CollectionQuery]:
        """The collection queries of ``request``: satellites requested and active in the window, the
        window clipped to each mission's dates and cut into ``search_window_years`` pieces."""
        out = []
        for sat in request.satellites:
            sensor = SENSORS[sat]
            first = max(request.start, sensor.first_date)
            last = min(request.end, sensor.last_date) if sensor.last_date else request.end
            if first > last:
                continue
            for start, end in search_windows(first, last, self.search_window_years):
                out.append(CollectionQuery(collection_id=sensor.ee_collection, bbox=request.bbox,
                                           start=start, end=end, max_cloud_cover=request.max_cloud_cover))
        return out

    def search(self, request: GlacierRequest) -> list[SceneRecord]:
        """One record per image over the glacier (see the module docstring)."""
        records: dict[str, SceneRecord] = {}
        duplicates = 0
        queries = self.queries(request)
        for query in queries:
            info = self._retry(partial(self.client.search, query), what=f"{request.glims_id}: {query.describe()}")
            for record in self._records(info, query, request):
                if record.scene_id in records:
                    duplicates += 1
                else:
                    records[record.scene_id] = record
        found = sorted(records.values(), key=lambda r: (r.date, r.satellite, r.scene_id))
        per_sat = Counter(r.satellite for r in found)
        log.info("%s: Earth Engine search found %d image(s) (%s) in %d request(s)%s", request.glims_id, len(found),
                 ", ".join(f"{k} {v}" for k, v in sorted(per_sat.items())) or "none", len(queries),
                 f", {duplicates} duplicate(s) dropped" if duplicates else "")
        return found

    def _records(self, info: Mapping[str, Any], query: CollectionQuery, request: GlacierRequest) -> list[SceneRecord]:
        what = f"{request.glims_id}: {query.describe()}"
        features = info.get("features")
        if not isinstance(features, list):
            raise SourceError(f"{what}: Earth Engine answer has no 'features' list (type {info.get('type')!r})")
        out = []
        for feature in features:
            if not isinstance(feature, Mapping) or not isinstance(feature.get("properties"), Mapping):
                raise SourceError(f"{what}: Earth Engine answer holds an image without properties")
            props: Mapping[str, Any] = feature["properties"]
            image_id = feature.get("id")
            if not isinstance(image_id, str) or not image_id:
                index = props.get("system:index")
                if not isinstance(index, str) or not index:
                    raise SourceError(f"{what}: Earth Engine answer holds an image without id or system:index")
                image_id = f"{query.collection_id}/{index}"
            date = _acquisition_date(props)
            if date is None:
                log.warning("%s: %s has neither DATE_ACQUIRED nor system:time_start; skipped", what, image_id)
                continue
            spacecraft = props.get("SPACECRAFT_ID")
            try:
                sensor = sensor_from_spacecraft(str(spacecraft)) if spacecraft else next(
                    s for s in SENSORS.values() if s.ee_collection == query.collection_id)
            except (ValueError, StopIteration):
                log.warning("%s: %s has unknown SPACECRAFT_ID %r; skipped", what, image_id, spacecraft)
                continue
            if sensor.satellite not in request.satellites or not request.start <= date <= request.end:
                log.debug("%s: %s (%s, %s) is outside the request; skipped", what, image_id, sensor.satellite, date)
                continue
            out.append(SceneRecord(source=self.name, scene_id=image_id, glims_id=request.glims_id, date=date,
                                   satellite=sensor.satellite, properties=json_scalars(props),
                                   handle={"image_id": image_id, "bands": dict(sensor.ee_bands)}))
        return out

    # -------------------------------------------------------------- pixels

    def _compute(self, query: PixelQuery, what: str) -> dict[str, np.ndarray]:
        """``query`` computed on its grid, tile by tile: one plain array per output band."""
        grid = query.grid
        out = {name: np.empty(grid.shape, dtype=query.value_type) for name in query.output_bands}
        tiles = grid_tiles(grid, query.bytes_per_pixel(), self.max_request_bytes)
        for r0, c0, sub in tiles:
            part = dataclasses.replace(query, grid=sub)
            data = self._retry(partial(self.client.compute_pixels, part),
                               what=f"{what} (tile {r0},{c0})" if len(tiles) > 1 else what)
            for name, array in self._fields(data, part, what).items():
                out[name][r0:r0 + sub.height, c0:c0 + sub.width] = array
        return out

    @staticmethod
    def _fields(data: np.ndarray, query: PixelQuery, what: str) -> dict[str, np.ndarray]:
        """Check and unpack a NUMPY_NDARRAY answer: one field per band, the tile's shape, values that
        fit ``query.value_type``."""
        names = data.dtype.names
        if names is None:
            raise SourceError(f"{what}: Earth Engine answer is not a structured array ({data.dtype})")
        if tuple(data.shape) != query.grid.shape:
            raise SourceError(f"{what}: Earth Engine answer has shape {tuple(data.shape)}, "
                              f"requested {query.grid.shape}")
        out = {}
        for source_band, name in query.bands:
            if name not in names:
                raise SourceError(f"{what}: band {name} ({source_band}) missing from the Earth Engine answer; "
                                  f"it has {list(names)}")
            array = np.asarray(data[name])
            if query.value_type == "uint16":
                if array.dtype.kind not in "ui":
                    raise SourceError(f"{what}: band {name} is {array.dtype}, expected uint16 DN")
                if array.size and (int(array.min()) < 0 or int(array.max()) > 65535):
                    raise SourceError(f"{what}: band {name} holds values outside 0..65535")
                out[name] = array.astype(np.uint16)
            else:
                if array.dtype.kind not in "uif":
                    raise SourceError(f"{what}: band {name} is {array.dtype}, expected numbers")
                out[name] = array.astype(np.float32)
        return out

    def read(self, record: SceneRecord, grid: GlacierGrid) -> dict[str, np.ndarray]:
        """The image's bands on ``grid``: uint16 DN per common name, fill = 0 and QA fill bit."""
        handle = record.handle
        image_id = handle.get("image_id") if isinstance(handle, Mapping) else None
        bands = handle.get("bands") if isinstance(handle, Mapping) else None
        if not isinstance(image_id, str) or not isinstance(bands, Mapping) or QA_BAND not in bands:
            raise SourceError(f"{record.scene_id}: plan handle lacks image_id or bands (with {QA_BAND}); "
                              "fetch again with --refresh")
        query = PixelQuery(image_id=image_id, bands=tuple((str(v), str(k)) for k, v in bands.items()), grid=grid,
                           value_type="uint16", fill=0.0)
        return normalise_fill(self._compute(query, image_id))

    def read_dem(self, request: GlacierRequest) -> np.ndarray | None:
        """Elevation (float32, m; NaN where the DEM has no data) on ``request.grid``; None if no DEM
        is configured."""
        if not self.dem_collection:
            return None
        # bilinear, as the other sources warp their DEMs (elevation is continuous); scenes stay nearest
        query = PixelQuery(image_id=self.dem_collection, bands=((self.dem_band, "elevation"),), grid=request.grid,
                           value_type="float32", fill=DEM_NODATA, resampling="bilinear")
        elevation = self._compute(query, f"{request.glims_id}: DEM {self.dem_collection}")["elevation"]
        elevation[(elevation <= DEM_NODATA) | ~np.isfinite(elevation)] = np.nan
        if np.isnan(elevation).all():
            log.warning("%s: DEM %s has no data on the glacier grid (NASADEM covers 56 S - 60 N)",
                        request.glims_id, self.dem_collection)
        return elevation
