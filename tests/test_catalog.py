"""Scene catalog: metadata parsing (real USGS/STAC files), raster statistics, status of bad files,
deduplication, incremental rebuild, the paper's selections at their boundaries, CLI and figure."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio

from glacierwatch.catalog import (
    COLUMN_NAMES,
    REQUIRED_COLUMNS,
    SELECTIONS,
    build_catalog,
    deduplicate,
    parse_metadata_file,
    parse_scene_name,
    query,
    scene_path,
    select,
    selection_sql,
)
from glacierwatch.catalog.metadata import ProviderRecord
from glacierwatch.catalog.queries import config_with
from glacierwatch.catalog.schema import markdown_table
from glacierwatch.cli import main
from glacierwatch.config import CatalogConfig
from glacierwatch.errors import ConfigError, InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.io import write_raster
from glacierwatch.landsat import QA, SENSORS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STAC_DATA = SHARED / "stactools_landsat_c2_metadata"
needs_shared = pytest.mark.skipif(not STAC_DATA.is_dir(), reason=f"shared real data not present at {STAC_DATA}")

GID = "G007026E45991N"
GRID = GlacierGrid("EPSG:32632", 300000.0, 5100000.0, 30.0, 40, 40)
CLEAR = int(QA.CLEAR)


def ee_props(date: dt.date, sat: str, cloud: float = 3.0, quality: int = 9, **extra: Any) -> dict[str, Any]:
    key = "IMAGE_QUALITY" if sat in ("L5", "L7") else "IMAGE_QUALITY_OLI"
    props = {"CLOUD_COVER": cloud, "CLOUD_COVER_LAND": cloud, key: quality,
             "SPACECRAFT_ID": SENSORS[sat].spacecraft_id, "DATE_ACQUIRED": date.isoformat(),
             "WRS_PATH": 195, "WRS_ROW": 28, "SUN_ELEVATION": 45.5, "SUN_AZIMUTH": 150.25,
             "COLLECTION_CATEGORY": "T1", "COLLECTION_NUMBER": 2, "PROCESSING_LEVEL": "L2SP"}
    props.update(extra)
    return props


def make_scene(root: Path, date: dt.date, sat: str = "L5", *, gid: str = GID, grid: GlacierGrid = GRID,
               qa: np.ndarray | None = None, meta: Any = "default", seed: int = 0) -> Path:
    """A standard scene file (uint16, nodata 0, bands named) plus its Earth Engine property JSON."""
    path = scene_path(root, gid, date, sat)
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = SENSORS[sat].file_bands
    rng = np.random.default_rng(seed)
    data = rng.integers(5000, 30000, (len(bands), grid.height, grid.width)).astype(np.uint16)
    data[-1] = CLEAR if qa is None else qa
    if qa is not None:
        data[:-1, (qa & int(QA.FILL)) != 0] = 0
    write_raster(path, data, grid, band_names=bands, nodata=0)
    if meta == "default":
        meta = ee_props(date, sat)
    if meta is not None:
        path.with_suffix(".json").write_text(json.dumps(meta))
    return path


# ---------------------------------------------------------------- real metadata files


MTL_EXPECTED = {  # read by hand from the MTL files' IMAGE_ATTRIBUTES / PRODUCT_CONTENTS
    "LC08_L2SP_005009_20150710_20200908_02_T2": dict(
        cloud_cover=54.65, cloud_cover_land=54.67, image_quality=9, image_quality_tirs=9,
        sun_elevation=40.00159030, sun_azimuth=177.88460070, wrs_path=5, wrs_row=9,
        date=dt.date(2015, 7, 10), satellite="L8", tier="T2", processing_level="L2SP", collection="02",
        sensor_id="OLI_TIRS"),
    "LC08_L2SP_008059_20191201_20200825_02_T1": dict(
        cloud_cover=81.02, cloud_cover_land=81.02, image_quality=9, sun_elevation=57.08727307,
        sun_azimuth=136.31696044, wrs_path=8, wrs_row=59, date=dt.date(2019, 12, 1), tier="T1"),
    "LC08_L2SP_017036_20130419_20200913_02_T2": dict(
        cloud_cover=100.0, cloud_cover_land=100.0, image_quality=9, sun_elevation=59.24977384,
        sun_azimuth=133.70859229, wrs_path=17, wrs_row=36, date=dt.date(2013, 4, 19), tier="T2"),
    "LC08_L2SR_099120_20191129_20201016_02_T2": dict(
        cloud_cover=100.0, cloud_cover_land=100.0, image_quality=9, sun_elevation=20.49329425,
        sun_azimuth=97.57722796, wrs_path=99, wrs_row=120, date=dt.date(2019, 11, 29),
        processing_level="L2SR"),
}

STAC_EXPECTED = {  # read by hand from the STAC items' properties
    "LC08_L2SP_047027_20201204_02_T1.json": dict(
        cloud_cover=1.55, cloud_cover_land=1.9, sun_elevation=18.80722985, sun_azimuth=164.91405951,
        wrs_path=47, wrs_row=27, date=dt.date(2020, 12, 4), satellite="L8", tier="T1",
        processing_level="L2SP", collection="02", image_quality=None, sensor_id="OLI_TIRS"),
    "LC09_L2SP_010065_20220129_02_T1.json": dict(
        cloud_cover=21.12, cloud_cover_land=23.54, sun_elevation=57.84396063, sun_azimuth=112.2005908,
        wrs_path=10, wrs_row=65, date=dt.date(2022, 1, 29), satellite="L9", tier="T1"),
    "LE07_L2SP_021030_20100109_02_T1.json": dict(
        cloud_cover=8.0, cloud_cover_land=8.0, sun_elevation=21.38957268, sun_azimuth=156.98419323,
        wrs_path=21, wrs_row=30, date=dt.date(2010, 1, 9), satellite="L7", sensor_id="ETM"),
    "LT05_L2SP_010067_19860424_02_T2.json": dict(
        cloud_cover=23.0, cloud_cover_land=0.0, sun_elevation=46.93006922, sun_azimuth=58.47866092,
        wrs_path=10, wrs_row=67, date=dt.date(1986, 4, 24), satellite="L5", tier="T2", sensor_id="TM"),
    "LT04_L2SP_002026_19830110_02_T1.json": dict(
        cloud_cover=7.0, cloud_cover_land=1.0, wrs_path=2, wrs_row=26, date=dt.date(1983, 1, 10),
        spacecraft_id="LANDSAT_4", satellite="L4"),
    # older USGS layout (eo:sun_elevation, eo:platform), CLOUD_COVER_LAND -1 = not computed
    "LC08_L2SR_084024_20160111_20201016_02_T1_SR_stac.json": dict(
        cloud_cover=30.41, cloud_cover_land=None, sun_elevation=14.78250544, sun_azimuth=162.36050444,
        wrs_path=84, wrs_row=24, date=dt.date(2016, 1, 11), satellite="L8", processing_level="L2SR",
        product_id="LC08_L2SR_084024_20160111_20201016_02_T1"),
    "LT05_L2SR_087017_20090621_20200827_02_T2_SR_stac.json": dict(
        cloud_cover=25.0, cloud_cover_land=0.0, wrs_path=87, wrs_row=17, date=dt.date(2009, 6, 21),
        satellite="L5", processing_level="L2SR", product_id="LT05_L2SR_087017_20090621_20200827_02_T2"),
}


def _check(record: ProviderRecord, expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        got = getattr(record, key)
        if isinstance(value, float):
            assert got == pytest.approx(value, abs=1e-9), key
        else:
            assert got == value, key


@needs_shared
@pytest.mark.parametrize("product", sorted(MTL_EXPECTED))
@pytest.mark.parametrize("suffix", ["_MTL.json", "_MTL.xml"])
def test_real_mtl_files_parse_to_the_values_in_them(product: str, suffix: str) -> None:
    records = parse_metadata_file(STAC_DATA / "mtl" / f"{product}{suffix}")
    assert len(records) == 1
    record = records[0]
    assert record.source == ("mtl_json" if suffix.endswith("json") else "mtl_xml")
    assert record.product_id == product  # the L2 id, not the Level-1 processing record's
    _check(record, MTL_EXPECTED[product])


@needs_shared
def test_real_mtl_text_and_time() -> None:
    record, = parse_metadata_file(STAC_DATA / "mtl" / "LC08_L2SP_005009_20150710_20200908_02_T2_MTL.txt")
    assert record.source == "mtl_txt"
    _check(record, MTL_EXPECTED["LC08_L2SP_005009_20150710_20200908_02_T2"])
    assert record.acquired == dt.datetime(2015, 7, 10, 14, 34, 35, 978399, tzinfo=dt.UTC)


@needs_shared
@pytest.mark.parametrize("name", sorted(STAC_EXPECTED))
def test_real_stac_items_parse_to_the_values_in_them(name: str) -> None:
    record, = parse_metadata_file(STAC_DATA / "stac_items" / name)
    assert record.source == "stac"
    _check(record, STAC_EXPECTED[name])


@needs_shared
def test_stac_collection_is_not_mistaken_for_an_item() -> None:
    with pytest.raises(InputError, match="neither"):
        parse_metadata_file(STAC_DATA / "stac_items" / "collection.json")


@needs_shared
def test_real_scene_builds_with_mtl_and_stac_beside_it_and_real_qa(tmp_path: Path) -> None:
    """The real (downsampled) C2 L2 band set as one scene, its real MTL JSON/XML and STAC item beside it:
    one row, provider values from the MTL, the box cloud share from the real QA_PIXEL close to the
    scene's CLOUD_COVER (here the box is the whole scene)."""
    product = "LC08_L2SP_005009_20150710_20200908_02_T2"
    band_dir = STAC_DATA / "bands_LC08_L2SP_005009_20150710_downsampled512"
    files = [f"SR_B{i}" for i in range(1, 8)] + ["ST_B10", "QA_PIXEL"]
    arrays = []
    for name in files:
        with rasterio.open(band_dir / f"{product}_{name}.TIF") as src:
            arrays.append(src.read(1))
            profile = src.profile
    path = tmp_path / "scenes" / "G321000E73000N" / "G321000E73000N_2015-07-10_L8_C02_T1_L2_SR.tif"
    path.parent.mkdir(parents=True)
    profile.update(count=len(files), nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack(arrays))
        for i, band in enumerate(SENSORS["L8"].file_bands, start=1):
            dst.set_band_description(i, band)
    stem = path.with_suffix("")
    shutil.copy(STAC_DATA / "mtl" / f"{product}_MTL.json", f"{stem}_MTL.json")
    shutil.copy(STAC_DATA / "mtl" / f"{product}_MTL.xml", f"{stem}_MTL.xml")
    shutil.copy(STAC_DATA / "mtl" / f"{product}_SR_stac.json", f"{stem}.stac.json")

    row = build_catalog(tmp_path / "scenes", tmp_path / "c.parquet", progress=False).iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["metadata_records"] == 3 and row["duplicate_records"] == 2
    assert row["metadata_source"] == "mtl_json"  # equal cloud cover: source order decides
    assert row["cloud_cover"] == pytest.approx(54.65) and row["cloud_cover_land"] == pytest.approx(54.67)
    assert row["image_quality"] == 9 and row["wrs_path"] == 5 and row["wrs_row"] == 9 and row["tier"] == "T2"
    assert row["sun_elevation"] == pytest.approx(40.00159030)
    qa = arrays[-1]
    fill = (qa & 1) != 0
    assert row["nodata_pixels"] == int(fill.sum())
    assert row["n_pixels"] == 512 * 512 * 9 and row["n_pixels_2d"] == 512 * 512
    assert row["box_fill_fraction"] == pytest.approx(100 * fill.mean())
    assert row["box_cloud_fraction"] == pytest.approx(54.65, abs=0.5)
    assert row["crs"] == "EPSG:32624"


