"""An Earth Engine export folder of the tiny world's time-series glaciers imports in one
``glacierwatch imagery fetch --source local`` run (both sensor families' band names, ``X.tif.json``
side-cars, per-glacier DEMs on their own grids), with the original scenes' pixels."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from checks import nonempty
from rasterio.windows import Window, from_bounds

from glacierwatch.cli import main
from glacierwatch.config import InventoryConfig
from glacierwatch.errors import ConfigError
from glacierwatch.grid import GlacierGrid
from glacierwatch.imagery.sources.local import LocalSource, band_maps_by_satellite
from glacierwatch.inventory import read_outlines, select_glaciers, write_inventory
from glacierwatch.io import read_raster, read_scene, read_table
from glacierwatch.landsat import SR_SCALE
from glacierwatch.layout import scene_path
from glacierwatch.synth import WorldInfo

sys.path.insert(0, str(Path(__file__).parent))
from ee_exports import EarthEngineExport, export_like_earth_engine  # noqa: E402


@pytest.fixture(scope="module")
def ee_export(tiny_world: WorldInfo, tmp_path_factory: pytest.TempPathFactory) -> EarthEngineExport:
    return export_like_earth_engine(tiny_world, tmp_path_factory.mktemp("ee_export"), tiny_world.timeseries_ids)


def _bands(path: Path) -> tuple[str, ...]:
    with rasterio.open(path) as src:
        return tuple(d for d in src.descriptions if d)


def test_the_export_looks_like_earth_engine_s(ee_export: EarthEngineExport) -> None:
    sats = {}
    for exported in nonempty(ee_export.scenes).values():
        sats[exported.name[:4]] = _bands(exported)
        assert exported.with_name(exported.name + ".json").is_file()
        assert not exported.with_suffix(".json").exists()
    assert sats["LT05"][0] == "SR_B1" and "ST_B6" in sats["LT05"] and "ST_B10" not in sats["LT05"]
    assert "ST_B10" in sats["LC08"] and "ST_B6" not in sats["LC08"]


def test_one_fetch_imports_both_sensor_families_side_cars_and_dems(
        ee_export: EarthEngineExport, tiny_world: WorldInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids = tiny_world.timeseries_ids
    selection = select_glaciers([read_outlines(tiny_world.outlines)], config=InventoryConfig())
    inventory = write_inventory(selection, tmp_path / "inventory.parquet")["inventory"]
    config = tmp_path / "ee.toml"
    config.write_text(f"""
