"""Shared modules: Landsat conventions, glacier grid, configuration, I/O, task runner, CLI."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from glacierwatch import cli
from glacierwatch.config import Config, example_toml
from glacierwatch.errors import ConfigError, DatasetNotFoundError, InputError, SceneReadError
from glacierwatch.grid import GlacierGrid, raster_window, utm_epsg
from glacierwatch.ids import glims_id_from_lonlat, validate_glims_id
from glacierwatch.io import atomic_path, read_scene, read_table, write_raster, write_table
from glacierwatch.landsat import (
    QA,
    SENSORS,
    dn_to_kelvin,
    dn_to_reflectance,
    is_slc_off,
    kelvin_to_dn,
    qa_confidence,
    qa_invalid_mask,
    reflectance_to_dn,
    sensor_from_spacecraft,
)
from glacierwatch.tasks import read_ledger, run_per_glacier


# ---------------------------------------------------------------- landsat
def test_scale_factors_match_usgs_examples() -> None:
    # USGS Landsat C2 L2 science product guide examples
    assert dn_to_reflectance(np.array([18639]))[0] == pytest.approx(0.313, abs=5e-4)
    assert dn_to_kelvin(np.array([44947]))[0] == pytest.approx(302.6, abs=0.05)


def test_fill_is_nan_and_roundtrip() -> None:
    refl = dn_to_reflectance(np.array([0, 7273, 65535], dtype=np.uint16))
    assert np.isnan(refl[0]) and refl[1] == pytest.approx(0.0, abs=1e-4)
    values = np.array([0.05, 0.3, 0.9])
    assert np.allclose(dn_to_reflectance(reflectance_to_dn(values)), values, atol=2e-5)
    assert np.allclose(dn_to_kelvin(kelvin_to_dn(np.array([260.0, 300.0]))), [260.0, 300.0], atol=0.002)
    assert reflectance_to_dn(np.array([-0.5])).item() == 1  # never the fill value


def test_qa_bits() -> None:
    qa = np.array([QA.FILL, QA.CLEAR, QA.CLOUD | (3 << 8), QA.CLOUD_SHADOW, QA.SNOW | QA.CLEAR,
                   QA.DILATED_CLOUD, QA.WATER | QA.CLEAR], dtype=np.uint16)
    assert qa_invalid_mask(qa).tolist() == [True, False, True, True, False, True, False]
    assert qa_confidence(qa, "cloud").tolist() == [0, 0, 3, 0, 0, 0, 0]


def test_sensor_bands_by_common_name() -> None:
    assert SENSORS["L5"].ee_bands["blue"] == "SR_B1"
    assert SENSORS["L8"].ee_bands["blue"] == "SR_B2"  # coastal is SR_B1 on OLI
    assert SENSORS["L9"].ee_bands["lwir"] == "ST_B10" and SENSORS["L7"].ee_bands["lwir"] == "ST_B6"
    assert sensor_from_spacecraft("LANDSAT_8").satellite == "L8"
    assert not SENSORS["L8"].active_on(dt.date(2012, 6, 1))
    assert is_slc_off("L7", dt.date(2003, 6, 1)) and not is_slc_off("L7", dt.date(2003, 5, 31))


# ---------------------------------------------------------------- ids and grid
def test_glims_ids() -> None:
    assert glims_id_from_lonlat(7.026, 45.991) == "G007026E45991N"
    assert glims_id_from_lonlat(-70.5, -33.2) == "G289500E33200S"
    assert validate_glims_id("G007026E45991N") == "G007026E45991N"
    for bad in ["../etc", "G7026E45991N", "G007026E45991N/..", "G007026E45991X"]:
        with pytest.raises(InputError):
            validate_glims_id(bad)


def test_grid_for_lonlat_bounds() -> None:
    assert utm_epsg(7.0, 46.0) == 32632 and utm_epsg(-70.0, -33.0) == 32719
    grid = GlacierGrid.for_lonlat_bounds(7.0, 45.9, 7.05, 45.95)
    assert grid.crs == "EPSG:32632" and grid.pixel_area_m2 == 900.0
    assert grid.x0 % 30 == 15 and grid.y0 % 30 == 15  # pixel edges on the Landsat lattice
    # ~3.9 km x 5.6 km plus 10 % each side
    assert 140 < grid.width < 170 and 200 < grid.height < 240
    assert GlacierGrid.from_json(grid.to_json()) == grid



# a 10 x 5 pixel grid of 32 m, bounds (1024, 1888, 1344, 2048) m: powers of two keep from_bounds'
# arithmetic exact, so the expected windows are the hand-computed ones without rounding noise
WINDOW_GRID = GlacierGrid("EPSG:32632", x0=1024.0, y0=2048.0, resolution=32.0, width=10, height=5)


def _whole(window: Window | None) -> tuple[int, int, int, int] | None:
    """(col_off, row_off, width, height), each checked to be an int (windows are whole pixels)."""
    if window is None:
        return None
    parts = (window.col_off, window.row_off, window.width, window.height)
    assert all(isinstance(v, int) for v in parts), parts
    return parts


@pytest.mark.parametrize("transform, shape, snap, pad, clip, expected", [
    # the grid's own lattice inside a larger raster: 320 m / 32 m = 10 columns in, 10 rows down
    (Affine(32, 0, 704, 0, -32, 2368), (40, 50), "outward", 0, True, (10, 10, 10, 5)),
    (Affine(32, 0, 704, 0, -32, 2368), (40, 50), "nearest", 0, True, (10, 10, 10, 5)),
    (Affine(32, 0, 704, 0, -32, 2368), (40, 50), "outward", 2, True, (8, 8, 14, 9)),
    # 16 m pixels off the lattice: the grid starts 0.625 px right and 0.375 px down, 20 x 10 px
    (Affine(16, 0, 1014, 0, -16, 2054), (100, 100), "outward", 0, True, (0, 0, 21, 11)),
    (Affine(16, 0, 1014, 0, -16, 2054), (100, 100), "nearest", 0, True, (1, 0, 20, 10)),
    # partly outside: the raster starts 5 columns right of and 1.25 rows below the grid's corner
    (Affine(32, 0, 1184, 0, -32, 2008), (3, 8), "outward", 0, False, (-5, -2, 10, 6)),
    (Affine(32, 0, 1184, 0, -32, 2008), (3, 8), "outward", 0, True, (0, 0, 5, 3)),
    (Affine(32, 0, 1184, 0, -32, 2008), (3, 8), "nearest", 0, False, (-5, -1, 10, 5)),
    (Affine(32, 0, 1184, 0, -32, 2008), (3, 8), "nearest", 0, True, (0, 0, 5, 3)),
    (Affine(32, 0, 1184, 0, -32, 2008), (3, 8), "outward", 1, True, (0, 0, 6, 3)),
    # fully outside: the grid ends 118 columns left of the raster
    (Affine(32, 0, 5120, 0, -32, 2048), (20, 20), "outward", 1, True, None),
    (Affine(32, 0, 5120, 0, -32, 2048), (20, 20), "nearest", 0, True, None),
    (Affine(32, 0, 5120, 0, -32, 2048), (20, 20), "nearest", 0, False, (-128, 0, 10, 5)),
])
def test_raster_window_hand_computed(transform: Affine, shape: tuple[int, int], snap: str, pad: int, clip: bool,
                                     expected: tuple[int, int, int, int] | None) -> None:
    window = raster_window(WINDOW_GRID, transform, shape, pad=pad, snap=snap, clip=clip)  # type: ignore[arg-type]
    assert _whole(window) == expected
    # the same CRS named by a rasterio CRS (an EPSG code or its WKT) is not transformed
    for crs in (rasterio.crs.CRS.from_epsg(32632), rasterio.crs.CRS.from_wkt(rasterio.crs.CRS.from_epsg(32632).to_wkt())):
        assert _whole(raster_window(WINDOW_GRID, transform, shape, crs=crs, pad=pad, snap=snap,  # type: ignore[arg-type]
                                    clip=clip)) == expected


def test_raster_window_in_another_crs_covers_the_grid() -> None:
    """A raster in the neighbouring UTM zone: the window holds every grid corner (transformed), and
    no more than a pixel beyond the outermost corner on each side."""
    from pyproj import Transformer

    grid = GlacierGrid("EPSG:32632", x0=700_005.0, y0=5_100_015.0, resolution=30.0, width=40, height=30)
    project = Transformer.from_crs(grid.crs, "EPSG:32633", always_xy=True)
    xs, ys = project.transform([grid.bounds[0], grid.bounds[2]] * 2, [grid.bounds[1]] * 2 + [grid.bounds[3]] * 2)
    transform = Affine(30, 0, min(xs) - 3000.0, 0, -30, max(ys) + 3000.0)
    window = raster_window(grid, transform, (400, 400), crs=rasterio.crs.CRS.from_epsg(32633))
    assert window is not None
    cols = [(x - transform.c) / 30 for x in xs]
    rows = [(transform.f - y) / 30 for y in ys]
    assert window.col_off <= min(cols) and window.col_off + window.width >= max(cols)
    assert window.row_off <= min(rows) and window.row_off + window.height >= max(rows)
    assert window.width <= max(cols) - min(cols) + 2 and window.height <= max(rows) - min(rows) + 2
    with pytest.raises(ValueError, match="snap"):
        raster_window(grid, transform, (400, 400), snap="inward")  # type: ignore[arg-type]



def test_glacier_paths_are_the_layouts_paths(tmp_path: Path) -> None:
    """Every per-glacier path of GlacierPaths is the path the layout's functions gave before it."""
    from glacierwatch.layout import (
        FetchPaths,
        GlacierPaths,
        TimeseriesOutputs,
        WorkLayout,
        dem_file_name,
        dem_path,
        glacier_scenes_dir,
        part_file_name,
        scene_path,
    )

    gid, day = "G007026E45991N", dt.date(2003, 8, 2)
    layout = WorkLayout.at(tmp_path)
    files = layout.glacier(gid)
    assert files.scenes == glacier_scenes_dir(layout.scenes, gid) == tmp_path / "scenes" / gid
    assert files.scene(day, "L7") == scene_path(layout.scenes, gid, day, "L7")
    assert files.scene(day, "L7") == tmp_path / "scenes" / gid / f"{gid}_2003-08-02_L7_C02_T1_L2_SR.tif"
    assert files.dem == dem_path(layout.dem, gid) == files.dem_file == layout.dem / dem_file_name(gid)
    for mode in ("training", "timeseries"):
        assert files.plan(mode) == layout.fetch.plan(mode, gid) == tmp_path / "imagery" / "plans" / mode / f"{gid}.json"
        assert files.done(mode) == layout.fetch.done(mode, gid) == tmp_path / "imagery" / "done" / mode / f"{gid}.json"
    assert files.manifest == layout.fetch.manifest(gid) == tmp_path / "imagery" / "manifests" / f"{gid}.jsonl"
    assert files.part == layout.timeseries.part(gid) == tmp_path / "areas.parts" / part_file_name(gid)
    assert files.overlay("x/" + files.scene(day, "L7").name) == (
        tmp_path / "overlays" / f"overlay_{gid}_2003-08-02_L7_C02_T1_L2_SR.png")
    # the stages' own constructors give the same paths for the folders they know
    assert FetchPaths.for_out(tmp_path).glacier(gid) == GlacierPaths(
        gid, scenes_dir=layout.scenes, dem_dir=layout.dem, state=tmp_path / "imagery")
    ts = TimeseriesOutputs.for_path(tmp_path / "areas.parquet").glacier(gid, dem_dir=layout.dem)
    assert (ts.part, ts.dem, ts.overlay("a.tif")) == (files.part, files.dem, files.overlay("a.tif"))
    with pytest.raises(ValueError, match="no state folder"):
        _ = ts.manifest
    with pytest.raises(InputError):
        GlacierPaths("../etc")
    with pytest.raises(InputError, match="unknown mode"):
        files.plan("inference")


