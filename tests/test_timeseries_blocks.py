"""Bounded memory per glacier and the optional second pass: a stack over ``max_stack_mb`` goes to a
temporary memory-mapped folder and is smoothed, segmented and counted block by block with the same
areas as the in-memory path; ``unsmoothed = False`` skips the second model pass."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer
from scipy.ndimage import gaussian_filter1d
from shapely.geometry import Point

from glacierwatch.config import TimeseriesConfig
from glacierwatch.grid import GlacierGrid
from glacierwatch.io import write_raster
from glacierwatch.landsat import QA, SCENE_BANDS, kelvin_to_dn, reflectance_to_dn
from glacierwatch.timeseries import NDSISegmenter, glacier_areas, smooth_stack
from glacierwatch.timeseries.areas import block_length, remove_stale_stacks, run_key
from glacierwatch.timeseries.stack import SceneStack, gaussian_radius, smooth_block, stack_bytes_per_scene

GLIMS_ID = "G007000E46000N"
GRID = GlacierGrid("EPSG:32632", 350000.0, 5100000.0, 30.0, 96, 80)
CENTER = (GRID.x0 + 48 * 30.0, GRID.y0 - 40 * 30.0)
ICE = {"blue": 0.8, "green": 0.75, "red": 0.7, "nir08": 0.55, "swir16": 0.05, "swir22": 0.04}
ROCK = {"blue": 0.12, "green": 0.15, "red": 0.18, "nir08": 0.25, "swir16": 0.3, "swir22": 0.25}
N_SCENES = 26


# ---------------------------------------------------------------- smoothing in blocks

def _random_stack(t: int, seed: int = 0) -> SceneStack:
    """Random bands with invalid pixels (NaN, weight 0) and partial weights, raw bands different."""
    rng = np.random.default_rng(seed)
    weight = rng.random((t, 12, 12), dtype=np.float32)
    weight[weight < 0.3] = 0.0
    weight[2] = 0.0  # one scene fully clouded
    bands = rng.random((t, 2, 12, 12), dtype=np.float32)
    bands[np.broadcast_to(weight[:, None] == 0, bands.shape)] = np.nan
    raw = rng.random((t, 2, 12, 12), dtype=np.float32)
    grid = GlacierGrid("EPSG:32632", 0.0, 360.0, 30.0, 12, 12)
    return SceneStack(("green", "swir16"), bands, raw, weight, np.ones(t), grid)


def _scipy_smoothing(stack: SceneStack, mode: str, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The whole-stack smoothing as the stage did it before blocks (scipy, mode 'reflect')."""
    if mode == "seed":
        return gaussian_filter1d(stack.raw, sigma, axis=0, mode="reflect"), np.ones_like(stack.weight)
    w = stack.weight
    num = gaussian_filter1d(np.nan_to_num(stack.bands, nan=0.0) * w[:, None], sigma, axis=0, mode="reflect")
    den = gaussian_filter1d(w, sigma, axis=0, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = np.where(den[:, None] > 1e-6, num / np.maximum(den[:, None], 1e-12), np.nan)
    return smoothed.astype(np.float32), den


@pytest.mark.parametrize("mode", ["masked", "seed"])
@pytest.mark.parametrize("sigma", [0.8, 3.0, 20.0])
def test_blocks_equal_the_whole_stack_and_the_scipy_smoothing(mode: str, sigma: float) -> None:
    stack = _random_stack(23)
    ref, ref_support = _scipy_smoothing(stack, mode, sigma)
    whole, support = smooth_stack(stack, mode=mode, sigma=sigma)
    assert np.array_equal(np.isnan(whole), np.isnan(ref))
    np.testing.assert_allclose(whole, ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(support, ref_support, rtol=1e-6, atol=1e-7)
    # sigma 20 (radius 80) on 23 scenes: every block's halo reaches both ends (repeated reflections)
    for size in (1, 4, 7, 22):
        parts = [smooth_block(stack, a, min(23, a + size), mode=mode, sigma=sigma) for a in range(0, 23, size)]
        blocks = np.concatenate([p[0] for p in parts])
        assert np.array_equal(np.isnan(blocks), np.isnan(whole))
        np.testing.assert_allclose(blocks, whole, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.concatenate([p[1] for p in parts]), support, rtol=1e-6, atol=1e-7)


def test_series_ends_are_mirrored_half_sample() -> None:
    """The seed's padding at the series ends, written out: ``... c b a | a b c ... x y z | z y x ...``."""
    t, sigma = 12, 2.0
    values = np.arange(t, dtype=np.float32) ** 2  # not linear, so a wrong mirror shows
    stack = _random_stack(t)
    stack.raw = np.broadcast_to(values[:, None, None, None], stack.raw.shape).copy()
    smoothed, _ = smooth_stack(stack, mode="seed", sigma=sigma)
    r = gaussian_radius(sigma)
    assert r == 8
    x = np.arange(-r, r + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.concatenate([values[:r][::-1], values, values[-r:][::-1]])  # half-sample mirror
    expected = np.array([np.dot(kernel, padded[i:i + 2 * r + 1]) for i in range(t)])
    np.testing.assert_allclose(smoothed[:, 0, 0, 0], expected, rtol=1e-5)
    assert smoothed[0, 0, 0, 0] > values[0]  # the mirrored neighbours pull the first value up


def test_block_length_follows_the_budget() -> None:
    per_scene = stack_bytes_per_scene(128, 7, keep_raw=False)
    assert per_scene == 4 * 128 * 128 * 8
    cfg = TimeseriesConfig(batch_size=32, max_stack_mb=1024.0)
    assert block_length(200, per_scene, cfg) == 200  # a short series is one block
    # blocks of 1024 MB / 8 = 256 scenes (a multiple of the batch), whether the stack is in memory
    # (500 scenes, 256 MB) or on disk (5000 scenes, 2.5 GB)
    assert block_length(500, per_scene, cfg) == block_length(5000, per_scene, cfg) == 256
    assert block_length(5000, per_scene, dataclasses.replace(cfg, batch_size=24)) == 240
    assert block_length(5000, per_scene, dataclasses.replace(cfg, max_stack_mb=1e-3)) == 32  # one batch


# ---------------------------------------------------------------- glacier areas, disk vs memory

def _disc(radius_m: float) -> np.ndarray:
    rows, cols = np.mgrid[0:GRID.height, 0:GRID.width]
    x = GRID.x0 + (cols + 0.5) * 30.0
    y = GRID.y0 - (rows + 0.5) * 30.0
    return (x - CENTER[0]) ** 2 + (y - CENTER[1]) ** 2 <= radius_m**2


def _outline(radius_m: float) -> Any:
    to_wgs = Transformer.from_crs(GRID.crs, "EPSG:4326", always_xy=True).transform
    return shapely.transform(Point(*CENTER).buffer(radius_m, 256), lambda x, y: to_wgs(x, y), interleaved=False)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """26 scenes of a shrinking glacier with clouds over it on some dates and fill on one."""
    folder = tmp_path_factory.mktemp("block_scenes")
    rows, cols = np.mgrid[0:GRID.height, 0:GRID.width]
    rng = np.random.default_rng(1)
    records = []
    for i, radius in enumerate(np.linspace(900.0, 600.0, N_SCENES)):
        date = dt.date(1995 + i, 8, 1)
        ice = _disc(radius)
        cloud = np.zeros(GRID.shape, bool)
        if i % 5 == 2:  # a cloud moving across the glacier
            cloud = (np.abs(rows - 40) < 12) & (np.abs(cols - 20 - 2 * i) < 15)
        layers = []
        for band in SCENE_BANDS[:6]:
            refl = np.where(ice, ICE[band], ROCK[band]) + rng.normal(0, 0.02, GRID.shape)
            refl = np.where(cloud, 0.6, refl)
            layers.append(reflectance_to_dn(np.clip(refl, 0.0, 1.0)))
        layers.append(kelvin_to_dn(np.where(ice, 270.0, 285.0)))
        qa = np.full(GRID.shape, int(QA.CLEAR), np.uint16)
        qa[cloud] = int(QA.CLOUD) | (3 << 8)
        data = np.stack(layers + [qa]).astype(np.uint16)
        if i == 7:  # fill in one corner
            data[:, :20, :30] = 0
            data[-1, :20, :30] = int(QA.FILL)
        path = folder / f"{GLIMS_ID}_{date}_L5_C02_T1_L2_SR.tif"
        write_raster(path, data, GRID, band_names=list(SCENE_BANDS), nodata=0)
        records.append({"path": str(path), "date": date, "satellite": "L5"})
    return pd.DataFrame(records)


class RecordingSegmenter:
    """NDSI segmenter that records, for every call, the images passed and the temporary stack
    folders present in ``scratch`` (the memory-mapped stack lives there while a glacier is processed)."""

    name = "ndsi"

    def __init__(self, scratch: Path, fail: bool = False) -> None:
        self.inner = NDSISegmenter()
        self.fingerprint = self.inner.fingerprint
        self.scratch, self.fail = scratch, fail
        self.calls: list[int] = []
        self.folders: list[list[str]] = []

    def __call__(self, bands: Mapping[str, np.ndarray], dem: np.ndarray | None, *, glims_id: str,
                 dates: Sequence[Any]) -> np.ndarray:
        self.calls.append(len(dates))
        self.folders.append(sorted(p.name for p in self.scratch.glob(f".{glims_id}.stack-*")
                                   if (p / "bands.f32").exists()))
        if self.fail:
            raise RuntimeError("model failed")
        return self.inner(bands, dem, glims_id=glims_id, dates=dates)


def _areas(series: pd.DataFrame, seg: RecordingSegmenter, **settings: Any) -> pd.DataFrame:
    cfg = TimeseriesConfig(segmenter="ndsi", buffer_m=300.0, **{"unsmoothed": True, **settings})
    return glacier_areas(GLIMS_ID, series, geometry=_outline(700.0), region_name="Europe", grid=GRID,
                         dem_path=None, segmenter=seg, config=cfg, scratch_dir=seg.scratch)


@pytest.mark.parametrize("smoothing,sigma", [("masked", 1.5), ("masked", 4.0), ("seed", 1.5), ("seed", 20.0)])
def test_disk_stack_in_blocks_gives_the_in_memory_areas(series: pd.DataFrame, tmp_path: Path,
                                                       smoothing: str, sigma: float) -> None:
    memory_seg = RecordingSegmenter(tmp_path)
    memory = _areas(series, memory_seg, smoothing=smoothing, sigma=sigma, batch_size=4)
    assert not any(memory_seg.folders)  # 26 small scenes fit in 1024 MB: no stack on disk
    disk_seg = RecordingSegmenter(tmp_path)
    # a budget below one scene: the stack goes to disk, blocks of one batch (3 scenes)
    disk = _areas(series, disk_seg, smoothing=smoothing, sigma=sigma, batch_size=3, max_stack_mb=1e-3)
    assert all(len(f) == 1 for f in disk_seg.folders)  # the memory-mapped stack existed at every call
    assert not list(tmp_path.glob(".*stack-*"))  # and is gone afterwards
    # blocks of 3 scenes, both passes of a block batched together: 9 blocks, 2 x 3 images per block
    assert sum(disk_seg.calls) == 2 * N_SCENES and max(disk_seg.calls) <= 3 and len(disk_seg.calls) >= 18
    assert len(disk) == len(memory) == N_SCENES
    # the smoothing does something here (else this comparison would be weak)
    assert (np.abs(memory["area_km2"] - memory["area_km2_unsmoothed"]) > 0.01).any()
    for column in ("area_km2", "area_km2_unsmoothed", "valid_fraction", "filled_fraction"):
        np.testing.assert_allclose(disk[column], memory[column], rtol=0, atol=1e-6, err_msg=column)
    assert (disk["run_key"] == memory["run_key"]).all()  # max_stack_mb and batch_size are not in the key
    if smoothing == "masked":
        assert disk["filled_fraction"].max() > 0.01  # clouds were filled from neighbouring dates


def test_stack_folder_is_removed_when_a_glacier_fails(series: pd.DataFrame, tmp_path: Path) -> None:
    seg = RecordingSegmenter(tmp_path, fail=True)
    with pytest.raises(RuntimeError, match="model failed"):
        _areas(series, seg, smoothing="masked", sigma=2.0, max_stack_mb=1e-3)
    assert seg.folders == [[seg.folders[0][0]]] and not list(tmp_path.glob(".*stack-*"))


def test_remove_stale_stacks_only_touches_that_glacier(tmp_path: Path) -> None:
    for name in (f".{GLIMS_ID}.stack-abc", f".{GLIMS_ID}.stack-def", ".G008000E46000N.stack-abc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bands.f32").write_bytes(b"0000")
    (tmp_path / f"{GLIMS_ID}.parquet").write_bytes(b"part")
    remove_stale_stacks(tmp_path, GLIMS_ID)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".G008000E46000N.stack-abc", f"{GLIMS_ID}.parquet"]


# ---------------------------------------------------------------- the second pass is optional

def test_without_unsmoothed_one_pass_and_a_nan_column(series: pd.DataFrame, tmp_path: Path) -> None:
    both_seg, one_seg = RecordingSegmenter(tmp_path), RecordingSegmenter(tmp_path)
    both = _areas(series, both_seg, smoothing="masked", sigma=2.0)
    one = _areas(series, one_seg, smoothing="masked", sigma=2.0, unsmoothed=False)
    assert sum(both_seg.calls) == 2 * N_SCENES and sum(one_seg.calls) == N_SCENES
    assert one["area_km2_unsmoothed"].isna().all() and both["area_km2_unsmoothed"].notna().all()
    np.testing.assert_allclose(one["area_km2"], both["area_km2"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(one["filled_fraction"], both["filled_fraction"], rtol=0, atol=1e-12)
    assert one["run_key"].iloc[0] != both["run_key"].iloc[0]  # not mixed with parts that have the column


@pytest.mark.parametrize("unsmoothed", [True, False])
def test_without_smoothing_one_pass_serves_both_columns(series: pd.DataFrame, tmp_path: Path,
                                                        unsmoothed: bool) -> None:
    seg = RecordingSegmenter(tmp_path)
    areas = _areas(series, seg, smoothing="none", unsmoothed=unsmoothed)
    assert sum(seg.calls) == N_SCENES
    assert (areas["area_km2_unsmoothed"] == areas["area_km2"]).all()
    cfg = TimeseriesConfig(segmenter="ndsi", smoothing="none")
    assert run_key(seg, cfg) == run_key(seg, dataclasses.replace(cfg, unsmoothed=not cfg.unsmoothed))


def test_cli_flags_reach_the_stage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import glacierwatch.timeseries.run as run_module
    from glacierwatch.cli import build_parser

    seen: dict[str, TimeseriesConfig] = {}

    def fake_run(**kwargs: Any) -> Any:
        seen["config"] = kwargs["config"]
        report = SimpleNamespace(failed=[], summary=lambda: "done")
        return SimpleNamespace(report=report, outputs=SimpleNamespace(areas=tmp_path / "a.parquet"), areas=[])

    monkeypatch.setattr(run_module, "run_timeseries", fake_run)
    common = ["timeseries", "run", "--catalog", "c", "--inventory", "i", "--out", str(tmp_path / "a.parquet"),
              "--segmenter", "ndsi"]
    for extra, unsmoothed, mb in ((["--no-unsmoothed", "--max-stack-mb", "64"], False, 64.0),
                                  (["--unsmoothed"], True, 1024.0), ([], False, 1024.0)):
        args = build_parser().parse_args(common + extra)
        assert args.func(args) == 0
        assert seen["config"].unsmoothed is unsmoothed and seen["config"].max_stack_mb == mb
