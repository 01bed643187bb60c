"""STAC imagery source against a loopback STAC API (tests/stac_server.py): search (paging, duplicates,
Tier 1 / Landsat 5-9 filter, cloud push-down), property mapping, pixel reads (warp onto the grid,
retries, signing, error classes), the DEM, and a whole fetch through ``fetch_imagery`` into the catalog."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Transformer
from rasterio.warp import Resampling, transform_bounds

from glacierwatch.catalog.metadata import record_from_stac, record_from_usgs_keys
from glacierwatch.config import ImageryConfig, StacConfig
from glacierwatch.errors import ConfigError
from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery.records import GlacierRequest, SceneRecord, grid_lonlat_bounds
from glacierwatch.imagery.sources.base import (
    ImagerySource,
    SourceAuthError,
    SourceError,
    SourceUnavailableError,
    TransientSourceError,
)
from glacierwatch.imagery.sources.stac import StacSource, band_hrefs, resolve_signing, skip_reason, usgs_properties
from glacierwatch.imagery.standard import mosaic, warp_to_grid
from glacierwatch.landsat import SCENE_BANDS

if str(Path(__file__).resolve().parent) not in sys.path:  # any pytest import mode
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from stac_server import StacTestServer  # noqa: E402

pytest.importorskip("pystac_client")

DATA = Path(__file__).resolve().parent / "data" / "stac"
SHARED_ITEMS = (Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stactools_landsat_c2_metadata"
                / "stac_items")
GLIMS_ID = "G006050E46000N"
COLLECTION = "landsat-c2-l2"
DEM_COLLECTION = "cop-dem-glo-30"
SCENE_CRS = "EPSG:32631"  # the neighbouring UTM zone: the grid is in 32632, so reads are warped


# --------------------------------------------------------------------------- the tiny world

def _grid() -> GlacierGrid:
    """20 x 30 px, 30 m, EPSG:32632, just east of 6 degrees E (the zone 31/32 boundary)."""
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform(6.05, 46.0)
    return GlacierGrid(crs="EPSG:32632", x0=math.floor(x / 30) * 30, y0=math.ceil(y / 30) * 30, resolution=30.0,
                       width=20, height=30)


@dataclass(frozen=True)
class Scene:
    """One Landsat item of the test API and, for kept ones, its band COGs."""

    item_id: str
    platform: str
    instruments: tuple[str, ...]
    when: str
    cloud: float
    tier: str = "T1"
    keep: bool = True
    east_fraction: float = 1.0  # share of the grid's width the COGs reach (the rest is outside: fill)

    @property
    def satellite(self) -> str:
        return "L" + self.platform[-1]

    @property
    def thermal_key(self) -> str:
        return "lwir11" if "oli" in self.instruments else "lwir"

    @property
    def band_keys(self) -> tuple[str, ...]:
        keys = ["blue", "green", "red", "nir08", "swir16", "swir22", self.thermal_key, "qa_pixel"]
        return tuple((["coastal"] if "oli" in self.instruments else []) + keys)


SCENES = (
    Scene("LC08_L2SP_195028_20210815_02_T1", "landsat-8", ("oli", "tirs"), "2021-08-15T10:17:48.304091Z", 4.21),
    Scene("LE07_L2SP_195028_20100720_02_T1", "landsat-7", ("etm+",), "2010-07-20T10:02:11.5Z", 2.0,
          east_fraction=0.6),
    Scene("LT05_L2SP_195028_19990705_02_T1", "landsat-5", ("tm",), "1999-07-05T09:55:01Z", 7.5),
    Scene("LC08_L2SP_195028_20190810_02_T2", "landsat-8", ("oli", "tirs"), "2019-08-10T10:17:02Z", 1.0,
          tier="T2", keep=False),
    Scene("LT04_L2SP_195028_19890705_02_T1", "landsat-4", ("tm",), "1989-07-05T09:40:00Z", 3.0, keep=False),
    Scene("LM05_L2SP_195028_19900705_02_T1", "landsat-5", ("mss",), "1990-07-05T09:40:00Z", 3.0, keep=False),
    Scene("LC09_L2SP_195028_20220812_02_T1", "landsat-9", ("oli", "tirs"), "2022-08-12T10:17:30Z", 35.0,
          keep=False),  # too cloudy: the server must drop it (push-down)
)
KEPT = tuple(s for s in SCENES if s.keep)


def _cog(path: Path, array: np.ndarray, crs: str, transform: Affine, nodata: float | None) -> bytes:
    """Write ``array`` as a cloud-optimised GeoTIFF (128 px blocks) and return its bytes."""
    tmp = path.with_suffix(".src.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype.name, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(array, 1)
    rasterio.shutil.copy(tmp, path, driver="COG", blocksize=128, compress="deflate")
    tmp.unlink()
    return path.read_bytes()


@dataclass
class World:
    grid: GlacierGrid
    cogs: dict[str, bytes] = field(default_factory=dict)  # file key -> COG bytes
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # item id -> common band -> DN
    transforms: dict[str, Affine] = field(default_factory=dict)  # item id -> COG transform
    dem_tiles: list[tuple[str, np.ndarray, Affine]] = field(default_factory=list)  # key, elevation, transform
    dem_union: tuple[np.ndarray, Affine] | None = None  # the tiles' common lattice, for the expected DEM


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """COGs of the kept scenes (EPSG:32631, 30 m, not aligned with the grid) and two DEM tiles."""
    tmp = tmp_path_factory.mktemp("stac_cogs")
    grid = _grid()
    out = World(grid=grid)
    left, bottom, right, top = transform_bounds(grid.crs, SCENE_CRS, *grid.bounds, densify_pts=21)
    rng = np.random.default_rng(5)
    for scene in KEPT:
        width = int(math.ceil((right - left) / 30)) + 12
        height = int(math.ceil((top - bottom) / 30)) + 12
        x0, y0 = math.floor(left / 30) * 30 - 6 * 30 + 7.0, math.ceil(top / 30) * 30 + 6 * 30 - 11.0
        if scene.east_fraction < 1.0:  # the footprint ends inside the grid
            width = int(math.ceil((left - x0 + scene.east_fraction * (right - left)) / 30))
        transform = Affine(30.0, 0.0, x0, 0.0, -30.0, y0)
        out.transforms[scene.item_id] = transform
        fill = np.zeros((height, width), dtype=bool)
        fill[:4, :5] = True  # a corner of fill (outside the scene's footprint)
        bands: dict[str, np.ndarray] = {}
        for i, key in enumerate(scene.band_keys):
            if key == "qa_pixel":
                values = rng.choice(np.array([21824, 21952, 22280, 23888, 54596], dtype=np.uint16), (height, width))
                values[fill] = 1
            else:
                values = rng.integers(7000 + 1000 * i, 9000 + 1000 * i, (height, width)).astype(np.uint16)
                values[fill] = 0
            name = "lwir" if key.startswith("lwir") else key
            bands[name] = values
            nodata = 1 if key == "qa_pixel" else 0
            out.cogs[f"{scene.item_id}/{key}.tif"] = _cog(tmp / f"{scene.item_id}_{key}.tif", values, SCENE_CRS,
                                                         transform, nodata)
        out.arrays[scene.item_id] = bands
    # DEM: two tiles (EPSG:4326) on one lattice, split inside the grid's footprint
    lon0, lat0, lon1, lat1 = grid_lonlat_bounds(grid)
    res = 0.0002
    ox, oy = math.floor(lon0 / res) * res - 5 * res, math.ceil(lat1 / res) * res + 5 * res
    ncols = int(math.ceil((lon1 - ox) / res)) + 5
    nrows = int(math.ceil((oy - lat0) / res)) + 5
    cols, rows = np.meshgrid(np.arange(ncols), np.arange(nrows))
    union = (2400.0 + 3.0 * cols - 2.0 * rows + 0.01 * ((cols * 7 + rows * 3) % 11)).astype(np.float32)
    union_t = Affine(res, 0.0, ox, 0.0, -res, oy)
    split = ncols // 2
    for key, part, col0 in (("dem_w", union[:, :split + 3], 0), ("dem_e", union[:, split:], split)):
        t = union_t @ Affine.translation(col0, 0)
        out.cogs[f"dem/{key}.tif"] = _cog(tmp / f"{key}.tif", np.ascontiguousarray(part), "EPSG:4326", t, None)
        out.dem_tiles.append((key, part, t))
    out.dem_union = (union, union_t)
    return out


def _template() -> dict[str, Any]:
    return json.loads((DATA / "LC08_L2SP_195028_20210815_02_T1.json").read_text(encoding="utf-8"))


def make_item(template: dict[str, Any], scene: Scene, base_url: str) -> dict[str, Any]:
    """An item like ``template`` for ``scene``, band assets pointing at the test server."""
    item = copy.deepcopy(template)
    item["id"] = scene.item_id
    item["collection"] = COLLECTION
    props = item["properties"]
    props.update({"platform": scene.platform, "instruments": list(scene.instruments), "datetime": scene.when,
                  "eo:cloud_cover": scene.cloud, "landsat:cloud_cover_land": min(100.0, scene.cloud + 0.5),
                  "landsat:collection_category": scene.tier, "landsat:wrs_path": "195", "landsat:wrs_row": "028",
                  "landsat:scene_id": f"{scene.item_id[:4]}1950282021227LGN00"})
    assets = item["assets"]
    thermal = assets.pop("lwir11", None) or assets.pop("lwir")
    assets[scene.thermal_key] = thermal
    if "oli" not in scene.instruments:
        assets.pop("coastal", None)
    elif "coastal" not in assets:
        assets["coastal"] = copy.deepcopy(assets["blue"])
    for key in scene.band_keys:
        assets[key]["href"] = f"{base_url}/files/{scene.item_id}/{key}.tif"
    if "qa" in assets:  # ST_QA: never served, so reading it by mistake for qa_pixel would fail
        assets["qa"]["href"] = f"{base_url}/files/{scene.item_id}/ST_QA.tif"
    return item


def dem_item(key: str, base_url: str, bbox: list[float]) -> dict[str, Any]:
    item = json.loads((DATA / "Copernicus_DSM_COG_10_N46_00_E006_00_DEM.json").read_text(encoding="utf-8"))
    item["id"] = f"Copernicus_DSM_COG_10_{key}"
    item["bbox"] = bbox
    item["assets"]["data"]["href"] = f"{base_url}/files/dem/{key}.tif"
    return item


@pytest.fixture
def server(world: World) -> Any:
    """A fresh loopback API per test: the scenes (one duplicated across a page boundary) and the DEM."""
    with StacTestServer() as srv:
        for key, data in world.cogs.items():
            srv.add_file(key, data)
        template = _template()
        items = [make_item(template, s, srv.url) for s in SCENES]
        # the Landsat 7 item again right after itself: with page size 2 it ends page 1 and starts page 2
        items.insert(2, copy.deepcopy(items[1]))
        srv.add_items(COLLECTION, items)
        for key, part, t in world.dem_tiles:
            lon0 = t.c
            lon1 = t.c + part.shape[1] * t.a
            lat1 = t.f
            lat0 = t.f + part.shape[0] * t.e
            srv.add_items(DEM_COLLECTION, [dem_item(key, srv.url, [lon0, lat0, lon1, lat1])])
        yield srv


def _request(world: World, *, cloud: float | None = 10.0) -> GlacierRequest:
    return GlacierRequest(glims_id=GLIMS_ID, grid=world.grid, bbox=grid_lonlat_bounds(world.grid),
                          start=dt.date(1985, 1, 1), end=dt.date(2022, 12, 31), max_cloud_cover=cloud)


def _source(server: StacTestServer, sleeps: list[float] | None = None, **kw: Any) -> StacSource:
    options: dict[str, Any] = {"api_url": server.url + "/", "collection": COLLECTION,
                               "dem_collection": DEM_COLLECTION, "signing": "none", "page_size": 2,
                               "max_retries": 3, "http_timeout_s": 10}
    options.update(kw)
    return StacSource(sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **options)


def _expected(world: World, scene: Scene) -> dict[str, np.ndarray]:
    """The scene's COG pixels put on the grid by THE warp function (whole arrays, no window)."""
    return {b: warp_to_grid(a, src_crs=SCENE_CRS, src_transform=world.transforms[scene.item_id], grid=world.grid)
            for b, a in world.arrays[scene.item_id].items()}


