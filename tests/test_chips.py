"""Training chips: QA-masked composites, outline masks, channels, dropping, split, storage, import, CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from checks import nonempty
from shapely.geometry import box

from glacierwatch.chips import (
    ChipSet,
    assign_folds,
    assign_splits,
    build_chips,
    composite_scenes,
    import_chips,
    parse_band_map,
    resize_mask,
)
from glacierwatch.chips.testing import write_scene, write_toy_world
from glacierwatch.config import ChipsConfig
from glacierwatch.errors import ConfigError, DatasetNotFoundError, InputError
from glacierwatch.features import Normaliser, normalized_difference
from glacierwatch.grid import GlacierGrid, outline_on_grid
from glacierwatch.landsat import QA, dn_to_reflectance, reflectance_to_dn

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NORWAY = SHARED / "glacierview_training_chips_norway"
CH = ["blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "dem", "ndsi", "ndwi", "lwir_anomaly"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return write_toy_world(tmp_path_factory.mktemp("world"), 10, shape=(40, 48), seed=2,
                           regions=("Swiss Alps", "Himalaya", "Andes"))


@pytest.fixture(scope="module")
def built(world, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("chips")
    info = build_chips(world.selection, world.inventory, dem_dir=world.dem_dir, out_dir=out,
                       config=ChipsConfig(size=32, val_fraction=0.2, test_fraction=0.2), progress=False)
    return info, ChipSet(out)


# ---------------------------------------------------------------- composite and mask

def _grid(h: int = 6, w: int = 8) -> GlacierGrid:
    return GlacierGrid(crs="EPSG:32632", x0=500000.0, y0=5100000.0, resolution=30.0, width=w, height=h)


def test_composite_leaves_clouds_out_of_the_mean(tmp_path: Path) -> None:
    grid = _grid()
    shape = grid.shape
    names = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"]
    a = {b: np.full(shape, 0.2, np.float32) for b in names} | {"lwir": np.full(shape, 280.0, np.float32)}
    b = {k: v.copy() for k, v in a.items()}
    for k in names:
        b[k][:] = 0.4
    cloud = np.zeros(shape, bool)
    cloud[:2, :3] = True
    for k in names:
        b[k][cloud] = 0.9  # bright cloud
    qa_a = np.full(shape, int(QA.CLEAR), np.uint16)
    qa_b = np.where(cloud, int(QA.CLOUD), int(QA.CLEAR)).astype(np.uint16)
    shadow = np.zeros(shape, bool)
    shadow[4, :] = True
    qa_a = np.where(shadow, int(QA.CLOUD_SHADOW), qa_a).astype(np.uint16)
    write_scene(tmp_path / "a.tif", a, qa_a, grid, "L5")
    write_scene(tmp_path / "b.tif", b, qa_b, grid, "L8")
    comp, info = composite_scenes([tmp_path / "a.tif", tmp_path / "b.tif"], ["L5", "L8"], ["green", "swir16"], grid)
    g = comp["green"]
    assert np.allclose(g[cloud], 0.2, atol=1e-4)          # only scene a (b is cloudy there)
    assert np.allclose(g[shadow], 0.4, atol=1e-4)         # only scene b (a has a shadow there)
    clear = ~cloud & ~shadow
    assert np.allclose(g[clear], 0.3, atol=1e-4)          # the mean of both
    assert info["valid_fraction"] == 1.0 and set(info["valid_pixels"]) == {"L5", "L8"}
    # the seed's plain mean would have let the cloud in:
    assert not np.allclose((0.2 + 0.9) / 2, 0.2, atol=1e-2)


def test_rasterised_outline_reproduces_the_truth(world) -> None:
    inv = world.inventory.set_index("glims_id")
    for gid, truth in nonempty(world.truth).items():
        grid = GlacierGrid.from_json(inv.loc[gid, "grid"])
        mask = outline_on_grid(inv.loc[gid, "geometry"], grid)
        assert mask.shape == truth.shape and np.mean(mask.astype(bool) == truth) > 0.995


# ---------------------------------------------------------------- build

def test_build_writes_a_documented_chip_set(built, world) -> None:
    info, cs = built
    assert info.n_chips == 10 and cs.channels == CH and cs.size == 32
    assert cs.header["format"] == "glacierwatch-chips/1"
    assert cs.header["normalisation_fitted_on"] == "train"
    assert cs.header["units"]["lwir"] == "surface temperature, K"
    assert sum(cs.header["counts"].values()) == 10 and cs.header["counts"]["test"] >= 1
    idx = cs.index
    for col in ("chip_id", "glims_id", "region", "split", "satellites", "dominant_satellite", "pixel_area_m2",
                "grid_height", "grid_width", "true_area_km2", "n_scenes", "valid_fraction"):
        assert col in idx.columns, col
    assert (idx["pixel_area_m2"] == 900.0).all() and (idx["grid_height"] == 40).all()
    # true area: the outline rasterised on the grid
    for row in nonempty(idx).itertuples():
        assert row.true_area_km2 == pytest.approx(world.truth[row.glims_id].sum() * 900 / 1e6, rel=0.01)
    x, m, rows = cs.load()
    assert x.shape == (10, len(CH), 32, 32) and x.dtype == np.float32 and np.isfinite(x).all()
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1}
    # physical units are stored: reflectance ~0-1, K, m; indices from composite reflectance
    assert 0 < x[:, CH.index("green")].mean() < 1 and 250 < x[:, CH.index("lwir")].mean() < 300
    assert x[:, CH.index("dem")].mean() > 1000
    anomaly = x[:, CH.index("lwir_anomaly")]
    assert cs.header["units"]["lwir_anomaly"].endswith(", K")
    assert abs(np.median(anomaly[m == 0])) < 3 and np.median(anomaly[m == 1]) < np.median(anomaly[m == 0]) - 3
    nd = normalized_difference(x[:, 1], x[:, 4])
    assert np.corrcoef(nd.ravel(), x[:, CH.index("ndsi")].ravel())[0, 1] > 0.95
    # normalisation: fitted on the train split only, applied at load time
    xn, _, _ = cs.load("train", normalise=True)
    norm = cs.normaliser
    assert norm.channels == tuple(CH)
    assert np.allclose(xn, norm.apply(cs.load("train")[0]))
    assert -0.2 < np.percentile(xn, 1) and np.percentile(xn, 99) < 1.2
    assert Normaliser.from_dict(cs.header["normalisation"]) == norm


def test_build_clouds_are_not_in_the_chips(built, world) -> None:
    """Clouds (QA-flagged, bright in every band) would raise SWIR over the glacier if averaged in."""
    _, cs = built
    x, m, rows = cs.load()
    swir = x[:, CH.index("swir16")]
    assert float(np.median(swir[m == 1])) < 0.12  # ice ~0.05; clouds were 0.45


def test_build_drops_empty_masks_and_records_failures(world, tmp_path: Path) -> None:
    inv = world.inventory.copy()
    far = inv.index[0]
    inv.loc[far, "geometry"] = box(0.0, 0.0, 0.001, 0.001)  # outline outside its grid: empty mask
    sel = world.selection
    broken = inv.loc[inv.index[1], "glims_id"]
    (world.dem_dir / f"{broken}.tif").rename(world.dem_dir / f"{broken}.tif.bak")
    try:
        info = build_chips(sel, inv, dem_dir=world.dem_dir, out_dir=tmp_path / "c",
                           config=ChipsConfig(size=32), progress=False)
    finally:
        (world.dem_dir / f"{broken}.tif.bak").rename(world.dem_dir / f"{broken}.tif")
    assert info.dropped["mask_variance"] == 1 and info.dropped["failed"] == 1 and info.n_chips == 8
    assert broken in info.failed and "raster not found" in info.failed[broken]
    ledger = [json.loads(line) for line in (tmp_path / "c" / "failures.jsonl").read_text().splitlines()]
    assert ledger[0]["glims_id"] == broken and ledger[0]["stage"] == "chips"
    assert ChipSet(tmp_path / "c").header["dropped"]["mask_variance"] == 1


def test_build_checks_inputs(world, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown channel"):
        build_chips(world.selection, world.inventory, dem_dir=world.dem_dir, out_dir=tmp_path,
                    config=ChipsConfig(channels=["blue", "ndvi"]), progress=False)
    with pytest.raises(InputError, match="lacks column"):
        build_chips(world.selection.drop(columns="satellite"), world.inventory, dem_dir=None, out_dir=tmp_path,
                    progress=False)


def test_build_without_dem_channel(world, tmp_path: Path) -> None:
    cfg = ChipsConfig(size=32, channels=["green", "swir16", "ndsi"])
    info = build_chips(world.selection, world.inventory, dem_dir=None, out_dir=tmp_path, config=cfg, progress=False)
    assert info.channels == ["green", "swir16", "ndsi"] and ChipSet(tmp_path).load()[0].shape[1] == 3


# ---------------------------------------------------------------- split

def test_split_is_stratified_by_region_and_by_glacier() -> None:
    groups = pd.DataFrame({"glims_id": [f"G{i:06d}E00000N" for i in range(100)],
                           "region": ["A"] * 50 + ["B"] * 30 + ["C"] * 15 + ["D"] * 5})
    split = assign_splits(groups, val_fraction=0.1, test_fraction=0.1, seed=0)
    s = pd.Series(split)
    assert (s == "test").sum() == 10 and (s == "val").sum() == 10
    by_region = groups.assign(split=groups["glims_id"].map(split)).groupby("region")["split"]
    # 10 % of each region, the rounding remainder carried on so that the total is exact
    assert by_region.apply(lambda v: (v == "test").sum()).to_dict() == {"A": 5, "B": 3, "C": 2, "D": 0}
    assert split == assign_splits(groups, val_fraction=0.1, test_fraction=0.1, seed=0)  # deterministic
    assert split != assign_splits(groups, val_fraction=0.1, test_fraction=0.1, seed=1)
    folds = assign_folds(groups, folds=5, seed=0)
    assert pd.Series(folds).value_counts().tolist() == [20] * 5
    with pytest.raises(InputError):
        assign_splits(groups, val_fraction=0.6, test_fraction=0.5)


# ---------------------------------------------------------------- import

def _seed_folder(root: Path, n: int = 6, size: int = 40) -> Path:
    """Seed-layout chips: 8-band float64 DN images (band 7 junk, band 8 zeros), fractional masks."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        gid = f"G00{5600 + i}E61743N"
        glacier = np.zeros((size, size), bool)
        glacier[5:5 + 10 + i, 8:30] = True
        refl = {"blue": 0.1, "green": 0.12, "red": 0.14, "nir08": 0.25, "swir16": 0.3, "swir22": 0.2}
        ice = {"blue": 0.6, "green": 0.6, "red": 0.55, "nir08": 0.45, "swir16": 0.05, "swir22": 0.04}
        img = np.zeros((8, size, size))
        for j, b in enumerate(refl):
            r = np.where(glacier, ice[b], refl[b]) + 0.01 * rng.standard_normal((size, size))
            img[j] = reflectance_to_dn(r).astype(np.float64)
        img[6] = rng.integers(0, 40, (size, size))
        mask = glacier.astype(np.float32) * 0.97 + 0.01
        if i == n - 1:
            mask[:] = 0.0  # an empty mask: dropped
        for arr, sub in ((img, "images"), (mask[None], "masks")):
            with warnings.catch_warnings():  # the seed's chips have no georeferencing either
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                dst = rasterio.open(root / sub / f"{gid}.tif", "w", driver="GTiff", width=size, height=size,
                                    count=arr.shape[0], dtype=arr.dtype.name)
                with dst:
                    dst.write(arr)
    return root