# ---------------------------------------------------------------- raster statistics


def test_statistics_from_qa_pixel(tmp_path: Path) -> None:
    qa = np.full((40, 40), CLEAR, np.uint16)
    qa[:10, :] = int(QA.FILL)                      # 400 fill
    qa[10:20, :30] = int(QA.CLOUD)                 # 300 cloud
    qa[20:23, :40] = int(QA.CLOUD_SHADOW)          # 120 shadow
    qa[23:29, :40] = int(QA.SNOW | QA.CLEAR)       # 240 snow (seen)
    qa[29, :5] = int(QA.DILATED_CLOUD)             # 5 dilated cloud (invalid, not counted as cloud)
    make_scene(tmp_path / "s", dt.date(2010, 7, 1), qa=qa)
    row = build_catalog(tmp_path / "s", tmp_path / "c.parquet", progress=False).iloc[0]
    assert row["status"] == "ok"
    assert (row["width"], row["height"], row["bands"]) == (40, 40, 8)
    assert row["n_pixels"] == 40 * 40 * 8 and row["n_pixels_2d"] == 1600
    assert row["nodata_pixels"] == 400
    assert row["zero_values"] == 400 * 7  # fill pixels are 0 in the 7 data bands, QA holds 1
    assert row["zero_pixel_pct"] == pytest.approx(100 * 2800 / 12800)
    assert row["box_fill_fraction"] == pytest.approx(25.0)
    assert row["box_cloud_fraction"] == pytest.approx(100 * 300 / 1200)
    assert row["box_shadow_fraction"] == pytest.approx(100 * 120 / 1200)
    assert row["box_snow_fraction"] == pytest.approx(100 * 240 / 1200)
    assert row["box_valid_fraction"] == pytest.approx(100 * (1200 - 300 - 120 - 5) / 1600)
    assert row["box_source"] == "file" and row["crs"] == "EPSG:32632"