# --------------------------------------------------------------------------- search

def test_search_pages_dedups_filters_and_pushes_cloud_down(world: World, server: StacTestServer) -> None:
    source = _source(server)
    assert isinstance(source, ImagerySource)
    request = _request(world)
    records = source.search(request)

    assert sorted(r.scene_id for r in records) == sorted(s.item_id for s in KEPT)
    searches = server.search_requests()
    # 8 items on the server, the cloudy L9 dropped by the server: 7 matches in pages of 2
    assert len(searches) == 4
    first = searches[0].body
    assert searches[0].method == "POST"
    assert first["collections"] == [COLLECTION]
    assert first["limit"] == 2
    assert first["bbox"] == pytest.approx(list(request.bbox))
    assert first["datetime"] == "1985-01-01T00:00:00Z/2022-12-31T23:59:59.999999Z"
    assert first["query"] == {"eo:cloud_cover": {"lt": 10.0}}
    assert [r.body.get("token") for r in searches] == [None, "page:2", "page:4", "page:6"]

    by_id = {r.scene_id: r for r in records}
    l8 = by_id["LC08_L2SP_195028_20210815_02_T1"]
    assert (l8.source, l8.glims_id, l8.date, l8.satellite) == ("stac", GLIMS_ID, dt.date(2021, 8, 15), "L8")
    hrefs = l8.handle["hrefs"]
    assert l8.handle["item_id"] == l8.scene_id and l8.handle["collection"] == COLLECTION
    assert set(hrefs) == {"coastal", *SCENE_BANDS}
    assert hrefs["lwir"].endswith("/lwir11.tif") and hrefs["qa_pixel"].endswith("/qa_pixel.tif")
    assert json.loads(json.dumps(dict(l8.handle))) == dict(l8.handle)  # plain JSON for the plan
    l7 = by_id["LE07_L2SP_195028_20100720_02_T1"]
    assert set(l7.handle["hrefs"]) == set(SCENE_BANDS) and l7.handle["hrefs"]["lwir"].endswith("/lwir.tif")
    assert l7.properties["CLOUD_COVER"] == 2.0 and l7.properties["SPACECRAFT_ID"] == "LANDSAT_7"
    assert l7.properties["SENSOR_ID"] == "ETM" and l7.properties["COLLECTION_CATEGORY"] == "T1"