def test_import_seed_chips(tmp_path: Path) -> None:
    folder = _seed_folder(tmp_path / "seed")
    info = import_chips([folder], out_dir=tmp_path / "chips", region="Norway",
                        config=ChipsConfig(size=32, val_fraction=0.2, test_fraction=0.2), progress=False)
    assert info.channels == ["blue", "green", "red", "nir08", "swir16", "swir22", "ndsi", "ndwi"]
    assert info.n_chips == 5 and info.dropped["mask_variance"] == 1
    cs = ChipSet(tmp_path / "chips")
    x, m, rows = cs.load()
    assert x.shape == (5, 8, 32, 32) and set(np.unique(m)) == {0, 1}
    glacier = m == 1
    assert x[:, 4][glacier].mean() == pytest.approx(0.05, abs=0.02)  # swir16 reflectance over ice
    assert x[:, 6][glacier].mean() > 0.6  # NDSI of ice
    assert (rows["region"] == "Norway").all() and rows["pixel_area_m2"].isna().all()
    assert cs.header["provenance"]["channels_left_out"] == ["lwir", "dem", "lwir_anomaly"]


def test_band_map_parsing() -> None:
    assert parse_band_map("blue=1, green=2,swir1=5,thermal=7") == {"blue": 1, "green": 2, "swir16": 5, "lwir": 7}
    for bad in ("blue", "blue=x", "ndvi=3", "blue=0"):
        with pytest.raises(InputError):
            parse_band_map(bad)
    with pytest.raises(DatasetNotFoundError, match="images/ and masks/"):
        import_chips([Path("/nonexistent")], out_dir="/tmp/x", progress=False)