def test_fill_from_all_bands_at_nodata(tmp_path: Path) -> None:
    path = make_scene(tmp_path / "s", dt.date(2010, 7, 1))
    with rasterio.open(path) as src:
        data = src.read()
    data[:, :, :4] = 0  # a wedge with no data at all, QA 0 too (SLC-off-like)
    write_raster(path, data, GRID, band_names=SENSORS["L5"].file_bands, nodata=0)
    row = build_catalog(tmp_path / "s", tmp_path / "c.parquet", progress=False).iloc[0]
    assert row["nodata_pixels"] == 160 and row["zero_values"] == 160 * 8


def _inventory(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "inventory.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def test_inventory_box_window(tmp_path: Path) -> None:
    big = GlacierGrid("EPSG:32632", 300000.0, 5100000.0, 30.0, 100, 80)
    qa = np.full((80, 100), CLEAR, np.uint16)
    qa[:, 50:] = int(QA.CLOUD)  # the right half of the file is cloudy
    make_scene(tmp_path / "s", dt.date(2010, 7, 1), grid=big, qa=qa)
    inside = GlacierGrid("EPSG:32632", 300000.0 + 30 * 10, 5100000.0 - 30 * 5, 30.0, 30, 40)   # clear part
    inv = _inventory(tmp_path, [{"glims_id": GID, "grid": inside.to_json(), "hemisphere": "S", "region": "Alps"}])
    row = build_catalog(tmp_path / "s", tmp_path / "c.parquet", inventory=inv, progress=False).iloc[0]
    assert row["box_source"] == "inventory"
    assert (row["width"], row["height"]) == (30, 40)
    assert row["box_cloud_fraction"] == 0.0 and row["nodata_pixels"] == 0
    assert row["hemisphere"] == "S" and row["region"] == "Alps"
    # whole file: half cloudy
    row = build_catalog(tmp_path / "s", tmp_path / "c2.parquet", progress=False).iloc[0]
    assert row["box_cloud_fraction"] == pytest.approx(50.0) and row["hemisphere"] == "N"
    # a box half outside the file: the outside counts as fill
    half_out = GlacierGrid("EPSG:32632", 300000.0 - 30 * 20, 5100000.0, 30.0, 40, 10)
    inv = _inventory(tmp_path, [{"glims_id": GID, "grid": half_out.to_json()}])
    row = build_catalog(tmp_path / "s", tmp_path / "c.parquet", inventory=inv, progress=False).iloc[0]
    assert (row["width"], row["height"]) == (40, 10)
    assert row["nodata_pixels"] == 200 and row["box_cloud_fraction"] == 0.0
    # a box in another CRS (the same area in the neighbouring UTM zone) is transformed
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:32632", "EPSG:32631", always_xy=True)
    left, bottom, right, top = tr.transform_bounds(300000.0 + 300, 5100000.0 - 2100, 300000.0 + 1200, 5100000.0 - 150)
    other = GlacierGrid.from_projected_bounds("EPSG:32631", left, bottom, right, top, margin=0.0)
    inv = _inventory(tmp_path, [{"glims_id": GID, "grid": other.to_json()}])
    row = build_catalog(tmp_path / "s", tmp_path / "c.parquet", inventory=inv, progress=False).iloc[0]
    assert row["status"] == "ok" and row["box_cloud_fraction"] == 0.0 and row["width"] >= 30
    # a box that misses the file
    away = GlacierGrid("EPSG:32632", 400000.0, 5100000.0, 30.0, 10, 10)
    inv = _inventory(tmp_path, [{"glims_id": GID, "grid": away.to_json()}])
    row = build_catalog(tmp_path / "s", tmp_path / "c.parquet", inventory=inv, progress=False).iloc[0]
    assert row["status"] == "outside_box"


# ---------------------------------------------------------------- bad files, duplicates


def test_bad_files_get_a_status_and_good_rows_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "scenes"
    good = [make_scene(root, dt.date(2010, 7, d), seed=d) for d in (1, 2, 3)]
    corrupt = make_scene(root, dt.date(2010, 8, 1))
    corrupt.write_bytes(b"\x00not a tiff" * 50)
    truncated = make_scene(root, dt.date(2010, 8, 2))
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    no_crs = make_scene(root, dt.date(2010, 8, 3))
    with rasterio.open(no_crs) as src:
        data, profile = src.read(), src.profile
    profile.pop("crs")
    no_crs.unlink()
    with rasterio.open(no_crs, "w", **profile) as dst:
        dst.write(data)
    duplicated = make_scene(root, dt.date(2010, 8, 4), meta=[ee_props(dt.date(2010, 8, 4), "L5", cloud=4.0),
                                                            ee_props(dt.date(2010, 8, 4), "L5", cloud=12.5)])
    bands5 = make_scene(root, dt.date(2010, 8, 5))
    write_raster(bands5, np.ones((5, 40, 40), np.uint16), GRID, band_names=SENSORS["L5"].file_bands[:5], nodata=0)
    make_scene(root, dt.date(2010, 8, 6), meta=None)
    bad_json = make_scene(root, dt.date(2010, 8, 7))
    bad_json.with_suffix(".json").write_text("{not json")
    wrong_date = make_scene(root, dt.date(2010, 8, 8), meta=ee_props(dt.date(2011, 8, 8), "L5"))
    (root / GID / "random.tif").write_bytes(b"x")
    (root / GID / f".{GID}_2010-09-01_L5_C02_T1_L2_SR.tif.abc.part").write_bytes(b"x")  # an unfinished write

    df = build_catalog(root, tmp_path / "catalog.parquet", workers=2, progress=False)
    status = dict(zip(df["file_name"], df["status"], strict=True))
    assert status == {
        **{p.name: "ok" for p in good}, duplicated.name: "ok",
        corrupt.name: "unreadable", truncated.name: "unreadable", no_crs.name: "no_crs",
        bands5.name: "bad_band_count", f"{GID}_2010-08-06_L5_C02_T1_L2_SR.tif": "no_metadata",
        bad_json.name: "bad_metadata", wrong_date.name: "metadata_mismatch", "random.tif": "bad_name",
    }
    assert df.loc[df["status"] != "ok", "error"].notna().all()
    assert df.loc[df["status"] == "ok", "error"].isna().all()
    dup = df.set_index("file_name").loc[duplicated.name]
    assert dup["cloud_cover"] == 12.5 and dup["metadata_records"] == 2 and dup["duplicate_records"] == 1
    ok = df[df["status"] == "ok"]
    assert (ok["n_pixels"] == 12800).all() and (ok["nodata_pixels"] == 0).all()
    assert list(pq.read_table(tmp_path / "catalog.parquet").column_names) == list(COLUMN_NAMES)
    assert set(REQUIRED_COLUMNS) <= set(df.columns)
    assert all(Path(p).is_absolute() for p in df["path"])


def test_deduplication_is_deterministic_and_conservative() -> None:
    a = ProviderRecord(source="ee", cloud_cover=4.0, image_quality=9, wrs_path=195)
    b = ProviderRecord(source="ee", cloud_cover=12.5, image_quality=None)
    c = ProviderRecord(source="stac", cloud_cover=12.5, sun_elevation=30.0)
    for order in ([a, b, c], [c, b, a], [b, a, c]):
        kept, dropped = deduplicate(order)
        assert dropped == 2
        assert kept is not None and kept.cloud_cover == 12.5 and kept.source == "ee"
        assert kept.image_quality == 9 and kept.sun_elevation == 30.0 and kept.wrs_path == 195  # filled in
    kept, dropped = deduplicate([ProviderRecord(source="ee", cloud_cover=None), a])
    assert kept is not None and kept.cloud_cover == 4.0 and dropped == 1
    assert deduplicate([]) == (None, 0)


# ---------------------------------------------------------------- incremental rebuild


def test_incremental_rebuild_reads_only_new_or_changed_files(tmp_path: Path) -> None:
    root, out = tmp_path / "scenes", tmp_path / "catalog.parquet"
    paths = [make_scene(root, dt.date(2012, 7, d), seed=d) for d in (1, 2, 3)]
    first = build_catalog(root, out, progress=False)
    assert first.attrs["build"]["read"] == 3
    again = build_catalog(root, out, progress=False)
    assert again.attrs["build"] == {"files": 3, "read": 0, "reused": 3, "removed": 0, "status": {"ok": 3}}
    pd.testing.assert_frame_equal(first, again)

    paths[0].with_suffix(".json").write_text(json.dumps(ee_props(dt.date(2012, 7, 1), "L5", cloud=42.0)))
    os.utime(paths[0].with_suffix(".json"), ns=(1, 1))  # a different mtime even on coarse clocks
    qa = np.full((40, 40), int(QA.CLOUD), np.uint16)
    make_scene(root, dt.date(2012, 7, 2), qa=qa, seed=2)  # rewritten raster
    new = make_scene(root, dt.date(2012, 7, 4), seed=4)
    paths[2].unlink()
    paths[2].with_suffix(".json").unlink()
    third = build_catalog(root, out, progress=False)
    assert third.attrs["build"]["read"] == 3 and third.attrs["build"]["reused"] == 0
    assert third.attrs["build"]["removed"] == 1
    by_name = third.set_index("file_name")
    assert by_name.loc[paths[0].name, "cloud_cover"] == 42.0
    assert by_name.loc[paths[1].name, "box_cloud_fraction"] == 100.0
    assert new.name in by_name.index and paths[2].name not in by_name.index
    assert build_catalog(root, out, progress=False).attrs["build"]["read"] == 0


# ---------------------------------------------------------------- selections at their boundaries


def _row(case: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update(glims_id=GID, path=f"/scenes/{case}.tif", file_name=f"{case}.tif", date=dt.date(2010, 7, 15),
               satellite="L5", hemisphere="N", cloud_cover=5.0, cloud_cover_land=5.0, image_quality=9,
               n_pixels=60000, n_pixels_2d=7500, nodata_pixels=0, zero_values=0, zero_pixel_pct=0.0,
               box_cloud_fraction=0.0, status="ok", slc_off=False)
    row.update(changes)
    row["path"] = f"/scenes/{case}.tif"
    if row["glims_id"] and "hemisphere" not in changes:
        row["hemisphere"] = row["glims_id"][-1]
    return row


SOUTH = "G290000E45000S"

INFERENCE_CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "base": ({}, True),
    "cloud_9.99": ({"cloud_cover": 9.99}, True),
    "cloud_10": ({"cloud_cover": 10.0}, False),
    "cloud_null": ({"cloud_cover": None}, False),
    "quality_8": ({"image_quality": 8}, False),
    "quality_null": ({"image_quality": None}, False),
    "pixels_50001": ({"n_pixels": 50001}, True),
    "pixels_50000": ({"n_pixels": 50000}, False),
    "nodata_1": ({"nodata_pixels": 1}, False),
    "zero_9.99": ({"zero_pixel_pct": 9.99}, True),
    "zero_10": ({"zero_pixel_pct": 10.0}, False),
    "status_bad": ({"status": "unreadable"}, False),
    "north_apr30": ({"date": dt.date(2010, 4, 30)}, False),
    "north_may1": ({"date": dt.date(2010, 5, 1)}, True),
    "north_oct31": ({"date": dt.date(2010, 10, 31)}, True),
    "north_nov1": ({"date": dt.date(2010, 11, 1)}, False),
    "south_oct31": ({"glims_id": SOUTH, "date": dt.date(2010, 10, 31)}, False),
    "south_nov1": ({"glims_id": SOUTH, "date": dt.date(2010, 11, 1)}, True),
    "south_dec31": ({"glims_id": SOUTH, "date": dt.date(2010, 12, 31)}, True),
    "south_jan1": ({"glims_id": SOUTH, "date": dt.date(2011, 1, 1)}, True),
    "south_apr30": ({"glims_id": SOUTH, "date": dt.date(2011, 4, 30)}, True),
    "south_may1": ({"glims_id": SOUTH, "date": dt.date(2011, 5, 1)}, False),
    "south_jul15": ({"glims_id": SOUTH}, False),
    "l7_slc_on": ({"satellite": "L7", "date": dt.date(2003, 5, 31)}, True),
    "l7_slc_off": ({"satellite": "L7", "date": dt.date(2003, 6, 1), "slc_off": True}, True),
    "l5_after_slc": ({"satellite": "L5", "date": dt.date(2003, 6, 1)}, True),
    "l8_quality": ({"satellite": "L8", "date": dt.date(2015, 8, 1)}, True),
}


@pytest.fixture()
def synthetic_catalog(tmp_path: Path) -> Path:
    import pyarrow as pa

    from glacierwatch.catalog.schema import arrow_schema

    rows = [_row(case, **changes) for case, (changes, _) in INFERENCE_CASES.items()]
    path = tmp_path / "synthetic.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), path)
    return path


def _cases(df: pd.DataFrame) -> set[str]:
    return {Path(p).stem for p in df["path"]}


def test_inference_filter_boundaries(synthetic_catalog: Path) -> None:
    expected = {case for case, (_, keep) in INFERENCE_CASES.items() if keep}
    assert _cases(select(synthetic_catalog, "inference")) == expected
    no_slc = select(synthetic_catalog, "inference", config=CatalogConfig(include_l7_slc_off=False))
    assert _cases(no_slc) == expected - {"l7_slc_off"}
    strict = select(synthetic_catalog, "inference", config=CatalogConfig(max_cloud_cover=9.99))
    assert _cases(strict) == expected - {"cloud_9.99"}


def test_inference_hemisphere_from_inventory(synthetic_catalog: Path, tmp_path: Path) -> None:
    # the inventory says the "N" glacier is southern: its July scenes leave, its November one joins
    inv = _inventory(tmp_path, [{"glims_id": GID, "hemisphere": "S", "region": "X", "area_km2": 1.0,
                                 "outline_date": "2010-07-01"}])
    got = _cases(select(synthetic_catalog, "inference", inventory=inv))
    assert "north_nov1" in got and "base" not in got and "south_nov1" in got


def test_training_window(tmp_path: Path) -> None:
    import pyarrow as pa

    from glacierwatch.catalog.schema import arrow_schema

    outline = dt.date(2009, 9, 1)
    offsets = {"m51": -51, "m50": -50, "zero": 0, "p50": 50, "p51": 51}
    rows = [_row(k, date=outline + dt.timedelta(days=d), cloud_cover=80.0) for k, d in offsets.items()]
    rows.append(_row("l7_off", satellite="L7", date=dt.date(2003, 6, 10)))
    rows.append(_row("other_glacier", glims_id=SOUTH, date=outline))
    rows.append(_row("bad_file", date=outline, status="unreadable"))
    cat = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), cat)
    inv = _inventory(tmp_path, [{"glims_id": GID, "outline_date": outline.isoformat(), "region": "A", "area_km2": 2.0},
                                {"glims_id": "G001000E01000N", "outline_date": "2003-06-01", "region": "A",
                                 "area_km2": 1.0},
                                {"glims_id": SOUTH, "outline_date": None, "region": "B", "area_km2": 1.0}])
    df = select(cat, "training", inventory=inv)
    assert _cases(df) == {"m50", "zero", "p50"}
    assert sorted(df["days_from_outline"]) == [-50, 0, 50]
    wide = select(cat, "training", inventory=inv, config=CatalogConfig(training_window_days=51))
    assert _cases(wide) == set(offsets)
    with pytest.raises(InputError, match="inventory"):
        select(cat, "training")
    no_dates = _inventory(tmp_path, [{"glims_id": GID, "region": "A"}])
    with pytest.raises(InputError, match="outline_date"):
        select(cat, "training", inventory=no_dates)


