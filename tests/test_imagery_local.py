"""The local-folder imagery source on tiny generated GeoTIFFs, and the real Trient import (slow).

Grids are 20 x 30 pixels at 30 m in UTM zone 32 (near Trient); files are written in zone 32 on the
grid's lattice, warped into zone 31, in EPSG:4326 (the DEM), as C2 DN or physical values, with
C2 QA_PIXEL, Collection 1 BQA or no QA band.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.warp import Resampling, calculate_default_transform, reproject

from glacierwatch.catalog import build_catalog
from glacierwatch.catalog.metadata import record_from_usgs_keys
from glacierwatch.config import ImageryConfig, LocalConfig
from glacierwatch.errors import ConfigError, DatasetNotFoundError, InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery import FetchPaths, fetch_imagery, warp_to_grid
from glacierwatch.imagery.records import GlacierRequest, grid_lonlat_bounds
from glacierwatch.imagery.sources import make_source
from glacierwatch.imagery.sources.base import ImagerySource, SourceError
from glacierwatch.imagery.sources.local import (
    LocalSource,
    c1_bqa_to_qa_pixel,
    compile_date_regex,
    date_from_name,
    satellite_from_name,
)
from glacierwatch.io import read_raster, read_scene
from glacierwatch.landsat import (
    QA,
    QA_BAND,
    SCENE_BANDS,
    dn_to_kelvin,
    dn_to_reflectance,
    kelvin_to_dn,
    qa_confidence,
    reflectance_to_dn,
)
from glacierwatch.tasks import read_ledger

GLIMS_ID = "G007026E45991N"
GRID = GlacierGrid("EPSG:32632", x0=345_600.0, y0=5_098_500.0, resolution=30.0, width=30, height=20)
BY_NUMBER = [f"{b}={i}" for i, b in enumerate(SCENE_BANDS, start=1)]
TRIENT_REGEX = r"_(?P<year>\d{4})(?P<month>\d{2})(?P<doy>\d{1,3})_"
CLEAR, CLOUDY = int(QA.CLEAR), int(QA.CLOUD) | (3 << 8)


# ------------------------------------------------------------------ helpers

def write_tif(path: Path, data: np.ndarray, *, crs: str | None, transform: Affine,
              descriptions: list[str] | None = None, nodata: float | None = None) -> Path:
    """Write a (bands, rows, cols) array as a GeoTIFF (no CRS when ``crs`` is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
               "dtype": data.dtype.name, "transform": transform, "nodata": nodata}
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, desc in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, desc)
    return path


def aligned_transform(margin: int, grid: GlacierGrid = GRID) -> Affine:
    """Transform of a file on the grid's lattice, ``margin`` pixels larger on every side."""
    return Affine(grid.resolution, 0, grid.x0 - margin * grid.resolution, 0, -grid.resolution,
                  grid.y0 + margin * grid.resolution)