@pytest.mark.skipif(not NORWAY.exists(), reason=f"real Norway chips not present at {NORWAY}")
def test_import_real_norway_chips(tmp_path: Path) -> None:
    info = import_chips([NORWAY], out_dir=tmp_path / "norway", region="Norway", progress=False)
    assert info.n_chips == 32 and info.size == 128
    cs = ChipSet(tmp_path / "norway")
    x, m, rows = cs.load()
    assert x.shape == (32, 8, 128, 128)
    blue_dn = 20789.7  # mean band 1 DN of G005595E61743N (SOURCE.md range 7,000-48,000)
    first = rows.index[rows["chip_id"] == "G005595E61743N"][0]
    assert x[first, 0].mean() == pytest.approx(float(dn_to_reflectance(np.array([blue_dn]))[0]), abs=0.01)
    assert 0.3 < m.mean() < 0.6
    assert cs.index.groupby("glims_id")["split"].nunique().max() == 1


# ---------------------------------------------------------------- CLI

def test_cli_chips_build_from_catalog(world, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from glacierwatch.catalog import build_catalog
    from glacierwatch.cli import main

    inv_path = tmp_path / "inventory.parquet"
    world.inventory.to_parquet(inv_path)
    build_catalog(world.root / "scenes", tmp_path / "catalog.parquet", inventory=inv_path, progress=False)
    rc = main(["chips", "build", "--catalog", str(tmp_path / "catalog.parquet"), "--inventory", str(inv_path),
               "--dem-dir", str(world.dem_dir), "--out", str(tmp_path / "chips"), "--size", "32", "--no-progress"])
    assert rc == 0 and "10 chips" in capsys.readouterr().out
    assert ChipSet(tmp_path / "chips").header["counts"]["train"] >= 6


def test_cli_chips_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from glacierwatch.cli import main

    folder = _seed_folder(tmp_path / "seed")
    rc = main(["chips", "import", str(folder), "--region", "Norway", "--out", str(tmp_path / "c"), "--size", "32",
               "--channels", "green,swir16,ndsi", "--no-progress"])
    assert rc == 0 and "5 chips" in capsys.readouterr().out
    assert ChipSet(tmp_path / "c").channels == ["green", "swir16", "ndsi"]
    rc = main(["chips", "import", str(folder), "--out", str(tmp_path / "d"), "--band-map", "blue=9"])
    assert rc == 2 and "band" in capsys.readouterr().err


# ---------------------------------------------------------------- dated masks

def _chip_arrays(root: Path) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, np.ndarray]]]:
    chips = ChipSet(root)
    out = {}
    for split in ("train", "val", "test"):
        x, m, rows = chips.load(split, normalise=False)
        for i, cid in enumerate(rows["chip_id"]):
            out[cid] = (x[i], m[i])
    return chips.index, out