def test_inference_glaciers_per_region(tmp_path: Path) -> None:
    import pyarrow as pa

    from glacierwatch.catalog.schema import arrow_schema

    glaciers = {  # id: (region, area, passing scenes)
        "G010000E46000N": ("Alps", 9.0, 1), "G010001E46000N": ("Alps", 5.0, 3), "G010002E46000N": ("Alps", 5.0, 2),
        "G010003E46000N": ("Alps", 50.0, 0), "G010004E46000N": ("Alps", 1.0, 4),
        "G080000E30000N": ("Himalaya", 3.0, 1),
        "G290000E45000S": ("Andes", 7.0, 2), "G290001E45000S": ("Andes", 8.0, 0),
    }
    rows = []
    for gid, (_, _, n) in glaciers.items():
        month = 7 if gid.endswith("N") else 1
        rows += [_row(f"{gid}_{i}", glims_id=gid, date=dt.date(2000 + i, month, 1)) for i in range(n)]
        rows.append(_row(f"{gid}_cloudy", glims_id=gid, date=dt.date(1999, month, 1), cloud_cover=50.0))
    cat = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), cat)
    inv = _inventory(tmp_path, [{"glims_id": g, "region": r, "area_km2": a, "hemisphere": g[-1]}
                                for g, (r, a, _) in glaciers.items()])
    cfg = CatalogConfig(inference_glaciers_per_region=2)
    df = select(cat, "inference-glaciers", inventory=inv, config=cfg)
    assert list(zip(df["region"], df["glims_id"], strict=True)) == [
        ("Alps", "G010000E46000N"), ("Alps", "G010001E46000N"),  # 50 km² has no scene; 5 km² tie -> id order
        ("Andes", "G290000E45000S"), ("Himalaya", "G080000E30000N")]
    assert df.set_index("glims_id").loc["G010001E46000N", "n_inference_scenes"] == 3
    assert list(df["region_rank"]) == [1, 2, 1, 1]
    cfg = CatalogConfig(inference_glaciers_per_region=2, min_inference_scenes=2)
    df = select(cat, "inference-glaciers", inventory=inv, config=cfg)
    assert list(df["glims_id"]) == ["G010001E46000N", "G010002E46000N", "G290000E45000S"]
    with pytest.raises(InputError, match="region"):
        select(cat, "inference-glaciers", inventory=_inventory(tmp_path, [{"glims_id": GID}]))