def test_skip_reasons_name_tier_platform_and_instrument(world: World, server: StacTestServer) -> None:
    template = _template()
    request = _request(world, cloud=None)
    reasons = {s.item_id: skip_reason(make_item(template, s, server.url), request) for s in SCENES}
    assert reasons["LC08_L2SP_195028_20190810_02_T2"].startswith("collection category T2")
    assert reasons["LT04_L2SP_195028_19890705_02_T1"].startswith("not Landsat 5/7/8/9 (L4)")
    assert reasons["LM05_L2SP_195028_19900705_02_T1"].startswith("instrument mss")
    assert reasons["LC09_L2SP_195028_20220812_02_T1"] is None  # no cloud limit in this request
    assert skip_reason(make_item(template, SCENES[-1], server.url), _request(world)).startswith("cloud cover 35.0")
    no_swir = make_item(template, SCENES[0], server.url)
    del no_swir["assets"]["swir22"]
    assert skip_reason(no_swir, request) == "no asset for band(s) swir22"
    no_qa_pixel = make_item(template, SCENES[0], server.url)
    del no_qa_pixel["assets"]["qa_pixel"]  # "qa" (ST_QA) is still there: it must not stand in for QA_PIXEL
    assert skip_reason(no_qa_pixel, request) == "no asset for band(s) qa_pixel"
    only_l8 = GlacierRequest(**{**request.__dict__, "satellites": ("L8",)})
    assert skip_reason(make_item(template, SCENES[1], server.url), only_l8) == "L7 not requested"


