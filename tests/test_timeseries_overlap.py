"""Reading overlapped with the model: a stack read in the background gives the stack read in full
(skip reasons included), a batch waits only for its own scenes and smoothing halo, an error that is
not one scene's reaches the caller, and the overlapped stage gives bit-identical areas to the
sequential one (tiny world, NDSI and a U-Net, smoothing none / masked / time, in memory and on disk)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import glacierwatch.timeseries.run as run_module
import glacierwatch.timeseries.stack as stack_module
from glacierwatch.config import CatalogConfig, TimeseriesConfig
from glacierwatch.features import DEFAULT_CHANNELS, Normaliser
from glacierwatch.grid import GlacierGrid
from glacierwatch.io import write_raster
from glacierwatch.landsat import QA, SCENE_BANDS, reflectance_to_dn
from glacierwatch.model import UNet, weights_fingerprint
from glacierwatch.timeseries import NDSISegmenter
from glacierwatch.timeseries.areas import glacier_areas, segment_blocks
from glacierwatch.timeseries.stack import ReadProgress, read_stack, scenes_needed

CATALOG_CONFIG = CatalogConfig(min_inference_scenes=3, min_pixels=1000)
GRID = GlacierGrid("EPSG:32632", 350000.0, 5100000.0, 30.0, 40, 36)
N_SCENES = 14


# ---------------------------------------------------------------- the stack read in the background

@pytest.fixture(scope="module")
def scene_paths(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """14 small scenes (bright disc on rock) with clouds on some; scene 4 is not a raster, scene 9 is missing."""
    folder = tmp_path_factory.mktemp("overlap_scenes")
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:GRID.height, 0:GRID.width]
    paths = []
    for i in range(N_SCENES):
        path = folder / f"scene_{i:02d}.tif"
        paths.append(str(path))
        if i == 4:
            path.write_bytes(b"not a tif")
            continue
        if i == 9:
            continue
        ice = (rows - 20) ** 2 + (cols - 18) ** 2 <= (12 - 0.3 * i) ** 2
        layers = [reflectance_to_dn(np.clip(np.where(ice, 0.7, 0.2) + rng.normal(0, 0.02, GRID.shape), 0, 1))
                  for _ in SCENE_BANDS[:6]]
        layers.append(np.full(GRID.shape, 40000, np.uint16))
        qa = np.full(GRID.shape, int(QA.CLEAR), np.uint16)
        if i % 3 == 1:
            qa[:, : 4 + i] = int(QA.CLOUD) | (3 << 8)
        write_raster(path, np.stack(layers + [qa]).astype(np.uint16), GRID, band_names=list(SCENE_BANDS), nodata=0)
    return paths


def _outline() -> np.ndarray:
    rows, cols = np.mgrid[0:GRID.height, 0:GRID.width]
    return (rows - 20) ** 2 + (cols - 18) ** 2 <= 100


@pytest.mark.parametrize("on_disk", [False, True])
def test_background_read_equals_the_full_read(scene_paths: list[str], tmp_path: Path, on_disk: bool) -> None:
    zone = ~_outline()
    full = read_stack(scene_paths, GRID, _outline(), size=16, threads=2, keep_raw=True, snow_zone=zone)
    scratch = tmp_path if on_disk else None
    back = read_stack(scene_paths, GRID, _outline(), size=16, threads=2, keep_raw=True, snow_zone=zone,
                      scratch_dir=scratch, background=True)
    try:
        back.wait_read()
        assert back.progress is not None and back.progress.done == N_SCENES
        for name in ("bands", "raw", "weight", "valid_fraction", "snow_fraction", "warped"):
            np.testing.assert_array_equal(np.asarray(getattr(back, name)), np.asarray(getattr(full, name)),
                                          err_msg=name)
        assert back.skip_reason == full.skip_reason
        # each bad scene has its own reason and the others none
        assert [i for i, r in enumerate(back.skip_reason) if r] == [4, 9]
        assert isinstance(back.bands, np.memmap) is on_disk
    finally:
        back.close()


def test_an_error_that_is_not_a_scenes_reaches_the_caller(scene_paths: list[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = stack_module.reduce_scene

    def reduce_or_break(path: str, *args: Any, **kwargs: Any) -> Any:
        if path.endswith("scene_06.tif"):
            raise MemoryError("out of memory")  # not a scene's fault: must not become a skip reason
        return real(path, *args, **kwargs)

    monkeypatch.setattr(stack_module, "reduce_scene", reduce_or_break)
    stack = read_stack(scene_paths, GRID, _outline(), size=16, threads=2, keep_raw=False, background=True)
    try:
        stack.wait_read(6)  # the scenes before it are fine
        with pytest.raises(MemoryError, match="out of memory"):
            stack.wait_read()
    finally:
        stack.close()
    assert stack.progress is not None and not stack.progress.thread.is_alive()


class ProgressRecorder:
    """NDSI segmenter that records, at each call, how many scenes were read, then lets the reading go
    on by one more batch (the reading is held back by hand, so only what a batch needs is there)."""

    name = "ndsi"

    def __init__(self, progress: ReadProgress, step: int) -> None:
        self.inner = NDSISegmenter()
        self.fingerprint = self.inner.fingerprint
        self.progress, self.step = progress, step
        self.seen: list[tuple[int, int]] = []  # (images in the call, scenes read at the call)

    def __call__(self, bands: Mapping[str, np.ndarray], dem: np.ndarray | None, *, glims_id: str,
                 dates: Sequence[Any]) -> np.ndarray:
        self.seen.append((len(dates), self.progress.done))
        self.progress.advance(min(self.progress.n_scenes, self.progress.done + self.step))
        return self.inner(bands, dem, glims_id=glims_id, dates=dates)


@pytest.mark.parametrize("smoothing,sigma", [("none", 0.0), ("masked", 1.5), ("time", 400.0)])
def test_a_batch_waits_only_for_its_scenes_and_halo(scene_paths: list[str], smoothing: str, sigma: float) -> None:
    stack = read_stack(scene_paths, GRID, _outline(), size=16, threads=2, keep_raw=False)
    dates = [pd.Timestamp("2000-08-01").date() + pd.Timedelta(days=365 * i) for i in range(N_SCENES)]
    cfg = TimeseriesConfig(segmenter="ndsi", smoothing=smoothing, sigma=sigma or 20.0, sigma_days=sigma or 30.0,
                           batch_size=3, unsmoothed=False)
    sig = {"none": 0.0, "masked": sigma, "time": sigma}[smoothing]
    days = np.array([(pd.Timestamp(d) - pd.Timestamp("1970-01-01")).days for d in dates], dtype=np.float64)
    first = scenes_needed(smoothing, 3, N_SCENES, sig, days)
    progress = ReadProgress(N_SCENES)
    progress.advance(first)  # as if the reader had got this far
    stack.progress = progress
    watchdog = threading.Timer(20.0, progress.advance, args=(N_SCENES,))  # a wrong wait fails, not hangs
    watchdog.start()
    try:
        seg = ProgressRecorder(progress, step=3)
        blocks = list(segment_blocks("G1", stack, dates=dates, dem_small=None, segmenter=seg, config=cfg,
                                     unsmoothed=False, per_batch=True))
    finally:
        watchdog.cancel()
    stops = np.cumsum([b.stop - b.start for b in blocks])
    assert [b.stop for b in blocks] == list(stops) and stops[-1] == N_SCENES
    needed = [scenes_needed(smoothing, int(s), N_SCENES, sig, days) for s in stops]
    assert needed[0] < N_SCENES  # the halo does not reach the end: the test can tell waiting for all
    for (images, read), need, blk in zip(seg.seen, needed, blocks, strict=False):
        assert images == blk.stop - blk.start
        assert need <= read < N_SCENES or (need == N_SCENES and read == N_SCENES)
    assert seg.seen[0][1] == first  # the first batch did not wait for more than it needed


# ---------------------------------------------------------------- the stage: overlapped == sequential

def _unet_segmenter(folder: Path) -> Any:
    from glacierwatch.timeseries.segmenters import UNetSegmenter

    torch.manual_seed(5)
    model = UNet(encoder="resnet18", in_channels=len(DEFAULT_CHANNELS), num_classes=2, decoder="light")
    state = model.state_dict()
    lows, highs = [0.0] * 6 + [250.0, 0.0, -1.0, -1.0, -10.0], [1.0] * 6 + [300.0, 5000.0, 1.0, 1.0, 10.0]
    card = {
        "format": "glacierwatch-model-card/1", "channels": list(DEFAULT_CHANNELS),
        "normalisation": Normaliser(DEFAULT_CHANNELS, tuple(lows), tuple(highs)).to_dict(),
        "chip_size": 32, "encoder": "resnet18", "decoder": "light", "in_channels": len(DEFAULT_CHANNELS),
        "num_classes": 2, "fingerprint": weights_fingerprint(state), "data_fingerprint": "test", "settings": {},
        "metrics": {}, "sensors": ["L5", "L7", "L8", "L9"],
    }
    torch.save({"state_dict": state, "card": card}, folder / "model.pt")
    return UNetSegmenter(str(folder / "model.pt"), batch_size=5)


@pytest.mark.parametrize("kind,smoothing,max_stack_mb", [
    ("ndsi", "none", 1024.0), ("ndsi", "masked", 1024.0), ("ndsi", "time", 1e-3),
    ("unet", "none", 1024.0), pytest.param("unet", "masked", 1e-3, marks=pytest.mark.slow),
])
def test_overlapped_stage_equals_the_sequential_one(tiny_catalog: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, torch_two_threads: None,
                                                    kind: str, smoothing: str, max_stack_mb: float) -> None:
    from glacierwatch.timeseries import run_timeseries

    segmenter = _unet_segmenter(tmp_path) if kind == "unet" else NDSISegmenter()
    config = TimeseriesConfig(segmenter=kind, smoothing=smoothing, sigma=3.0, sigma_days=200.0, batch_size=5,
                              max_stack_mb=max_stack_mb, unsmoothed=False)

    def run(out: str) -> pd.DataFrame:
        return run_timeseries(catalog=tiny_catalog["catalog"], inventory=tiny_catalog["inventory"],
                              out=tmp_path / out / "areas.parquet", dem_dir=tiny_catalog["dem"], config=config,
                              catalog_config=CATALOG_CONFIG, segmenter=segmenter, chip_size=32,
                              progress=False).areas

    overlapped = run("overlapped")
    monkeypatch.setattr(run_module, "glacier_areas", functools.partial(glacier_areas, overlap=False))
    sequential = run("sequential")
    assert len(overlapped) > 20 and overlapped["area_km2"].notna().sum() > 10
    pd.testing.assert_frame_equal(overlapped, sequential, check_exact=True)
    assert not list(tmp_path.rglob(".*stack-*"))  # no stack folder left either way


def test_overlap_with_the_second_pass_equals_the_sequential_one(tiny_catalog: dict[str, Path], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two passes keep their shared batches (the blocks are not split per batch) and the same areas."""
    from glacierwatch.timeseries import run_timeseries

    config = TimeseriesConfig(segmenter="ndsi", smoothing="masked", sigma=3.0, batch_size=4, unsmoothed=True)

    def run(out: str) -> pd.DataFrame:
        return run_timeseries(catalog=tiny_catalog["catalog"], inventory=tiny_catalog["inventory"],
                              out=tmp_path / out / "areas.parquet", dem_dir=tiny_catalog["dem"], config=config,
                              catalog_config=CATALOG_CONFIG, progress=False).areas

    overlapped = run("overlapped")
    monkeypatch.setattr(run_module, "glacier_areas", functools.partial(glacier_areas, overlap=False))
    sequential = run("sequential")
    assert overlapped["area_km2_unsmoothed"].notna().any()
    pd.testing.assert_frame_equal(overlapped, sequential, check_exact=True)