def test_values_are_parameters_not_sql(synthetic_catalog: Path) -> None:
    hostile = "x' OR '1'='1"
    assert query(synthetic_catalog, "SELECT count(*) AS n FROM scenes WHERE glims_id = $g",
                 params={"g": hostile})["n"].iloc[0] == 0
    assert query(synthetic_catalog, "SELECT count(*) AS n FROM scenes WHERE glims_id = ?",
                 params=[GID])["n"].iloc[0] > 0
    for name in SELECTIONS:
        sql = selection_sql(name)
        assert "$" in sql and "{" not in sql  # parameters, no Python formatting
    with pytest.raises(InputError, match="unknown selection"):
        select(synthetic_catalog, "everything")
    with pytest.raises(InputError, match="without a value"):
        query(synthetic_catalog, "SELECT $nope", params={})
    with pytest.raises(ConfigError):
        config_with(CatalogConfig(), {"max_cloud_cover": "ten"})
    with pytest.raises(ConfigError):
        select(synthetic_catalog, "inference", config=CatalogConfig(summer_months_north=[13]))


def test_glims_id_checked_before_it_becomes_a_path(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        scene_path(tmp_path, "../../etc", dt.date(2000, 1, 1), "L5")
    with pytest.raises(InputError):
        parse_scene_name("G007026E45991X_2000-01-01_L5_C02_T1_L2_SR.tif")
    assert parse_scene_name(f"{GID}_2000-01-01_L7_C02_T1_L2_SR.tif").satellite == "L7"
    # a file in another glacier's folder is flagged
    path = make_scene(tmp_path / "s", dt.date(2010, 7, 1))
    wrong = tmp_path / "s" / "G001000E01000N"
    wrong.mkdir()
    shutil.move(path, wrong / path.name)
    shutil.move(path.with_suffix(".json"), wrong / path.with_suffix(".json").name)
    row = build_catalog(tmp_path / "s", tmp_path / "c.parquet", progress=False).iloc[0]
    assert row["status"] == "bad_name"


# ---------------------------------------------------------------- docs, CLI, figure


def test_columns_documented_in_one_place() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "catalog.md").read_text(encoding="utf-8")
    assert markdown_table() in doc, "regenerate the table: python -m glacierwatch.catalog.schema"