def test_band_hrefs_prefer_s3_alternate_over_landsatlook_and_s3_reads_pay_the_request() -> None:
    key = "collection02/level-2/standard/oli-tirs/2023/195/028/LC08_L2SP_195028_20230801_20230810_02_T1/x_SR_B2.TIF"
    item = {"id": "LC08_L2SP_195028_20230801_02_T1", "assets": {
        "blue": {"href": f"https://landsatlook.usgs.gov/data/{key}",
                 "alternate": {"s3": {"href": f"s3://usgs-landsat/{key}", "storage:requester_pays": True}}},
        "green": {"href": f"s3://usgs-landsat/{key}"},
        "red": {"href": f"https://landsatlook.usgs.gov/data/{key}"}}}
    hrefs = band_hrefs(item)
    assert hrefs == {"blue": f"s3://usgs-landsat/{key}", "green": f"s3://usgs-landsat/{key}",
                     "red": f"https://landsatlook.usgs.gov/data/{key}"}
    source = StacSource(api_url="https://earth-search.aws.element84.com/v1", signing="auto")
    assert source.signing == "none"
    assert source._gdal_env(hrefs["green"])["AWS_REQUEST_PAYER"] == "requester"
    assert "AWS_REQUEST_PAYER" not in source._gdal_env("https://example.org/a.tif")
    free = StacSource(api_url="https://earth-search.aws.element84.com/v1", requester_pays=False)
    assert "AWS_REQUEST_PAYER" not in free._gdal_env(hrefs["green"])
    assert source._gdal_env(hrefs["green"])["GDAL_HTTP_MAX_RETRY"] == "0"


def test_search_get_method_sends_query_in_the_url(world: World, server: StacTestServer) -> None:
    records = _source(server, search_method="GET").search(_request(world))
    assert sorted(r.scene_id for r in records) == sorted(s.item_id for s in KEPT)
    searches = server.search_requests()
    assert {r.method for r in searches} == {"GET"} and len(searches) == 4
    assert json.loads(searches[0].query["query"][0]) == {"eo:cloud_cover": {"lt": 10.0}}
    assert searches[0].query["limit"] == ["2"]


def test_search_uses_cql2_filter_when_the_api_has_no_query_extension(world: World, server: StacTestServer) -> None:
    server.conformance = ("core", "item-search", "filter")
    records = _source(server).search(_request(world))
    assert sorted(r.scene_id for r in records) == sorted(s.item_id for s in KEPT)
    body = server.search_requests()[0].body
    assert "query" not in body
    assert body["filter"] == {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10.0]}
    assert body["filter-lang"] == "cql2-json"


def test_search_filters_cloud_itself_when_the_api_cannot(world: World, server: StacTestServer) -> None:
    server.conformance = ("core", "item-search")
    records = _source(server).search(_request(world))
    body = server.search_requests()[0].body
    assert "query" not in body and "filter" not in body
    # the server returned the 35 % item; the source dropped it
    assert "LC09_L2SP_195028_20220812_02_T1" not in {r.scene_id for r in records}
    assert sorted(r.scene_id for r in records) == sorted(s.item_id for s in KEPT)


def test_search_errors_are_classified_and_retried(world: World, server: StacTestServer) -> None:
    sleeps: list[float] = []
    server.fail_search(503, times=2)
    assert len(_source(server, sleeps).search(_request(world))) == len(KEPT)
    assert len(sleeps) == 2
    server.fail_search(403)
    with pytest.raises(SourceAuthError, match="HTTP 403"):
        _source(server).search(_request(world))


def test_search_bad_request_is_permanent(world: World, server: StacTestServer) -> None:
    sleeps: list[float] = []
    server.fail_search(400)
    with pytest.raises(SourceError, match="HTTP 400") as info:
        _source(server, sleeps).search(_request(world))
    assert not isinstance(info.value, TransientSourceError) and sleeps == []


# --------------------------------------------------------------------------- pixels

def _record(source: StacSource, world: World, item_id: str) -> SceneRecord:
    return next(r for r in source.search(_request(world)) if r.scene_id == item_id)


def test_read_warps_each_band_onto_the_grid(world: World, server: StacTestServer) -> None:
    source = _source(server)
    for scene in KEPT:
        record = _record(source, world, scene.item_id)
        bands = source.read(record, world.grid)
        expected = _expected(world, scene)
        assert set(bands) == set(expected)
        for name, array in bands.items():
            assert array.dtype == np.uint16 and array.shape == world.grid.shape
            np.testing.assert_array_equal(array, expected[name], err_msg=f"{scene.item_id} {name}")
    # the L7 footprint ends inside the grid: its eastern columns are fill
    l7 = source.read(_record(source, world, "LE07_L2SP_195028_20100720_02_T1"), world.grid)
    assert (l7["blue"][:, -3:] == 0).all() and (l7["blue"][:, :5] > 0).any()


def test_read_retries_a_server_error(world: World, server: StacTestServer) -> None:
    sleeps: list[float] = []
    source = _source(server, sleeps)
    record = _record(source, world, KEPT[0].item_id)
    href = record.handle["hrefs"]["blue"]
    server.fail(href, 500, times=2)
    bands = source.read(record, world.grid)
    np.testing.assert_array_equal(bands["blue"], _expected(world, KEPT[0])["blue"])
    assert len(sleeps) >= 1
    assert [r.method for r in server.file_requests(href)].count("GET") >= 1