# ---------------------------------------------------------------- config
def test_config_defaults_are_the_seed_values() -> None:
    cfg = Config()
    assert cfg.train.learning_rate == 1e-5 and cfg.train.batch_size == 32
    assert cfg.timeseries.sigma == 20 and cfg.timeseries.threshold == 0.5
    assert cfg.catalog.max_cloud_cover == 10 and cfg.catalog.image_quality == 9
    assert cfg.inventory.min_area_km2 == 1 and cfg.inventory.max_area_km2 == 50
    # the seed's ten channels, then the thermal anomaly (beyond the seed: docs/model.md); the config's
    # default is the features module's list
    from glacierwatch.features import DEFAULT_CHANNELS

    assert cfg.chips.size == 128 and cfg.chips.channels[:10] == [
        "blue", "green", "red", "nir08", "swir16", "swir22", "lwir", "dem", "ndsi", "ndwi"]
    assert cfg.chips.channels == [*DEFAULT_CHANNELS] and DEFAULT_CHANNELS[10:] == ("lwir_anomaly",)


def test_example_toml_roundtrips(tmp_path: Path) -> None:
    text = example_toml()
    assert Config.from_dict(tomllib.loads(text)) == Config()
    path = tmp_path / "c.toml"
    path.write_text('workdir = "w"\n[train]\nencoder = "resnet18"\nepochs = 3\n[timeseries]\nbuffer_m = "none"\n')
    cfg = Config.from_toml(path)
    assert cfg.train.encoder == "resnet18" and cfg.train.epochs == 3 and cfg.timeseries.buffer_m is None
    assert Path(cfg.workdir) == tmp_path / "w"