def test_outline_mode_reproduces_the_seed_chips(tmp_path: Path) -> None:
    """Without truth or other dated outlines, dated mode gives the seed's chips; outline mode is the seed's."""
    world = write_toy_world(tmp_path / "w", n_glaciers=4, cloud_fraction=0.1)
    kw = {"dem_dir": world.dem_dir, "progress": False}
    seed = build_chips(world.selection, world.inventory, out_dir=tmp_path / "o",
                       config=ChipsConfig(size=32, masks="outline", val_fraction=0.25, test_fraction=0.25), **kw)
    dated = build_chips(world.selection, world.inventory, out_dir=tmp_path / "d",
                        config=ChipsConfig(size=32, masks="dated", val_fraction=0.25, test_fraction=0.25), **kw)
    assert seed.n_chips == dated.n_chips == 4
    index, a = _chip_arrays(tmp_path / "o")
    _, b = _chip_arrays(tmp_path / "d")
    assert sorted(a) == sorted(b) == sorted(world.inventory["glims_id"])
    assert set(index["mask_kind"]) == {"outline"}
    for cid in nonempty(a):
        np.testing.assert_array_equal(a[cid][0], b[cid][0])
        np.testing.assert_array_equal(a[cid][1], b[cid][1])
        # the seed's mask: the truth the outline was drawn from, resized (outline = mask on this world)
        expected = resize_mask(world.truth[cid], 32)
        assert (a[cid][1] != expected).mean() < 0.01