def blocky_dn(height: int, width: int, *, block: int = 6, cloudy_block: tuple[int, int] | None = (1, 2)) -> np.ndarray:
    """(8, rows, cols) uint16: C2 DN constant on ``block`` x ``block`` squares, distinct per band and
    square; QA clear, except one cloudy square."""
    r, c = np.indices((height, width))
    square = (r // block) * 100 + (c // block)
    data = np.stack([8_000 + 1_000 * b + 7 * square for b in range(7)]).astype(np.uint16)
    qa = np.full((height, width), CLEAR, dtype=np.uint16)
    if cloudy_block is not None:
        qa[(r // block == cloudy_block[0]) & (c // block == cloudy_block[1])] = CLOUDY
    return np.concatenate([data, qa[None]])


def request(grid: GlacierGrid = GRID, *, start: str = "1984-03-01", end: str = "2030-01-01",
            max_cloud_cover: float | None = None) -> GlacierRequest:
    return GlacierRequest(glims_id=GLIMS_ID, grid=grid, bbox=grid_lonlat_bounds(grid),
                          start=dt.date.fromisoformat(start), end=dt.date.fromisoformat(end),
                          max_cloud_cover=max_cloud_cover)


def write_inventory(path: Path, grid: GlacierGrid = GRID) -> Path:
    """The minimal inventory the imagery stage reads (glims_id, grid, outline_date)."""
    pd.DataFrame({"glims_id": [GLIMS_ID], "grid": [grid.to_json()],
                  "outline_date": pd.to_datetime(["2010-09-01"])}).to_parquet(path, index=False)
    return path


def by_id(records: list) -> dict:
    return {r.scene_id: r for r in records}


# ------------------------------------------------------------------ two UTM zones, one grid

def test_files_in_two_utm_zones_land_on_one_grid(tmp_path: Path) -> None:
    margin = 5
    scene = blocky_dn(GRID.height + 2 * margin, GRID.width + 2 * margin)
    src_transform = aligned_transform(margin)
    write_tif(tmp_path / "in" / "z32" / "LC08_L2SP_195028_20200815_20200822_02_T1.tif", scene,
              crs="EPSG:32632", transform=src_transform, descriptions=list(SCENE_BANDS), nodata=0)
    # the same scene as another provider delivers it: warped (nearest, 30 m) into zone 31
    b_transform, b_width, b_height = calculate_default_transform(
        "EPSG:32632", "EPSG:32631", scene.shape[2], scene.shape[1], *_bounds(src_transform, scene.shape),
        resolution=30.0)
    zone31 = np.zeros((8, b_height, b_width), dtype=np.uint16)
    reproject(scene, zone31, src_transform=src_transform, src_crs="EPSG:32632", dst_transform=b_transform,
              dst_crs="EPSG:32631", src_nodata=0, dst_nodata=0, resampling=Resampling.nearest)
    write_tif(tmp_path / "in" / "z31" / "LC08_L2SP_195028_20200831_20200906_02_T1.tif", zone31,
              crs="EPSG:32631", transform=b_transform, descriptions=list(SCENE_BANDS), nodata=0)

    source = LocalSource(tmp_path / "in")
    records = by_id(source.search(request()))
    assert set(records) == {"z32/LC08_L2SP_195028_20200815_20200822_02_T1.tif",
                            "z31/LC08_L2SP_195028_20200831_20200906_02_T1.tif"}
    a = source.read(records["z32/LC08_L2SP_195028_20200815_20200822_02_T1.tif"], GRID)
    b = source.read(records["z31/LC08_L2SP_195028_20200831_20200906_02_T1.tif"], GRID)
    crop = scene[:, margin:-margin, margin:-margin]
    for i, name in enumerate(SCENE_BANDS):
        assert a[name].shape == GRID.shape and a[name].dtype == np.uint16
        # zone 32, on the grid's lattice: the pixels themselves
        np.testing.assert_array_equal(a[name], crop[i], err_msg=name)
    # zone 31: exactly the direct nearest warp of the file onto the grid
    direct = warp_to_grid(zone31, src_crs="EPSG:32631", src_transform=b_transform, grid=GRID)
    for i, name in enumerate(SCENE_BANDS):
        np.testing.assert_array_equal(b[name], direct[i], err_msg=name)
    # and where both observe a pixel away from square edges, the two imports agree
    r, c = np.indices(GRID.shape)
    interior = np.isin((r + margin) % 6, [1, 2, 3, 4]) & np.isin((c + margin) % 6, [1, 2, 3, 4])
    both = interior & (a[QA_BAND] != 1) & (b[QA_BAND] != 1)
    assert both.sum() > 0.3 * GRID.width * GRID.height
    for name in SCENE_BANDS:
        np.testing.assert_array_equal(a[name][both], b[name][both], err_msg=name)


def _bounds(transform: Affine, shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    height, width = shape[-2:]
    left, top = transform.c, transform.f
    return left, top + height * transform.e, left + width * transform.a, top


def test_search_keeps_files_meeting_the_grid_and_the_window(tmp_path: Path) -> None:
    scene = blocky_dn(GRID.height, GRID.width)
    far = Affine(30, 0, GRID.x0 + 30_000, 0, -30, GRID.y0)  # 30 km east: misses the grid
    half = Affine(30, 0, GRID.x0 + 15 * 30, 0, -30, GRID.y0)  # covers the right half only
    write_tif(tmp_path / "LT05_19900810.tif", scene, crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS))
    write_tif(tmp_path / "LT05_19900811.tif", scene, crs="EPSG:32632", transform=far, descriptions=list(SCENE_BANDS))
    write_tif(tmp_path / "LT05_19900812.tif", scene, crs="EPSG:32632", transform=half, descriptions=list(SCENE_BANDS))
    write_tif(tmp_path / "LT05_19950812.tif", scene, crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS))
    source = LocalSource(tmp_path)
    found = source.search(request(start="1990-01-01", end="1990-12-31"))
    assert [r.scene_id for r in found] == ["LT05_19900810.tif", "LT05_19900812.tif"]
    assert [r.satellite for r in found] == ["L5", "L5"]
    assert found[0].date == dt.date(1990, 8, 10)
    assert source.search(request(start="1995-01-01", end="1995-12-31"))[0].scene_id == "LT05_19950812.tif"
    halfway = source.read(found[1], GRID)
    fill = halfway[QA_BAND] == int(QA.FILL)
    assert fill[:, :15].all() and not fill[:, 15:].any()
    assert (halfway["blue"][:, :15] == 0).all()
    # L8 was not flying in 1990: the satellite filter of the request applies
    assert source.search(GlacierRequest(GLIMS_ID, GRID, grid_lonlat_bounds(GRID), dt.date(1990, 1, 1),
                                        dt.date(1990, 12, 31), satellites=("L8",))) == []


def test_cloud_cover_is_computed_over_the_grid_and_filters(tmp_path: Path) -> None:
    scene = blocky_dn(GRID.height, GRID.width, cloudy_block=(1, 2))  # one 6 x 6 cloudy square
    clear = blocky_dn(GRID.height, GRID.width, cloudy_block=None)
    write_tif(tmp_path / "LC08_20200815.tif", scene, crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS))
    write_tif(tmp_path / "LC08_20200816.tif", clear, crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS))
    source = LocalSource(tmp_path)
    records = by_id(source.search(request()))
    cloudy = records["LC08_20200815.tif"].properties
    assert cloudy["CLOUD_COVER"] == pytest.approx(100 * 36 / 600, abs=1e-3)
    assert cloudy["GLACIERWATCH_CLOUD_COVER_SCOPE"] == "glacier_grid"
    assert cloudy["SPACECRAFT_ID"] == "LANDSAT_8" and cloudy["SENSOR_ID"] == "OLI_TIRS"
    assert cloudy["DATE_ACQUIRED"] == "2020-08-15"
    assert cloudy["GLACIERWATCH_VALUES"] == "c2_l2_dn"
    assert "IMAGE_QUALITY" not in cloudy and "IMAGE_QUALITY_OLI" not in cloudy
    assert records["LC08_20200816.tif"].properties["CLOUD_COVER"] == 0.0
    # the catalog reads these keys back: L8, the date, the cloud cover, no image quality
    parsed = record_from_usgs_keys(cloudy, source="ee")
    assert (parsed.satellite, parsed.date, parsed.image_quality) == ("L8", dt.date(2020, 8, 15), None)
    assert parsed.cloud_cover == pytest.approx(6.0)
    # a cloud limit (timeseries mode) leaves the cloudy file out
    assert [r.scene_id for r in source.search(request(max_cloud_cover=5.0))] == ["LC08_20200816.tif"]


