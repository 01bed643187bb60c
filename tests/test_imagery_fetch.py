"""The imagery fetch driver with an in-memory source: files, manifests, ledger, retry, resume, kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from glacierwatch.catalog import build_catalog
from glacierwatch.imagery import FetchPaths, fetch_imagery, mosaic, read_manifest, retry_failed, warp_to_grid
from glacierwatch.imagery.records import SceneRecord, requests_from_inventory
from glacierwatch.imagery.sources.base import TransientSourceError, with_retries
from glacierwatch.imagery.standard import normalise_fill, write_standard_scene
from glacierwatch.io import read_raster, read_scene, read_table
from glacierwatch.landsat import QA, SCENE_BANDS

sys.path.insert(0, str(Path(__file__).parent))
from checks import nonempty  # noqa: E402
from imagery_fakes import FakeSource, synthetic_bands, tiny_grid, write_tiny_inventory  # noqa: E402

GA, GB = "G007000E46000N", "G007100E46100N"
DATES = ["2003-07-01", "2003-07-17", "2003-08-02", "2003-08-18", "2003-09-03"]


@pytest.fixture()
def inventory(tmp_path: Path) -> Path:
    return write_tiny_inventory(tmp_path / "inventory.parquet",
                                {GA: tiny_grid(), GB: tiny_grid(x0=360_000.0, width=20, height=16)})


def fetch(inventory: Path, out: Path, source: FakeSource, **kw):
    return fetch_imagery(inventory, out, mode="training", source_factory=lambda: source, progress=False, **kw)


def test_warp_same_grid_is_identity_and_other_zone_is_nearest() -> None:
    grid = tiny_grid()
    data = synthetic_bands("x", grid)["red"]
    same = warp_to_grid(data, src_crs=grid.crs, src_transform=grid.transform, grid=grid)
    np.testing.assert_array_equal(same, data)
    # shifted by exactly 2 pixels: values move by 2 columns, uncovered columns are fill (0)
    shifted = Affine(30.0, 0, grid.x0 + 60.0, 0, -30.0, grid.y0)
    out = warp_to_grid(data, src_crs=grid.crs, src_transform=shifted, grid=grid)
    np.testing.assert_array_equal(out[:, 2:], data[:, :-2])
    assert (out[:, :2] == 0).all()
    # float input with -inf: no data
    dem = np.full(grid.shape, 100.0, dtype=np.float32)
    dem[0, 0] = -np.inf
    warped = warp_to_grid(dem, src_crs=grid.crs, src_transform=grid.transform, grid=grid, src_nodata=None,
                          dst_nodata=np.nan)
    assert np.isnan(warped[0, 0]) and warped[1, 1] == 100.0


def test_mosaic_takes_first_observed_pixel() -> None:
    grid = tiny_grid()
    first = synthetic_bands("a-edge", grid)  # left third is fill
    second = synthetic_bands("b", grid)
    out = mosaic([first, second])
    third = grid.width // 3
    np.testing.assert_array_equal(out["red"][:, third:], first["red"][:, third:])
    np.testing.assert_array_equal(out["red"][:, :third], second["red"][:, :third])
    assert not ((out["qa_pixel"] & int(QA.FILL)) != 0).any()
    # a pixel flagged fill in QA becomes DN 0 everywhere
    bands = synthetic_bands("c", grid)
    bands["qa_pixel"][0, 0] = int(QA.FILL)
    norm = normalise_fill(bands)
    assert all(norm[b][0, 0] == 0 for b in SCENE_BANDS if b != "qa_pixel") and norm["qa_pixel"][0, 0] == 1


def test_records_of_different_overpasses_cannot_share_a_file(tmp_path: Path) -> None:
    grid = tiny_grid()
    a = SceneRecord("fake", "a", GA, np.datetime64("2003-07-01").item(), "L7")
    b = SceneRecord("fake", "b", GA, np.datetime64("2003-07-02").item(), "L7")
    with pytest.raises(ValueError, match="different"):
        write_standard_scene(tmp_path, [a, b], synthetic_bands("a", grid), grid)


def test_training_window_from_outline_date(inventory: Path) -> None:
    reqs = {r.glims_id: r for r in requests_from_inventory(inventory, mode="training", window_days=50)}
    assert str(reqs[GA].start) == "2003-06-26" and str(reqs[GA].end) == "2003-10-04"
    lon_min, lat_min, lon_max, lat_max = reqs[GA].bbox
    assert 6.9 < lon_min < lon_max < 7.2 and 45.9 < lat_min < lat_max < 46.1
    ts = requests_from_inventory(inventory, mode="timeseries", max_cloud_cover=10.0)
    assert str(ts[0].start) == "1984-03-01" and ts[0].max_cloud_cover == 10.0


def test_fetch_writes_scenes_manifest_and_dem_and_rerun_skips(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "work"
    source = FakeSource(DATES, extra_ids=["2003-07-17:rowB"])
    report = fetch(inventory, out, source)
    assert sorted(report.done) == [GA, GB] and not report.failed
    paths = FetchPaths.for_out(out)
    files = sorted((out / "scenes" / GA).glob("*.tif"))
    assert [f.name for f in files] == [f"{GA}_{d}_L7_C02_T1_L2_SR.tif" for d in DATES]
    scene = read_scene(files[0])
    assert scene.grid == tiny_grid()
    np.testing.assert_array_equal(scene.bands["red"], synthetic_bands(f"{GA}-{DATES[0]}", tiny_grid())["red"])
    # two images of one overpass: one file, both records in the side-car, lowest cloud cover first
    sidecar = json.loads(files[1].with_suffix(".json").read_text())
    assert [r["LANDSAT_PRODUCT_ID"] for r in sidecar] == [f"{GA}-2003-07-17", f"{GA}-2003-07-17-rowB"]
    manifest = read_manifest(paths, GA)
    assert sorted(r["scene"] for r in manifest) == [f.name for f in files]
    by_scene = {r["scene"]: r for r in manifest}
    assert by_scene[files[0].name]["source"] == "fake"
    assert by_scene[files[0].name]["bytes"] == files[0].stat().st_size
    assert by_scene[files[1].name]["scene_ids"] == [f"{GA}-2003-07-17", f"{GA}-2003-07-17-rowB"]
    dem, dem_grid, _ = read_raster(out / "dem" / f"{GA}.tif")
    assert dem_grid == tiny_grid() and dem[0, 0] == 2500.0
    # the catalog reads what the fetch wrote
    catalog = build_catalog(out / "scenes", tmp_path / "catalog.parquet", progress=False)
    assert len(catalog) == 2 * len(DATES) and set(catalog["status"]) == {"ok"}
    assert sorted(catalog.loc[catalog["glims_id"] == GA, "cloud_cover"])[0] == 5.0
    # rerun: both glaciers done, nothing searched or read again
    again = FakeSource(DATES, extra_ids=["2003-07-17:rowB"])
    report2 = fetch(inventory, out, again)
    assert sorted(report2.skipped) == [GA, GB] and again.searches == 0 and again.reads == []


def test_failures_go_to_the_ledger_and_retry_failed_fetches_only_them(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "work"
    bad = f"{GA}-{DATES[2]}"
    source = FakeSource(DATES, fail=[bad])
    report = fetch(inventory, out, source)
    assert list(report.failed) == [GA] and report.done == [GB]
    paths = FetchPaths.for_out(out)
    ledger = [json.loads(line) for line in paths.ledger.read_text().splitlines()]
    scene_rows = [r for r in ledger if r.get("scene")]
    assert scene_rows[0]["scene_ids"] == [bad] and scene_rows[0]["error_class"] == "SourceError"
    assert scene_rows[0]["source"] == "fake"
    assert not (out / "scenes" / GA / f"{GA}_{DATES[2]}_L7_C02_T1_L2_SR.tif").exists()
    assert len(list((out / "scenes" / GA).glob("*.tif"))) == len(DATES) - 1
    healed = FakeSource(DATES)
    report2 = retry_failed(out, source_factory=lambda: healed, progress=False)
    assert report2.done == [GA] and not report2.failed
    assert healed.searches == 0 and healed.reads == [bad]  # the saved plan is reused; only the failed scene is read
    assert not paths.ledger.exists() and len(list(paths.state.glob("failures.*.jsonl"))) == 1
    assert len(list((out / "scenes" / GA).glob("*.tif"))) == len(DATES)


def test_transient_errors_are_retried_with_backoff() -> None:
    calls, waits = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientSourceError("HTTP 503")
        return "ok"

    assert with_retries(flaky, what="x", attempts=5, base_delay_s=1.0, sleep=waits.append) == "ok"
    assert len(calls) == 3 and 1.0 <= waits[0] <= 1.5 and 2.0 <= waits[1] <= 3.0
    with pytest.raises(TransientSourceError):
        with_retries(lambda: (_ for _ in ()).throw(TransientSourceError("429")), what="y", attempts=2,
                     sleep=waits.append)


def test_a_changed_request_searches_again(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "work"
    fetch(inventory, out, FakeSource(DATES))
    later = FakeSource([*DATES, "2003-09-19"])
    fetch_imagery(inventory, out, mode="training", source_factory=lambda: later, progress=False,
                  end=np.datetime64("2003-09-30").item())
    assert later.searches == 2 and sorted(later.reads) == [f"{GA}-2003-09-19", f"{GB}-2003-09-19"]


_CHILD = r"""
import sys
sys.path.insert(0, {tests!r})
from imagery_fakes import FakeSource
from glacierwatch.imagery import fetch_imagery
source = FakeSource({dates!r}, delay_s=0.25)
fetch_imagery({inventory!r}, {out!r}, mode="training", source_factory=lambda: source, progress=False, workers=2)
"""


def test_killed_fetch_resumes_with_nothing_lost_or_duplicated(inventory: Path, tmp_path: Path) -> None:
    dates = [f"2003-{m:02d}-{d:02d}" for m in (7, 8, 9) for d in (1, 6, 11, 16, 21, 26)]
    out = tmp_path / "work"
    script = _CHILD.format(tests=str(Path(__file__).parent), dates=dates, inventory=str(inventory), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    manifest = FetchPaths.for_out(out).manifest(GA)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if manifest.exists() and len(manifest.read_text().splitlines()) >= 6:
                break
            if proc.poll() is not None:
                pytest.fail(f"the fetch ended before it could be killed (rc {proc.returncode})")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    written_before = {p.name for p in (out / "scenes" / GA).glob("*.tif")}
    assert 6 <= len(written_before) < len(dates)
    resumed = FakeSource(dates)
    report = fetch(inventory, out, resumed)
    assert sorted(report.done) == [GA, GB] and not report.failed
    for gid in (GA, GB):
        names = sorted(p.name for p in (out / "scenes" / gid).glob("*.tif"))
        assert len(names) == len(dates)
        rows = [r["scene"] for r in read_manifest(FetchPaths.for_out(out), gid)]
        assert sorted(rows) == names  # every scene recorded exactly once
        assert not list((out / "scenes" / gid).glob(".*.part"))
    # only what the killed run had not finished is read again
    dates_before = {name.split("_")[1] for name in written_before}
    assert sorted(r for r in resumed.reads if r.startswith(GA)) == [f"{GA}-{d}" for d in dates if d not in dates_before]
    # the resumed files equal a clean, uninterrupted fetch byte for byte
    clean = tmp_path / "clean"
    fetch(inventory, clean, FakeSource(dates))
    for path in nonempty(sorted((clean / "scenes" / GA).glob("*.tif"))):
        assert (out / "scenes" / GA / path.name).read_bytes() == path.read_bytes()
        with rasterio.open(path) as src:
            assert list(src.descriptions) == list(SCENE_BANDS)


def test_an_all_nodata_dem_is_not_written(inventory: Path, tmp_path: Path) -> None:
    out = tmp_path / "work"
    report = fetch(inventory, out, FakeSource(DATES, dem_nan=True))
    assert sorted(report.done) == [GA, GB] and report.results[GA].dem == "none"
    assert not (out / "dem" / f"{GA}.tif").exists()


def _local_folder(folder: Path, grid, dates: list[str]) -> None:
    """Standard-encoded GeoTIFFs (C2 DN, bands named by common name) of the grid, one per date."""
    folder.mkdir(parents=True, exist_ok=True)
    for day in dates:
        bands = synthetic_bands(day, grid)
        (folder / f"LE07_{day}.tif").unlink(missing_ok=True)
        with rasterio.open(folder / f"LE07_{day}.tif", "w", driver="GTiff", width=grid.width, height=grid.height,
                           count=len(SCENE_BANDS), dtype="uint16", crs=grid.crs, transform=grid.transform,
                           nodata=0) as dst:
            for i, band in enumerate(SCENE_BANDS, start=1):
                dst.write(bands[band], i)
                dst.set_band_description(i, band)


def test_cli_fetch_local_then_retry_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from glacierwatch.cli import main

    grid = tiny_grid()
    inventory = write_tiny_inventory(tmp_path / "inventory.parquet", {GA: grid})
    folder = tmp_path / "input"
    _local_folder(folder, grid, DATES[:3])
    (folder / "LE07_2003-08-18.tif").write_bytes(b"II*\x00 truncated")  # a corrupt download
    out = tmp_path / "work"
    args = ["imagery", "fetch", "--inventory", str(inventory), "--source", "local", "--input-dir", str(folder),
            "--mode", "timeseries", "--out", str(out), "--no-progress"]
    assert main(args) == 1  # one scene failed: non-zero status, the others written
    printed = capsys.readouterr().out
    assert "failures:" in printed and "retry-failed" in printed
    assert len(list((out / "scenes" / GA).glob("*.tif"))) == 3
    ledger = [json.loads(line) for line in (out / "imagery" / "failures.jsonl").read_text().splitlines()]
    assert any(r.get("scene") == f"{GA}_2003-08-18_L7_C02_T1_L2_SR.tif" for r in ledger)
    _local_folder(folder, grid, ["2003-08-18"])  # the file is downloaded again, complete
    assert main(["imagery", "retry-failed", "--out", str(out), "--no-progress"]) == 0
    assert len(list((out / "scenes" / GA).glob("*.tif"))) == 4
    assert main(args) == 0  # everything done: a rerun skips the glacier
    assert "1 already done" in capsys.readouterr().out


def test_pipeline_runs_the_imagery_stage_when_a_source_is_set(tmp_path: Path) -> None:
    from glacierwatch.config import Config
    from glacierwatch.pipeline import run_pipeline

    grid = tiny_grid()
    work = tmp_path / "work"
    work.mkdir()
    write_tiny_inventory(work / "inventory.parquet", {GA: grid})
    _local_folder(tmp_path / "input", grid, DATES)
    (tmp_path / "run.toml").write_text(
        'workdir = "work"\n[imagery]\nsource = "local"\nmodes = ["timeseries"]\n'
        '[imagery.local]\ninput_dir = "input"\n', encoding="utf-8")
    config = Config.from_toml(tmp_path / "run.toml")
    status = run_pipeline(config, stages=["imagery", "catalog"], progress=False)
    assert status["imagery"].startswith("ran") and status["catalog"].startswith("ran")
    assert len(read_table(work / "catalog.parquet")) == len(DATES)
    assert run_pipeline(config, stages=["imagery", "catalog"], progress=False) == {
        "imagery": "up to date", "catalog": "up to date"}


def test_fetch_on_a_dask_local_cluster_equals_in_process(tmp_path: Path) -> None:
    """Glaciers as Dask tasks in 2 worker processes (the source is rebuilt in each from its settings)."""
    from glacierwatch.config import ImageryConfig, LocalConfig

    grids = {GA: tiny_grid(), GB: tiny_grid(x0=350_070.0, width=20, height=16)}
    inventory = write_tiny_inventory(tmp_path / "inventory.parquet", grids)
    _local_folder(tmp_path / "input", tiny_grid(width=30, height=24), DATES)
    config = ImageryConfig(source="local", local=LocalConfig(input_dir=str(tmp_path / "input")))
    serial = fetch_imagery(inventory, tmp_path / "serial", mode="timeseries", config=config, progress=False)
    dask = fetch_imagery(inventory, tmp_path / "dask", mode="timeseries", config=config, progress=False,
                         scheduler="processes", dask_workers=2)
    assert sorted(serial.done) == sorted(dask.done) == [GA, GB] and not dask.failed
    for gid in nonempty(grids):
        names = sorted(p.name for p in (tmp_path / "serial" / "scenes" / gid).glob("*.tif"))
        assert len(names) == len(DATES)
        for name in names:
            a = (tmp_path / "serial" / "scenes" / gid / name).read_bytes()
            assert (tmp_path / "dask" / "scenes" / gid / name).read_bytes() == a
