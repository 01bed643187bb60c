"""The time-series stage over several glaciers: selection from the catalog, resumable parts,
kill-and-resume, and a real Dask LocalCluster giving the same result as the in-process run."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glacierwatch.config import CatalogConfig, TimeseriesConfig
from glacierwatch.synth import WorldInfo

CATALOG_CONFIG = CatalogConfig(min_inference_scenes=3, min_pixels=1000)
TS_CONFIG = TimeseriesConfig(segmenter="ndsi", smoothing="masked", sigma=3.0)


@pytest.fixture(scope="module")
def prepared(tiny_catalog: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {**tiny_catalog, "work": tmp_path_factory.mktemp("ts_run")}


def _run(prepared: dict[str, Path], out: Path, **overrides):
    from glacierwatch.timeseries import run_timeseries

    return run_timeseries(catalog=prepared["catalog"], inventory=prepared["inventory"], out=out,
                          dem_dir=prepared["dem"], config=dataclasses.replace(TS_CONFIG, **overrides),
                          catalog_config=CATALOG_CONFIG, progress=False)


def test_run_writes_every_glacier_once(prepared, tiny_world: WorldInfo) -> None:
    result = _run(prepared, prepared["work"] / "a" / "areas.parquet")
    areas = pd.read_parquet(result.outputs.areas)
    assert set(tiny_world.timeseries_ids) <= set(areas["glims_id"])
    assert not areas.duplicated(["glims_id", "scene"]).any()
    assert (areas["pixel_area_m2"] == 900.0).all() and (areas["area_km2"] > 0).all()
    assert areas["valid_fraction"].between(0, 1).all() and areas["filled_fraction"].between(0, 1).all()
    # a second run finds everything done and recomputes nothing
    again = _run(prepared, prepared["work"] / "a" / "areas.parquet")
    assert again.report.done == [] and len(again.report.skipped) == areas["glims_id"].nunique()
    # other settings -> recomputed, not mixed with the old parts
    other = _run(prepared, prepared["work"] / "a" / "areas.parquet", sigma=1.0)
    assert len(other.report.done) == areas["glims_id"].nunique()


def test_failure_goes_to_the_ledger_and_the_run_goes_on(prepared, tiny_world: WorldInfo, tmp_path: Path) -> None:
    from glacierwatch.tasks import read_ledger

    victim = tiny_world.timeseries_ids[0]
    broken = tmp_path / "dem"
    broken.mkdir()
    for dem in Path(prepared["dem"]).glob("*.tif"):
        target = broken / dem.name
        if dem.stem == victim:
            target.write_bytes(b"not a tiff")
        else:
            os.symlink(dem, target)
    from glacierwatch.timeseries import run_timeseries

    result = run_timeseries(catalog=prepared["catalog"], inventory=prepared["inventory"],
                            out=tmp_path / "areas.parquet", dem_dir=broken, config=TS_CONFIG,
                            catalog_config=CATALOG_CONFIG, progress=False)
    assert list(result.report.failed) == [victim]
    assert [r["glims_id"] for r in read_ledger(result.outputs.ledger)] == [victim]
    assert victim not in set(result.areas["glims_id"]) and len(result.report.done) >= 1


_CHILD = """
import sys, dataclasses
from glacierwatch.config import CatalogConfig, TimeseriesConfig
from glacierwatch.timeseries import run_timeseries
run_timeseries(catalog=sys.argv[1], inventory=sys.argv[2], out=sys.argv[3], dem_dir=sys.argv[4],
               config=TimeseriesConfig(segmenter="ndsi", smoothing="masked", sigma=3.0),
               catalog_config=CatalogConfig(min_inference_scenes=3, min_pixels=1000), progress=False)