# ------------------------------------------------------------------ band maps and values

def test_band_map_by_number_and_by_description(tmp_path: Path) -> None:
    scene = blocky_dn(GRID.height, GRID.width)
    order = [7, 3, 0, 6, 1, 5, 2, 4]  # file band k holds SCENE_BANDS[order[k]]
    descriptions = ["QA_PIXEL", "SR_B4", "SR_B1", "ST_B6", "SR_B2", "SR_B7", "SR_B3", "SR_B5"]
    write_tif(tmp_path / "LE07_20020601.tif", scene[order], crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=descriptions)
    numbers = [f"{SCENE_BANDS[b]}={k}" for k, b in enumerate(order, start=1)]
    names = ["blue=SR_B1", "green=sr_b2", "red=SR_B3", "nir08=SR_B4", "swir16=SR_B5", "swir22=SR_B7",
             "lwir=ST_B6", "qa_pixel=QA_PIXEL"]
    for band_map in (numbers, names):
        source = LocalSource(tmp_path, band_map=band_map)
        (record,) = source.search(request())
        assert record.satellite == "L7"
        got = source.read(record, GRID)
        for i, name in enumerate(SCENE_BANDS):
            np.testing.assert_array_equal(got[name], scene[i], err_msg=f"{band_map[0]}: {name}")


def test_physical_values_round_trip_to_dn(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    refl = rng.uniform(-0.05, 1.2, size=(6, GRID.height, GRID.width)).astype(np.float32)
    kelvin = rng.uniform(240.0, 300.0, size=(1, GRID.height, GRID.width)).astype(np.float32)
    qa = np.full((1, GRID.height, GRID.width), CLEAR, dtype=np.float32)
    # file order as in Earth Engine TM exports: B1-B5, B6 (thermal), B7, QA
    data = np.concatenate([refl[:5], kelvin, refl[5:], qa])
    write_tif(tmp_path / "scene_20100705_Landsat5.tif", data, crs="EPSG:32632", transform=aligned_transform(0))
    band_map = ["blue=1", "green=2", "red=3", "nir08=4", "swir16=5", "lwir=6", "swir22=7", "qa_pixel=8"]
    source = LocalSource(tmp_path, band_map=band_map, values="physical", reflectance="surface")
    (record,) = source.search(request())
    assert record.properties["GLACIERWATCH_VALUES"] == "surface_reflectance"
    got = source.read(record, GRID)
    reflective = ["blue", "green", "red", "nir08", "swir16", "swir22"]
    for i, name in enumerate(reflective):
        np.testing.assert_array_equal(got[name], reflectance_to_dn(refl[i]), err_msg=name)
        np.testing.assert_allclose(dn_to_reflectance(got[name]), refl[i], atol=1.5e-5)
    np.testing.assert_array_equal(got["lwir"], kelvin_to_dn(kelvin[0]))
    np.testing.assert_allclose(dn_to_kelvin(got["lwir"]), kelvin[0], atol=2e-3)
    np.testing.assert_array_equal(got[QA_BAND], np.full(GRID.shape, CLEAR))


def test_non_finite_and_nodata_pixels_become_fill(tmp_path: Path) -> None:
    data = np.full((8, GRID.height, GRID.width), 0.3, dtype=np.float32)
    data[5] = 270.0  # thermal, K
    data[7] = 672.0  # a Collection 1 TM BQA value: clear, low confidences
    data[0, 2, 3] = -np.inf  # Earth Engine export of a masked pixel
    data[1, 4, 5] = np.nan
    data[4, 6, 7] = -9999.0  # the file's nodata value
    data[7, 8, 9] = 1.0  # BQA designated fill
    write_tif(tmp_path / "G000000000000N_199007196_Landsat5.tif", data, crs="EPSG:32632",
              transform=aligned_transform(0), nodata=-9999.0)
    source = LocalSource(tmp_path, band_map=["blue=1", "green=2", "red=3", "nir08=4", "swir16=5", "lwir=6",
                                             "swir22=7", "qa_pixel=8"],
                         values="physical", qa_format="c1_bqa", date_regex=TRIENT_REGEX, satellite="L5")
    (record,) = source.search(request())
    assert record.date == dt.date(1990, 7, 15)
    assert record.properties["GLACIERWATCH_VALUES"] == "toa_reflectance"  # C1 BQA: a Level-1 product
    got = source.read(record, GRID)
    bad = np.zeros(GRID.shape, dtype=bool)
    bad[2, 3] = bad[4, 5] = bad[6, 7] = bad[8, 9] = True
    np.testing.assert_array_equal(got[QA_BAND] == int(QA.FILL), bad)
    for name in SCENE_BANDS:
        if name != QA_BAND:
            assert (got[name][bad] == 0).all(), name
            assert (got[name][~bad] == (kelvin_to_dn(270.0) if name == "lwir" else reflectance_to_dn(0.3))).all()
    assert (got[QA_BAND][~bad] == c1_bqa_to_qa_pixel(np.array(672))).all()
    # 4 of 600 pixels are fill: the cloud cover counts only the 596 observed ones (none cloudy)
    assert record.properties["CLOUD_COVER"] == 0.0


def test_qa_format_none_derives_fill_and_clear(tmp_path: Path) -> None:
    data = blocky_dn(GRID.height, GRID.width)[:7].astype(np.float32)
    data[2, 0, 0] = np.nan
    write_tif(tmp_path / "LT05_19920707.tif", data, crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS[:7]))
    source = LocalSource(tmp_path, band_map=[f"{b}={b}" for b in SCENE_BANDS[:7]], qa_format="none")
    (record,) = source.search(request())
    assert "CLOUD_COVER" not in record.properties  # nothing to compute it from
    got = source.read(record, GRID)
    expected = np.full(GRID.shape, CLEAR)
    expected[0, 0] = int(QA.FILL)
    np.testing.assert_array_equal(got[QA_BAND], expected)
    assert all(got[b][0, 0] == 0 for b in SCENE_BANDS[:7])


