"""Earth Engine imagery source, without a network.

Two fakes stand in for Google's servers, both answering from the recorded files in
``tests/data/earthengine`` (hand-made in the real formats, see ``make_recordings.py`` there):

* :class:`RecordedEarthEngine` replaces the thin client (:mod:`~glacierwatch.imagery.sources.ee_client`)
  — the source is tested against plain :class:`CollectionQuery` / :class:`PixelQuery` requests;
* :class:`FakeEarthEngineHttp` replaces only the HTTP transport under the *real* ``ee`` library:
  ``ee.Initialize``, expression building, ``ee.data.computeValue`` / ``computePixels``, OAuth token
  refreshes and Google's HTTP errors all run for real, and the tests read the REST request bodies.
  It serves the discovery document and algorithm list that earthengine-api ships for its own tests.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import pickle
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from checks import nonempty

from glacierwatch.config import EarthEngineConfig, ImageryConfig
from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery.records import GlacierRequest, SceneRecord, grid_lonlat_bounds
from glacierwatch.imagery.sources import earthengine as eesrc
from glacierwatch.imagery.sources import ee_client
from glacierwatch.imagery.sources.base import (
    ImagerySource,
    SourceAuthError,
    SourceError,
    SourceUnavailableError,
    TransientSourceError,
)
from glacierwatch.imagery.sources.earthengine import EarthEngineSource, grid_tiles, json_scalars, search_windows
from glacierwatch.imagery.sources.ee_client import (
    CollectionQuery,
    EarthEngineClient,
    PixelQuery,
    request_slots,
    translate_error,
)
from glacierwatch.landsat import QA, SENSORS

DATA = Path(__file__).resolve().parent / "data" / "earthengine"
GLIMS_ID = "G238240E46852N"  # Mount Rainier, UTM zone 10 N
GRID = GlacierGrid(crs="EPSG:32610", x0=594300.0, y0=5189550.0, resolution=30.0, width=10, height=12)
L8_27 = "LANDSAT/LC08/C02/T1_L2/LC08_046027_20200818"
L8_28 = "LANDSAT/LC08/C02/T1_L2/LC08_046028_20200818"
L8_CLOUDY = "LANDSAT/LC08/C02/T1_L2/LC08_046027_20200903"
L5 = "LANDSAT/LT05/C02/T1_L2/LT05_046027_20090806"
DEM_ID = "NASA/NASADEM_HGT/001"
ACCESS_TOKEN = "ya29.a0-fake-access-token-for-tests"


def make_request(start: dt.date, end: dt.date, *, cloud: float | None = None,
                 satellites: tuple[str, ...] = ("L5", "L7", "L8", "L9")) -> GlacierRequest:
    return GlacierRequest(glims_id=GLIMS_ID, grid=GRID, bbox=grid_lonlat_bounds(GRID), start=start, end=end,
                          max_cloud_cover=cloud, satellites=satellites)


def recorded_collection(collection_id: str) -> dict[str, Any]:
    code = collection_id.split("/")[1]  # LC08, LT05, LE07, LC09
    path = DATA / f"collection_{code}.json"
    if not path.exists():
        return {"type": "ImageCollection", "bands": [], "id": collection_id, "features": []}
    return json.loads(path.read_text(encoding="utf-8"))


def emulate_search(collection_id: str, start: str, end_exclusive: str, max_cloud: float | None) -> dict[str, Any]:
    """What the server answers: the recorded images acquired in [start, end) below the cloud limit."""
    info = recorded_collection(collection_id)
    keep = []
    for feature in info["features"]:
        props = feature["properties"]
        if not start <= props["DATE_ACQUIRED"] < end_exclusive:
            continue
        if max_cloud is not None and not props["CLOUD_COVER"] < max_cloud:
            continue
        keep.append(feature)
    return {**info, "features": keep}


def recorded_pixels(image_id: str) -> np.ndarray:
    if image_id == DEM_ID:
        return np.load(DATA / "dem_NASADEM.npy")
    return np.load(DATA / f"pixels_{image_id.rsplit('/', 1)[-1]}.npy")


def tile_of(full: np.ndarray, grid: dict[str, Any]) -> np.ndarray:
    """The part of a recorded full-grid answer that a computePixels ``grid`` asks for."""
    aff = grid["affineTransform"]
    assert grid["crsCode"] == GRID.crs and aff["scaleX"] == GRID.resolution and aff["scaleY"] == -GRID.resolution
    r0 = round((GRID.y0 - aff["translateY"]) / GRID.resolution)
    c0 = round((aff["translateX"] - GRID.x0) / GRID.resolution)
    h, w = grid["dimensions"]["height"], grid["dimensions"]["width"]
    return full[r0:r0 + h, c0:c0 + w]


class RecordedEarthEngine:
    """A fake :class:`~ee_client.EarthEngineTransport` answering from the recordings; ``errors`` maps a
    collection or image id to errors raised (in order) before it answers."""

    def __init__(self, errors: dict[str, list[Exception]] | None = None) -> None:
        self.searches: list[CollectionQuery] = []
        self.pixel_queries: list[PixelQuery] = []
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.lock = threading.Lock()

    def _maybe_fail(self, key: str) -> None:
        with self.lock:
            queue = self.errors.get(key)
            if queue:
                raise queue.pop(0)

    def search(self, query: CollectionQuery) -> dict[str, Any]:
        with self.lock:
            self.searches.append(query)
        self._maybe_fail(query.collection_id)
        start, end_exclusive = query.date_range()
        return emulate_search(query.collection_id, start, end_exclusive, query.max_cloud_cover)

    def compute_pixels(self, query: PixelQuery) -> np.ndarray:
        with self.lock:
            self.pixel_queries.append(query)
        self._maybe_fail(query.image_id)
        return tile_of(recorded_pixels(query.image_id), query.grid_request()).copy()


def no_sleep(_: float) -> None:
    return None


def make_source(client: Any, **kw: Any) -> EarthEngineSource:
    return EarthEngineSource(client=client, sleep=kw.pop("sleep", no_sleep), **kw)


# ------------------------------------------------------------------ search: requests and records

def test_queries_cover_each_active_mission_exactly() -> None:
    source = make_source(RecordedEarthEngine())
    queries = source.queries(make_request(dt.date(1984, 3, 1), dt.date(2024, 6, 30), cloud=10.0))
    by_collection: dict[str, list[CollectionQuery]] = {}
    for q in queries:
        by_collection.setdefault(q.collection_id, []).append(q)
        assert q.max_cloud_cover == 10.0 and q.bbox == grid_lonlat_bounds(GRID)
        assert (q.end - q.start).days < 5 * 366  # search_window_years = 5
    assert sorted(by_collection) == sorted(SENSORS[s].ee_collection for s in ("L5", "L7", "L8", "L9"))
    for sensor in SENSORS.values():
        windows = by_collection[sensor.ee_collection]
        assert windows[0].start == sensor.first_date
        assert windows[-1].end == (sensor.last_date or dt.date(2024, 6, 30))
        for a, b in zip(windows, windows[1:], strict=False):  # contiguous: no day searched twice or skipped
            assert b.start == a.end + dt.timedelta(days=1)

    training = source.queries(make_request(dt.date(2020, 6, 29), dt.date(2020, 9, 6)))
    assert [(q.collection_id, q.start, q.end, q.max_cloud_cover) for q in training] == [
        ("LANDSAT/LE07/C02/T1_L2", dt.date(2020, 6, 29), dt.date(2020, 9, 6), None),
        ("LANDSAT/LC08/C02/T1_L2", dt.date(2020, 6, 29), dt.date(2020, 9, 6), None)]
    assert training[0].date_range() == ("2020-06-29", "2020-09-07")  # filterDate's end is exclusive
    only_l8 = source.queries(make_request(dt.date(2020, 6, 29), dt.date(2020, 9, 6), satellites=("L8",)))
    assert [q.collection_id for q in only_l8] == ["LANDSAT/LC08/C02/T1_L2"]


def test_search_windows_split_without_gaps() -> None:
    windows = search_windows(dt.date(2000, 2, 29), dt.date(2011, 3, 1), 5)
    assert windows == [(dt.date(2000, 2, 29), dt.date(2005, 2, 27)), (dt.date(2005, 2, 28), dt.date(2010, 2, 27)),
                       (dt.date(2010, 2, 28), dt.date(2011, 3, 1))]
    assert search_windows(dt.date(2020, 1, 1), dt.date(2020, 1, 1), 5) == [(dt.date(2020, 1, 1), dt.date(2020, 1, 1))]
    with pytest.raises(ValueError):
        search_windows(dt.date(2020, 1, 1), dt.date(2020, 1, 2), 0)


def test_search_records_dedup_properties_and_band_handles() -> None:
    fake = RecordedEarthEngine()
    source = make_source(fake)
    assert isinstance(source, ImagerySource)
    records = source.search(make_request(dt.date(2009, 1, 1), dt.date(2020, 12, 31)))
    assert [r.scene_id for r in records] == [L5, L8_27, L8_28, L8_CLOUDY]  # the duplicated L8 image once
    assert [r.satellite for r in records] == ["L5", "L8", "L8", "L8"]
    assert [r.date for r in records] == [dt.date(2009, 8, 6), dt.date(2020, 8, 18), dt.date(2020, 8, 18),
                                         dt.date(2020, 9, 3)]
    assert {q.collection_id for q in fake.searches} == {"LANDSAT/LT05/C02/T1_L2", "LANDSAT/LE07/C02/T1_L2",
                                                       "LANDSAT/LC08/C02/T1_L2"}  # L9 began in 2021
    l5, l8 = records[0], records[1]
    assert all(r.source == "earthengine" and r.glims_id == GLIMS_ID for r in records)
    # properties: the image's metadata as plain JSON scalars, the footprint geometry dropped
    assert l8.properties["CLOUD_COVER"] == 4.21 and l8.properties["IMAGE_QUALITY_OLI"] == 9
    assert l8.properties["SPACECRAFT_ID"] == "LANDSAT_8" and l8.properties["WRS_ROW"] == 27
    assert l8.properties["system:index"] == "LC08_046027_20200818"
    assert "system:footprint" not in l8.properties
    assert l5.properties["IMAGE_QUALITY"] == 9 and l5.properties["SENSOR_ID"] == "TM"
    json.dumps([dict(r.properties) for r in records])
    json.dumps([dict(r.handle) for r in records])
    # bands by name per sensor: SR_B1 is blue on TM but coastal on OLI; ST_B6 vs ST_B10
    assert l5.handle == {"image_id": L5, "bands": dict(SENSORS["L5"].ee_bands)}
    assert l5.handle["bands"]["blue"] == "SR_B1" and l5.handle["bands"]["lwir"] == "ST_B6"
    assert "coastal" not in l5.handle["bands"]
    assert l8.handle["bands"]["blue"] == "SR_B2" and l8.handle["bands"]["coastal"] == "SR_B1"
    assert l8.handle["bands"]["lwir"] == "ST_B10" and l8.handle["bands"]["qa_pixel"] == "QA_PIXEL"


def test_search_pushes_cloud_limit_down() -> None:
    fake = RecordedEarthEngine()
    records = make_source(fake).search(make_request(dt.date(2020, 8, 1), dt.date(2020, 9, 30), cloud=10.0))
    assert {q.max_cloud_cover for q in fake.searches} == {10.0}
    assert [r.scene_id for r in records] == [L8_27, L8_28]  # the 35 % scene was not answered


def test_search_reads_minimal_answers_and_rejects_malformed_ones() -> None:
    props = {"system:index": "LC08_046027_20200818", "system:time_start": 1597776292612, "CLOUD_COVER": 4.2,
             "system:footprint": {"type": "LinearRing", "coordinates": [[0, 0], [1, 0], [1, 1], [0, 0]]},
             "BAD": float("nan"), "LIST": [1, 2]}

    class Minimal(RecordedEarthEngine):
        def __init__(self, answer: Any) -> None:
            super().__init__()
            self.answer = answer

        def search(self, query: CollectionQuery) -> Any:
            return self.answer if query.collection_id.endswith("LC08/C02/T1_L2") else {"features": []}

    request = make_request(dt.date(2020, 8, 1), dt.date(2020, 8, 31), satellites=("L8",))
    records = make_source(Minimal({"type": "ImageCollection", "features": [{"type": "Image", "properties": props}]})
                          ).search(request)
    assert [(r.scene_id, r.date, r.satellite) for r in records] == [(L8_27, dt.date(2020, 8, 18), "L8")]
    assert set(records[0].properties) == {"system:index", "system:time_start", "CLOUD_COVER"}
    with pytest.raises(SourceError, match="features"):
        make_source(Minimal({"type": "Image", "properties": {}})).search(request)
    with pytest.raises(SourceError, match="without id"):
        make_source(Minimal({"features": [{"type": "Image", "properties": {"CLOUD_COVER": 1.0}}]})).search(request)


def test_json_scalars_keeps_only_plain_values() -> None:
    assert json_scalars({"b": 1, "a": "x", "c": 2.5, "d": None, "e": True, "f": float("inf"), "g": {"x": 1},
                         "h": [1]}) == {"a": "x", "b": 1, "c": 2.5, "d": None, "e": True}


# ------------------------------------------------------------------ pixels

def _record(image_id: str, sat: str, date: dt.date) -> SceneRecord:
    return SceneRecord(source="earthengine", scene_id=image_id, glims_id=GLIMS_ID, date=date, satellite=sat,
                       properties={}, handle={"image_id": image_id, "bands": dict(SENSORS[sat].ee_bands)})


def test_read_l8_selects_by_name_and_marks_fill() -> None:
    fake = RecordedEarthEngine()
    bands = make_source(fake).read(_record(L8_27, "L8", dt.date(2020, 8, 18)), GRID)
    (query,) = fake.pixel_queries
    assert query.image_id == L8_27 and query.value_type == "uint16" and query.fill == 0
    assert dict(query.bands) == {"SR_B1": "coastal", "SR_B2": "blue", "SR_B3": "green", "SR_B4": "red",
                                 "SR_B5": "nir08", "SR_B6": "swir16", "SR_B7": "swir22", "ST_B10": "lwir",
                                 "QA_PIXEL": "qa_pixel"}
    assert query.grid_request() == {
        "dimensions": {"width": 10, "height": 12},
        "affineTransform": {"scaleX": 30.0, "shearX": 0.0, "translateX": 594300.0, "shearY": 0.0, "scaleY": -30.0,
                            "translateY": 5189550.0},
        "crsCode": "EPSG:32610"}
    raw = recorded_pixels(L8_27)
    masked = raw["qa_pixel"] == 0
    assert masked.any() and (~masked).any()
    assert set(bands) == set(SENSORS["L8"].file_bands)
    for name, array in bands.items():
        assert array.dtype == np.uint16 and array.shape == GRID.shape
        assert (array[masked] == (int(QA.FILL) if name == "qa_pixel" else 0)).all()
        np.testing.assert_array_equal(array[~masked], raw[name][~masked])


def test_read_l5_uses_tm_bands_and_keeps_a_thermal_only_gap() -> None:
    fake = RecordedEarthEngine()
    bands = make_source(fake).read(_record(L5, "L5", dt.date(2009, 8, 6)), GRID)
    assert dict(fake.pixel_queries[0].bands)["SR_B1"] == "blue"
    assert dict(fake.pixel_queries[0].bands)["ST_B6"] == "lwir"
    assert "coastal" not in bands
    raw = recorded_pixels(L5)
    assert (bands["qa_pixel"][:, :2] == int(QA.FILL)).all() and (bands["red"][:, :2] == 0).all()
    # only the surface temperature is masked at (5, 7): the reflective bands and QA stay valid
    assert bands["lwir"][5, 7] == 0 and bands["qa_pixel"][5, 7] == raw["qa_pixel"][5, 7] != int(QA.FILL)
    assert bands["red"][5, 7] == raw["red"][5, 7] > 0


def test_read_tiles_large_grids_on_the_same_lattice() -> None:
    whole = make_source(RecordedEarthEngine()).read(_record(L8_27, "L8", dt.date(2020, 8, 18)), GRID)
    fake = RecordedEarthEngine()
    tiled = make_source(fake, max_request_bytes=9 * 2 * 10 * 5).read(_record(L8_27, "L8", dt.date(2020, 8, 18)), GRID)
    assert len(fake.pixel_queries) == 3  # 12 rows in tiles of 5 rows x 10 columns
    assert [q.grid.y0 for q in fake.pixel_queries] == [GRID.y0, GRID.y0 - 150.0, GRID.y0 - 300.0]
    assert all(q.grid.height * q.grid.width * q.bytes_per_pixel() <= 900 for q in fake.pixel_queries)
    for name in whole:
        np.testing.assert_array_equal(tiled[name], whole[name])


def test_grid_tiles_cover_the_grid_exactly() -> None:
    grid = GlacierGrid(crs="EPSG:32632", x0=300000.0, y0=5100000.0, resolution=30.0, width=2500, height=1700)
    tiles = grid_tiles(grid, 18, 32 * 2**20, max_side=1000)
    cover = np.zeros(grid.shape, dtype=np.int32)
    for r0, c0, sub in nonempty(tiles):
        assert sub.width * sub.height * 18 <= 32 * 2**20 and max(sub.width, sub.height) <= 1000
        assert sub.x0 == grid.x0 + c0 * 30.0 and sub.y0 == grid.y0 - r0 * 30.0
        cover[r0:r0 + sub.height, c0:c0 + sub.width] += 1
    assert (cover == 1).all()
    with pytest.raises(ValueError):
        grid_tiles(grid, 18, 10)


def test_read_errors_name_the_scene_and_band() -> None:
    with pytest.raises(SourceError, match=r"LC08_046027_20200903.*band swir22 \(SR_B7\) missing"):
        make_source(RecordedEarthEngine()).read(_record(L8_CLOUDY, "L8", dt.date(2020, 9, 3)), GRID)

    class Answer(RecordedEarthEngine):
        def __init__(self, array: np.ndarray) -> None:
            super().__init__()
            self.array = array

        def compute_pixels(self, query: PixelQuery) -> np.ndarray:
            return self.array

    floats = np.zeros(GRID.shape, dtype=[(n, "<f8") for n in SENSORS["L5"].ee_bands])
    with pytest.raises(SourceError, match="band blue is float64, expected uint16"):
        make_source(Answer(floats)).read(_record(L5, "L5", dt.date(2009, 8, 6)), GRID)
    small = np.zeros((3, 4), dtype=[(n, "<u2") for n in SENSORS["L5"].ee_bands])
    with pytest.raises(SourceError, match=r"shape \(3, 4\), requested \(12, 10\)"):
        make_source(Answer(small)).read(_record(L5, "L5", dt.date(2009, 8, 6)), GRID)
    with pytest.raises(SourceError, match="not a structured array"):
        make_source(Answer(np.zeros(GRID.shape, np.uint16))).read(_record(L5, "L5", dt.date(2009, 8, 6)), GRID)
    broken = SceneRecord(source="earthengine", scene_id=L5, glims_id=GLIMS_ID, date=dt.date(2009, 8, 6),
                         satellite="L5", handle={"image_id": L5})
    with pytest.raises(SourceError, match="plan handle"):
        make_source(RecordedEarthEngine()).read(broken, GRID)


def test_read_dem_float_with_nan_for_no_data() -> None:
    fake = RecordedEarthEngine()
    dem = make_source(fake).read_dem(make_request(dt.date(2020, 1, 1), dt.date(2020, 12, 31)))
    assert dem is not None and dem.dtype == np.float32 and dem.shape == GRID.shape
    (query,) = fake.pixel_queries
    assert query.image_id == DEM_ID and query.bands == (("elevation", "elevation"),)
    assert query.value_type == "float32" and query.fill == eesrc.DEM_NODATA and query.resampling == "bilinear"
    assert np.isnan(dem[:2, -2:]).all() and np.isfinite(dem[2:]).all()
    assert dem[5, 3] == pytest.approx(2600.0 - 90.0 - 62.5)
    no_dem = make_source(RecordedEarthEngine(), config=EarthEngineConfig(dem_collection=""))
    assert no_dem.read_dem(make_request(dt.date(2020, 1, 1), dt.date(2020, 12, 31))) is None


# ------------------------------------------------------------------ retries and error classes

def test_transient_errors_are_retried_then_given_up() -> None:
    slept: list[float] = []
    fake = RecordedEarthEngine(errors={L8_27: [TransientSourceError("429"), TransientSourceError("503")]})
    source = make_source(fake, sleep=slept.append, max_retries=3, base_delay_s=1.0)
    bands = source.read(_record(L8_27, "L8", dt.date(2020, 8, 18)), GRID)
    assert bands["blue"].shape == GRID.shape
    assert len(fake.pixel_queries) == 3 and len(slept) == 2 and 1.0 <= slept[0] <= 1.5 and 2.0 <= slept[1] <= 3.0

    fake = RecordedEarthEngine(errors={"LANDSAT/LC08/C02/T1_L2": [TransientSourceError("quota")] * 5})
    with pytest.raises(TransientSourceError, match="quota"):
        make_source(fake, max_retries=3).search(make_request(dt.date(2020, 8, 1), dt.date(2020, 8, 31),
                                                             satellites=("L8",)))
    assert len(fake.searches) == 3

    for error in (SourceError("bad"), SourceAuthError("who")):
        fake = RecordedEarthEngine(errors={L8_27: [error]})
        with pytest.raises(type(error)):
            make_source(fake).read(_record(L8_27, "L8", dt.date(2020, 8, 18)), GRID)
        assert len(fake.pixel_queries) == 1


class _RefreshError(Exception):
    pass


_RefreshError.__name__ = "RefreshError"  # google.auth.exceptions.RefreshError, matched by class name


@pytest.mark.parametrize(("error", "kind"), [
    (Exception("Too many concurrent aggregations."), TransientSourceError),
    (Exception("Quota exceeded for quota metric 'Requests'"), TransientSourceError),
    (Exception("Earth Engine capacity exceeded."), TransientSourceError),
    (Exception("An internal error has occurred (request ID: 1)."), TransientSourceError),
    (Exception("Computation timed out."), TransientSourceError),
    (TimeoutError("read timed out"), TransientSourceError),
    (ConnectionError("reset by peer"), TransientSourceError),
    (Exception("Please authorize access to your Earth Engine account by running earthengine authenticate"),
     SourceAuthError),
    (Exception("ee.Initialize: no project found. Call with project= or see http://goo.gle/ee-auth."),
     SourceAuthError),
    (Exception("Not signed up for Earth Engine or project is not registered."), SourceAuthError),
    (_RefreshError("invalid_grant: Token has been expired or revoked."), SourceAuthError),
    (Exception("User memory limit exceeded."), SourceError),
    (Exception("Image.load: Image asset 'X' not found (does not exist or caller does not have access)."),
     SourceError),
])
def test_translate_error_by_message_and_class(error: Exception, kind: type) -> None:
    out = translate_error(error, "LC08_046027_20200818")
    assert type(out) is kind
    assert out.args[0].startswith("LC08_046027_20200818: Earth Engine") and "\n" not in str(out)
    if kind is SourceAuthError:
        assert "earthengine authenticate" in str(out)


def test_translate_error_prefers_the_http_status() -> None:
    class Resp:
        def __init__(self, status: int) -> None:
            self.status = status

    def chained(status: int, message: str) -> Exception:
        http = Exception("http")
        http.resp = Resp(status)  # type: ignore[attr-defined]
        try:
            try:
                raise http
            except Exception:
                raise Exception(message)  # noqa: B904 - like ee.data: the HttpError is only the context
        except Exception as exc:
            return exc

    assert type(translate_error(chained(503, "Ok"), "x")) is TransientSourceError
    assert type(translate_error(chained(429, "whatever"), "x")) is TransientSourceError
    assert type(translate_error(chained(401, "Request had invalid credentials"), "x")) is SourceAuthError
    assert type(translate_error(chained(403, "Quota exceeded"), "x")) is TransientSourceError
    assert type(translate_error(chained(400, "Image.select: Pattern 'SR_B9' did not match any bands."), "x")
                ) is SourceError
    assert "HTTP 400" in str(translate_error(chained(400, "bad"), "x"))


# ------------------------------------------------------------------ without the ee package

def test_without_ee_the_source_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ee", None)  # import ee now raises ImportError
    assert not ee_client.ee_available()
    source = EarthEngineSource(config=EarthEngineConfig(), sleep=no_sleep)  # constructible
    with pytest.raises(SourceUnavailableError, match=r"pip install -e '\.\[earthengine\]'"):
        source.search(make_request(dt.date(2020, 8, 1), dt.date(2020, 8, 31)))
    with pytest.raises(SourceUnavailableError, match=r"pip install -e '\.\[earthengine\]'"):
        source.read(_record(L8_27, "L8", dt.date(2020, 8, 18)), GRID)
    with pytest.raises(SourceUnavailableError, match=r"pip install -e '\.\[earthengine\]'"):
        EarthEngineSource.from_config(EarthEngineConfig())
    from glacierwatch.imagery.sources import make_source as make_configured

    with pytest.raises(SourceUnavailableError):
        make_configured("earthengine", ImageryConfig(source="earthengine"))
    assert EarthEngineSource.from_config(EarthEngineConfig(), client=RecordedEarthEngine()).name == "earthengine"


def test_source_pickles_without_credentials(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"client_email": "x@y.iam.gserviceaccount.com", "private_key": "SECRET-KEY-TEXT"}))
    cfg = EarthEngineConfig(project="glacierwatch-test", service_account_key=str(key), max_concurrent_requests=3,
                            max_retries=4)
    source = EarthEngineSource(config=cfg)
    blob = pickle.dumps(source)
    assert b"SECRET-KEY-TEXT" not in blob
    copy = pickle.loads(blob)
    assert isinstance(copy.client, EarthEngineClient)
    assert (copy.client.project, copy.client.service_account_key, copy.client.max_concurrent_requests) == (
        "glacierwatch-test", str(key), 3)
    assert copy.max_retries == 4 and copy.dem_collection == DEM_ID


def test_bad_settings_are_config_errors() -> None:
    from glacierwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="max_concurrent_requests"):
        EarthEngineSource(config=EarthEngineConfig(max_concurrent_requests=0))
    with pytest.raises(ConfigError, match="max_retries"):
        EarthEngineSource(RecordedEarthEngine(), config=EarthEngineConfig(max_retries=0))
    with pytest.raises(ConfigError, match="search_window_years"):
        EarthEngineSource(RecordedEarthEngine(), search_window_years=0)


def test_request_slots_are_process_wide() -> None:
    assert request_slots(7) is request_slots(7)
    assert request_slots(7) is not request_slots(6)
    with pytest.raises(ValueError):
        request_slots(0)


# ------------------------------------------------------------------ end to end with the recorded client

def write_inventory(path: Path) -> Path:
    pd.DataFrame({"glims_id": [GLIMS_ID], "grid": [GRID.to_json()],
                  "outline_date": [pd.Timestamp("2020-08-01")]}).to_parquet(path, index=False)
    return path


def test_fetch_end_to_end_writes_scenes_the_catalog_reads(tmp_path: Path) -> None:
    from glacierwatch.catalog import build_catalog
    from glacierwatch.imagery.fetch import fetch_imagery
    from glacierwatch.io import read_raster, read_scene

    fake = RecordedEarthEngine()
    inventory = write_inventory(tmp_path / "inventory.parquet")
    out = tmp_path / "work"
    config = ImageryConfig(source="earthengine", timeseries_max_cloud_cover=10.0, workers=2)
    report = fetch_imagery(inventory, out, source="earthengine", mode="timeseries", start=dt.date(2009, 1, 1),
                           end=dt.date(2020, 12, 31), config=config, progress=False,
                           source_factory=lambda: make_source(fake))
    assert report.done == [GLIMS_ID] and not report.failed
    assert report.results[GLIMS_ID].written == 2
    assert {q.max_cloud_cover for q in fake.searches} == {10.0}

    scenes = sorted((out / "scenes" / GLIMS_ID).glob("*.tif"))
    assert [p.name for p in scenes] == [f"{GLIMS_ID}_2009-08-06_L5_C02_T1_L2_SR.tif",
                                        f"{GLIMS_ID}_2020-08-18_L8_C02_T1_L2_SR.tif"]
    l8 = read_scene(scenes[1], bands=SENSORS["L8"].file_bands)
    assert l8.grid == GRID and all(b.dtype == np.uint16 for b in l8.bands.values())
    row27, row28 = recorded_pixels(L8_27), recorded_pixels(L8_28)
    from_27 = row27["qa_pixel"] != 0
    from_28 = ~from_27 & (row28["qa_pixel"] != 0)
    nowhere = ~from_27 & ~from_28
    assert from_28.any() and nowhere.any()
    np.testing.assert_array_equal(l8.bands["swir16"][from_27], row27["swir16"][from_27])  # lowest cloud first
    np.testing.assert_array_equal(l8.bands["swir16"][from_28], row28["swir16"][from_28])
    assert (l8.bands["qa_pixel"][nowhere] == int(QA.FILL)).all() and (l8.bands["blue"][nowhere] == 0).all()
    l5 = read_scene(scenes[0])
    assert l5.bands["blue"][3, 5] == recorded_pixels(L5)["blue"][3, 5]

    sidecar = json.loads(scenes[1].with_suffix(".json").read_text())
    assert [p["LANDSAT_PRODUCT_ID"][10:16] for p in sidecar] == ["046027", "046028"]
    assert all("system:footprint" not in p for p in sidecar)

    elevation, dem_grid, _ = read_raster(out / "dem" / f"{GLIMS_ID}.tif")
    assert dem_grid == GRID and np.isnan(elevation[:2, -2:]).all() and np.isfinite(elevation[2:]).all()

    catalog = build_catalog(out / "scenes", tmp_path / "catalog.parquet", progress=False)
    catalog = catalog.sort_values("date").reset_index(drop=True)
    assert list(catalog["status"]) == ["ok", "ok"]
    assert list(catalog["satellite"]) == ["L5", "L8"] and list(catalog["spacecraft_id"]) == ["LANDSAT_5",
                                                                                               "LANDSAT_8"]
    # the catalog keeps the larger cloud cover of the two rows' records (its conservative rule)
    assert list(catalog["cloud_cover"]) == [2.0, 7.55] and list(catalog["image_quality"]) == [9, 9]
    assert list(catalog["metadata_records"]) == [1, 2]

    searches = len(fake.searches)
    again = fetch_imagery(inventory, out, source="earthengine", mode="timeseries", start=dt.date(2009, 1, 1),
                          end=dt.date(2020, 12, 31), config=config, progress=False,
                          source_factory=lambda: make_source(fake))
    assert again.skipped == [GLIMS_ID] and len(fake.searches) == searches


def test_fetch_ledgers_a_scene_with_a_missing_band(tmp_path: Path) -> None:
    from glacierwatch.imagery.fetch import fetch_imagery

    inventory = write_inventory(tmp_path / "inventory.parquet")
    out = tmp_path / "work"
    report = fetch_imagery(inventory, out, source="earthengine", mode="training", start=dt.date(2020, 8, 1),
                           end=dt.date(2020, 9, 30), config=ImageryConfig(source="earthengine"), progress=False,
                           source_factory=lambda: make_source(RecordedEarthEngine()))
    assert GLIMS_ID in report.failed
    ledger = [json.loads(line) for line in (out / "imagery" / "failures.jsonl").read_text().splitlines()]
    scene_rows = [r for r in ledger if r.get("scene")]
    assert len(scene_rows) == 1 and scene_rows[0]["scene"] == f"{GLIMS_ID}_2020-09-03_L8_C02_T1_L2_SR.tif"
    assert scene_rows[0]["error_class"] == "SourceError" and "swir22" in scene_rows[0]["message"]
    assert (out / "scenes" / GLIMS_ID / f"{GLIMS_ID}_2020-08-18_L8_C02_T1_L2_SR.tif").exists()


# ------------------------------------------------------------------ the real ee library over a fake HTTP transport

def _ee_test_documents() -> tuple[bytes, bytes]:
    ee = pytest.importorskip("ee", reason="earthengine-api is not installed")
    folder = Path(ee.__file__).parent / "tests"
    discovery, algorithms = folder / "cloud_api_discovery_document.json", folder / "algorithms.json"
    if not (discovery.exists() and algorithms.exists()):
        pytest.skip(f"earthengine-api {ee.__version__} does not ship its test API documents in {folder}")
    return discovery.read_bytes(), algorithms.read_bytes()


def resolve(expression: dict[str, Any]) -> Any:
    """A serialised Earth Engine expression with its shared values (``valueReference``) and mapped
    function bodies put in place."""
    values = expression.get("values", {})

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"valueReference"}:
                return fill(values[node["valueReference"]])
            if "functionDefinitionValue" in node:  # a mapped function: its body is a value id
                definition = node["functionDefinitionValue"]
                return {"functionDefinitionValue": {**definition, "body": fill(values[definition["body"]])}}
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        return node

    return fill(values[expression["result"]]) if "result" in expression else fill(expression)


def invocations(expression: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``functionInvocationValue`` in a serialised Earth Engine expression."""
    found: list[dict[str, Any]] = []
    expression = resolve(expression)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "functionInvocationValue" in node:
                found.append(node["functionInvocationValue"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(expression)
    return found


def calls_named(expression: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [f["arguments"] for f in invocations(expression) if f["functionName"] == name]


def constant(argument: dict[str, Any]) -> Any:
    return argument["constantValue"]


class FakeEarthEngineHttp:
    """An httplib2-style transport answering like earthengine.googleapis.com and oauth2.googleapis.com
    from recorded files. ``script`` maps a request kind (``compute``, ``pixels``, ``token``) to answers
    (HTTP status, recorded file name) returned, in order, before the normal answers."""

    def __init__(self, discovery: bytes, algorithms: bytes, *, delay_s: float = 0.0) -> None:
        self.discovery, self.algorithms, self.delay_s = discovery, algorithms, delay_s
        self.script: dict[str, list[tuple[int, str]]] = {}
        self.bodies: dict[str, list[dict[str, Any]]] = {"compute": [], "pixels": [], "token": []}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0

    @staticmethod
    def _response(status: int, content: bytes, content_type: str) -> tuple[Any, bytes]:
        import httplib2

        return httplib2.Response({"status": status, "content-type": content_type}), content

    def _scripted(self, kind: str) -> tuple[Any, bytes] | None:
        with self.lock:
            queue = self.script.get(kind)
            if not queue:
                return None
            status, name = queue.pop(0)
        content = (DATA / "errors" / name).read_bytes()
        return self._response(status, content, "text/html" if name.endswith(".html") else "application/json")

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None,
                redirections: int = 5, connection_type: Any = None, **kwargs: Any) -> tuple[Any, bytes]:
        if "$discovery" in uri:
            return self._response(200, self.discovery, "application/json")
        if "/algorithms" in uri:
            return self._response(200, self.algorithms, "application/json")
        text = body.decode() if isinstance(body, bytes) else (body or "")
        if "oauth2.googleapis.com/token" in uri:
            with self.lock:
                self.bodies["token"].append({"body": text})
            return self._scripted("token") or self._response(
                200, json.dumps({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}).encode(),
                "application/json")
        kind = "pixels" if "image:computePixels" in uri else "compute" if "value:compute" in uri else None
        if kind is None:
            return self._response(404, b'{"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}',
                                  "application/json")
        request = json.loads(text)
        with self.lock:
            self.bodies[kind].append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)  # keeps requests overlapping for the concurrency bound test
            scripted = self._scripted(kind)
            if scripted is not None:
                return scripted
            return self._pixels(request) if kind == "pixels" else self._compute(request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _compute(self, request: dict[str, Any]) -> tuple[Any, bytes]:
        expression = request["expression"]
        (load,) = calls_named(expression, "ImageCollection.load")
        (dates,) = calls_named(expression, "DateRange")
        clouds = calls_named(expression, "Filter.lessThan")
        limit = constant(clouds[0]["rightValue"]) if clouds else None
        info = emulate_search(constant(load["id"]), constant(dates["start"]), constant(dates["end"]), limit)
        return self._response(200, json.dumps({"result": info}).encode(), "application/json")

    def _pixels(self, request: dict[str, Any]) -> tuple[Any, bytes]:
        expression = request["expression"]
        (load,) = calls_named(expression, "Image.load")
        (select,) = calls_named(expression, "Image.select")
        full = recorded_pixels(constant(load["id"]))
        names = [n for n in constant(select["newNames"]) if n in full.dtype.names]
        buffer = io.BytesIO()
        np.save(buffer, tile_of(full, request["grid"])[names].copy())
        return self._response(200, buffer.getvalue(), "application/octet-stream")


@pytest.fixture
def ee_http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeEarthEngineHttp]:
    """A fresh fake Earth Engine behind the real ``ee`` library (no network: Initialize's download of the
    deprecated-assets list is replaced, and credentials come only from tmp_path)."""
    discovery, algorithms = _ee_test_documents()
    import ee
    import google.auth.exceptions
    import google_auth_httplib2

    http = FakeEarthEngineHttp(discovery, algorithms)

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(f"network disabled in tests: {args[:2]}")

    def is_valid_credentials(credentials: Any) -> bool:
        # ee.oauth's check refreshes the token over its own requests transport; here over the fake
        if credentials is None:
            return False
        try:
            credentials.refresh(google_auth_httplib2.Request(http))
        except google.auth.exceptions.RefreshError:
            return False
        return True

    monkeypatch.setattr(socket, "getaddrinfo", no_network)  # anything not sent through the fake fails
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", lambda: {})
    monkeypatch.setattr(ee.oauth, "is_valid_credentials", is_valid_credentials)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-adc.json"))  # no ADC, no metadata server
    monkeypatch.setattr(ee_client, "_INIT_KEY", None)
    ee.Reset()
    yield http
    ee.Reset()


def service_account_key(folder: Path) -> tuple[Path, str]:
    """A service-account JSON key file with a freshly generated RSA key; returns (file, the PEM text)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = folder / "glacierwatch-sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "glacierwatch-test", "private_key_id": "0123456789abcdef",
        "private_key": pem, "client_email": "fetcher@glacierwatch-test.iam.gserviceaccount.com",
        "client_id": "112233445566778899", "token_uri": "https://oauth2.googleapis.com/token"}))
    return path, pem


def user_credentials(home: Path, project: str | None = "glacierwatch-test") -> None:
    """What 'earthengine authenticate' stores: ~/.config/earthengine/credentials with a refresh token."""
    folder = home / ".config" / "earthengine"
    folder.mkdir(parents=True)
    data: dict[str, Any] = {"refresh_token": "1//fake-refresh-token", "scopes": [
        "https://www.googleapis.com/auth/earthengine", "https://www.googleapis.com/auth/cloud-platform"]}
    if project:
        data["project"] = project
    (folder / "credentials").write_text(json.dumps(data))


def real_source(http: FakeEarthEngineHttp, **client_kw: Any) -> EarthEngineSource:
    client_kw.setdefault("project", "glacierwatch-test")
    return make_source(EarthEngineClient(http_transport=http, **client_kw), max_retries=3)


def test_real_ee_collection_request(ee_http: FakeEarthEngineHttp, tmp_path: Path) -> None:
    user_credentials(tmp_path / "home")
    source = real_source(ee_http)
    records = source.search(make_request(dt.date(2020, 6, 12), dt.date(2020, 9, 3), cloud=10.0))
    assert [r.scene_id for r in records] == [L8_27, L8_28]
    assert records[0].properties["CLOUD_COVER"] == 4.21 and "system:footprint" not in records[0].properties
    assert len(ee_http.bodies["token"]) == 1  # the user's refresh token was exchanged once
    by_collection = {constant(calls_named(b["expression"], "ImageCollection.load")[0]["id"]): b["expression"]
                     for b in ee_http.bodies["compute"]}
    assert sorted(by_collection) == ["LANDSAT/LC08/C02/T1_L2", "LANDSAT/LE07/C02/T1_L2"]  # L5 ended, L9 later
    expression = by_collection["LANDSAT/LC08/C02/T1_L2"]
    (rect,) = calls_named(expression, "GeometryConstructors.Rectangle")
    assert constant(rect["coordinates"]) == list(grid_lonlat_bounds(GRID))
    assert constant(rect["geodesic"]) is False
    assert constant(calls_named(rect["crs"], "Projection")[0]["crs"]) == "EPSG:4326"
    assert len(calls_named(expression, "Filter.intersects")) == 1
    (dates,) = calls_named(expression, "DateRange")
    assert (constant(dates["start"]), constant(dates["end"])) == ("2020-06-12", "2020-09-04")  # end + 1 day
    (cloud,) = calls_named(expression, "Filter.lessThan")
    assert (constant(cloud["leftField"]), constant(cloud["rightValue"])) == ("CLOUD_COVER", 10.0)
    (select,) = calls_named(expression, "Image.select")
    assert constant(select["bandSelectors"]) == ["QA_PIXEL"]

    ee_http.bodies["compute"].clear()
    source.search(make_request(dt.date(2020, 6, 12), dt.date(2020, 9, 3), satellites=("L8",)))
    (body,) = ee_http.bodies["compute"]
    assert calls_named(body["expression"], "Filter.lessThan") == []  # no cloud limit, no filter


@pytest.mark.parametrize(("image_id", "sat", "selectors"), [
    (L5, "L5", ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7", "ST_B6", "QA_PIXEL"]),
    (L8_27, "L8", ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10", "QA_PIXEL"]),
])
def test_real_ee_pixel_request(ee_http: FakeEarthEngineHttp, tmp_path: Path, image_id: str, sat: str,
                               selectors: list[str]) -> None:
    user_credentials(tmp_path / "home")
    source = real_source(ee_http)
    bands = source.read(_record(image_id, sat, dt.date(2020, 8, 18)), GRID)
    (body,) = ee_http.bodies["pixels"]
    assert body["fileFormat"] == "NPY"  # what ee.data sends for NUMPY_NDARRAY
    assert body["grid"] == {"dimensions": {"width": 10, "height": 12},
                            "affineTransform": {"scaleX": 30.0, "shearX": 0.0, "translateX": 594300.0, "shearY": 0.0,
                                                "scaleY": -30.0, "translateY": 5189550.0},
                            "crsCode": "EPSG:32610"}
    expression = body["expression"]
    assert constant(calls_named(expression, "Image.load")[0]["id"]) == image_id
    (select,) = calls_named(expression, "Image.select")
    assert constant(select["bandSelectors"]) == selectors
    assert constant(select["newNames"]) == list(SENSORS[sat].ee_bands)
    (unmask,) = calls_named(expression, "Image.unmask")
    assert constant(unmask["sameFootprint"]) is False
    assert constant(calls_named(unmask["value"], "Image.constant")[0]["value"]) == 0
    assert len(calls_named(expression, "Image.toUint16")) == 1
    assert calls_named(expression, "Image.resample") == []  # Earth Engine's nearest neighbour
    raw = recorded_pixels(image_id)
    valid = raw["qa_pixel"] != 0
    np.testing.assert_array_equal(bands["nir08"][valid], raw["nir08"][valid])
    assert (bands["qa_pixel"][~valid] == int(QA.FILL)).all()


def test_real_ee_dem_request(ee_http: FakeEarthEngineHttp, tmp_path: Path) -> None:
    user_credentials(tmp_path / "home")
    dem = real_source(ee_http).read_dem(make_request(dt.date(2020, 1, 1), dt.date(2020, 12, 31)))
    (body,) = ee_http.bodies["pixels"]
    expression = body["expression"]
    assert constant(calls_named(expression, "Image.load")[0]["id"]) == DEM_ID
    assert constant(calls_named(expression, "Image.select")[0]["bandSelectors"]) == ["elevation"]
    assert len(calls_named(expression, "Image.toFloat")) == 1
    (unmask,) = calls_named(expression, "Image.unmask")
    assert constant(calls_named(unmask["value"], "Image.constant")[0]["value"]) == eesrc.DEM_NODATA
    # resampled bilinearly before the voids are filled, so no -32768 is blended into a neighbour
    (resample,) = calls_named(unmask["input"], "Image.resample")
    assert constant(resample["mode"]) == "bilinear"
    assert dem is not None and np.isnan(dem[:2, -2:]).all() and np.isfinite(dem[2:]).all()


def test_real_ee_http_errors_are_typed_and_retried(ee_http: FakeEarthEngineHttp, tmp_path: Path) -> None:
    user_credentials(tmp_path / "home")
    slept: list[float] = []
    source = real_source(ee_http)
    source.sleep = slept.append
    record = _record(L8_27, "L8", dt.date(2020, 8, 18))

    ee_http.script["pixels"] = [(429, "429_too_many_concurrent.json"), (503, "503_unavailable.html")]
    assert source.read(record, GRID)["red"].shape == GRID.shape
    assert len(ee_http.bodies["pixels"]) == 3 and len(slept) == 2  # the library's own retries are off

    ee_http.bodies["pixels"].clear()
    ee_http.script["pixels"] = [(500, "500_internal.json"), (429, "429_quota.json"), (500, "500_internal.json")]
    with pytest.raises(TransientSourceError, match=r"LC08_046027_20200818: Earth Engine: HTTP 500: An internal"):
        source.read(record, GRID)
    assert len(ee_http.bodies["pixels"]) == 3  # max_retries attempts

    ee_http.bodies["pixels"].clear()
    ee_http.script["pixels"] = [(400, "400_missing_band.json")]
    with pytest.raises(SourceError, match=r"LC08_046027_20200818: Earth Engine image has no band ST_B6") as info:
        source.read(record, GRID)
    assert type(info.value) is SourceError and len(ee_http.bodies["pixels"]) == 1

    from google.auth import transport

    request = make_request(dt.date(2020, 8, 1), dt.date(2020, 8, 31), satellites=("L8",))
    # a 401 makes the transport refresh the token and ask again; refused every time, it is an auth error
    tries = transport.DEFAULT_MAX_REFRESH_ATTEMPTS + 1
    tokens = len(ee_http.bodies["token"])
    ee_http.script["compute"] = [(401, "401_unauthenticated.json")] * tries
    with pytest.raises(SourceAuthError, match="HTTP 401: Request had invalid authentication.*earthengine authenticate"):
        source.search(request)
    assert len(ee_http.bodies["compute"]) == tries and len(ee_http.bodies["token"]) == tokens + tries - 1
    ee_http.bodies["compute"].clear()
    ee_http.script["compute"] = [(403, "403_not_registered.json")]
    with pytest.raises(SourceAuthError, match="not registered to use Earth Engine"):
        source.search(request)
    assert len(ee_http.bodies["compute"]) == 1  # not retried


def test_real_ee_authentication_failures(ee_http: FakeEarthEngineHttp, tmp_path: Path) -> None:
    request = make_request(dt.date(2020, 8, 1), dt.date(2020, 8, 31), satellites=("L8",))
    with pytest.raises(SourceAuthError, match=r"Please authorize access.*earthengine authenticate"):
        real_source(ee_http).search(request)  # no stored credentials, no ADC

    missing = tmp_path / "missing-key.json"
    with pytest.raises(SourceAuthError, match=f"{missing}: service-account key file not found"):
        real_source(ee_http, service_account_key=str(missing)).search(request)
    no_email = tmp_path / "no-email.json"
    no_email.write_text(json.dumps({"private_key": "SECRET-KEY-TEXT"}))
    with pytest.raises(SourceAuthError, match="no client_email") as info:
        real_source(ee_http, service_account_key=str(no_email)).search(request)
    assert "SECRET-KEY-TEXT" not in str(info.value)

    key, pem = service_account_key(tmp_path)
    ee_http.script["token"] = [(400, "token_invalid_grant.json")]
    with pytest.raises(SourceAuthError, match="invalid_grant") as info:
        real_source(ee_http, service_account_key=str(key)).search(request)
    assert pem.splitlines()[1] not in str(info.value)


def test_real_ee_service_account_fetch_never_shows_the_key(ee_http: FakeEarthEngineHttp, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from glacierwatch.imagery.fetch import fetch_imagery

    caplog.set_level(logging.DEBUG)
    key, pem = service_account_key(tmp_path)
    inventory = write_inventory(tmp_path / "inventory.parquet")
    out = tmp_path / "work"
    cfg = EarthEngineConfig(project="", service_account_key=str(key), max_retries=2)
    config = ImageryConfig(source="earthengine", earthengine=cfg, workers=2)
    report = fetch_imagery(inventory, out, source="earthengine", mode="training", start=dt.date(2020, 8, 1),
                           end=dt.date(2020, 8, 31), config=config, progress=False,
                           source_factory=lambda: EarthEngineSource(
                               client=EarthEngineClient(service_account_key=str(key), http_transport=ee_http),
                               config=cfg, sleep=no_sleep))
    assert report.done == [GLIMS_ID], report.failed
    assert (out / "scenes" / GLIMS_ID / f"{GLIMS_ID}_2020-08-18_L8_C02_T1_L2_SR.tif").exists()
    assert (out / "dem" / f"{GLIMS_ID}.tif").exists()
    assert len(ee_http.bodies["token"]) == 1  # initialised once for the process, token reused
    assert "service account fetcher@glacierwatch-test.iam.gserviceaccount.com, project glacierwatch-test" in caplog.text

    secrets = [line for line in pem.splitlines() if "PRIVATE KEY" not in line] + [ACCESS_TOKEN]
    assert len(secrets) > 10
    logged = caplog.text
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.parent.name == "training" and p.suffix == ".json" for p in files)  # the plan is among them
    for secret in nonempty(secrets):
        assert secret not in logged
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


def test_real_ee_requests_in_flight_are_bounded(ee_http: FakeEarthEngineHttp, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    user_credentials(tmp_path / "home")
    ee_http.delay_s = 0.05
    source = real_source(ee_http, max_concurrent_requests=2)
    record = _record(L8_27, "L8", dt.date(2020, 8, 18))
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: source.read(record, GRID), range(6)))
    assert len(results) == 6 and len(ee_http.bodies["pixels"]) == 6
    assert 1 <= ee_http.max_in_flight <= 2