@pytest.mark.parametrize("text, message", [
    ("[train]\nlearning_rat = 1\n", "unknown configuration key"),
    ("[train]\nepochs = 'many'\n", "train.epochs"),
    ("[train\n", "not valid TOML"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.from_toml(path)


# ---------------------------------------------------------------- io
def test_scene_roundtrip_by_band_name(tmp_path: Path) -> None:
    grid = GlacierGrid("EPSG:32632", 300000.0, 5100000.0, 30.0, 12, 10)
    names = ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "lwir11", "qa_pixel"]
    data = np.stack([np.full(grid.shape, i + 1, np.uint16) for i in range(len(names))])
    write_raster(tmp_path / "s.tif", data, grid, band_names=names, nodata=0)
    scene = read_scene(tmp_path / "s.tif")
    assert scene.grid == grid
    assert scene.bands["blue"][0, 0] == 2  # picked by name, not position
    assert scene.bands["lwir"][0, 0] == 8  # lwir11 -> lwir
    assert list(tmp_path.iterdir()) == [tmp_path / "s.tif"]  # no temporary left behind


def test_bad_scene_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        read_scene(tmp_path / "missing.tif")
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00not a tiff")
    with pytest.raises(SceneReadError, match="unreadable"):
        read_scene(tmp_path / "corrupt.tif")
    with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=4, height=4, count=1,
                       dtype="uint16") as dst:
        dst.write(np.ones((1, 4, 4), np.uint16))
    with pytest.raises(SceneReadError, match="no CRS"):
        read_scene(tmp_path / "nocrs.tif")
    grid = GlacierGrid("EPSG:32632", 0.0, 0.0, 30.0, 4, 4)
    write_raster(tmp_path / "few.tif", np.ones((2, 4, 4), np.uint16), grid, band_names=["blue", "green"])
    with pytest.raises(SceneReadError, match="missing band"):
        read_scene(tmp_path / "few.tif")


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_tables(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    for name in ["t.parquet", "t.csv"]:
        write_table(df, tmp_path / name)
        pd.testing.assert_frame_equal(read_table(tmp_path / name), df)
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable table"):
        read_table(tmp_path / "junk.parquet")
    with pytest.raises(InputError, match="missing column"):
        read_table(tmp_path / "t.csv", columns=["a", "c"])


# ---------------------------------------------------------------- tasks
def _task(gid: str, *, fail_on: str, out: str) -> str:
    if gid == fail_on:
        raise ValueError(f"bad glacier {gid}")
    Path(out, gid).write_text("done")
    return gid


def test_runner_skips_done_and_continues_on_error(tmp_path: Path) -> None:
    ids = ["G001000E01000N", "G002000E02000N", "G003000E03000N"]
    (tmp_path / ids[0]).write_text("done earlier")
    report = run_per_glacier(_task, ids, stage="t", is_done=lambda g: (tmp_path / g).exists(),
                             ledger=tmp_path / "ledger.jsonl", progress=False, fail_on=ids[1],
                             out=str(tmp_path))
    assert report.skipped == [ids[0]] and report.done == [ids[2]] and list(report.failed) == [ids[1]]
    ledger = read_ledger(tmp_path / "ledger.jsonl")
    assert ledger[0]["glims_id"] == ids[1] and ledger[0]["error_class"] == "ValueError"


# ---------------------------------------------------------------- cli
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glacierwatch: error:") and "Traceback" not in err and err.count("\n") == 1


def test_cli_init_writes_loadable_config(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    assert cli.main(["init", str(path)]) == 0
    assert Config.from_toml(path).train.learning_rate == 1e-5
    assert cli.main(["init", str(path)]) == 2  # refuses to overwrite


def test_ledger_survives_a_line_torn_by_a_kill(tmp_path: Path) -> None:
    from glacierwatch.tasks import append_ledger

    ledger = tmp_path / "failures.jsonl"
    append_ledger(ledger, glims_id="G1", stage="s", error=ValueError("a"))
    with open(ledger, "a", encoding="utf-8") as fh:
        fh.write('{"glims_id": "G2", "sta')  # the writer was killed mid-line
    append_ledger(ledger, glims_id="G3", stage="s", error=ValueError("c"), scene="x.tif")
    rows = read_ledger(ledger)
    assert [r["glims_id"] for r in rows] == ["G1", "G3"] and rows[1]["scene"] == "x.tif"


def test_tests_cannot_reach_the_network() -> None:
    """pyproject's pytest options (pytest-socket) refuse connections to any host but this machine."""
    import socket

    from pytest_socket import SocketConnectBlockedError

    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1: never a real host
    with socket.socket() as server:  # localhost stays reachable (the recorded STAC server, Dask)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        socket.create_connection(server.getsockname(), timeout=1).close()