# ------------------------------------------------------------------ Collection 1 BQA

@pytest.mark.parametrize(("bqa", "expected"), [
    (0b1, int(QA.FILL)),  # designated fill, and nothing else
    (0b1 | 1 << 4 | 3 << 5, int(QA.FILL)),  # fill wins over cloud
    (1 << 4 | 3 << 5, int(QA.CLOUD) | 3 << 8),  # cloud + high cloud confidence -> bit 3 + bits 8-9
    (1 << 4 | 2 << 5, int(QA.CLOUD) | 2 << 8),
    (1 << 5, int(QA.CLEAR) | 1 << 8),  # low cloud confidence, no cloud bit: clear
    (3 << 7, int(QA.CLOUD_SHADOW) | 3 << 10),  # high shadow confidence: shadow bit, not clear
    (2 << 7, int(QA.CLEAR) | 2 << 10),  # medium shadow confidence: copied, still clear
    (3 << 9, int(QA.CLEAR) | int(QA.SNOW) | 3 << 12),  # high snow/ice confidence: snow bit
    (1 << 9, int(QA.CLEAR) | 1 << 12),
    (3 << 11, int(QA.CLEAR) | int(QA.CIRRUS) | 3 << 14),  # high cirrus confidence (L8): cirrus bit
    (2 << 11, int(QA.CLEAR) | 2 << 14),
    (1 << 1 | 3 << 2, int(QA.CLEAR)),  # terrain occlusion / dropped pixel and saturation: no C2 bit
    (672, int(QA.CLEAR) | 1 << 8 | 1 << 10 | 1 << 12),  # real TM BQA values of the Trient exports
    (1732, int(QA.CLEAR) | int(QA.SNOW) | 2 << 8 | 1 << 10 | 3 << 12),
])
def test_c1_bqa_translation_bit_by_bit(bqa: int, expected: int) -> None:
    got = c1_bqa_to_qa_pixel(np.array([bqa], dtype=np.uint16))
    assert got.dtype == np.uint16
    assert int(got[0]) == expected, f"BQA {bqa:#018b} -> {int(got[0]):#018b}, expected {expected:#018b}"


def test_c1_bqa_confidences_read_back_with_the_c2_helpers() -> None:
    rng = np.random.default_rng(3)
    bqa = rng.integers(0, 1 << 13, size=500, dtype=np.uint16) & ~np.uint16(1)  # no fill
    qa = c1_bqa_to_qa_pixel(bqa)
    for name, shift in {"cloud": 5, "cloud_shadow": 7, "snow": 9, "cirrus": 11}.items():
        np.testing.assert_array_equal(qa_confidence(qa, name), (bqa >> shift) & 3, err_msg=name)
    np.testing.assert_array_equal((qa & int(QA.CLOUD)) != 0, (bqa >> 4) & 1 == 1)
    np.testing.assert_array_equal((qa & int(QA.DILATED_CLOUD)) != 0, False)
    np.testing.assert_array_equal((qa & int(QA.WATER)) != 0, False)


# ------------------------------------------------------------------ names, side-cars, config

def test_dates_from_names_with_day_of_year() -> None:
    pattern = compile_date_regex(TRIENT_REGEX)
    assert date_from_name("G000000000000N_199004100_Landsat5.tif", pattern) == dt.date(1990, 4, 10)
    assert date_from_name("G000000000000N_19900113_Landsat5.tif", pattern) == dt.date(1990, 1, 13)
    assert date_from_name("G000000000000N_19910255_Landsat5.tif", pattern) == dt.date(1991, 2, 24)
    assert date_from_name("G000000000000N_199109247_Landsat5.tif", pattern) == dt.date(1991, 9, 4)
    assert date_from_name("G000000000000N_199005100_Landsat5.tif", pattern) is None  # DOY 100 is in April
    assert date_from_name("G000000000000N_1990001000_Landsat5.tif", pattern) is None
    default = compile_date_regex(LocalConfig().date_regex)
    assert date_from_name("LC08_L2SP_195028_20200815_20200822_02_T1_SR.tif", default) == dt.date(2020, 8, 15)
    assert date_from_name("trient_2003-08-15.tif", default) == dt.date(2003, 8, 15)
    with pytest.raises(ConfigError, match="named groups"):
        compile_date_regex(r"(?P<year>\d{4})(?P<day>\d{2})")
    with pytest.raises(ConfigError, match="not a regular expression"):
        compile_date_regex(r"(?P<year>\d{4")