def test_read_gives_up_on_a_persistent_server_error(world: World, server: StacTestServer) -> None:
    sleeps: list[float] = []
    source = _source(server, sleeps)
    record = _record(source, world, KEPT[0].item_id)
    server.fail(record.handle["hrefs"]["red"], 503)
    with pytest.raises(TransientSourceError, match=r"LC08_L2SP_195028_20210815_02_T1 red .*HTTP 503"):
        source.read(record, world.grid)
    assert len(sleeps) == 2  # max_retries = 3 attempts


def test_read_retries_a_failure_after_the_header(server: StacTestServer, tmp_path: Path) -> None:
    """Range requests failing after the file was opened: GDAL raises only 'Read failed'; the HTTP status
    of a multi-range read is in GDAL's warnings, which the source collects while it reads."""
    big = np.random.default_rng(1).integers(1, 60000, (600, 600)).astype(np.uint16)
    transform = Affine(30.0, 0.0, 300000.0, 0.0, -30.0, 5100000.0)
    url = server.add_file("big/blue.tif", _cog(tmp_path / "big.tif", big, SCENE_CRS, transform, 0))
    # a 200 x 200 px grid inside the COG: several 128 px tiles, fetched as several ranges
    grid = GlacierGrid(crs=SCENE_CRS, x0=300000.0 + 150 * 30, y0=5100000.0 - 150 * 30, resolution=30.0,
                       width=200, height=200)
    sleeps: list[float] = []
    source = _source(server, sleeps)
    server.fail(url, 503, ranged_only=True)  # every read after the header fails
    with pytest.raises(TransientSourceError, match="HTTP 503"):
        source._read_band(url, grid, "big blue")
    assert len(sleeps) == 2
    server.clear_faults()
    server.fail(url, 503, times=8, ranged_only=True)  # more failures than GDAL's own fallback absorbs
    np.testing.assert_array_equal(source._read_band(url, grid, "big blue"), big[150:350, 150:350])
    assert len(sleeps) >= 3


def test_read_404_is_permanent_and_not_retried(world: World, server: StacTestServer) -> None:
    sleeps: list[float] = []
    source = _source(server, sleeps)
    record = _record(source, world, KEPT[1].item_id)
    server.fail(record.handle["hrefs"]["nir08"], 404)
    with pytest.raises(SourceError, match="asset not found") as info:
        source.read(record, world.grid)
    assert not isinstance(info.value, (TransientSourceError, SourceAuthError))
    assert sleeps == []


def test_read_missing_band_asset_is_a_source_error(world: World, server: StacTestServer) -> None:
    source = _source(server)
    record = _record(source, world, KEPT[0].item_id)
    hrefs = dict(record.handle["hrefs"])
    del hrefs["swir22"]
    broken = SceneRecord(**{**record.__dict__, "handle": {**record.handle, "hrefs": hrefs}})
    with pytest.raises(SourceError, match="no asset for band"):
        source.read(broken, world.grid)


class TokenSigner:
    """Appends ``?token=...``: the first token is an expired one, later (fresh) ones are valid."""

    def __init__(self, *, always_expired: bool = False) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.always_expired = always_expired

    def __call__(self, href: str, *, fresh: bool = False) -> str:
        self.calls.append((href, fresh))
        token = "expired" if self.always_expired or len(self.calls) == 1 else f"fresh{len(self.calls)}"
        return f"{href}?token={token}"


def test_expired_signature_is_signed_again(world: World, server: StacTestServer) -> None:
    server.require_token = True
    server.expired_tokens.add("expired")
    signer = TokenSigner()
    sleeps: list[float] = []
    source = _source(server, sleeps, signer=signer)
    record = _record(source, world, KEPT[2].item_id)
    assert all("token" not in h for h in record.handle["hrefs"].values())  # unsigned in the record/plan
    bands = source.read(record, world.grid)
    np.testing.assert_array_equal(bands["green"], _expected(world, KEPT[2])["green"])
    # signed lazily, once per band; the expired first token re-signed once with fresh=True
    assert len(signer.calls) == len(SCENE_BANDS) + 1
    assert [fresh for _, fresh in signer.calls[:2]] == [False, True]
    assert signer.calls[0][0] == signer.calls[1][0] == record.handle["hrefs"]["blue"]
    assert sleeps == []


def test_refused_again_after_resigning_is_an_auth_error(world: World, server: StacTestServer) -> None:
    server.require_token = True
    server.expired_tokens.add("expired")
    signer = TokenSigner(always_expired=True)
    source = _source(server, signer=signer)
    record = _record(source, world, KEPT[0].item_id)
    with pytest.raises(SourceAuthError, match="HTTP 403.*refused again after re-signing") as info:
        source.read(record, world.grid)
    assert "token=" not in str(info.value)  # no credential in messages (they go to the ledger)
    assert [fresh for _, fresh in signer.calls] == [False, True]


def test_403_without_signing_is_an_auth_error_at_once(world: World, server: StacTestServer) -> None:
    source = _source(server)
    record = _record(source, world, KEPT[0].item_id)
    server.fail(record.handle["hrefs"]["blue"], 403)
    with pytest.raises(SourceAuthError, match="HTTP 403"):
        source.read(record, world.grid)


