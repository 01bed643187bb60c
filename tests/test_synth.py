"""Tests of the synthetic Landsat world (glacierwatch.synth)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from checks import nonempty
from pyproj import CRS
from rasterio import features
from scipy import ndimage

from glacierwatch.cli import main
from glacierwatch.config import InventoryConfig
from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid, inventory_grid
from glacierwatch.ids import glims_id_from_lonlat, validate_glims_id
from glacierwatch.io import read_raster, read_scene
from glacierwatch.landsat import (
    QA,
    SENSORS,
    SLC_OFF_DATE,
    dn_to_kelvin,
    dn_to_reflectance,
    qa_confidence,
    reflectance_to_dn,
)
from glacierwatch.synth import WorldInfo, load_world, make_world, true_mask
from glacierwatch.synth.fields import smooth_noise, unique_float32
from glacierwatch.synth.regions import REGIONS, timeseries_region
from glacierwatch.synth.solar import overpass_time, sun_position, wrs2_path_row

SCENE_NAME = re.compile(r"^(G\d{6}E\d{5}[NS])_(\d{4}-\d{2}-\d{2})_(L5|L7|L8|L9)_C02_T1_L2_SR\.tif$")
GEOG_AREAS = {"Swiss Alps", "Austrian Alps", "Norway", "Himalaya", "Tien Shan", "Caucasus", "Alaska",
              "Coast Mountains", "Andes", "Patagonia"}


# ---------------------------------------------------------------- helpers

def _truth(world: WorldInfo) -> pd.DataFrame:
    return pd.read_csv(world.truth_csv)


def _outlines(world: WorldInfo) -> gpd.GeoDataFrame:
    return gpd.read_file(world.outlines, layer="glims_polygons")


def _scenes(world: WorldInfo) -> list[Path]:
    return sorted(world.scenes_dir.glob("*/*.tif"))


def _potential(world: WorldInfo, glims_id: str) -> tuple[np.ndarray, GlacierGrid]:
    array, grid, _ = read_raster(world.potential_path(glims_id))
    return array, grid


def _utm_mask(geom: object, grid: GlacierGrid) -> np.ndarray:
    utm = gpd.GeoSeries([geom], crs="EPSG:4326").to_crs(grid.crs).iloc[0]
    return features.rasterize([(utm, 1)], out_shape=grid.shape, transform=grid.transform, fill=0).astype(bool)


# ---------------------------------------------------------------- layout

def test_layout_and_naming(tiny_world: WorldInfo) -> None:
    world = tiny_world
    for path in (world.outlines, world.truth_csv, world.truth_trends_csv, world.world_json):
        assert path.is_file(), path
    assert len(world.training_ids) == 6 and len(world.timeseries_ids) == 2
    data = json.loads(world.world_json.read_text())
    assert data["training_ids"] == list(world.training_ids)
    assert data["timeseries_ids"] == list(world.timeseries_ids)
    assert data["parameters"]["seed"] == 0
    assert load_world(world.out_dir) == world
    for gid in nonempty(world.glacier_ids):
        validate_glims_id(gid)
        assert world.dem_path(gid).is_file() and world.potential_path(gid).is_file()
        scenes = world.scene_files(gid)
        assert scenes, gid
        for tif in scenes:
            m = SCENE_NAME.match(tif.name)
            assert m and m.group(1) == gid, tif.name
            assert tif.with_suffix(".json").is_file()
    # Nothing but scene pairs in the scene folders, and truth rows = scene files.
    all_files = sorted(p for p in world.scenes_dir.rglob("*") if p.is_file())
    assert len(all_files) == 2 * len(_scenes(world)) == 2 * world.n_scenes
    truth = _truth(world)
    assert list(truth.columns[:5]) == ["glims_id", "date", "satellite", "true_area_km2", "mask_level"]
    assert sorted(truth["scene"]) == sorted(p.name for p in _scenes(world))


def test_outlines_follow_glims_schema(tiny_world: WorldInfo) -> None:
    outlines = _outlines(tiny_world)
    for column in ("glac_id", "glac_name", "anlys_id", "anlys_time", "src_date", "db_area", "geog_area",
                   "line_type"):
        assert column in outlines.columns
    assert CRS.from_user_input(outlines.crs).to_epsg() == 4326
    assert set(outlines["line_type"]) == {"glac_bound"}
    assert set(outlines["geog_area"]) <= GEOG_AREAS
    assert outlines["anlys_id"].is_unique
    for text in outlines["src_date"]:
        dt.datetime.fromisoformat(text)
    for text in outlines["anlys_time"]:
        dt.datetime.fromisoformat(text)
    main_rows = outlines[outlines["glac_id"].isin(tiny_world.glacier_ids)]
    assert set(main_rows["glac_id"]) == set(tiny_world.glacier_ids)
    world = json.loads(tiny_world.world_json.read_text())
    for info in nonempty(world["glaciers"]):
        rows = main_rows[main_rows["glac_id"] == info["glims_id"]]
        row = rows[rows["src_date"].str[:10] == info["outline_date"]].iloc[0]
        # The id encodes the centroid of the glacier's outline (older outlines of a glacier keep it).
        c = row.geometry.centroid
        assert glims_id_from_lonlat(c.x, c.y) == info["glims_id"]
    # Glaciers are 1-50 km²; extra small outlines are neighbouring ice patches below 1 km².
    others = outlines[~outlines["glac_id"].isin(tiny_world.glacier_ids)]
    assert (main_rows["db_area"] >= 1.0).all() and (main_rows["db_area"] <= 50.0).all()
    assert (others["db_area"] < 1.0).all()
    assert set(others["glac_id"]) == set(json.loads(tiny_world.world_json.read_text())["neighbour_patch_ids"])


def test_regions_cover_both_hemispheres(tiny_world: WorldInfo) -> None:
    trends = pd.read_csv(tiny_world.truth_trends_csv)
    assert list(trends.columns[:3]) == ["glims_id", "region", "true_rel_change_per_year"]
    assert trends["region"].nunique() >= 3
    ts = trends[trends["glims_id"].isin(tiny_world.timeseries_ids)]
    assert "South America" in set(ts["region"])
    assert trends["true_rel_change_per_year"].between(-0.0251, 0.0051).all()
    assert (trends["true_rel_change_per_year"] > 0).any() and (trends["true_rel_change_per_year"] < 0).any()
    regions = {timeseries_region(i).region for i in range(3)}
    assert len(regions) == 3 and any(timeseries_region(i).southern for i in range(3))
    assert {r.region for r in REGIONS} == {"Europe", "Asia", "Caucasus", "North America", "South America"}


# ---------------------------------------------------------------- rasters

def test_band_descriptions_per_sensor(tiny_world: WorldInfo) -> None:
    seen: set[str] = set()
    for tif in nonempty(_scenes(tiny_world)):
        sat = SCENE_NAME.match(tif.name).group(3)
        seen.add(sat)
        with rasterio.open(tif) as src:
            assert src.descriptions == SENSORS[sat].file_bands
            assert src.dtypes[0] == "uint16" and src.nodata == 0
            if sat in ("L8", "L9"):
                assert src.descriptions[0] == "coastal"
            else:
                assert "coastal" not in src.descriptions
            assert "lwir" in src.descriptions and src.descriptions[-1] == "qa_pixel"
    assert {"L5", "L7", "L8"} <= seen


def test_scenes_share_the_dem_grid(tiny_world: WorldInfo) -> None:
    outlines = _outlines(tiny_world)
    world = json.loads(tiny_world.world_json.read_text())
    for info in nonempty(world["glaciers"]):
        gid = info["glims_id"]
        rows = outlines[outlines["glac_id"] == gid]
        geom = rows[rows["src_date"].str[:10] == info["outline_date"]].iloc[0].geometry
        inventory = inventory_grid(geom, margin=InventoryConfig.box_margin, margin_m=InventoryConfig.box_margin_m)
        grid = GlacierGrid.from_dict(info["grid"])
        if info["kind"] == "training":
            assert inventory == grid  # the grid an inventory computes from the outline
        else:  # a window of the larger time-series grid, on the same lattice
            left, bottom, right, top = grid.bounds
            il, ib, ir, it = inventory.bounds
            assert left <= il and bottom <= ib and ir <= right and it <= top
            assert ((il - left) / 30.0).is_integer() and ((top - it) / 30.0).is_integer()
    for gid in nonempty(tiny_world.glacier_ids):
        dem, grid, _ = read_raster(tiny_world.dem_path(gid))
        assert dem.dtype == np.float32 and np.isfinite(dem).all()
        assert grid.resolution == 30.0 and grid.crs[:8] in ("EPSG:326", "EPSG:327")
        assert 100.0 < float(dem.min()) < float(dem.max()) < 7500.0
        _, pgrid = _potential(tiny_world, gid)
        assert pgrid == grid
        for tif in nonempty(tiny_world.scene_files(gid)[:3]):
            assert read_scene(tif).grid == grid


def test_scale_factors_round_trip(tiny_world: WorldInfo) -> None:
    for tif in nonempty(_scenes(tiny_world)[::7]):
        scene = read_scene(tif)
        valid = scene.qa != int(QA.FILL)
        for band in ("blue", "green", "red", "nir08", "swir16", "swir22"):
            dn = scene.bands[band][valid]
            refl = dn_to_reflectance(dn)
            assert np.nanmin(refl) > -0.1 and np.nanmax(refl) < 1.2
            assert np.array_equal(reflectance_to_dn(refl), dn)
        kelvin = dn_to_kelvin(scene.bands["lwir"][valid])
        assert 200.0 < np.nanmin(kelvin) and np.nanmax(kelvin) < 330.0


def test_qa_bits_consistent_with_content(tiny_world: WorldInfo) -> None:
    n_cloud = n_fill = 0
    truth = _truth(tiny_world).set_index("scene")
    for tif in nonempty(_scenes(tiny_world)):
        scene = read_scene(tif)
        drawn = truth.loc[tif.name]
        qa = scene.qa
        zero_all = np.all(np.stack([scene.bands[b] for b in scene.bands if b != "qa_pixel"]) == 0, axis=0)
        fill = (qa & int(QA.FILL)) != 0
        assert np.array_equal(fill, zero_all), tif.name
        assert np.all(qa[fill] == int(QA.FILL))
        ok = ~fill
        cloud = ((qa & int(QA.CLOUD)) != 0) & ok
        dilated = ((qa & int(QA.DILATED_CLOUD)) != 0) & ok
        clear = ((qa & int(QA.CLEAR)) != 0) & ok
        assert np.array_equal(clear, ok & ~cloud & ~dilated)
        # The cloud bit is set exactly where a cloud was drawn (truth.csv records its share).
        assert cloud.sum() / max(ok.sum(), 1) == pytest.approx(drawn["cloud_fraction"], abs=1e-4)
        assert fill.mean() == pytest.approx(drawn["fill_fraction"], abs=1e-4)
        assert np.all(qa_confidence(qa[cloud], "cloud") == 3)
        snow = ((qa & int(QA.SNOW)) != 0) & ok
        green = dn_to_reflectance(scene.bands["green"])
        swir = dn_to_reflectance(scene.bands["swir16"])
        if snow.any():
            ndsi = (green[snow] - swir[snow]) / (green[snow] + swir[snow])
            assert np.all(ndsi > 0.15 - 1e-4)
            assert np.all(qa_confidence(qa[snow], "snow") == 3)
        if cloud.sum() > 20:
            # Clouds are bright in the SWIR (unlike snow) and colder than the clear land around.
            assert np.median(swir[cloud]) > 0.2
            land = clear & ~snow
            if land.sum() > 20:
                kelvin = dn_to_kelvin(scene.bands["lwir"])
                assert np.median(kelvin[cloud]) < np.median(kelvin[land])
            n_cloud += 1
        n_fill += int(fill.any())
    assert n_cloud > 0 and n_fill > 0


def test_shadowed_ice_stays_snow_like() -> None:
    """Shade keeps mostly diffuse (blue-rich) light: shaded ice keeps NDSI well above shaded rock."""
    from glacierwatch.synth.spectra import DIFFUSE_FRACTION, ENDMEMBERS, SPECTRA

    ice, rock = SPECTRA[ENDMEMBERS.index("ice")], SPECTRA[ENDMEMBERS.index("rock_light")]
    g, s = 2, 5  # green, swir16 in render order

    def ndsi(spectrum: np.ndarray) -> float:
        shaded = spectrum * DIFFUSE_FRACTION
        return float((shaded[g] - shaded[s]) / (shaded[g] + shaded[s]))

    assert ndsi(ice) > 0.9 and ndsi(ice) > ndsi(rock) + 0.3


# ---------------------------------------------------------------- truth

def test_truth_area_is_pixel_count_of_potential(tiny_world: WorldInfo) -> None:
    truth = _truth(tiny_world)
    for gid, rows in nonempty(truth).groupby("glims_id"):
        potential, grid = _potential(tiny_world, gid)
        assert potential.dtype == np.float32
        for row in rows.itertuples():
            count = int((potential >= np.float32(row.mask_level)).sum())
            assert count == row.n_pixels
            assert row.true_area_km2 == pytest.approx(count * 900.0 / 1e6, abs=1e-9)
            assert grid.pixel_area_m2 == 900.0
    date = truth.iloc[0]
    mask = true_mask(tiny_world.out_dir, date["glims_id"], date["date"])
    assert int(mask.sum()) == date["n_pixels"]


def test_log_area_slope_matches_rate(tiny_world: WorldInfo) -> None:
    truth = _truth(tiny_world)
    trends = pd.read_csv(tiny_world.truth_trends_csv).set_index("glims_id")
    for gid in nonempty(tiny_world.timeseries_ids):
        rows = truth[truth["glims_id"] == gid]
        t = pd.to_datetime(rows["date"])
        years = (t - t.min()).dt.days / 365.25
        slope = np.polyfit(years, np.log(rows["true_area_km2"]), 1)[0]
        assert slope == pytest.approx(trends.loc[gid, "true_rel_change_per_year"], abs=2e-4)


def test_outline_is_the_true_mask_on_its_date(tiny_world: WorldInfo) -> None:
    outlines = _outlines(tiny_world)
    world = json.loads(tiny_world.world_json.read_text())
    for info in nonempty(world["glaciers"]):
        gid = info["glims_id"]
        row = outlines[(outlines["glac_id"] == gid)].iloc[0]
        potential, grid = _potential(tiny_world, gid)
        true_area = info["area_km2_outline"]
        assert row["db_area"] == pytest.approx(true_area)
        # Area on an equal-area projection centred on the glacier.
        c = row.geometry.centroid
        laea = f"+proj=laea +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m"
        area = gpd.GeoSeries([row.geometry], crs="EPSG:4326").to_crs(laea).area.iloc[0] / 1e6
        assert area == pytest.approx(true_area, rel=0.02)
        # Rasterised back onto the grid it is the mask of the outline-date level.
        n0 = round(true_area / 0.0009)
        level = np.sort(potential.ravel())[::-1][n0 - 1]
        mask = potential >= level
        raster = _utm_mask(row.geometry, grid)
        assert (raster != mask).sum() <= 0.002 * mask.sum() + 2


def test_glacier_fits_grid_and_stays_near_outline(tiny_world: WorldInfo) -> None:
    truth = _truth(tiny_world)
    outlines = _outlines(tiny_world)
    for gid, rows in nonempty(truth).groupby("glims_id"):
        potential, grid = _potential(tiny_world, gid)
        largest = potential >= np.float32(rows.loc[rows["n_pixels"].idxmax(), "mask_level"])
        assert not (largest[0].any() or largest[-1].any() or largest[:, 0].any() or largest[:, -1].any())
        if gid in tiny_world.timeseries_ids:
            outline = _utm_mask(outlines[outlines["glac_id"] == gid].iloc[0].geometry, grid)
            dist = ndimage.distance_transform_edt(~outline) * 30.0
            assert dist[largest].max() <= 420.0  # inside a 500 m outline buffer on every date


def test_neighbour_patches_away_from_outline(tiny_world: WorldInfo) -> None:
    world = json.loads(tiny_world.world_json.read_text())
    outlines = _outlines(tiny_world)
    n = 0
    for info in world["glaciers"]:
        pid = info["neighbour_patch_id"]
        if pid is None:
            continue
        n += 1
        grid = GlacierGrid.from_dict(info["grid"])
        glacier = gpd.GeoSeries([outlines[outlines["glac_id"] == info["glims_id"]].iloc[0].geometry],
                                crs="EPSG:4326").to_crs(grid.crs).iloc[0]
        patch = gpd.GeoSeries([outlines[outlines["glac_id"] == pid].iloc[0].geometry],
                              crs="EPSG:4326").to_crs(grid.crs).iloc[0]
        assert glacier.distance(patch) > 600.0
        left, bottom, right, top = grid.bounds
        assert left < patch.bounds[0] and patch.bounds[2] < right and bottom < patch.bounds[1] < top
        potential, _ = _potential(tiny_world, info["glims_id"])
        patch_mask = _utm_mask(outlines[outlines["glac_id"] == pid].iloc[0].geometry, grid)
        truth = _truth(tiny_world)
        level = truth[truth["glims_id"] == info["glims_id"]]["mask_level"].min()
        assert not (patch_mask & (potential >= np.float32(level))).any()
    assert n >= 1


# ---------------------------------------------------------------- acquisition

def test_sensors_fly_on_their_dates(tiny_world: WorldInfo) -> None:
    truth = _truth(tiny_world)
    for row in nonempty(truth).itertuples():
        date = dt.date.fromisoformat(row.date)
        assert SENSORS[row.satellite].active_on(date), (row.satellite, date)
    dates = pd.to_datetime(truth["date"])
    assert not ((truth["satellite"] == "L8") & (dates < "2013-04-11")).any()
    assert not ((truth["satellite"] == "L9") & (dates < "2021-10-31")).any()
    assert not ((truth["satellite"] == "L5") & (dates > "2011-11-18")).any()


def test_slc_off_stripes_only_after_failure(tiny_world: WorldInfo) -> None:
    truth = _truth(tiny_world)
    l7 = truth[truth["satellite"] == "L7"]
    striped_after = 0
    for row in nonempty(l7).itertuples():
        scene = read_scene(tiny_world.scenes_dir / row.glims_id / row.scene, bands=("qa_pixel",))
        fill = scene.qa == int(QA.FILL)
        _, n_parts = ndimage.label(fill)
        if dt.date.fromisoformat(row.date) <= SLC_OFF_DATE:
            assert n_parts <= 1, row.scene  # at most a scene-edge cut
        elif n_parts >= 3:
            striped_after += 1
    assert (pd.to_datetime(l7["date"]) <= pd.Timestamp(SLC_OFF_DATE)).any()
    assert striped_after >= 1


def test_training_scenes_in_window(tiny_world: WorldInfo) -> None:
    truth = _truth(tiny_world)
    world = json.loads(tiny_world.world_json.read_text())
    for info in nonempty(world["glaciers"]):
        rows = truth[truth["glims_id"] == info["glims_id"]]
        if info["kind"] != "training":
            continue
        outline = dt.date.fromisoformat(info["outline_date"])
        assert 2006 <= outline.year <= 2020
        assert (outline.month in (7, 8, 9)) != (info["hemisphere"] == "S")
        offsets = [(dt.date.fromisoformat(d) - outline).days for d in rows["date"]]
        assert 4 <= len(rows) <= 8 and max(abs(o) for o in offsets) <= 50
        assert (rows["cloud_cover"] < 10).sum() >= 2


def test_metadata_properties(tiny_world: WorldInfo) -> None:
    product = re.compile(r"^L[TEC]0[5789]_L2SP_\d{6}_\d{8}_\d{8}_02_T1$")
    for tif in nonempty(_scenes(tiny_world)):
        gid, date, sat = SCENE_NAME.match(tif.name).groups()
        data = json.loads(tif.with_suffix(".json").read_text())
        records = data if isinstance(data, list) else [data]
        assert len(records) in (1, 2)
        for props in records:
            assert props["SPACECRAFT_ID"] == SENSORS[sat].spacecraft_id
            assert props["SENSOR_ID"] == SENSORS[sat].instrument
            assert props["DATE_ACQUIRED"] == date and props["glims_id"] == gid
            assert product.match(props["LANDSAT_PRODUCT_ID"]), props["LANDSAT_PRODUCT_ID"]
            assert props["COLLECTION_NUMBER"] == "02" and props["COLLECTION_CATEGORY"] == "T1"
            assert props["PROCESSING_LEVEL"] == "L2SP"
            start = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=props["system:time_start"])
            assert start.date().isoformat() == date
            assert 0.0 <= props["CLOUD_COVER"] <= 100.0 and 0.0 <= props["CLOUD_COVER_LAND"] <= 100.0
            assert props["SUN_ELEVATION"] >= 14.0 and 0.0 <= props["SUN_AZIMUTH"] < 360.0
            assert re.match(r"^\d{2}:\d{2}:\d{2}\.\d{7}Z$", props["SCENE_CENTER_TIME"])
            if sat in ("L8", "L9"):
                assert "IMAGE_QUALITY" not in props
                assert props["IMAGE_QUALITY_OLI"] in (5, 7, 9) and props["IMAGE_QUALITY_TIRS"] in (7, 9)
            else:
                assert props["IMAGE_QUALITY"] in (5, 7, 9) and "IMAGE_QUALITY_OLI" not in props
        if len(records) == 2:
            assert records[0]["CLOUD_COVER"] != records[1]["CLOUD_COVER"]


def test_sun_angles_match_date_and_place() -> None:
    when = overpass_time(dt.date(2015, 8, 1), 7.5, 46.0)
    assert 9 <= when.hour <= 11
    elevation, azimuth = sun_position(when, 7.5, 46.0)
    assert elevation == pytest.approx(57.0, abs=2.0) and azimuth == pytest.approx(142.0, abs=4.0)
    assert wrs2_path_row(7.5, 46.0) == (195, 28)
    assert wrs2_path_row(-70.0, -33.0) == (233, 83)


# ---------------------------------------------------------------- determinism and larger worlds

def _small_world(path: Path, **kwargs: int) -> WorldInfo:
    params = {"n_training": 1, "n_timeseries": 1, "seed": 7, "first_year": 2002, "last_year": 2004,
              "scenes_per_year": 3}
    params.update(kwargs)
    return make_world(path, progress=False, **params)


def test_determinism(tmp_path: Path) -> None:
    """The same seed gives the same bytes, whether glaciers are built in this process or in two."""
    a = _small_world(tmp_path / "a", workers=1)
    b = _small_world(tmp_path / "b", workers=2)
    assert a.glacier_ids == b.glacier_ids
    files_a = sorted(p.relative_to(a.out_dir) for p in a.scenes_dir.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.out_dir) for p in b.scenes_dir.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in nonempty(files_a):
        if rel.suffix == ".json":
            assert (a.out_dir / rel).read_bytes() == (b.out_dir / rel).read_bytes()
        else:
            sa, sb = read_scene(a.out_dir / rel), read_scene(b.out_dir / rel)
            for band in sa.bands:
                assert sa.bands[band].tobytes() == sb.bands[band].tobytes()
    assert a.truth_csv.read_bytes() == b.truth_csv.read_bytes()
    assert a.truth_trends_csv.read_bytes() == b.truth_trends_csv.read_bytes()
    # Another seed gives another world.
    c = _small_world(tmp_path / "c", seed=8)
    assert c.glacier_ids != a.glacier_ids


def test_glacier_does_not_depend_on_world_size(tmp_path: Path, tiny_world: WorldInfo) -> None:
    """Glaciers are seeded by (seed, set, index): a world with fewer glaciers has the same first ones."""
    small = make_world(tmp_path / "w", n_training=1, n_timeseries=0, seed=0, progress=False)
    assert small.training_ids == tiny_world.training_ids[:1]
    gid = small.training_ids[0]
    assert [p.name for p in small.scene_files(gid)] == [p.name for p in tiny_world.scene_files(gid)]


def test_duplicate_records_in_a_larger_world(tmp_path: Path) -> None:
    world = make_world(tmp_path / "dup", n_training=0, n_timeseries=1, seed=0, first_year=1990, last_year=2009,
                       scenes_per_year=6, progress=False)
    lists = 0
    for tif in nonempty(_scenes(world)):
        data = json.loads(tif.with_suffix(".json").read_text())
        if isinstance(data, list):
            lists += 1
            assert len(data) == 2 and data[0]["CLOUD_COVER"] != data[1]["CLOUD_COVER"]
            assert data[0]["LANDSAT_PRODUCT_ID"] != data[1]["LANDSAT_PRODUCT_ID"]
    assert 1 <= lists <= 0.1 * world.n_scenes
    # Time-series glaciers also carry an older outline (for validation): the true mask on its date.
    info = json.loads(world.world_json.read_text())["glaciers"][0]
    assert len(info["other_outlines"]) == 1
    older = info["other_outlines"][0]
    outlines = _outlines(world)
    rows = outlines[outlines["glac_id"] == info["glims_id"]]
    assert len(rows) == 2
    row = rows[rows["src_date"].str[:10] == older["src_date"]].iloc[0]
    assert row["db_area"] == pytest.approx(older["area_km2"])
    potential, grid = _potential(world, info["glims_id"])
    mask = potential >= np.float32(older["mask_level"])
    assert int(mask.sum()) == round(older["area_km2"] / 0.0009)
    assert (_utm_mask(row.geometry, grid) != mask).sum() <= 0.002 * mask.sum() + 2


def test_rebuild_and_parameter_checks(tmp_path: Path) -> None:
    first = _small_world(tmp_path / "w", n_timeseries=0)
    stamp = first.world_json.stat().st_mtime_ns
    again = _small_world(tmp_path / "w", n_timeseries=0)  # reused, not rebuilt
    assert again == first and first.world_json.stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="other parameters"):
        _small_world(tmp_path / "w", n_timeseries=0, seed=1)
    replaced = make_world(tmp_path / "w", n_training=1, n_timeseries=0, seed=1, progress=False, overwrite=True)
    assert replaced.training_ids != first.training_ids
    assert not (replaced.scenes_dir / first.training_ids[0]).exists()
    with pytest.raises(InputError):
        make_world(tmp_path / "x", n_training=0, n_timeseries=0, progress=False)
    with pytest.raises(InputError):
        make_world(tmp_path / "x", first_year=1980, progress=False)
    with pytest.raises(InputError, match="workers must be >= 1"):
        make_world(tmp_path / "x", n_training=1, n_timeseries=0, progress=False, workers=0)


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--glaciers", "1", "--timeseries-glaciers", "1", "--seed", "3",
            "--first-year", "2014", "--last-year", "2015", "--scenes-per-year", "2", "--no-progress"]
    assert main(args) == 0
    assert "1 training + 1 time-series glaciers" in capsys.readouterr().out
    world = load_world(out)
    assert json.loads(world.world_json.read_text())["parameters"] == {
        "n_training": 1, "n_timeseries": 1, "seed": 3, "first_year": 2014, "last_year": 2015,
        "scenes_per_year": 2}
    assert main([*args[:-1], "--glaciers", "2"]) == 2  # other parameters, no --overwrite
    # Defaults from the [synth] section of a configuration file; flags override them.
    toml = tmp_path / "config.toml"
    toml.write_text("[synth]\nn_training_glaciers = 1\nn_timeseries_glaciers = 0\nseed = 5\n", encoding="utf-8")
    assert main(["synth", "--out", str(tmp_path / "cfg"), "--config", str(toml), "--seed", "6", "--no-progress"]) == 0
    params = json.loads((tmp_path / "cfg" / "world.json").read_text())["parameters"]
    assert params["n_training"] == 1 and params["n_timeseries"] == 0 and params["seed"] == 6


# ---------------------------------------------------------------- building blocks

def test_unique_float32_keeps_order_and_breaks_ties() -> None:
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(0.0, 500.0, size=20000), 2)  # many exact ties
    out = unique_float32(values)
    assert out.dtype == np.float32 and np.unique(out).size == out.size
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(out[order]) > 0)
    assert np.max(np.abs(out - values)) < 0.01
    srt = np.sort(out)[::-1]
    for n in (1, 10, 777, 20000):
        assert int((out >= srt[n - 1]).sum()) == n


def test_smooth_noise_is_smooth_and_normalised() -> None:
    field = smooth_noise(np.random.default_rng(1), (120, 90), 10.0)
    assert field.shape == (120, 90)
    assert abs(field.mean()) < 1e-9 and field.std() == pytest.approx(1.0)
    assert np.abs(np.diff(field, axis=0)).mean() < 0.2 and np.abs(np.diff(field, axis=1)).mean() < 0.2


def test_shared_data_fixture(shared_data: Path) -> None:
    assert shared_data.is_dir() and shared_data.name == "data" and shared_data.parent.name == "shared"


# ---------------------------------------------------------------- melt season, extra training scenes

def test_melt_season_snow_line_rises_through_summer() -> None:
    from glacierwatch.synth.scenes import melt_season_snow, season_snow

    north = [melt_season_snow(dt.date(2010, m, 15), False, 0.75)[0] for m in (5, 6, 7, 8)]
    assert north == sorted(north) and north[0] < 0.75 < north[-1]
    assert melt_season_snow(dt.date(2010, 9, 10), False, 0.75)[0] == pytest.approx(1.0)
    assert melt_season_snow(dt.date(2010, 1, 15), False, 0.75) == (0.0, 0.0)
    # the south runs half a year later; the seed's model has the summer line from May to October
    assert melt_season_snow(dt.date(2011, 1, 15), True, 0.75)[0] == pytest.approx(
        melt_season_snow(dt.date(2010, 7, 16), False, 0.75)[0], abs=0.02)
    assert season_snow(dt.date(2010, 6, 15), False) > 0.99


def test_melt_season_world_has_snowy_june(tmp_path: Path) -> None:
    """Off-glacier snow: June scenes far snowier than September's with the melt season, not without."""
    def snow_by_month(melt: bool) -> pd.Series:
        world = make_world(tmp_path / str(melt), n_training=0, n_timeseries=1, seed=2, first_year=2010,
                           last_year=2012, scenes_per_year=12, melt_season=melt, progress=False)
        truth = _truth(world)
        truth = truth[truth["cloud_fraction"] < 0.05]
        return truth.groupby(pd.to_datetime(truth["date"]).dt.month)["snow_fraction_outside"].median()

    melt, seed = snow_by_month(True), snow_by_month(False)
    assert melt[6] > melt[9] + 0.25 and melt[7] > melt[9] and melt[6] > 3 * seed[6]
    assert abs(seed[6] - seed[9]) < 0.15  # the seed's June looks like its September
    params = json.loads((tmp_path / "True" / "world.json").read_text())["parameters"]
    assert params["melt_season"] is True and "melt_season" not in json.loads(
        (tmp_path / "False" / "world.json").read_text())["parameters"]