@pytest.mark.parametrize(("name", "satellite"), [
    ("LT05_L2SP_195028_19900815_20200916_02_T1.tif", "L5"), ("LE07_L1TP_x.tif", "L7"),
    ("LC08_L2SP_195028.tif", "L8"), ("LC09_L2SP_195028.tif", "L9"), ("G000000000000N_19900113_Landsat5.tif", "L5"),
    ("trient_LANDSAT_7_2001.tif", "L7"), ("trient_L8_2015-08-01.tif", "L8"), ("trient_2015-08-01.tif", None),
    ("L2SP_195028_x.tif", None),
])
def test_satellite_from_name(name: str, satellite: str | None) -> None:
    assert satellite_from_name(name) == satellite


def test_files_without_date_or_satellite_are_skipped_with_one_warning_each(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    scene = blocky_dn(GRID.height, GRID.width)
    for name in ("LC08_20200815.tif", "LC08_nodate.tif", "trient_2020-08-16.tif", "LC08_19900101.tif"):
        write_tif(tmp_path / name, scene, crs="EPSG:32632", transform=aligned_transform(0),
                  descriptions=list(SCENE_BANDS))
    with caplog.at_level(logging.WARNING, logger="glacierwatch.imagery.sources.local"):
        source = LocalSource(tmp_path)
        assert [r.scene_id for r in source.search(request())] == ["LC08_20200815.tif"]
        source.search(request())  # the index is built once: no second round of warnings
        LocalSource(tmp_path).search(request())  # nor for a new instance in the same process
    everything = [r.getMessage() for r in caplog.records]
    # the kept file has no metadata file beside it: said once (issue 15), apart from the skip warnings
    no_metadata = [m for m in everything if "no metadata file beside it (" in m]
    assert len(no_metadata) == 1 and "LC08_20200815.tif" in no_metadata[0], no_metadata
    messages = [m for m in everything if m not in no_metadata]
    assert len(messages) == 3, messages
    assert any("LC08_nodate.tif" in m and "no date" in m for m in messages)
    assert any("trient_2020-08-16.tif" in m and "satellite" in m for m in messages)
    assert any("LC08_19900101.tif" in m and "did not acquire" in m for m in messages)


def test_sidecar_metadata_is_passed_through(tmp_path: Path) -> None:
    scene = blocky_dn(GRID.height, GRID.width)
    ee = {"CLOUD_COVER": 3.2, "CLOUD_COVER_LAND": 3.0, "IMAGE_QUALITY_OLI": 9, "SPACECRAFT_ID": "LANDSAT_8",
          "SENSOR_ID": "OLI_TIRS", "DATE_ACQUIRED": "2020-08-15", "LANDSAT_SCENE_ID": "LC81950282020228LGN00",
          "SUN_ELEVATION": 51.25, "WRS_PATH": 195, "WRS_ROW": 28}
    write_tif(tmp_path / "export_a.tif", scene, crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS))
    (tmp_path / "export_a.json").write_text(json.dumps(ee), encoding="utf-8")
    mtl = {"LANDSAT_METADATA_FILE": {
        "PRODUCT_CONTENTS": {"LANDSAT_PRODUCT_ID": "LE07_L2SP_195028_20020601_20200916_02_T1",
                             "PROCESSING_LEVEL": "L2SP", "COLLECTION_NUMBER": "02", "COLLECTION_CATEGORY": "T1"},
        "IMAGE_ATTRIBUTES": {"SPACECRAFT_ID": "LANDSAT_7", "SENSOR_ID": "ETM", "WRS_PATH": "195", "WRS_ROW": "028",
                             "DATE_ACQUIRED": "2002-06-01", "SCENE_CENTER_TIME": "10:01:02.1234567Z",
                             "CLOUD_COVER": "12.50", "IMAGE_QUALITY": "9", "SUN_AZIMUTH": "135.5"}}}
    write_tif(tmp_path / "export_b.tif", scene, crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS))
    (tmp_path / "export_b_MTL.json").write_text(json.dumps(mtl), encoding="utf-8")
    records = by_id(LocalSource(tmp_path).search(request()))
    a, b = records["export_a.tif"], records["export_b.tif"]
    assert (a.date, a.satellite) == (dt.date(2020, 8, 15), "L8")  # the name has no date: the side-car gives it
    assert {k: a.properties[k] for k in ee} == ee
    assert "GLACIERWATCH_CLOUD_COVER_SCOPE" not in a.properties
    assert a.properties["GLACIERWATCH_METADATA_FILE"] == "export_a.json"
    assert (b.date, b.satellite) == (dt.date(2002, 6, 1), "L7")
    parsed = record_from_usgs_keys(b.properties, source="ee")
    assert (parsed.product_id, parsed.cloud_cover, parsed.image_quality, parsed.wrs_path, parsed.wrs_row) == \
        ("LE07_L2SP_195028_20020601_20200916_02_T1", 12.5, 9, 195, 28)
    assert parsed.acquired == dt.datetime(2002, 6, 1, 10, 1, 2, 123456, tzinfo=dt.UTC)
    assert b.properties["COLLECTION_CATEGORY"] == "T1"