def test_cli_build_query_select_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "scenes"
    big = GlacierGrid("EPSG:32632", 300000.0, 5100000.0, 30.0, 90, 80)  # 90 x 80 x 8 > 50,000 values
    make_scene(root, dt.date(2010, 7, 1), grid=big)
    make_scene(root, dt.date(2010, 12, 1), grid=big)  # winter in the north
    make_scene(root, dt.date(2010, 7, 2), grid=big, meta=ee_props(dt.date(2010, 7, 2), "L5", cloud=30.0))
    cat = tmp_path / "catalog.parquet"
    assert main(["catalog", "build", str(root), "--out", str(cat), "--no-progress"]) == 0
    assert "3 scene file(s)" in capsys.readouterr().out
    assert main(["catalog", "query", "SELECT file_name FROM scenes WHERE cloud_cover > $c ORDER BY 1",
                 "--catalog", str(cat), "--param", "c=10"]) == 0
    out = capsys.readouterr().out
    assert "2010-07-02" in out and "(1 row(s))" in out
    csv = tmp_path / "sel.csv"
    assert main(["catalog", "select", "inference", "--catalog", str(cat), "--out", str(csv)]) == 0
    assert pd.read_csv(csv)["date"].tolist() == ["2010-07-01"]
    pqt = tmp_path / "sel.parquet"
    assert main(["catalog", "select", "inference", "--catalog", str(cat), "--set", "max_cloud_cover=50",
                 "--out", str(pqt)]) == 0
    assert len(pd.read_parquet(pqt)) == 2
    assert main(["catalog", "select", "inference", "--catalog", str(cat), "--show-sql"]) == 0
    assert "$max_cloud_cover = 10.0" in capsys.readouterr().out
    assert main(["catalog", "query", "SELEC nonsense", "--catalog", str(cat)]) == 2
    assert main(["catalog", "select", "inference", "--catalog", str(cat), "--set", "nope=1"]) == 2
    assert main(["catalog", "select", "training", "--catalog", str(cat)]) == 2
    assert "needs an inventory" in capsys.readouterr().err
    fig = tmp_path / "fig7.png"
    assert main(["catalog", "plot", "--catalog", str(cat), "--out", str(fig)]) == 0
    assert fig.stat().st_size > 10_000


def _crashing_scan(tasks: Any) -> Any:
    """Stands in for a GDAL segfault: the worker process dies on one file."""
    from glacierwatch.catalog.build import _scan_many

    if any("2010-07-02" in t.file_name for t in tasks):
        os._exit(3)
    return _scan_many(tasks)


def test_a_file_that_crashes_a_worker_gets_an_error_row(tmp_path: Path) -> None:
    import pyarrow as pa

    from glacierwatch.catalog.build import _discover, _make_tasks, _run_pool

    for day in range(1, 7):
        make_scene(tmp_path / "s", dt.date(2010, 7, day), seed=day)
    tasks = _make_tasks(_discover((tmp_path / "s").resolve()), None)
    done: list[int] = []
    table = pa.concat_tables(_run_pool(tasks, workers=2, update=done.append, scan=_crashing_scan))
    status = dict(zip(table.column("file_name").to_pylist(), table.column("status").to_pylist(), strict=True))
    assert len(status) == 6 and sum(done) == 6
    assert status.pop(f"{GID}_2010-07-02_L5_C02_T1_L2_SR.tif") == "error"
    assert set(status.values()) == {"ok"}