"""


def test_killed_run_resumes_with_every_glacier_exactly_once(prepared, tmp_path: Path) -> None:
    reference = _run(prepared, tmp_path / "ref" / "areas.parquet").areas
    out = tmp_path / "killed" / "areas.parquet"
    parts = tmp_path / "killed" / "areas.parts"
    args = [sys.executable, "-c", _CHILD, str(prepared["catalog"]), str(prepared["inventory"]), str(out),
            str(prepared["dem"])]
    child = subprocess.Popen(args)
    deadline = time.time() + 120
    while time.time() < deadline and not (parts.exists() and any(parts.glob("*.parquet"))):
        if child.poll() is not None:
            break
        time.sleep(0.05)
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists()  # killed before the final table was written
    done_before = {p.stem for p in parts.glob("*.parquet")}
    assert 1 <= len(done_before) < reference["glims_id"].nunique()
    resumed = _run(prepared, out)
    assert set(resumed.report.skipped) == done_before
    areas = pd.read_parquet(out)
    assert not areas.duplicated(["glims_id", "scene"]).any()
    key = ["glims_id", "scene"]
    pd.testing.assert_frame_equal(areas.sort_values(key).reset_index(drop=True)[reference.columns],
                                  reference.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert not list(parts.glob(".*.part"))  # no half-written part left behind


def test_local_cluster_with_two_workers_equals_in_process(prepared, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    local = _run(prepared, tmp_path / "local" / "areas.parquet").areas
    dask = _run(prepared, tmp_path / "dask" / "areas.parquet", scheduler="processes", workers=2).areas
    pd.testing.assert_frame_equal(local, dask)


def test_single_pass_and_disk_stacks_through_the_stage(prepared, tmp_path: Path) -> None:
    """``unsmoothed = False`` and a stack budget below one scene: the same smoothed areas as the default
    run, NaN unsmoothed areas, no stack folder left in the parts, and run keys that keep the two apart."""
    reference = _run(prepared, tmp_path / "ref" / "areas.parquet", unsmoothed=True).areas
    out = tmp_path / "one" / "areas.parquet"
    parts = out.with_suffix("").with_name("areas.parts")
    parts.mkdir(parents=True)
    victim = reference["glims_id"].iloc[0]
    stale = parts / f".{victim}.stack-killed"  # what a killed run leaves behind
    stale.mkdir()
    (stale / "bands.f32").write_bytes(b"\0" * 64)
    single = _run(prepared, out, unsmoothed=False, max_stack_mb=1e-3, batch_size=8)
    n = reference["glims_id"].nunique()
    assert len(single.report.done) == n and not list(parts.glob(".*stack-*"))
    areas = single.areas
    assert list(areas["scene"]) == list(reference["scene"])
    assert areas["area_km2_unsmoothed"].isna().all() and reference["area_km2_unsmoothed"].notna().all()
    np.testing.assert_allclose(areas["area_km2"], reference["area_km2"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(areas["filled_fraction"], reference["filled_fraction"], rtol=0, atol=1e-9)
    # the memory budget does not change the numbers, so it does not make the parts stale
    assert _run(prepared, out, unsmoothed=False).report.done == []
    # with the unsmoothed areas asked for again, every glacier is recomputed
    assert len(_run(prepared, out, unsmoothed=True).report.done) == n


def test_read_ahead_opens_the_next_glacier_early_and_changes_no_number(prepared, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``read_ahead`` every glacier after the first is opened on the read-ahead thread (while the
    one before it is still in its task), and the table equals the one without it."""
    import threading

    import glacierwatch.timeseries.run as run_module

    opened: list[tuple[str, str]] = []
    real_open = run_module._open_glacier

    def spy(glims_id: str, **kwargs):
        opened.append((glims_id, threading.current_thread().name))
        return real_open(glims_id, **kwargs)

    monkeypatch.setattr(run_module, "_open_glacier", spy)
    ahead = _run(prepared, tmp_path / "ahead" / "areas.parquet", read_ahead=True)
    order = list(ahead.report.done)
    assert len(order) >= 2 and [g for g, _ in opened] == order
    assert not opened[0][1].startswith("read-ahead")
    assert all(name.startswith("read-ahead") for _, name in opened[1:])
    opened.clear()
    plain = _run(prepared, tmp_path / "plain" / "areas.parquet", read_ahead=False)
    assert all(not name.startswith("read-ahead") for _, name in opened)
    pd.testing.assert_frame_equal(ahead.areas, plain.areas)


