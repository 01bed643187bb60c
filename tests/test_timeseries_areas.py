"""One glacier's area series on generated scene files: geometry, clouds, buffer, oracle."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point

from glacierwatch.config import TimeseriesConfig
from glacierwatch.errors import InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.io import write_raster
from glacierwatch.landsat import QA, SCENE_BANDS, kelvin_to_dn, reflectance_to_dn
from glacierwatch.timeseries import NDSISegmenter, OracleSegmenter, glacier_areas, outline_on_grid
from glacierwatch.timeseries.areas import drop_small_patches, glacier_min_patch_km2, patch_pixels

GRID = GlacierGrid("EPSG:32632", 350000.0, 5100000.0, 30.0, 150, 120)
ICE = {"blue": 0.8, "green": 0.75, "red": 0.7, "nir08": 0.55, "swir16": 0.05, "swir22": 0.04}
ROCK = {"blue": 0.12, "green": 0.15, "red": 0.18, "nir08": 0.25, "swir16": 0.3, "swir22": 0.25}
CENTER = (GRID.x0 + 60 * 30.0, GRID.y0 - 60 * 30.0)


def _disc(radius_m: float) -> np.ndarray:
    rows, cols = np.mgrid[0:GRID.height, 0:GRID.width]
    x = GRID.x0 + (cols + 0.5) * 30.0
    y = GRID.y0 - (rows + 0.5) * 30.0
    return (x - CENTER[0]) ** 2 + (y - CENTER[1]) ** 2 <= radius_m**2


def _write_scene(path: Path, glacier: np.ndarray, *, cloud: np.ndarray | None = None,
                 extra_ice: np.ndarray | None = None) -> None:
    ice = glacier | (extra_ice if extra_ice is not None else False)
    layers = []
    for band in SCENE_BANDS[:6]:
        refl = np.where(ice, ICE[band], ROCK[band])
        if cloud is not None:
            refl = np.where(cloud, 0.6, refl)
        layers.append(reflectance_to_dn(refl))
    layers.append(kelvin_to_dn(np.where(ice, 270.0, 285.0)))
    qa = np.full(GRID.shape, int(QA.CLEAR), np.uint16)
    if cloud is not None:
        qa[cloud] = int(QA.CLOUD) | (3 << 8)
    layers.append(qa)
    write_raster(path, np.stack(layers).astype(np.uint16), GRID, band_names=list(SCENE_BANDS), nodata=0)


def _outline(radius_m: float):
    to_wgs = Transformer.from_crs(GRID.crs, "EPSG:4326", always_xy=True).transform
    return shapely.transform(Point(*CENTER).buffer(radius_m, 256), lambda x, y: to_wgs(x, y), interleaved=False)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, list[float]]:
    folder = tmp_path_factory.mktemp("scenes")
    radii = np.linspace(1200.0, 900.0, 12)
    neighbour = _disc(300.0)
    rows, cols = np.mgrid[0:GRID.height, 0:GRID.width]
    neighbour = ((rows - 20) ** 2 + (cols - 135) ** 2) <= 10**2  # a separate ice patch in the box corner
    records, truth = [], []
    for i, radius in enumerate(radii):
        date = dt.date(2000 + i, 8, 1)
        glacier = _disc(radius)
        cloud = None
        if i == 5:  # a cloud over part of the glacier
            cloud = (rows > 40) & (rows < 70) & (cols > 40) & (cols < 80)
        path = folder / f"G007000E46000N_{date}_L7_C02_T1_L2_SR.tif"
        _write_scene(path, glacier, cloud=cloud, extra_ice=neighbour)
        records.append({"path": str(path), "date": date, "satellite": "L7"})
        truth.append(glacier.sum() * 900 / 1e6)
    return pd.DataFrame(records), truth


def _oracle(glims_id: str, dates: list, shape: tuple[int, int]) -> np.ndarray:
    from glacierwatch.features import resize_stack

    radii = {dt.date(2000 + i, 8, 1): r for i, r in enumerate(np.linspace(1200.0, 900.0, 12))}
    masks = np.stack([_disc(radii[d]).astype(np.float32) for d in dates])
    return resize_stack(masks[:, None], shape).numpy()[:, 0]


def test_oracle_resize_and_back_keeps_the_area_within_1_percent(series) -> None:
    scenes, truth = series
    cfg = TimeseriesConfig(smoothing="none", buffer_m=500.0)
    areas = glacier_areas("G007000E46000N", scenes, geometry=_outline(1000.0), region_name="Europe",
                          grid=GRID, dem_path=None, segmenter=OracleSegmenter(_oracle), config=cfg)
    assert np.allclose(areas["area_km2"], truth, rtol=0.01)
    assert (areas["pixel_area_m2"] == 900.0).all()


def test_ndsi_series_with_cloud_and_neighbouring_ice(series) -> None:
    scenes, truth = series
    outline = _outline(1000.0)
    # buffered count: the neighbouring patch (far from the outline) is left out
    cfg = TimeseriesConfig(smoothing="masked", sigma=1.0, buffer_m=500.0, unsmoothed=True)
    areas = glacier_areas("G007000E46000N", scenes, geometry=outline, region_name="Europe", grid=GRID,
                          dem_path=None, segmenter=NDSISegmenter(), config=cfg)
    assert list(areas.columns)[:6] == ["glims_id", "region", "date", "satellite", "scene", "area_km2"]
    clear = areas.index != 5
    assert np.allclose(areas.loc[clear, "area_km2_unsmoothed"], np.array(truth)[clear], rtol=0.02)
    # the clouded scene: observed share is below 1, and smoothing fills it from its neighbours
    assert areas.loc[5, "valid_fraction"] < 0.9 and areas.loc[clear, "valid_fraction"].min() == 1.0
    assert areas.loc[5, "filled_fraction"] > 0.05
    assert areas.loc[5, "area_km2"] == pytest.approx(truth[5], rel=0.05)
    # whole-box count (the seed's) includes the neighbouring patch
    whole = glacier_areas("G007000E46000N", scenes, geometry=outline, region_name="Europe", grid=GRID,
                          dem_path=None, segmenter=NDSISegmenter(),
                          config=TimeseriesConfig(smoothing="none", buffer_m=None))
    extra = whole["area_km2"].to_numpy()[clear] - np.array(truth)[clear]
    assert np.all(extra > 0.2)


def test_bad_scenes_are_isolated_and_shifted_scenes_are_put_on_the_grid(series, tmp_path: Path) -> None:
    """The glacier's grid comes from the caller (the inventory), never from a scene: a scene one pixel
    off the grid is put onto it and measured, a scene elsewhere and an unreadable file are kept with
    their reason and no area, and every good scene is measured as before."""
    scenes, truth = series
    shifted_grid = GlacierGrid("EPSG:32632", 350030.0, 5100030.0, 30.0, 160, 130)
    rows, cols = np.mgrid[0:shifted_grid.height, 0:shifted_grid.width]
    x = shifted_grid.x0 + (cols + 0.5) * 30.0
    y = shifted_grid.y0 - (rows + 0.5) * 30.0
    disc = (x - CENTER[0]) ** 2 + (y - CENTER[1]) ** 2 <= 1000.0**2
    layers = [reflectance_to_dn(np.where(disc, ICE[b], ROCK[b])) for b in SCENE_BANDS[:6]]
    layers += [kelvin_to_dn(np.where(disc, 270.0, 285.0)), np.full(disc.shape, int(QA.CLEAR), np.uint16)]
    shifted = tmp_path / "G007000E46000N_2015-08-01_L8_C02_T1_L2_SR.tif"
    write_raster(shifted, np.stack(layers).astype(np.uint16), shifted_grid, band_names=list(SCENE_BANDS), nodata=0)
    far_grid = GlacierGrid("EPSG:32633", 350000.0, 5100000.0, 30.0, 150, 120)
    far = tmp_path / "G007000E46000N_2015-08-02_L8_C02_T1_L2_SR.tif"
    write_raster(far, np.ones((8, *far_grid.shape), np.uint16), far_grid, band_names=list(SCENE_BANDS), nodata=0)
    broken = tmp_path / "G007000E46000N_2015-08-03_L8_C02_T1_L2_SR.tif"
    broken.write_bytes(b"not a GeoTIFF")
    extra = pd.DataFrame([{"path": str(f), "date": dt.date(2015, 8, d), "satellite": "L8"}
                          for f, d in ((shifted, 1), (far, 2), (broken, 3))])
    areas = glacier_areas("G007000E46000N", pd.concat([scenes, extra]), geometry=_outline(1000.0),
                          region_name="Europe", grid=GRID, dem_path=None, segmenter=NDSISegmenter(),
                          config=TimeseriesConfig(smoothing="none", buffer_m=500.0))
    by_scene = areas.set_index("scene")
    assert by_scene.loc[shifted.name, "skip_reason"] == ""
    assert by_scene.loc[shifted.name, "area_km2"] == pytest.approx(np.pi * 1.0**2, rel=0.03)
    assert "does not overlap" in by_scene.loc[far.name, "skip_reason"]
    assert by_scene.loc[broken.name, "skip_reason"].startswith("SceneReadError")
    assert np.isnan(by_scene.loc[[far.name, broken.name], "area_km2"]).all()
    assert not by_scene.loc[[far.name, broken.name], "use"].any()
    good = areas[~areas["scene"].isin([shifted.name, far.name, broken.name])]
    clear = good.index != 5
    assert np.allclose(good.loc[clear, "area_km2"], np.array(truth)[clear], rtol=0.02)


def test_outline_outside_grid_is_an_error(series) -> None:
    scenes, _ = series
    to_wgs = Transformer.from_crs(GRID.crs, "EPSG:4326", always_xy=True).transform
    far = shapely.transform(Point(CENTER[0] + 50_000, CENTER[1]).buffer(500), lambda x, y: to_wgs(x, y),
                            interleaved=False)
    assert not outline_on_grid(far, GRID).any()
    with pytest.raises(InputError, match="covers no pixel"):
        glacier_areas("G007000E46000N", scenes, geometry=far, region_name="Europe", grid=GRID,
                      dem_path=None, segmenter=NDSISegmenter(), config=TimeseriesConfig())


def test_drop_small_patches_keeps_8_connected_patches_of_the_size() -> None:
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 1, 1] = masks[0, 2, 2] = masks[0, 3, 3] = True   # a 3-pixel diagonal: one patch
    masks[0, 7:9, 7:9] = True                                  # 4 pixels
    masks[1, 5, 5] = True
    kept = drop_small_patches(masks, 4)
    assert kept[0, 7:9, 7:9].all() and kept[0].sum() == 4 and not kept[1].any()
    assert drop_small_patches(masks, 3)[0].sum() == 7
    assert drop_small_patches(masks, 1) is masks
    assert patch_pixels(0.1, GRID) == 112 and patch_pixels(0.0, GRID) == 0 and patch_pixels(0.0009, GRID) == 1


def test_min_patch_leaves_out_a_separate_patch_but_not_the_glacier(series) -> None:
    """The whole-box count (the seed's) takes in the 0.28 km² patch in the box corner; with
    min_patch_km2 = 0.5 it is left out at the area and at both interval bounds, and the glacier
    (2.5-4.5 km²) is counted whole."""
    scenes, truth = series
    clear = np.arange(len(truth)) != 5
    kwargs = dict(geometry=_outline(1000.0), region_name="Europe", grid=GRID, dem_path=None,
                  segmenter=NDSISegmenter())
    whole = glacier_areas("G007000E46000N", scenes, config=TimeseriesConfig(buffer_m=None), **kwargs)
    patched = glacier_areas("G007000E46000N", scenes, config=TimeseriesConfig(buffer_m=None, min_patch_km2=0.5),
                            **kwargs)
    assert np.all(whole["area_km2"].to_numpy()[clear] - np.array(truth)[clear] > 0.2)
    assert np.allclose(patched["area_km2"].to_numpy()[clear], np.array(truth)[clear], rtol=0.02)
    assert np.all(patched["area_km2_high"].to_numpy() < whole["area_km2_high"].to_numpy())
    assert np.all(patched["area_km2_low"].to_numpy()[clear] < whole["area_km2_low"].to_numpy()[clear])
    assert patched["run_key"].iloc[0] != whole["run_key"].iloc[0]


def test_small_glacier_keeps_its_area_under_the_patch_limit(tmp_path: Path) -> None:
    """The patch limit is at most a tenth of the glacier's outline: a 0.07 km² glacier is counted whole
    under min_patch_km2 = 0.1 (its limit is 0.007 km²), a separate 0.005 km² speck beside it is not."""
    assert glacier_min_patch_km2(0.1, 3.0) == pytest.approx(0.1)
    assert glacier_min_patch_km2(0.1, 0.05) == pytest.approx(0.005)
    assert glacier_min_patch_km2(0.0, 0.05) == 0.0
    glacier = _disc(150.0)
    rows, cols = np.mgrid[0:GRID.height, 0:GRID.width]
    speck = (rows >= 62) & (rows < 64) & (cols >= 70) & (cols < 73)  # 6 pixels, 0.0054 km², 200 m off
    path = tmp_path / "G007000E46000N_2001-08-01_L8_C02_T1_L2_SR.tif"
    _write_scene(path, glacier, extra_ice=speck)
    scenes = pd.DataFrame([{"path": str(path), "date": dt.date(2001, 8, 1), "satellite": "L8"}])
    areas = glacier_areas("G007000E46000N", scenes, geometry=_outline(150.0), region_name="Europe", grid=GRID,
                          dem_path=None, segmenter=NDSISegmenter(),
                          config=TimeseriesConfig(buffer_m=500.0, min_patch_km2=0.1))
    assert areas["area_km2"].iloc[0] == pytest.approx(glacier.sum() * 900 / 1e6)
    assert areas["min_patch_km2"].iloc[0] == pytest.approx(0.1 * outline_on_grid(_outline(150.0), GRID).sum()
                                                           * 900 / 1e6)
    plain = glacier_areas("G007000E46000N", scenes, geometry=_outline(150.0), region_name="Europe", grid=GRID,
                          dem_path=None, segmenter=NDSISegmenter(),
                          config=TimeseriesConfig(buffer_m=500.0, min_patch_km2=0.0))
    assert plain["area_km2"].iloc[0] == pytest.approx((glacier | speck).sum() * 900 / 1e6)
    assert TimeseriesConfig().min_patch_km2 == 0.1  # the default limit, as measured in docs/timeseries.md


def test_ndsi_on_the_grid_counts_each_pixel_and_its_interval_spans_ndsi_0_3_to_0_5(tmp_path: Path) -> None:
    """On a box twice the chip size, NDSI on the grid's own pixels counts a tongue one pixel wide; the
    seed's NDSI on the chip-size stack loses most of it. The interval bounds count NDSI > 0.5 (low)
    and NDSI > 0.3 (high): a band of NDSI 0.45 is in the area and the high bound, one of 0.35 only
    in the high bound."""
    grid = GlacierGrid("EPSG:32632", 350000.0, 5100000.0, 30.0, 300, 300)
    rows, cols = np.mgrid[0:grid.height, 0:grid.width]
    disc = (rows - 150) ** 2 + (cols - 150) ** 2 <= 40**2
    tongue = (cols == 150) & (rows > 150) & (rows < 230)
    ice = disc | tongue
    mid = (rows >= 60) & (rows < 64) & (cols >= 140) & (cols < 160)   # NDSI 0.45: 80 pixels
    weak = (rows >= 50) & (rows < 54) & (cols >= 140) & (cols < 160)  # NDSI 0.35: 80 pixels
    layers = []
    for band in SCENE_BANDS[:6]:
        refl = np.where(ice, ICE[band], ROCK[band])
        if band == "green":
            refl = np.where(mid, 0.29, np.where(weak, 0.27, refl))
        elif band == "swir16":
            refl = np.where(mid, 0.11, np.where(weak, 0.13, refl))
        layers.append(reflectance_to_dn(refl))
    layers += [kelvin_to_dn(np.where(ice, 270.0, 285.0)), np.full(grid.shape, int(QA.CLEAR), np.uint16)]
    path = tmp_path / "G007000E46000N_2001-08-01_L8_C02_T1_L2_SR.tif"
    write_raster(path, np.stack(layers).astype(np.uint16), grid, band_names=list(SCENE_BANDS), nodata=0)
    scenes = pd.DataFrame([{"path": str(path), "date": dt.date(2001, 8, 1), "satellite": "L8"}])
    center = (grid.x0 + 150.5 * 30.0, grid.y0 - 150.5 * 30.0)
    to_wgs = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform
    outline = shapely.transform(Point(*center).buffer(3500.0, 64), lambda x, y: to_wgs(x, y), interleaved=False)
    kwargs = dict(geometry=outline, region_name="Europe", grid=grid, dem_path=None,
                  config=TimeseriesConfig(buffer_m=0.0, interval_model_error=False, min_patch_km2=0.0))
    on_grid = glacier_areas("G007000E46000N", scenes, segmenter=NDSISegmenter(), **kwargs).iloc[0]
    on_chip = glacier_areas("G007000E46000N", scenes, segmenter=NDSISegmenter(resolution="chip"), **kwargs).iloc[0]
    km2 = 900 / 1e6
    assert on_grid["area_km2"] == pytest.approx((ice | mid).sum() * km2)
    assert on_grid["area_km2_low"] == pytest.approx(ice.sum() * km2)
    assert on_grid["area_km2_high"] == pytest.approx((ice | mid | weak).sum() * km2)
    assert on_chip["area_km2"] < on_grid["area_km2"] - 0.5 * tongue.sum() * km2
    assert on_grid["model_fingerprint"] == "ndsi>0.4-water@grid"
    assert on_chip["model_fingerprint"] == "ndsi>0.4-water"
    with pytest.raises(InputError, match="resolution"):
        NDSISegmenter(resolution="native")


def test_scenes_with_a_low_sun_do_not_count(series) -> None:
    """A scene whose sun stood lower than min_sun_elevation (20 degrees by default) keeps its area but
    does not count; one without a sun elevation counts; min_sun_elevation = 0 counts them all."""
    scenes, _ = series
    sun = np.full(len(scenes), 45.0)
    sun[2], sun[3], sun[4] = 12.0, np.nan, 20.0
    with_sun = scenes.assign(sun_elevation=sun)
    kwargs = dict(geometry=_outline(1000.0), region_name="Europe", grid=GRID, dem_path=None, segmenter=NDSISegmenter())
    areas = glacier_areas("G007000E46000N", with_sun, config=TimeseriesConfig(buffer_m=500.0), **kwargs)
    clear = areas.index != 5  # the clouded scene is left out by min_valid_fraction
    assert list(areas.loc[clear, "use"]) == [k != 2 for k in range(len(areas)) if k != 5]
    assert np.isfinite(areas.loc[2, "area_km2"]) and areas.loc[2, "sun_elevation"] == 12.0
    assert np.isnan(areas.loc[3, "sun_elevation"])
    every = glacier_areas("G007000E46000N", with_sun, config=TimeseriesConfig(buffer_m=500.0, min_sun_elevation=0.0),
                          **kwargs)
    assert every.loc[clear, "use"].all()
    assert every["run_key"].iloc[0] != areas["run_key"].iloc[0]
    unknown = glacier_areas("G007000E46000N", scenes, config=TimeseriesConfig(buffer_m=500.0), **kwargs)
    assert unknown.loc[clear, "use"].all() and unknown["sun_elevation"].isna().all()