# --------------------------------------------------------------------------- DEM

def test_read_dem_mosaics_tiles_and_warps_bilinearly(world: World, server: StacTestServer) -> None:
    dem = _source(server).read_dem(_request(world))
    assert dem is not None and dem.dtype == np.float32 and dem.shape == world.grid.shape
    assert world.dem_union is not None
    union, union_t = world.dem_union
    expected = warp_to_grid(union, src_crs="EPSG:4326", src_transform=union_t, grid=world.grid, src_nodata=np.nan,
                            dst_nodata=np.nan, resampling=Resampling.bilinear)
    assert np.isfinite(dem).all()
    np.testing.assert_allclose(dem, expected, rtol=0, atol=1e-3)
    dem_requests = [r for r in server.search_requests() if r.body.get("collections") == [DEM_COLLECTION]]
    assert len(dem_requests) == 1 and "datetime" not in dem_requests[0].body


def test_read_dem_fills_from_a_tile_on_another_lattice(world: World, server: StacTestServer,
                                                      tmp_path: Path) -> None:
    """Copernicus tiles of another latitude band have another longitude spacing: warped on their own."""
    key, west, west_t = world.dem_tiles[0]
    assert world.dem_union is not None
    union, union_t = world.dem_union
    res = 0.0003
    coarse_t = Affine(res, 0.0, union_t.c, 0.0, -res, union_t.f)
    rows = int(union.shape[0] * union_t.a / res) + 1
    cols = int(union.shape[1] * union_t.a / res) + 1
    coarse = (1000.0 + np.add.outer(np.arange(rows) * -1.5, np.arange(cols) * 2.5)).astype(np.float32)
    url = server.add_file("dem/coarse.tif", _cog(tmp_path / "coarse.tif", coarse, "EPSG:4326", coarse_t, None))
    bbox = [coarse_t.c, coarse_t.f - rows * res, coarse_t.c + cols * res, coarse_t.f]
    coarse_item = dem_item("coarse", server.url, bbox)
    assert coarse_item["assets"]["data"]["href"] == url
    west_item = next(i for i in server.items[DEM_COLLECTION] if i["id"].endswith(key))
    coarse_item["id"] = "Copernicus_DSM_COG_10_zz_coarse"  # sorts after the west tile: the west tile leads
    server.items[DEM_COLLECTION] = [coarse_item, west_item]
    dem = _source(server).read_dem(_request(world))
    assert dem is not None
    # the west tile on its lattice over the whole footprint (NaN east of it), then warped
    west_padded = np.full(union.shape, np.nan, dtype=np.float32)
    west_padded[:, :west.shape[1]] = west
    from_west = warp_to_grid(west_padded, src_crs="EPSG:4326", src_transform=union_t, grid=world.grid,
                             src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear)
    from_coarse = warp_to_grid(coarse, src_crs="EPSG:4326", src_transform=coarse_t, grid=world.grid,
                               src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear)
    expected = np.where(np.isnan(from_west), from_coarse, from_west)
    assert np.isfinite(dem).all() and np.isnan(from_west).any() and np.isfinite(from_west).any()
    np.testing.assert_allclose(dem, expected, rtol=0, atol=1e-3)


def test_read_dem_without_tiles_is_a_source_error(world: World, server: StacTestServer) -> None:
    server.items[DEM_COLLECTION] = []
    with pytest.raises(SourceError, match="no cop-dem-glo-30 item"):
        _source(server).read_dem(_request(world))


def test_no_dem_collection_means_no_dem(world: World, server: StacTestServer) -> None:
    assert _source(server, dem_collection="").read_dem(_request(world)) is None
    assert server.search_requests() == []


# --------------------------------------------------------------------------- signing, set-up

def test_signing_modes() -> None:
    pc = "https://planetarycomputer.microsoft.com/api/stac/v1"
    assert resolve_signing("auto", pc) == "planetary-computer"
    assert resolve_signing("auto", "https://earth-search.aws.element84.com/v1") == "none"
    assert resolve_signing("none", pc) == "none"
    assert resolve_signing("planetary-computer", "http://127.0.0.1:1/") == "planetary-computer"
    with pytest.raises(ConfigError, match="signing must be one of"):
        resolve_signing("sas", pc)
    source = StacSource.from_config(StacConfig(), sleep=lambda s: None)
    assert (source.signing, source.collection, source.dem_collection, source.page_size) == (
        "planetary-computer", "landsat-c2-l2", "cop-dem-glo-30", 100)