def test_dated_outlines_give_one_chip_each(tmp_path: Path) -> None:
    """A validation outline with scenes near its date adds a chip carrying that outline as its mask."""
    from scipy import ndimage

    world = write_toy_world(tmp_path / "w", n_glaciers=2, cloud_fraction=0.0)
    gid = world.inventory["glims_id"].iloc[0]
    grid = GlacierGrid.from_json(world.inventory["grid"].iloc[0])
    smaller = ndimage.binary_erosion(world.truth[gid], iterations=3)
    from glacierwatch.chips.testing import _outline_polygon

    first = world.selection[world.selection["glims_id"] == gid]["date"].min()
    validation = gpd.GeoDataFrame([{"glims_id": gid, "outline_date": first + pd.Timedelta(days=219),
                                    "geometry": _outline_polygon(smaller, grid)},
                                   {"glims_id": gid, "outline_date": first - pd.Timedelta(days=3),
                                    "geometry": _outline_polygon(smaller, grid)}], crs="EPSG:4326")
    # the scenes of the glacier, moved so that two of them lie near the first validation outline
    sel = world.selection.copy()
    later = (sel["glims_id"] == gid) & (sel["date"] > first)
    sel.loc[later, "date"] = sel.loc[later, "date"] + pd.Timedelta(days=195)
    cfg = ChipsConfig(size=48, masks="dated", val_fraction=0.0, test_fraction=0.0)
    info = build_chips(sel, world.inventory, dem_dir=world.dem_dir, out_dir=tmp_path / "c", config=cfg,
                       progress=False, validation=validation, window_days=10)
    index, arrays = _chip_arrays(tmp_path / "c")
    kinds = dict(zip(index["chip_id"], index["mask_kind"], strict=False))
    day = str((first + pd.Timedelta(days=219)).date())
    early = str((first - pd.Timedelta(days=3)).date())
    assert kinds == {gid: "outline", f"{gid}_{day}": "validation_outline", f"{gid}_{early}": "validation_outline",
                     world.inventory["glims_id"].iloc[1]: "outline"}
    assert info.n_chips == 4
    row = index.set_index("chip_id").loc[f"{gid}_{day}"]
    assert row["n_scenes"] == 2 and row["mask_date"] == day
    np.testing.assert_array_equal(arrays[f"{gid}_{day}"][1], resize_mask(smaller, 48))
    assert arrays[f"{gid}_{day}"][1].sum() < arrays[gid][1].sum()
    # every chip of a glacier is in one split
    assert index.groupby("glims_id")["split"].nunique().max() == 1
    with pytest.raises(ConfigError):
        build_chips(sel, world.inventory, dem_dir=None, out_dir=tmp_path / "x",
                    config=ChipsConfig(masks="newest", channels=["green"]), progress=False)