def test_configuration_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="lacks qa_pixel"):
        LocalSource(tmp_path, band_map=[f"{b}={i}" for i, b in enumerate(SCENE_BANDS[:7], start=1)])
    with pytest.raises(ConfigError, match="not a band name"):
        LocalSource(tmp_path, band_map=[*BY_NUMBER, "panchromatic=9"])
    with pytest.raises(ConfigError, match="mapped twice"):
        LocalSource(tmp_path, band_map=[*BY_NUMBER, "nir=4"])
    with pytest.raises(ConfigError, match="values"):
        LocalSource(tmp_path, values="dn")
    with pytest.raises(ConfigError, match="qa_format"):
        LocalSource(tmp_path, qa_format="c3")
    with pytest.raises(ConfigError, match="satellite"):
        LocalSource(tmp_path, satellite="L4")
    with pytest.raises(ConfigError, match="input_dir is empty"):
        LocalSource.from_config(LocalConfig())
    source = make_source("local", ImageryConfig(local=LocalConfig(input_dir=str(tmp_path), satellite="LANDSAT_5")))
    assert isinstance(source, LocalSource) and isinstance(source, ImagerySource)
    assert source.satellite == "L5"


# ------------------------------------------------------------------ bad files and the fetch

def test_bad_files_raise_source_error_and_the_fetch_continues(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    scene = blocky_dn(GRID.height, GRID.width)
    write_tif(folder / "LT05_20050801.tif", scene, crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS))
    folder.joinpath("LT05_20050802.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 4)  # corrupt
    write_tif(folder / "LT05_20050803.tif", scene, crs=None, transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS))
    write_tif(folder / "LT05_20050804.tif", scene[:6], crs="EPSG:32632", transform=aligned_transform(0),
              descriptions=list(SCENE_BANDS[:6]))  # no lwir, no qa_pixel
    source = LocalSource(folder, band_map=BY_NUMBER)
    records = by_id(source.search(request()))
    assert set(records) == {f"LT05_2005080{i}.tif" for i in range(1, 5)}
    for name, reason in [("LT05_20050802.tif", "unreadable"), ("LT05_20050803.tif", "no CRS"),
                         ("LT05_20050804.tif", "band 7")]:
        with pytest.raises(SourceError, match=reason) as info:
            source.read(records[name], GRID)
        assert name in str(info.value)
    with pytest.raises(SourceError, match="no band described 'lwir'"):
        LocalSource(folder).read(records["LT05_20050804.tif"], GRID)

    inventory = write_inventory(tmp_path / "inventory.parquet")
    out = tmp_path / "work"
    report = fetch_imagery(inventory, out, mode="timeseries", start=dt.date(2005, 7, 1), end=dt.date(2005, 8, 31),
                           config=ImageryConfig(timeseries_max_cloud_cover=None), progress=False,
                           source_factory=lambda: LocalSource(folder, band_map=BY_NUMBER))
    assert GLIMS_ID in report.failed and "3 scene(s) failed" in report.failed[GLIMS_ID]
    paths = FetchPaths.for_out(out)
    written = sorted(p.name for p in (paths.scenes_dir / GLIMS_ID).glob("*.tif"))
    assert written == [f"{GLIMS_ID}_2005-08-01_L5_C02_T1_L2_SR.tif"]
    scene_failures = [r for r in read_ledger(paths.ledger) if r.get("scene_ids") and r["scene_ids"] != ["dem"]]
    assert sorted(r["scene_ids"][0] for r in scene_failures) == ["LT05_20050802.tif", "LT05_20050803.tif",
                                                                 "LT05_20050804.tif"]
    assert all(r["error_class"] == "SourceError" for r in scene_failures)
    # the scene written is a standard scene the catalog reads (ok, no IMAGE_QUALITY invented). Landsat 5:
    # the catalog wants 9 bands (coastal too) in a Landsat 8/9 file, see docs/imagery_local.md
    written_scene = read_scene(paths.scenes_dir / GLIMS_ID / written[0])
    for i, name in enumerate(SCENE_BANDS):
        np.testing.assert_array_equal(written_scene.bands[name], scene[i], err_msg=name)
    catalog = build_catalog(paths.scenes_dir, tmp_path / "catalog.parquet", inventory=inventory, progress=False)
    row = catalog.iloc[0]
    assert row["status"] == "ok" and pd.isna(row["image_quality"])
    assert row["cloud_cover"] == pytest.approx(6.0) and row["box_cloud_fraction"] == pytest.approx(6.0)


# ------------------------------------------------------------------ DEM