def test_planetary_computer_signer_gets_a_fresh_token_on_request(server: StacTestServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The real planetary_computer.sign code, with its SAS token endpoint on the loopback server."""
    planetary_computer = pytest.importorskip("planetary_computer")
    from planetary_computer import sas
    from planetary_computer.settings import Settings

    from glacierwatch.imagery.sources.stac import planetary_computer_signer

    monkeypatch.setattr(Settings.get(), "sas_url", server.url + "/sas")
    monkeypatch.setattr(sas, "TOKEN_CACHE", {})
    sign = planetary_computer_signer()
    href = "https://landsateuwest.blob.core.windows.net/landsat-c2/level-2/x/LC08_SR_B2.TIF"
    first = sign(href)
    assert first.startswith(href + "?") and "sig=token1" in first
    assert sign(href) == first and server.sas_requests == 1  # cached token reused
    again = sign(href, fresh=True)
    assert "sig=token2" in again and server.sas_requests == 2
    assert sign("http://127.0.0.1:1/not-blob.tif") == "http://127.0.0.1:1/not-blob.tif"
    assert planetary_computer.sign(href) == again


def test_missing_pystac_client_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pystac_client", None)
    with pytest.raises(SourceUnavailableError, match=r"pip install -e '\.\[stac\]'"):
        StacSource(signing="none")


# --------------------------------------------------------------------------- end to end

def _inventory(path: Path, grid: GlacierGrid) -> Path:
    pd.DataFrame({"glims_id": [GLIMS_ID], "grid": [grid.to_json()],
                  "outline_date": [pd.Timestamp("2015-08-01")]}).to_parquet(path)
    return path


def _read_scene(path: Path) -> dict[str, np.ndarray]:
    with rasterio.open(path) as ds:
        return {name: ds.read(i + 1) for i, name in enumerate(ds.descriptions)}


def test_fetch_end_to_end_writes_standard_scenes_the_catalog_reads(world: World, server: StacTestServer,
                                                                   tmp_path: Path) -> None:
    from glacierwatch.catalog import build_catalog
    from glacierwatch.imagery.fetch import fetch_imagery

    inventory = _inventory(tmp_path / "inventory.parquet", world.grid)
    out = tmp_path / "work"
    report = fetch_imagery(inventory, out, source="stac", mode="timeseries", start=dt.date(1985, 1, 1),
                           end=dt.date(2022, 12, 31), config=ImageryConfig(), progress=False,
                           source_factory=lambda: _source(server))
    assert report.failed == {} and report.done == [GLIMS_ID]
    scenes = sorted((out / "scenes" / GLIMS_ID).glob("*.tif"))
    assert [p.name for p in scenes] == sorted(
        f"{GLIMS_ID}_{s.when[:10]}_{s.satellite}_C02_T1_L2_SR.tif" for s in KEPT)
    for scene in KEPT:
        path = out / "scenes" / GLIMS_ID / f"{GLIMS_ID}_{scene.when[:10]}_{scene.satellite}_C02_T1_L2_SR.tif"
        written = _read_scene(path)
        expected = mosaic([_expected(world, scene)])  # the fetch driver's fill normalisation
        assert set(written) == set(expected)
        for name in expected:
            np.testing.assert_array_equal(written[name], expected[name], err_msg=f"{path.name} {name}")
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert meta["LANDSAT_PRODUCT_ID"] == scene.item_id and meta["CLOUD_COVER"] == scene.cloud
        assert "IMAGE_QUALITY" not in meta
    # the plan keeps unsigned hrefs only
    plan = (out / "imagery" / "plans" / "timeseries" / f"{GLIMS_ID}.json").read_text(encoding="utf-8")
    assert "token" not in plan and server.url in plan
    assert (out / "dem" / f"{GLIMS_ID}.tif").exists()
    assert (out / "imagery" / "done" / "timeseries" / f"{GLIMS_ID}.json").exists()

    catalog = build_catalog(out / "scenes", tmp_path / "catalog.parquet", inventory=inventory, progress=False)
    catalog = catalog.sort_values("date").reset_index(drop=True)
    assert list(catalog["status"]) == ["ok"] * len(KEPT)
    assert list(catalog["satellite"]) == ["L5", "L7", "L8"]
    assert list(catalog["cloud_cover"]) == [7.5, 2.0, 4.21]
    assert list(catalog["spacecraft_id"]) == ["LANDSAT_5", "LANDSAT_7", "LANDSAT_8"]
    assert list(catalog["product_id"]) == [s.item_id for s in sorted(KEPT, key=lambda s: s.when)]
    assert list(catalog["wrs_path"]) == [195] * 3 and list(catalog["tier"]) == ["T1"] * 3
    assert catalog["image_quality"].isna().all()
    assert str(catalog["acquired"].iloc[2]) == "2021-08-15 10:17:48.304000+00:00"


def test_fetch_ledgers_a_failing_asset_and_writes_the_rest(world: World, server: StacTestServer,
                                                          tmp_path: Path) -> None:
    from glacierwatch.imagery.fetch import fetch_imagery

    inventory = _inventory(tmp_path / "inventory.parquet", world.grid)
    out = tmp_path / "work"
    l7 = KEPT[1]
    server.fail(f"{server.url}/files/{l7.item_id}/blue.tif", 500)
    report = fetch_imagery(inventory, out, source="stac", mode="timeseries", start=dt.date(1985, 1, 1),
                           end=dt.date(2022, 12, 31), config=ImageryConfig(), progress=False,
                           source_factory=lambda: _source(server))
    assert GLIMS_ID in report.failed
    written = sorted(p.name for p in (out / "scenes" / GLIMS_ID).glob("*.tif"))
    assert written == sorted(f"{GLIMS_ID}_{s.when[:10]}_{s.satellite}_C02_T1_L2_SR.tif" for s in KEPT if s is not l7)
    lines = [json.loads(x) for x in (out / "imagery" / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
    scene_lines = [x for x in lines if x.get("scene_ids") == [l7.item_id]]
    assert len(scene_lines) == 1
    assert scene_lines[0]["error_class"] == "TransientSourceError" and "HTTP 500" in scene_lines[0]["message"]
    assert (out / "dem" / f"{GLIMS_ID}.tif").exists()
    assert not (out / "imagery" / "done" / "timeseries" / f"{GLIMS_ID}.json").exists()


# --------------------------------------------------------------------------- real items (../shared)

def _shared_item(name: str) -> dict[str, Any]:
    path = SHARED_ITEMS / name
    if not path.exists():
        pytest.skip(f"real stactools STAC items not present: {path} (../shared/data is optional)")
    return json.loads(path.read_text(encoding="utf-8"))


REAL = {
    "LT05_L2SP_010067_19860424_02_T2.json": {"SPACECRAFT_ID": "LANDSAT_5", "SENSOR_ID": "TM", "CLOUD_COVER": 23.0,
                                             "COLLECTION_CATEGORY": "T2", "WRS_PATH": 10, "WRS_ROW": 67,
                                             "DATE_ACQUIRED": "1986-04-24", "SCENE_CENTER_TIME": "14:54:18.1790940Z"},
    "LE07_L2SP_021030_20100109_02_T1.json": {"SPACECRAFT_ID": "LANDSAT_7", "SENSOR_ID": "ETM", "CLOUD_COVER": 8.0,
                                             "LANDSAT_SCENE_ID": "LE70210302010009EDC00", "WRS_ROW": 30},
    "LC08_L2SP_047027_20201204_02_T1.json": {"SPACECRAFT_ID": "LANDSAT_8", "SENSOR_ID": "OLI_TIRS",
                                             "CLOUD_COVER": 1.55, "CLOUD_COVER_LAND": 1.9, "WRS_PATH": 47,
                                             "SUN_ELEVATION": 18.80722985, "SUN_AZIMUTH": 164.91405951,
                                             "LANDSAT_PRODUCT_ID": "LC08_L2SP_047027_20201204_02_T1",
                                             "PROCESSING_LEVEL": "L2SP", "COLLECTION_NUMBER": 2,
                                             "SCENE_CENTER_TIME": "19:02:11.1944860Z"},
    "LC09_L2SP_010065_20220129_02_T1.json": {"SPACECRAFT_ID": "LANDSAT_9", "SENSOR_ID": "OLI_TIRS",
                                             "CLOUD_COVER": 21.12, "DATE_ACQUIRED": "2022-01-29"},
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_item_properties_round_trip_through_the_catalog_parser(name: str) -> None:
    item = _shared_item(name)
    props = usgs_properties(item)
    for key, value in REAL[name].items():
        assert props[key] == value, key
    assert not any(k.startswith("IMAGE_QUALITY") for k in props)
    # what the catalog reads from the side-car equals what it reads from the item itself
    from_sidecar = record_from_usgs_keys(props, source="stac")
    from_item = record_from_stac(item)
    assert from_sidecar == from_item
    hrefs = band_hrefs(item)
    assert set(SCENE_BANDS) <= set(hrefs)
    assert hrefs["qa_pixel"].endswith("_QA_PIXEL.TIF") and "_ST_B" in hrefs["lwir"]
    assert ("coastal" in hrefs) == name.startswith("LC0")


def test_real_tier2_and_landsat4_items_are_skipped(world: World) -> None:
    request = GlacierRequest(glims_id=GLIMS_ID, grid=world.grid, bbox=(-180.0, -90.0, 180.0, 90.0),
                             start=dt.date(1980, 1, 1), end=dt.date(2024, 12, 31))
    assert skip_reason(_shared_item("LT05_L2SP_010067_19860424_02_T2.json"), request).startswith(
        "collection category T2")
    assert skip_reason(_shared_item("LT04_L2SP_002026_19830110_02_T1.json"), request).startswith(
        "not Landsat 5/7/8/9 (L4)")
    assert skip_reason(_shared_item("LC08_L2SP_047027_20201204_02_T1.json"), request) is None


@pytest.mark.parametrize("name", ["LC08_L2SP_047027_20201204_02_T1.json", "LE07_L2SP_021030_20100109_02_T1.json"])
def test_search_and_read_with_real_items_as_served_templates(name: str, world: World, server: StacTestServer) -> None:
    """The real stactools items, served by the API with their band hrefs moved to the test COGs."""
    real = _shared_item(name)
    scene = KEPT[0] if name.startswith("LC08") else KEPT[1]
    item = copy.deepcopy(real)
    for key in scene.band_keys:
        item["assets"][key]["href"] = f"{server.url}/files/{scene.item_id}/{key}.tif"
    item["assets"]["qa"]["href"] = f"{server.url}/files/{scene.item_id}/ST_QA.tif"
    lon0, lat0, lon1, lat1 = grid_lonlat_bounds(world.grid)
    item["geometry"] = {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1],
                                                            [lon0, lat0]]]}
    item.pop("bbox", None)
    server.items[COLLECTION] = [item]
    request = GlacierRequest(glims_id=GLIMS_ID, grid=world.grid, bbox=grid_lonlat_bounds(world.grid),
                             start=dt.date(2000, 1, 1), end=dt.date(2022, 12, 31), max_cloud_cover=10.0)
    source = _source(server)
    (record,) = source.search(request)
    assert record.scene_id == real["id"] and record.properties == usgs_properties(real)
    bands = source.read(record, world.grid)
    expected = _expected(world, scene)
    for band in SCENE_BANDS:
        np.testing.assert_array_equal(bands[band], expected[band], err_msg=band)