@pytest.fixture(scope="module")
def dated_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic world whose training glaciers have extra scenes in other years, its inventory and catalog."""
    from glacierwatch.catalog import build_catalog
    from glacierwatch.config import InventoryConfig
    from glacierwatch.inventory import read_outlines, select_glaciers, write_inventory
    from glacierwatch.synth import make_world

    root = tmp_path_factory.mktemp("dated_world")
    world = make_world(root / "synthetic", n_training=2, n_timeseries=0, seed=4, first_year=1990, last_year=2020,
                       training_extra_scenes=3, melt_season=True, progress=False)
    selection = select_glaciers([read_outlines(world.outlines)], config=InventoryConfig(min_area_km2=0.1))
    write_inventory(selection, root / "inventory.parquet")
    build_catalog(world.scenes_dir, root / "catalog.parquet", inventory=root / "inventory.parquet", progress=False)
    return {"world": world.out_dir, "inventory": root / "inventory.parquet", "catalog": root / "catalog.parquet",
            "dem": world.dem_dir}


def test_dated_chips_carry_the_true_mask_of_their_date(dated_world: dict[str, Path], tmp_path: Path) -> None:
    from glacierwatch.chips import build_chips_from_catalog
    from glacierwatch.config import CatalogConfig

    truth = pd.read_csv(dated_world["world"] / "truth.csv")
    cfg = ChipsConfig(size=64, masks="dated", min_valid_fraction=0.0, val_fraction=0.0, test_fraction=0.0,
                      exclude_inference_glaciers=False)
    info = build_chips_from_catalog(dated_world["catalog"], dated_world["inventory"], dem_dir=dated_world["dem"],
                                    out_dir=tmp_path / "dated", config=cfg, catalog_config=CatalogConfig(),
                                    truth_dir=dated_world["world"], progress=False)
    index = ChipSet(tmp_path / "dated").index
    assert set(index["mask_kind"]) == {"truth"}
    # one chip per scene of each training glacier, in every year the world has scenes for it
    scenes = truth.drop_duplicates(["glims_id", "date"])
    assert info.n_chips == len(index) and len(index) >= 0.8 * len(scenes)
    assert len(index) + sum(info.dropped.values()) == len(scenes)
    years = pd.to_datetime(index["mask_date"]).dt.year
    assert years.max() - years.min() >= 15
    # the mask of each chip is the true mask of its date: its area is the truth's (the grid holds it)
    merged = index.merge(truth.rename(columns={"date": "mask_date"}), on=["glims_id", "mask_date"])
    assert len(merged) == len(index)
    np.testing.assert_allclose(merged["true_area_km2_x"], merged["true_area_km2_y"], rtol=0.01)
    assert merged.groupby("glims_id")["true_area_km2_y"].agg(lambda a: a.max() / a.min()).min() > 1.02
    # outline mode on the same catalog: one chip per glacier, the outline's area
    outline = build_chips_from_catalog(dated_world["catalog"], dated_world["inventory"], dem_dir=dated_world["dem"],
                                       out_dir=tmp_path / "outline",
                                       config=ChipsConfig(size=64, masks="outline", val_fraction=0.0,
                                                          test_fraction=0.0, exclude_inference_glaciers=False),
                                       progress=False)
    assert outline.n_chips == index["glims_id"].nunique()
    assert set(ChipSet(tmp_path / "outline").index["mask_kind"]) == {"outline"}


def test_cli_chips_build_masks(dated_world: dict[str, Path], tmp_path: Path) -> None:
    from glacierwatch.cli import main

    toml = tmp_path / "c.toml"
    toml.write_text("[chips]\nexclude_inference_glaciers = false\nval_fraction = 0.0\ntest_fraction = 0.0\n"
                    "min_valid_fraction = 0.0\n", encoding="utf-8")
    common = ["chips", "build", "--catalog", str(dated_world["catalog"]), "--inventory", str(dated_world["inventory"]),
              "--dem-dir", str(dated_world["dem"]), "--config", str(toml), "--size", "32", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "o"), "--masks", "outline"]) == 0
    assert main([*common, "--out", str(tmp_path / "d"), "--truth-dir", str(dated_world["world"])]) == 0
    outline, dated = ChipSet(tmp_path / "o"), ChipSet(tmp_path / "d")
    assert set(outline.index["mask_kind"]) == {"outline"} and set(dated.index["mask_kind"]) == {"truth"}
    assert len(dated.index) > 2 * len(outline.index)
    assert dated.header["provenance"]["config"]["masks"] == "dated"


def test_old_features_path_re_exports_the_shared_module() -> None:
    """``glacierwatch.chips.features`` (the 0.1.0 documentation's path) is the shared module's names."""
    import glacierwatch.features as shared
    from glacierwatch.chips import features as old

    assert old.__all__ and all(getattr(old, name) is getattr(shared, name) for name in old.__all__)