def test_a_glacier_that_fails_to_open_ahead_is_its_own_ledger_line(prepared, tiny_world: WorldInfo,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An error opening a glacier ahead is raised in that glacier's task: the ledger names it, and the
    glaciers before and after it are done."""
    import glacierwatch.timeseries.run as run_module
    from glacierwatch.errors import InputError
    from glacierwatch.tasks import read_ledger

    reference = _run(prepared, tmp_path / "ref" / "areas.parquet")
    order = list(reference.report.done)
    victim = order[1]
    real_open = run_module._open_glacier

    def failing(glims_id: str, **kwargs):
        if glims_id == victim:
            raise InputError(f"{glims_id}: cannot be opened (test)")
        return real_open(glims_id, **kwargs)

    monkeypatch.setattr(run_module, "_open_glacier", failing)
    result = _run(prepared, tmp_path / "out" / "areas.parquet")
    assert list(result.report.failed) == [victim]
    assert [r["glims_id"] for r in read_ledger(result.outputs.ledger)] == [victim]
    assert result.report.done == [g for g in order if g != victim]
    kept = reference.areas[reference.areas["glims_id"] != victim].reset_index(drop=True)
    pd.testing.assert_frame_equal(result.areas, kept)


class _FakeReading:
    def __init__(self, glims_id: str, then) -> None:
        self.glims_id, self.then, self.closed = glims_id, then, False

    def close(self) -> None:
        self.closed = True


def test_read_ahead_skips_done_glaciers_and_closes_what_it_opened_for_nothing() -> None:
    from glacierwatch.timeseries.run import ReadAhead

    made: list[_FakeReading] = []

    def open_reading(glims_id: str, then):
        made.append(_FakeReading(glims_id, then))
        return made[-1]

    ahead = ReadAhead(["A", "B", "C", "D"], lambda gid: gid == "B", open_reading)
    first = ahead.open("A")
    assert [r.glims_id for r in made] == ["A"]
    first.then()  # A's scenes are all read: C is opened ahead (B is done)
    third = ahead.open("C")
    assert [r.glims_id for r in made] == ["A", "C"] and third is made[1]
    third.then()  # D opened ahead, then the run stops before D's task
    ahead.close()
    assert [r.glims_id for r in made] == ["A", "C", "D"] and made[2].closed and not made[1].closed
    made[0].then()  # a late callback after close opens nothing
    assert len(made) == 3


def test_read_ahead_waits_for_a_glacier_read_before_its_task_to_be_taken() -> None:
    """A glacier read ahead whose scenes are all read while the one before it is still in the model:
    the next is opened when its task takes it, never three at once."""
    from glacierwatch.timeseries.run import ReadAhead

    made: list[_FakeReading] = []

    def open_reading(glims_id: str, then):
        made.append(_FakeReading(glims_id, then))
        return made[-1]

    ahead = ReadAhead(["A", "B", "C"], lambda gid: False, open_reading)
    ahead.open("A").then()  # A read: B opened ahead
    ahead._pool.submit(lambda: None).result()  # the helper thread has opened B
    made[1].then()  # B read while A is still in the model: C waits
    assert [r.glims_id for r in made] == ["A", "B"]
    assert ahead.open("B") is made[1]
    ahead._pool.submit(lambda: None).result()
    assert [r.glims_id for r in made] == ["A", "B", "C"]
    assert ahead.open("C") is made[2]
    ahead.close()
    assert not any(r.closed for r in made)