[imagery]
timeseries_max_cloud_cover = "none"
[imagery.local]
input_dir = "{ee_export.root}"
band_map = "earthengine"
dem_dir = "{ee_export.dem_dir}"
""", encoding="utf-8")
    work = tmp_path / "work"
    grids = {row.glims_id: GlacierGrid.from_dict(json.loads(row.grid)) for row in read_table(inventory).itertuples()}
    with caplog.at_level(logging.WARNING):
        assert main(["imagery", "fetch", "--inventory", str(inventory), "--source", "local", "--out", str(work),
                     "--config", str(config), "--glaciers", *ids, "--no-progress"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, warnings  # every side-car found, no DEM file taken for a scene
    originals = [p for gid in ids for p in tiny_world.scene_files(gid)]
    assert {e.name[:4] for e in ee_export.scenes.values()} >= {"LT05", "LE07", "LC08", "LC09"}
    imported = sorted((work / "scenes").glob("*/*.tif"))
    assert [p.name for p in imported] == sorted(p.name for p in originals)
    for original in nonempty(originals):
        bands = _bands(original)
        copy = scene_path(work / "scenes", original.parent.name, *_date_sat(original))
        assert _bands(copy) == bands, copy
        got = read_scene(copy, bands=bands)
        with rasterio.open(copy) as src:  # the fetch writes COGs whose bands carry the C2 scale/offset
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert dict(zip(src.descriptions, src.scales, strict=True))["blue"] == SR_SCALE
        assert got.grid == grids[original.parent.name]
        want = read_scene(original, bands=bands, window=_window(original, got.grid))
        for band in bands:
            np.testing.assert_array_equal(got.bands[band], want.bands[band], err_msg=f"{copy.name} {band}")
        props = json.loads(copy.with_suffix(".json").read_text(encoding="utf-8"))
        exported = ee_export.scenes[original]
        source_props = json.loads(exported.with_name(exported.name + ".json").read_text(encoding="utf-8"))
        assert props["GLACIERWATCH_METADATA_FILE"].endswith(".tif.json")
        for key in ("IMAGE_QUALITY", "IMAGE_QUALITY_OLI", "CLOUD_COVER", "WRS_PATH"):
            if key in source_props:
                assert props[key] == source_props[key], key
    for gid in nonempty(ids):
        got_dem, got_grid, _ = read_raster(work / "dem" / f"{gid}.tif")
        assert got_grid == grids[gid]
        with rasterio.open(tiny_world.dem_path(gid)) as src:
            want_dem = src.read(1, window=_window(tiny_world.dem_path(gid), got_grid))
        np.testing.assert_allclose(got_dem, want_dem, rtol=0, atol=1e-3, equal_nan=True)


def _window(path: Path, grid: GlacierGrid) -> Window:
    """The window of ``path`` covering ``grid`` (the world's boxes and the inventory grids share a
    lattice: the window is whole pixels, so the expected pixels are the original ones, unresampled)."""
    with rasterio.open(path) as src:
        window = from_bounds(*grid.bounds, transform=src.transform)
    rounded = Window(round(window.col_off), round(window.row_off), grid.width, grid.height)
    assert abs(window.col_off - rounded.col_off) < 1e-6 and abs(window.row_off - rounded.row_off) < 1e-6
    return rounded


def _date_sat(path: Path) -> tuple:
    import datetime as dt

    _, date, sat, *_ = path.name.split("_")
    return dt.date.fromisoformat(date), sat


def test_the_earthengine_preset_maps_by_satellite() -> None:
    maps = band_maps_by_satellite("earthengine", need_qa=True)
    assert maps["L5"]["blue"].description == "SR_B1" and maps["L8"]["blue"].description == "SR_B2"
    assert maps["L7"]["lwir"].description == "ST_B6" and maps["L9"]["lwir"].description == "ST_B10"
    assert "coastal" not in maps["L5"] and maps["L8"]["coastal"].optional
    explicit = band_maps_by_satellite([f"{b}={i}" for i, b in enumerate(
        ("blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "qa_pixel"), start=1)], need_qa=True)
    assert explicit["L5"] == explicit["L8"]
    with pytest.raises(ConfigError, match="preset"):
        band_maps_by_satellite("earthengin", need_qa=True)


def test_an_oli_export_without_the_coastal_band_still_reads(ee_export: EarthEngineExport, tmp_path: Path) -> None:
    exported = next(p for p in ee_export.scenes.values() if p.name.startswith("LC08"))
    with rasterio.open(exported) as src:
        keep = [i for i, d in enumerate(src.descriptions, start=1) if d != "SR_B1"]
        data, profile, descs = src.read(keep), src.profile, [src.descriptions[i - 1] for i in keep]
    profile.update(count=len(keep))
    folder = tmp_path / "no_coastal"
    folder.mkdir()
    with rasterio.open(folder / exported.name, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descs, start=1):
            dst.set_band_description(i, d)
    (folder / (exported.name + ".json")).write_text(exported.with_name(exported.name + ".json").read_text())
    source = LocalSource(folder, band_map="earthengine")
    (entry,) = source.index()
    with rasterio.open(exported) as src:
        grid = GlacierGrid.from_rasterio(src.crs, src.transform, src.width, src.height)
    bands = source._read_on_grid(entry.path, grid, entry.satellite)
    assert "coastal" not in bands and "blue" in bands


def test_exports_smaller_than_the_glacier_box_are_named_by_the_inference_filter(
        tiny_world: WorldInfo, tmp_path: Path) -> None:
    """The issue's dead end: every scene dropped by the paper's filter, with no hint why. Now the
    selection says which condition dropped them."""
    from glacierwatch.catalog import build_catalog
    from glacierwatch.catalog.queries import select
    from glacierwatch.config import ImageryConfig, LocalConfig
    from glacierwatch.imagery import fetch_imagery

    gid = tiny_world.timeseries_ids[0]
    export = export_like_earth_engine(tiny_world, tmp_path / "ee", (gid,), margin=-25)
    selection = select_glaciers([read_outlines(tiny_world.outlines)], config=InventoryConfig())
    inventory = write_inventory(selection, tmp_path / "inventory.parquet")["inventory"]
    config = ImageryConfig(timeseries_max_cloud_cover=None,
                           local=LocalConfig(input_dir=str(export.root), band_map="earthengine"))
    fetch_imagery(inventory, tmp_path / "work", source="local", glaciers=[gid], config=config, progress=False)
    catalog = build_catalog(tmp_path / "work" / "scenes", tmp_path / "catalog.parquet", inventory=inventory,
                            progress=False)
    assert len(catalog) == len(export.scenes) and (catalog["nodata_pixels"] > 0).all()
    result = select(tmp_path / "catalog.parquet", "inference", inventory=inventory)
    assert result.empty
    assert "nodata_pixels <= 0" in result.attrs["why_empty"]
    assert "cover less than the glacier grid" in result.attrs["why_empty"]