def test_extra_training_scenes(tmp_path: Path, tiny_world: WorldInfo) -> None:
    """Extra clear scenes in other years, with truth rows; the window scenes stay as they were."""
    world = make_world(tmp_path / "x", n_training=1, n_timeseries=0, seed=0, first_year=1985, last_year=2023,
                       training_extra_scenes=3, progress=False)
    gid = world.training_ids[0]
    assert gid == tiny_world.training_ids[0]
    base = _truth(tiny_world)
    base = base[base["glims_id"] == gid]
    truth = _truth(world)
    assert set(base["scene"]) < set(truth["scene"]) and len(truth) == len(base) + 3
    extra = truth[~truth["scene"].isin(base["scene"])]
    years = pd.to_datetime(extra["date"]).dt.year
    assert years.nunique() == 3 and years.max() - years.min() >= 15
    assert (extra["cloud_fraction"] == 0).all()
    assert pd.to_datetime(extra["date"]).dt.month.isin([6, 7, 12, 1]).any()  # an early-summer one
    # true masks follow the glacier's own trend on those dates
    assert extra["true_area_km2"].nunique() == 3
    with pytest.raises(InputError):
        make_world(tmp_path / "bad", n_training=1, n_timeseries=0, lake_probability=1.5, progress=False)


def test_cli_synth_melt_season_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["synth", "--out", str(tmp_path / "m"), "--glaciers", "1", "--timeseries-glaciers", "0", "--seed", "3",
            "--first-year", "2000", "--last-year", "2015", "--training-extra-scenes", "2", "--melt-season",
            "--lake-probability", "0.9", "--no-progress"]
    assert main(args) == 0
    params = json.loads((tmp_path / "m" / "world.json").read_text())["parameters"]
    assert params["training_extra_scenes"] == 2 and params["melt_season"] is True
    assert params["lake_probability"] == pytest.approx(0.9)
