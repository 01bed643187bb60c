"""One Landsat 8 scene delivered three ways — by Earth Engine (recorded client), by a STAC API (a
loopback server with COG assets, read by the real pystac-client) and as a local GeoTIFF — must give
byte-identical standard scene files, and the catalog must read the same date, satellite and cloud
cover from each side-car.

The provider's raster lies on the Landsat UTM lattice of the glacier's zone (pixel edges at odd
multiples of 15 m), larger than the glacier grid and with a fill corner reaching into it, as a
real scene does. Earth Engine computes the pixels on the glacier grid server side; the STAC and
local sources warp with the one shared nearest-neighbour function. On the lattice both are exact.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from checks import nonempty

from glacierwatch.catalog import build_catalog
from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery import fetch_imagery

pytest.importorskip("pystac_client", reason="pystac-client is not installed (pip install -e '.[test]')")

sys.path.insert(0, str(Path(__file__).parent))
from imagery_fakes import write_tiny_inventory  # noqa: E402
from stac_server import StacTestServer  # noqa: E402

GLIMS_ID = "G007050E46040N"
DATE = dt.date(2021, 8, 15)
ITEM_ID = "LC08_L2SP_195028_20210815_02_T1"
EE_ID = "LANDSAT/LC08/C02/T1_L2/LC08_195028_20210815"
BANDS = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "qa_pixel")
STAC_KEYS = {b: ("lwir11" if b == "lwir" else b) for b in BANDS}
STAC_TEMPLATE = Path(__file__).parent / "data" / "stac" / f"{ITEM_ID}.json"
PROPERTIES: dict[str, Any] = {  # Earth Engine property names, as the catalog reads them
    "CLOUD_COVER": 3.27, "CLOUD_COVER_LAND": 3.41, "COLLECTION_CATEGORY": "T1", "COLLECTION_NUMBER": "02",
    "DATE_ACQUIRED": DATE.isoformat(), "IMAGE_QUALITY_OLI": 9, "IMAGE_QUALITY_TIRS": 9,
    "LANDSAT_PRODUCT_ID": "LC08_L2SP_195028_20210815_20210827_02_T1", "LANDSAT_SCENE_ID": "LC81950282021227LGN00",
    "PROCESSING_LEVEL": "L2SP", "SCENE_CENTER_TIME": "10:24:31.8590440Z", "SENSOR_ID": "OLI_TIRS",
    "SPACECRAFT_ID": "LANDSAT_8", "SUN_AZIMUTH": 148.9, "SUN_ELEVATION": 54.2, "WRS_PATH": 195, "WRS_ROW": 28,
}


def glacier_grid() -> GlacierGrid:
    grid = GlacierGrid.from_projected_bounds("EPSG:32632", 350_000, 5_100_000, 350_600, 5_100_450)
    assert grid.x0 % 30 == 15 and grid.y0 % 30 == 15  # the Landsat lattice
    return grid


def provider_scene(grid: GlacierGrid) -> tuple[dict[str, np.ndarray], Affine]:
    """The provider's raster: 5 px more on each side than the grid, a fill corner reaching into it."""
    rng = np.random.default_rng(42)
    shape = (grid.height + 10, grid.width + 10)
    transform = Affine(30.0, 0.0, grid.x0 - 150.0, 0.0, -30.0, grid.y0 + 150.0)
    fill = np.zeros(shape, dtype=bool)
    fill[:9, :12] = True
    bands = {}
    for i, band in enumerate(BANDS):
        if band == "qa_pixel":
            values = rng.choice(np.array([21824, 21952, 22280, 23888, 54596], dtype=np.uint16), shape)
            values[fill] = 1
        else:
            values = rng.integers(7_500 + 900 * i, 30_000, shape).astype(np.uint16)
            values[fill] = 0
        bands[band] = values
    return bands, transform


def write_geotiff(path: Path, arrays: list[np.ndarray], transform: Affine, *, names: list[str] | None = None,
                  driver: str = "GTiff") -> Path:
    with rasterio.open(path, "w", driver=driver, width=arrays[0].shape[1], height=arrays[0].shape[0],
                       count=len(arrays), dtype="uint16", crs="EPSG:32632", transform=transform, nodata=0) as dst:
        for i, array in enumerate(arrays, start=1):
            dst.write(array, i)
            if names:
                dst.set_band_description(i, names[i - 1])
    return path


class RecordedEarthEngine:
    """Answers like Earth Engine: the collection's getInfo JSON, and computePixels on the asked grid."""

    def __init__(self, bands: dict[str, np.ndarray], transform: Affine) -> None:
        self.bands, self.transform = bands, transform
        self.pixel_requests = 0

    def search(self, query: Any) -> dict[str, Any]:
        features = []
        if query.collection_id == "LANDSAT/LC08/C02/T1_L2":
            start, end_exclusive = query.date_range()
            if start <= DATE.isoformat() < end_exclusive:
                features.append({"type": "Image", "id": EE_ID,
                                 "properties": {**PROPERTIES, "system:index": EE_ID.rsplit("/", 1)[1],
                                                "system:time_start": 1629023071859}})
        return {"type": "ImageCollection", "bands": [], "features": features}

    def compute_pixels(self, query: Any) -> np.ndarray:
        self.pixel_requests += 1
        grid = query.grid_request()
        aff = grid["affineTransform"]
        row0 = round((self.transform.f - aff["translateY"]) / 30.0)
        col0 = round((aff["translateX"] - self.transform.c) / 30.0)
        h, w = grid["dimensions"]["height"], grid["dimensions"]["width"]
        out = np.zeros((h, w), dtype=[(name, "<u2") for name in query.output_bands])
        for name in query.output_bands:
            out[name] = self.bands[name][row0:row0 + h, col0:col0 + w]
        return out