def test_dem_in_geographic_crs_is_warped_bilinear(tmp_path: Path) -> None:
    lon0, lat1, lon1, lat0 = _lonlat_box(GRID, pad_deg=0.01)
    step = 0.0005
    width, height = int(round((lon1 - lon0) / step)), int(round((lat1 - lat0) / step))
    transform = Affine(step, 0, lon0, 0, -step, lat1)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = lon0 + cols * step, lat1 - rows * step
    elevation = 2_000.0 + 40_000.0 * (lon - lon0) + 20_000.0 * (lat1 - lat)  # a plane, m
    dem = np.rint(elevation).astype(np.int16)
    dem[: height // 2, : width // 2] = -32768  # a no-data quarter
    write_tif(tmp_path / "dem.tif", np.stack([dem, dem]), crs="EPSG:4326", transform=transform, nodata=-32768)
    (tmp_path / "scenes").mkdir()
    source = LocalSource(tmp_path / "scenes", dem_file=tmp_path / "dem.tif")
    got = source.read_dem(request())
    assert got is not None and got.dtype == np.float32 and got.shape == GRID.shape
    # expected: the plane at each grid pixel centre
    xs = GRID.x0 + (np.arange(GRID.width) + 0.5) * GRID.resolution
    ys = GRID.y0 - (np.arange(GRID.height) + 0.5) * GRID.resolution
    gx, gy = np.meshgrid(xs, ys)
    plon, plat = Transformer.from_crs(GRID.crs, "EPSG:4326", always_xy=True).transform(gx, gy)
    expected = 2_000.0 + 40_000.0 * (plon - lon0) + 20_000.0 * (lat1 - plat)
    nodata_corner = (plon < lon0 + (width // 2) * step + step) & (plat > lat1 - (height // 2) * step - step)
    ok = ~np.isnan(got)
    assert ok.sum() > 0.5 * got.size
    assert not ok[(plon < lon0 + (width // 2 - 1) * step) & (plat > lat1 - (height // 2 - 1) * step)].any()
    np.testing.assert_allclose(got[ok & ~nodata_corner], expected[ok & ~nodata_corner], atol=1.0)
    assert LocalSource(tmp_path / "scenes").read_dem(request()) is None


def _lonlat_box(grid: GlacierGrid, pad_deg: float) -> tuple[float, float, float, float]:
    lon_min, lat_min, lon_max, lat_max = grid_lonlat_bounds(grid)
    return lon_min - pad_deg, lat_max + pad_deg, lon_max + pad_deg, lat_min - pad_deg


# ------------------------------------------------------------------ the real Trient import

def _load_trient_script() -> object:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "trient_import.py"
    spec = importlib.util.spec_from_file_location("trient_import", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trient_real_import(shared_data: Path, tmp_path: Path) -> None:
    """29 real Landsat 5 C1 TOA exports (zones 31 and 32, -inf pixels) -> one grid, DEM, catalog, areas
    (about 7 s, so not marked slow)."""
    trient = shared_data / "glacierview_trient_l5_toa_timeseries"
    outline = shared_data / "sgi2010_trient_region" / "trient_SGI2010_B90-02_epsg4326.geojson"
    if not trient.is_dir() or not outline.is_file():
        pytest.skip(f"Trient data not in {shared_data}")
    result = _load_trient_script().run_trient(shared_data, tmp_path / "trient")
    index = pd.read_csv(trient / "index.csv")
    assert result["scenes_written"] == 29 and result["fetch_failed"] == 0
    grid = GlacierGrid.from_dict(result["grid"])
    assert grid.crs == "EPSG:32632"
    scenes = result["scenes"]
    assert len(scenes) == 29 and {s["date"] for s in scenes} == set(index["acq_date"])
    for s in scenes:  # every file on the one grid, its -inf pixels as fill
        src_file = trient / "landsat5_c01_toa" / s["source_file"]
        assert read_scene(s["path"]).grid == grid
        assert s["fill_pixels"] >= s["fill_pixels_outside_footprint"]
        n_inf = int(index.loc[index["file"] == src_file.name, "n_neg_inf_b1"].iloc[0])
        assert (s["nonfinite_source_pixels"] > 0) == (n_inf > 0)
        assert (s["fill_pixels"] > s["fill_pixels_outside_footprint"]) == (n_inf > 0)
    dem, dem_grid, _ = read_raster(result["dem"])
    assert dem_grid == grid and dem.dtype == np.float32
    assert 1900 < np.nanmin(dem) and np.nanmax(dem) < 3600
    assert result["catalog_ok"] == 29
    # the paper's filter would drop them all (no IMAGE_QUALITY, every season, fill); the relaxed one keeps
    # them, and the time-series command measures every one
    assert result["paper_predicates"]["image_quality = 9"] == 0
    assert result["inference_selected"] == 29
    assert result["timeseries_cli_status"] == {"none": 0, "masked": 0}
    assert result["area_rows"] == {"none": 29, "masked": 29}
    # late-summer scenes with most of the outline observed: NDSI areas (outline + 500 m) above the 5.83 km²
    # of SGI 2010 (these are 1990-91, twenty years earlier), and not absurdly so
    summer = [s["area_km2"] for s in scenes if s["month"] in (7, 8, 9) and s["valid_fraction"] > 0.8]
    assert len(summer) >= 3
    assert 5.83 < float(np.median(summer)) < 1.5 * 5.83


def test_dem_folder_per_glacier_files_on_their_own_grids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``dem_dir``: ``<GLIMS_ID>*.tif`` on any grid; a second file (or ``dem_file``) fills the first one's gaps."""
    plane = lambda x, y: 1_500.0 + 0.05 * (x - GRID.x0) + 0.02 * (GRID.y0 - y)  # noqa: E731 (m, in the grid CRS)
    margin, res = 5, 15.0  # finer pixels, larger box, offset lattice: the export's own grid
    x0, y0 = GRID.x0 - margin * 30 + 7.0, GRID.y0 + margin * 30 - 3.0
    width, height = int((GRID.width + 2 * margin) * 30 / res), int((GRID.height + 2 * margin) * 30 / res)
    xs, ys = x0 + (np.arange(width) + 0.5) * res, y0 - (np.arange(height) + 0.5) * res
    gx, gy = np.meshgrid(xs, ys)
    first = plane(gx, gy).astype(np.float32)
    first[:, : width // 2] = np.nan  # the west half missing from the first export
    folder = tmp_path / "dems"
    write_tif(folder / f"{GLIMS_ID}_NASADEM_a.tif", first[np.newaxis], crs="EPSG:32632",
              transform=Affine(res, 0, x0, 0, -res, y0), nodata=float("nan"))
    write_tif(folder / f"{GLIMS_ID}_NASADEM_b.tif", plane(gx, gy).astype(np.float32)[np.newaxis] + 0.5,
              crs="EPSG:32632", transform=Affine(res, 0, x0, 0, -res, y0))
    write_tif(folder / "G001000E01000N.tif", np.zeros((1, 4, 4), np.float32), crs="EPSG:32632",
              transform=aligned_transform(0))  # another glacier's: not used
    (tmp_path / "scenes").mkdir()
    source = LocalSource(tmp_path / "scenes", dem_dir=folder)
    assert [p.name for p in source.dem_files(GLIMS_ID)] == [f"{GLIMS_ID}_NASADEM_a.tif", f"{GLIMS_ID}_NASADEM_b.tif"]
    got = source.read_dem(request())
    cx = GRID.x0 + (np.arange(GRID.width) + 0.5) * GRID.resolution
    cy = GRID.y0 - (np.arange(GRID.height) + 0.5) * GRID.resolution
    expected = plane(*np.meshgrid(cx, cy))
    east = np.meshgrid(cx, cy)[0] > x0 + (width // 2 + 2) * res
    west = np.meshgrid(cx, cy)[0] < x0 + (width // 2 - 2) * res
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got[east], expected[east], atol=0.01)  # from the first file
    np.testing.assert_allclose(got[west], expected[west] + 0.5, atol=0.01)  # its gap filled by the second
    with caplog.at_level(logging.WARNING):
        other = GlacierRequest(glims_id="G007100E46000N", grid=GRID, bbox=grid_lonlat_bounds(GRID),
                               start=dt.date(1990, 1, 1), end=dt.date(2000, 1, 1))
        assert source.read_dem(other) is None
    assert any("no DEM" in r.getMessage() for r in caplog.records)
    with pytest.raises(DatasetNotFoundError, match="dem_dir"):
        LocalSource(tmp_path / "scenes", dem_dir=tmp_path / "missing")


def test_sidecars_named_x_json_and_x_tif_json_are_both_read(tmp_path: Path) -> None:
    scene = blocky_dn(GRID.height, GRID.width)
    for name in ("LC08_a_20200815.tif", "LC08_b_20200816.tif"):
        write_tif(tmp_path / name, scene, crs="EPSG:32632", transform=aligned_transform(0),
                  descriptions=list(SCENE_BANDS))
    props = {"DATE_ACQUIRED": "2020-08-15", "SPACECRAFT_ID": "LANDSAT_8", "SENSOR_ID": "OLI_TIRS", "CLOUD_COVER": 3.5,
             "IMAGE_QUALITY_OLI": 9}
    (tmp_path / "LC08_a_20200815.json").write_text(json.dumps(props))
    (tmp_path / "LC08_b_20200816.tif.json").write_text(json.dumps({**props, "DATE_ACQUIRED": "2020-08-16"}))
    records = LocalSource(tmp_path).search(request())
    assert [r.properties.get("GLACIERWATCH_METADATA_FILE") for r in records] == [
        "LC08_a_20200815.json", "LC08_b_20200816.tif.json"]
    assert all(r.properties["IMAGE_QUALITY_OLI"] == 9 for r in records)


def test_dem_on_a_larger_box_is_put_onto_the_glacier_grid(tmp_path: Path) -> None:
    """A DEM written on a larger box than the glacier grid (a synthetic canvas grown for a glacier's
    past, a national DEM tile) is read onto the grid: chips and time series get the grid's shape and,
    at pixel centres shared by both lattices, the DEM's own values."""
    from glacierwatch.imagery.standard import dem_on_grid
    from glacierwatch.io import write_raster

    big = GlacierGrid("EPSG:32632", 300000.0, 5100000.0, 30.0, 60, 50)
    grid = GlacierGrid("EPSG:32632", 300300.0, 5099700.0, 30.0, 20, 15)  # 10 px right, 10 px down
    elevation = (2000.0 + np.arange(50 * 60, dtype=np.float32).reshape(50, 60))
    write_raster(tmp_path / "dem.tif", elevation, big, band_names=["elevation"])
    dem = dem_on_grid(tmp_path / "dem.tif", grid)
    assert dem.shape == grid.shape
    np.testing.assert_allclose(dem, elevation[10:25, 10:30], rtol=0, atol=1e-3)

    outside = GlacierGrid("EPSG:32632", 400000.0, 5000000.0, 30.0, 20, 15)
    with pytest.raises(InputError, match="no value on the glacier grid"):
        dem_on_grid(tmp_path / "dem.tif", outside)