def stac_item(base_url: str) -> dict[str, Any]:
    item = json.loads(STAC_TEMPLATE.read_text(encoding="utf-8"))
    item = copy.deepcopy(item)
    item["id"] = ITEM_ID
    item["collection"] = "landsat-c2-l2"
    item["properties"].update({
        "platform": "landsat-8", "instruments": ["oli", "tirs"], "datetime": "2021-08-15T10:24:31.859044Z",
        "eo:cloud_cover": PROPERTIES["CLOUD_COVER"], "landsat:cloud_cover_land": PROPERTIES["CLOUD_COVER_LAND"],
        "landsat:collection_category": "T1", "landsat:wrs_path": "195", "landsat:wrs_row": "028",
        "landsat:scene_id": PROPERTIES["LANDSAT_SCENE_ID"], "view:sun_elevation": PROPERTIES["SUN_ELEVATION"],
        "view:sun_azimuth": PROPERTIES["SUN_AZIMUTH"]})
    for key in STAC_KEYS.values():
        item["assets"][key]["href"] = f"{base_url}/files/{ITEM_ID}/{key}.tif"
    return item


@pytest.fixture(scope="module")
def three_fetches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from glacierwatch.imagery.sources.earthengine import EarthEngineSource
    from glacierwatch.imagery.sources.local import LocalSource
    from glacierwatch.imagery.sources.stac import StacSource

    tmp = tmp_path_factory.mktemp("three_sources")
    grid = glacier_grid()
    inventory = write_tiny_inventory(tmp / "inventory.parquet", {GLIMS_ID: grid}, outline_date="2021-08-01")
    bands, transform = provider_scene(grid)
    run = {"inventory": inventory, "mode": "training", "progress": False}
    outs = {name: tmp / name for name in ("earthengine", "stac", "local")}

    ee = RecordedEarthEngine(bands, transform)
    fetch_imagery(out=outs["earthengine"], source_factory=lambda: EarthEngineSource(client=ee, sleep=lambda s: None),
                  **run)
    assert ee.pixel_requests >= 1

    with StacTestServer() as server:
        for band, key in STAC_KEYS.items():
            cog = write_geotiff(tmp / f"{key}.tif", [bands[band]], transform, driver="COG")
            server.add_file(f"{ITEM_ID}/{key}.tif", cog.read_bytes())
        server.add_items("landsat-c2-l2", [stac_item(server.url)])
        stac = StacSource(api_url=server.url + "/", collection="landsat-c2-l2", dem_collection="", signing="none",
                          sleep=lambda s: None)
        fetch_imagery(out=outs["stac"], source_factory=lambda: stac, **run)

    folder = tmp / "local_input"
    folder.mkdir()
    write_geotiff(folder / "scene_2021-08-15_LC08.tif", [bands[b] for b in BANDS], transform, names=list(BANDS))
    (folder / "scene_2021-08-15_LC08.json").write_text(json.dumps(PROPERTIES), encoding="utf-8")
    local = LocalSource(folder, band_map=[f"{b}={b}" for b in BANDS])
    fetch_imagery(out=outs["local"], source_factory=lambda: local, **run)
    return outs


def test_three_sources_write_identical_scene_files(three_fetches: dict[str, Path]) -> None:
    name = f"{GLIMS_ID}_{DATE.isoformat()}_L8_C02_T1_L2_SR.tif"
    files = {source: out / "scenes" / GLIMS_ID / name for source, out in three_fetches.items()}
    for source, path in nonempty(files).items():
        assert path.exists(), f"{source} wrote no {name}: {sorted(p.name for p in path.parent.glob('*'))}"
    reference = files["earthengine"].read_bytes()
    assert files["stac"].read_bytes() == reference
    assert files["local"].read_bytes() == reference
    # and the pixels are the provider's, cut out on the glacier grid, with the fill corner as fill
    grid = glacier_grid()
    bands, _ = provider_scene(grid)
    with rasterio.open(files["local"]) as src:
        assert list(src.descriptions) == list(BANDS) and src.transform == grid.transform
        red = src.read(BANDS.index("red") + 1)
        qa = src.read(BANDS.index("qa_pixel") + 1)
    np.testing.assert_array_equal(red, bands["red"][5:5 + grid.height, 5:5 + grid.width])
    assert (qa[:4, :7] == 1).all() and (red[:4, :7] == 0).all() and (qa[4:, 7:] != 1).all()


def test_three_sources_give_the_catalog_the_same_metadata(three_fetches: dict[str, Path]) -> None:
    rows = {}
    for source, out in nonempty(three_fetches).items():
        catalog = build_catalog(out / "scenes", out / "catalog.parquet", progress=False)
        assert len(catalog) == 1 and catalog["status"].iloc[0] == "ok", source
        rows[source] = catalog.iloc[0]
    for column in ("glims_id", "date", "satellite", "cloud_cover", "n_pixels", "nodata_pixels", "zero_pixel_pct"):
        values = {source: row[column] for source, row in rows.items()}
        assert len({str(v) for v in values.values()}) == 1, (column, values)
    assert rows["earthengine"]["image_quality"] == 9 and rows["local"]["image_quality"] == 9
    # STAC items carry no image quality; nothing is invented
    assert rows["stac"]["image_quality"] is None or np.isnan(rows["stac"]["image_quality"])
