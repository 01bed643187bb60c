"""The bad-input matrix of issue 16, as a hostile user would try it: bad ids, out-of-range options,
files where folders should be, a second process on the same work folder, signed URLs in logs,
writing SQL, float scenes with NaN/-inf, impossible dates, oversized scenes.

Each case reproduces a numbered failure of the issue; the expected behaviour is one typed error
with one clear line (InputError / ConfigError, which the CLI prints without a traceback) or a
correct result, and nothing written outside the work folder.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import rasterio

from glacierwatch import config as config_module
from glacierwatch.catalog import build_catalog, query
from glacierwatch.catalog import stats as stats_module
from glacierwatch.config import RANGES, Config, ConfigError, in_range
from glacierwatch.errors import GlacierwatchError, InputError
from glacierwatch.grid import GlacierGrid
from glacierwatch.ids import glacier_path, is_glims_id, validate_glims_id
from glacierwatch.imagery import FetchPaths, fetch_imagery, read_manifest
from glacierwatch.imagery.records import requests_from_inventory
from glacierwatch.io import append_json_line, write_json, write_raster, write_table
from glacierwatch.landsat import QA, SENSORS
from glacierwatch.layout import dem_path, scene_path
from glacierwatch.lock import LockHeldError, lock_file_for, lock_holder, stage_lock
from glacierwatch.redact import REDACTED, install, redact

sys.path.insert(0, str(Path(__file__).parent))
from imagery_fakes import FakeSource, synthetic_bands, tiny_grid, write_tiny_inventory  # noqa: E402

GA, GB = "G007000E46000N", "G007100E46100N"
DATES = ["2003-07-01", "2003-07-17", "2003-08-02", "2003-08-18", "2003-09-03"]
GRID = GlacierGrid("EPSG:32632", 300000.0, 5100000.0, 30.0, 40, 40)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def fetch(inventory: Path, out: Path, source: FakeSource, **kw: Any):
    return fetch_imagery(inventory, out, mode="training", source_factory=lambda: source, progress=False, **kw)


# ---------------------------------------------------------------- 2, 3: ids before paths

BAD_IDS = ["../../../../ESCAPED", "G007026E45991N\n", "G007026E45991N/../../x", "", " G007026E45991N",
           "g007026e45991n", "G007026E45991NX", "G007026E45991N\x00", "/etc/passwd", "G7026E45991N"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_a_bad_id_is_refused_before_it_becomes_a_path(bad: str, tmp_path: Path) -> None:
    assert not is_glims_id(bad)
    with pytest.raises(InputError, match="GLIMS"):
        validate_glims_id(bad)
    for make in (lambda: glacier_path(tmp_path, bad, ".json"), lambda: dem_path(tmp_path, bad),
                 lambda: scene_path(tmp_path, bad, dt.date(2003, 8, 2), "L7"),
                 lambda: FetchPaths.for_out(tmp_path).plan("training", bad),
                 lambda: FetchPaths.for_out(tmp_path).manifest(bad)):
        with pytest.raises(InputError):
            make()


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_a_hand_made_inventory_with_a_bad_id_writes_nothing_outside_the_work_folder(bad: str, tmp_path: Path) -> None:
    box = tmp_path / "a" / "b" / "c"
    box.mkdir(parents=True)
    inventory = write_tiny_inventory(box / "inventory.parquet", {GA: tiny_grid(), bad: tiny_grid(x0=360_000.0)})
    out = box / "work"
    before = files_under(tmp_path)
    with pytest.raises(InputError, match="not GLIMS ids"):
        fetch(inventory, out, FakeSource(DATES))
    created = files_under(tmp_path) - before
    assert all(out in p.parents or p == out for p in created), created
    assert not any(p.suffix in (".json", ".jsonl", ".tif") for p in created)  # nothing at all was fetched
    with pytest.raises(InputError):  # the catalog's inventory boundary too
        build_catalog(box, box / "catalog.parquet", inventory=inventory, progress=False)
    with pytest.raises(InputError, match="GLIMS"):  # and a CLI-style --glaciers argument
        requests_from_inventory(write_tiny_inventory(box / "good.parquet", {GA: tiny_grid()}), mode="training",
                                glaciers=[bad])


def test_an_id_with_a_trailing_newline_never_names_a_file(tmp_path: Path) -> None:
    """Issue 16.3: ``G007026E45991N\\n`` passed the ``$``-anchored pattern and became ``dem/<id>\\n.tif``."""
    import re

    from glacierwatch.ids import GLIMS_ID_PATTERN

    assert re.compile(r"^G\d{6}E\d{5}[NS]$").match("G007026E45991N\n")  # the old pattern's flaw
    assert not GLIMS_ID_PATTERN.match("G007026E45991N\n")
    with pytest.raises(InputError):
        dem_path(tmp_path / "dem", "G007026E45991N\n")


# ---------------------------------------------------------------- 5: value ranges


def _option_hints() -> dict[str, Any]:
    """Every option of the configuration ("section.key" or "section.sub.key") and its type hint."""
    out: dict[str, Any] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint) and isinstance(hint, type):
                walk(hint, f"{prefix}{f.name}.")
            else:
                out[prefix + f.name] = hint

    walk(Config, "")
    assert out  # the walk found the options: the tests over them are not vacuous
    return out


def _numeric_keys() -> list[str]:
    keys = []
    for key, hint in _option_hints().items():
        args = typing.get_args(hint) or (hint,)
        inner = [a for a in args if a is not type(None)]
        inner = [typing.get_args(a)[0] if typing.get_origin(a) is list else a for a in inner]
        if any(a in (int, float) for a in inner):
            keys.append(key)
    return keys


def test_every_numeric_option_has_a_range() -> None:
    missing = [k for k in _numeric_keys() if k not in RANGES]
    assert not missing, f"numeric options without a range in config.RANGES: {missing}"
    assert not [k for k in RANGES if k not in _numeric_keys()], "RANGES names options that do not exist"


def _nested(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _is_int_key(key: str) -> bool:
    default: Any = Config()
    for part in key.split("."):
        default = getattr(default, part)
    if isinstance(default, list):
        default = default[0]
    return isinstance(default, int) and not isinstance(default, bool)


def _outside_values(key: str) -> list[float]:
    low, high, bounds = RANGES[key]
    is_int = _is_int_key(key)
    step = 1 if is_int else 1e-9
    values: list[float] = [low - step if bounds[0] == "[" else low]
    if high != float("inf"):
        values.append(high + step if bounds[1] == "]" else high)
    if not is_int:
        values.append(float("nan"))
    return [int(v) if is_int else float(v) for v in values]


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_numeric_option_is_checked_at_load(key: str) -> None:
    """Each option just outside its range is refused with one line naming key, value and range."""
    default = Config()
    for part in key.split("."):
        default = getattr(default, part)
    sample = default[0] if isinstance(default, list) else default
    if sample is not None:
        assert in_range(key, sample), f"the default of {key} is outside its own range"
    for value in _outside_values(key):
        bad = [value] if isinstance(default, list) else value
        with pytest.raises(ConfigError) as err:
            Config.from_dict(_nested(key, bad))
        message = str(err.value)
        assert key in message and "allowed" in message and "\n" not in message


@pytest.mark.parametrize("key, value", [
    ("timeseries.threshold", -0.5), ("timeseries.threshold", 1.0), ("timeseries.sigma", -4.0),
    ("timeseries.buffer_m", -100000.0), ("catalog.max_cloud_cover", -10.0),
    ("imagery.timeseries_max_cloud_cover", 150.0), ("timeseries.batch_size", 0), ("train.batch_size", -1),
    ("timeseries.max_stack_mb", -1.0), ("timeseries.max_stack_mb", 0.0), ("timeseries.workers", 0),
    ("imagery.workers", 0), ("catalog.workers", 0), ("catalog.summer_months_north", [5, 13]),
])
def test_the_issue_values_are_refused(key: str, value: Any, tmp_path: Path) -> None:
    section, name = key.split(".")
    text = f"[{section}]\n{name} = {json.dumps(value)}\n"
    (tmp_path / "run.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Config.from_toml(tmp_path / "run.toml")


def test_none_and_edges_are_allowed_and_relations_are_checked() -> None:
    cfg = Config.from_dict({"timeseries": {"buffer_m": "none", "sigma": 0.0, "threshold": 0.999},
                            "imagery": {"timeseries_max_cloud_cover": "none"},
                            "catalog": {"max_cloud_cover": 100.1}})
    assert cfg.timeseries.buffer_m is None and cfg.timeseries.sigma == 0.0
    with pytest.raises(ConfigError, match="min_area_km2"):
        Config.from_dict({"inventory": {"min_area_km2": 10.0, "max_area_km2": 5.0}})
    with pytest.raises(ConfigError, match="val_fraction"):
        Config.from_dict({"chips": {"val_fraction": 0.6, "test_fraction": 0.5}})
    made_in_code = Config()
    made_in_code.timeseries = dataclasses.replace(made_in_code.timeseries, threshold=-0.5)  # sections are frozen
    with pytest.raises(ConfigError, match="timeseries.threshold"):
        config_module.validate(made_in_code)


def _choice_keys() -> dict[str, tuple[str, ...]]:
    """Every enumerated option and its allowed values."""
    out: dict[str, tuple[str, ...]] = {}
    for key, hint in _option_hints().items():
        if typing.get_origin(hint) is list:
            hint = typing.get_args(hint)[0]
        if typing.get_origin(hint) is typing.Literal:
            out[key] = typing.get_args(hint)
    return out


CHOICE_KEYS = _choice_keys()


def test_the_enumerated_options_are_found() -> None:
    # the four options of the issue are enumerated, so the parametrised test below covers them
    assert {"timeseries.smoothing", "train.encoder", "imagery.source", "timeseries.segmenter"} <= set(CHOICE_KEYS)


@pytest.mark.parametrize("key", sorted(CHOICE_KEYS))
def test_every_enumerated_option_is_checked_at_load(key: str) -> None:
    """A value outside an option's choices is refused at load with one line naming the key and the
    choices; every allowed value loads; the default is one of them."""
    default = Config()
    for part in key.split("."):
        default = getattr(default, part)
    allowed = CHOICE_KEYS[key]
    assert all(v in allowed for v in (default if isinstance(default, list) else [default]))
    for value in ("bogus", "", 5):
        if value in allowed:
            continue
        bad = [value] if isinstance(default, list) else value
        with pytest.raises(ConfigError) as err:
            Config.from_dict(_nested(key, bad))
        message = str(err.value)
        assert key in message and repr(allowed[0]) in message and "\n" not in message
    for value in allowed:
        cfg = Config.from_dict(_nested(key, [value] if isinstance(default, list) else value))
        got: Any = cfg
        for part in key.split("."):
            got = getattr(got, part)
        assert got == ([value] if isinstance(default, list) else value)


@pytest.mark.parametrize("key, value", [("timeseries.smoothing", "bogus"), ("train.encoder", "resnet99"),
                                        ("imagery.source", "ftp"), ("timeseries.segmenter", "unett")])
def test_the_issue_choices_are_refused(key: str, value: str, tmp_path: Path) -> None:
    section, name = key.split(".")
    (tmp_path / "run.toml").write_text(f'[{section}]\n{name} = "{value}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + f" = '{value}' is not allowed"):
        Config.from_toml(tmp_path / "run.toml")


def test_in_code_choices_are_validated_and_sections_are_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.timeseries.smoothing = "time"
    cfg.timeseries = dataclasses.replace(cfg.timeseries, smoothing="bogus")
    with pytest.raises(ConfigError, match=r"timeseries\.smoothing = 'bogus'"):
        config_module.validate(cfg)


def test_the_stages_choices_are_the_config_s() -> None:
    """The stages' own tuples and tables of names agree with the configuration's Literal types."""
    from glacierwatch.model.unet import DECODERS, ENCODERS
    from glacierwatch.timeseries.annual import ANNUAL_STATISTICS

    assert set(ENCODERS) == set(CHOICE_KEYS["train.encoder"])
    assert set(DECODERS) == set(CHOICE_KEYS["train.decoder"])
    assert tuple(ANNUAL_STATISTICS) == CHOICE_KEYS["timeseries.annual_statistic"]


# ---------------------------------------------------------------- 4: a file where a folder should be


def test_a_file_in_the_way_is_one_input_error_line(tmp_path: Path) -> None:
    blocker = tmp_path / "work"
    blocker.write_text("not a folder")
    for write in (lambda: write_json(blocker / "imagery" / "x.json", {}),
                  lambda: append_json_line(blocker / "a.jsonl", {"a": 1}),
                  lambda: write_table(pd.DataFrame({"a": [1]}), blocker / "sub" / "t.parquet")):
        with pytest.raises(InputError, match="is a file") as err:
            write()
        assert str(blocker) in str(err.value) and "\n" not in str(err.value)
    inventory = write_tiny_inventory(tmp_path / "inventory.parquet", {GA: tiny_grid()})
    with pytest.raises(InputError, match="is a file"):
        fetch(inventory, blocker, FakeSource(DATES))
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    with pytest.raises(InputError, match="is a file"):
        build_catalog(scenes, blocker / "catalog.parquet", progress=False)
    with pytest.raises(InputError, match="is a folder"):
        write_json(tmp_path, {})


# ---------------------------------------------------------------- 6: the fetch summary


def test_the_fetch_summary_counts_scenes_of_incomplete_glaciers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from glacierwatch.imagery.cli import _report

    inventory = write_tiny_inventory(tmp_path / "inventory.parquet", {GA: tiny_grid(), GB: tiny_grid(x0=360_000.0)})
    out = tmp_path / "work"
    report = fetch(inventory, out, FakeSource(DATES, fail=[f"{GA}-{DATES[2]}", f"{GB}-{DATES[0]}"]))
    assert sorted(report.failed) == [GA, GB]  # both incomplete ...
    written = len(list((out / "scenes").rglob("*.tif")))
    assert written == 2 * len(DATES) - 2
    assert sum(r.written for r in report.results.values()) == written  # ... and still counted
    assert _report(report, str(out)) == 1
    assert f"scenes written: {written}," in capsys.readouterr().out


# ---------------------------------------------------------------- 7: a second process

_HOLDER = r"""
import sys, time
sys.path.insert(0, {tests!r})
from imagery_fakes import FakeSource
from glacierwatch.imagery import fetch_imagery
source = FakeSource({dates!r}, delay_s={delay!r})
fetch_imagery({inventory!r}, {out!r}, mode="training", source_factory=lambda: source, progress=False, workers=1)
"""


def _start_holder(tmp_path: Path, inventory: Path, out: Path, dates: list[str], delay: float) -> subprocess.Popen:
    script = _HOLDER.format(tests=str(Path(__file__).parent), dates=dates, delay=delay, inventory=str(inventory),
                            out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while lock_holder(FetchPaths.for_out(out).state) is None:
        if proc.poll() is not None:
            pytest.fail(f"the first fetch ended before it held the lock (rc {proc.returncode})")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the first fetch never took the lock")
        time.sleep(0.05)
    return proc


def test_a_second_fetch_on_the_same_folder_stops_naming_the_holder_or_waits(tmp_path: Path) -> None:
    inventory = write_tiny_inventory(tmp_path / "inventory.parquet", {GA: tiny_grid(), GB: tiny_grid(x0=360_000.0)})
    out = tmp_path / "work"
    proc = _start_holder(tmp_path, inventory, out, DATES, delay=0.3)
    try:
        with pytest.raises(LockHeldError) as err:
            fetch(inventory, out, FakeSource(DATES))
        message = str(err.value)
        assert f"pid {proc.pid}" in message and "\n" not in message
        # waiting instead: the second run starts when the first ends, and finds everything done
        second = fetch(inventory, out, FakeSource(DATES), lock_wait_s=120)
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    assert sorted(second.skipped) == [GA, GB] and not second.failed
    for gid in (GA, GB):
        rows = [r["scene"] for r in read_manifest(FetchPaths.for_out(out), gid)]
        assert len(rows) == len(set(rows)) == len(DATES)  # manifests without duplicates
    assert not lock_file_for(FetchPaths.for_out(out).state).exists()


def test_a_killed_holder_leaves_a_stale_lock_that_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inventory = write_tiny_inventory(tmp_path / "inventory.parquet", {GA: tiny_grid()})
    out = tmp_path / "work"
    proc = _start_holder(tmp_path, inventory, out, DATES * 1, delay=2.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    lock = lock_file_for(FetchPaths.for_out(out).state)
    assert lock.exists() and json.loads(lock.read_text())["pid"] == proc.pid  # left behind by the kill
    assert lock_holder(FetchPaths.for_out(out).state) is None  # ... but nobody holds it
    with caplog.at_level(logging.WARNING, logger="glacierwatch.lock"):
        report = fetch(inventory, out, FakeSource(DATES))
    assert report.done == [GA] and "stale lock" in caplog.text and str(proc.pid) in caplog.text


def test_locks_are_reentrant_in_one_process_and_exclusive_per_catalog(tmp_path: Path) -> None:
    with stage_lock(tmp_path / "work"):
        with stage_lock(tmp_path / "work"):  # glacierwatch run: a stage inside the run
            assert lock_holder(tmp_path / "work")["pid"] == os.getpid()
        assert lock_holder(tmp_path / "work") is not None
    assert lock_holder(tmp_path / "work") is None
    code = ("import sys,time; sys.path.insert(0, %r)\nfrom glacierwatch.lock import stage_lock\n"
            "with stage_lock(%r):\n    print('held', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code % (str(Path(__file__).parents[1]),
                                                           str(tmp_path / "catalog.parquet"))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        scenes = tmp_path / "scenes"
        scenes.mkdir()
        with pytest.raises(LockHeldError, match=f"pid {proc.pid}"):
            build_catalog(scenes, tmp_path / "catalog.parquet", progress=False)
        with pytest.raises(LockHeldError, match="after waiting"):
            build_catalog(scenes, tmp_path / "catalog.parquet", progress=False, lock_wait_s=0.3)
    finally:
        proc.kill()
        proc.wait()
    assert len(build_catalog(scenes, tmp_path / "catalog.parquet", progress=False)) == 0


# ---------------------------------------------------------------- 9: a changed local input folder


def _local_folder(folder: Path, grid: GlacierGrid, dates: list[str]) -> None:
    from glacierwatch.landsat import SCENE_BANDS

    folder.mkdir(parents=True, exist_ok=True)
    for day in dates:
        bands = synthetic_bands(day, grid)
        with rasterio.open(folder / f"LE07_{day}.tif", "w", driver="GTiff", width=grid.width, height=grid.height,
                           count=len(SCENE_BANDS), dtype="uint16", crs=grid.crs, transform=grid.transform,
                           nodata=0) as dst:
            for i, band in enumerate(SCENE_BANDS, start=1):
                dst.write(bands[band], i)
                dst.set_band_description(i, band)


def test_files_added_to_the_local_folder_are_found_without_refresh(tmp_path: Path) -> None:
    from glacierwatch.config import ImageryConfig, LocalConfig

    grid = tiny_grid()
    inventory = write_tiny_inventory(tmp_path / "inventory.parquet", {GA: grid})
    folder = tmp_path / "input"
    _local_folder(folder, grid, DATES[:3])
    config = ImageryConfig(source="local", local=LocalConfig(input_dir=str(folder)))
    out = tmp_path / "work"
    first = fetch_imagery(inventory, out, mode="timeseries", config=config, progress=False)
    assert first.done == [GA] and len(list((out / "scenes" / GA).glob("*.tif"))) == 3
    again = fetch_imagery(inventory, out, mode="timeseries", config=config, progress=False)
    assert again.skipped == [GA]  # unchanged folder: nothing searched or read again
    _local_folder(folder, grid, DATES[3:])
    third = fetch_imagery(inventory, out, mode="timeseries", config=config, progress=False)
    assert third.done == [GA] and third.results[GA].written == 2
    assert len(list((out / "scenes" / GA).glob("*.tif"))) == len(DATES)


# ---------------------------------------------------------------- 8: secrets in logs

SIGNED = ("https://landsateuwest.blob.core.windows.net/landsat-c2/level-2/x/LC08_SR_B4.TIF"
          "?st=2024-01-01T00%3A00%3A00Z&se=2024-01-02T00%3A00%3A00Z&sp=rl&sv=2021-06-08&sr=c"
          "&skoid=abc&sktid=def&sig=SECRETSIGNATURE%2Babc%3D")
S3 = ("https://usgs-landsat.s3.amazonaws.com/x.TIF?X-Amz-Algorithm=AWS4-HMAC-SHA256"
      "&X-Amz-Credential=AKIASECRETKEY%2F20240101&X-Amz-Signature=deadbeefSECRET&X-Amz-Security-Token=SECRETTOKEN")


@pytest.mark.parametrize("url", [SIGNED, S3, SIGNED.replace("&", "&amp;")], ids=["sas", "s3", "html-escaped"])
def test_signed_url_credentials_are_scrubbed(url: str) -> None:
    clean = redact(f"CURL error reading {url}: 403")
    assert "SECRET" not in clean and REDACTED in clean
    assert clean.split("?")[0].endswith(url.split("?")[0].rsplit("/", 1)[1])  # the file is still named
    assert redact("no secrets here: a=b, file.tif") == "no secrets here: a=b, file.tif"


def test_log_records_and_rasterio_gdal_messages_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    install()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("rasterio._env").warning("CPLE_HttpResponse in %s", SIGNED)
        logging.getLogger("glacierwatch.imagery").warning("read failed: " + S3)
        try:
            raise OSError(f"HTTP 403 for {SIGNED}")
        except OSError:
            logging.getLogger("glacierwatch").exception("asset failed")
        with rasterio.Env(GDAL_HTTP_MAX_RETRY=0, CPL_DEBUG=True, GDAL_HTTP_TIMEOUT=1):
            try:  # a real GDAL message about a signed URL (nothing listens on port 9)
                rasterio.open(SIGNED.replace("https://landsateuwest.blob.core.windows.net", "http://127.0.0.1:9"))
            except rasterio.errors.RasterioIOError as exc:
                logging.getLogger("glacierwatch").warning("%s", exc)
    text = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "SECRET" not in text and REDACTED in text


def test_failure_ledgers_do_not_keep_signed_urls(tmp_path: Path) -> None:
    class LeakySource(FakeSource):
        def read(self, record, grid):
            raise OSError(f"403 Forbidden: {SIGNED}")

    inventory = write_tiny_inventory(tmp_path / "inventory.parquet", {GA: tiny_grid()})
    out = tmp_path / "work"
    report = fetch(inventory, out, LeakySource(DATES[:1]))
    assert report.failed and "SECRET" not in report.failed[GA]
    assert "SECRET" not in (out / "imagery" / "failures.jsonl").read_text()


# ---------------------------------------------------------------- catalog: SQL, floats, dates, size


def _scene(root: Path, date: dt.date, sat: str = "L5", *, gid: str = "G007026E45991N", dtype: str = "uint16",
           grid: GlacierGrid = GRID, meta: dict[str, Any] | None = None, nodata: float | None = 0) -> tuple[Path, np.ndarray]:
    path = scene_path(root, gid, date, sat)
    bands = SENSORS[sat].file_bands
    rng = np.random.default_rng(0)
    data = rng.integers(5000, 30000, (len(bands), grid.height, grid.width)).astype(dtype)
    data[-1] = int(QA.CLEAR)
    write_raster(path, data, grid, band_names=bands, nodata=nodata)
    key = "IMAGE_QUALITY" if sat in ("L5", "L7") else "IMAGE_QUALITY_OLI"
    props = {"CLOUD_COVER": 3.0, key: 9, "SPACECRAFT_ID": SENSORS[sat].spacecraft_id,
             "DATE_ACQUIRED": date.isoformat(), "COLLECTION_CATEGORY": "T1", "COLLECTION_NUMBER": 2}
    props.update(meta or {})
    path.with_suffix(".json").write_text(json.dumps(props))
    return path, data


def test_catalog_query_cannot_write_or_read_other_files(tmp_path: Path) -> None:
    """Issue 16.9: ``COPY ... TO`` could overwrite catalog.parquet from ``catalog query``."""
    _scene(tmp_path / "scenes", dt.date(2003, 8, 2))
    catalog = tmp_path / "catalog.parquet"
    build_catalog(tmp_path / "scenes", catalog, progress=False)
    before = catalog.read_bytes()
    assert len(query(catalog, "SELECT * FROM scenes")) == 1
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    for sql in (f"COPY (SELECT 1 AS x) TO '{catalog}' (FORMAT PARQUET)",
                f"COPY scenes TO '{tmp_path / 'copy.csv'}'", f"SELECT * FROM read_csv('{secret}')",
                f"ATTACH '{tmp_path / 'x.duckdb'}' AS x", "SET enable_external_access = true", "INSTALL httpfs"):
        with pytest.raises(InputError, match="query failed"):
            query(catalog, sql)
    assert catalog.read_bytes() == before and not (tmp_path / "copy.csv").exists()
    assert not (tmp_path / "x.duckdb").exists()


def test_a_float_scene_with_nan_and_inf_is_read_as_no_data(tmp_path: Path) -> None:
    path, data = _scene(tmp_path / "scenes", dt.date(2003, 8, 2), dtype="float32", nodata=None)
    data[:-1, :5, :] = np.nan  # 5 rows of NaN in every reflectance band
    data[:-1, 5, :] = -np.inf  # a row of -inf (Earth Engine exports of masked pixels)
    data[-1, 5, :] = np.nan
    write_raster(path, data, GRID, band_names=SENSORS["L5"].file_bands, nodata=None)
    row = build_catalog(tmp_path / "scenes", tmp_path / "catalog.parquet", progress=False).iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["nodata_pixels"] == 6 * GRID.width
    assert row["box_fill_fraction"] == pytest.approx(100.0 * 6 / GRID.height)
    assert row["box_valid_fraction"] == pytest.approx(100.0 * (GRID.height - 6) / GRID.height)


def test_impossible_dates_are_refused_with_the_row_named(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    path, _ = _scene(scenes, dt.date(2016, 1, 5), meta={"DATE_ACQUIRED": "2016-13-45"})
    bad_name = path.with_name(path.name.replace("2016-01-05", "2016-13-45"))
    _scene(scenes, dt.date(2016, 1, 6))
    path.with_name(path.name.replace("01-05", "01-06")).rename(bad_name)
    df = build_catalog(scenes, tmp_path / "catalog.parquet", progress=False).set_index("file_name")
    assert df.loc[path.name, "status"] == "bad_metadata" and "2016-13-45" in df.loc[path.name, "error"]
    assert df.loc[bad_name.name, "status"] == "bad_name" and "2016-13-45" in df.loc[bad_name.name, "error"]
    inventory = tmp_path / "inventory.parquet"
    pd.DataFrame({"glims_id": [GA], "grid": [tiny_grid().to_json()], "outline_date": ["2016-13-45"]}).to_parquet(inventory)
    with pytest.raises(InputError, match=f"{GA}.*2016-13-45"):
        requests_from_inventory(inventory, mode="training")


def test_catalog_reads_in_bounded_blocks_and_the_sums_equal_a_whole_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16.9: without an inventory the whole file was read at once (3.4 GB for one large scene)."""
    grid = GlacierGrid("EPSG:32632", 300000.0, 5100000.0, 30.0, 300, 280)
    qa = np.full((grid.height, grid.width), int(QA.CLEAR), np.uint16)
    qa[:40] = int(QA.FILL)
    qa[100:130, :50] |= int(QA.CLOUD)
    qa[200:, 100:] |= int(QA.SNOW)
    path, data = _scene(tmp_path / "scenes", dt.date(2003, 8, 2), grid=grid)
    data[-1] = qa
    data[:-1, qa == int(QA.FILL)] = 0
    write_raster(path, data, grid, band_names=SENSORS["L5"].file_bands, nodata=0)
    whole = build_catalog(tmp_path / "scenes", tmp_path / "whole.parquet", progress=False).iloc[0]
    sizes: list[int] = []
    original = stats_module._Counts.add

    def spy(self, block, qa_index, nodata):
        sizes.append(block.nbytes)
        return original(self, block, qa_index, nodata)

    monkeypatch.setattr(stats_module._Counts, "add", spy)
    limit = 64 * 1024
    monkeypatch.setattr(stats_module, "MAX_READ_BYTES", limit)
    strips = build_catalog(tmp_path / "scenes", tmp_path / "strips.parquet", progress=False).iloc[0]
    assert len(sizes) > 10 and max(sizes) <= limit
    columns = ["nodata_pixels", "zero_values", "box_fill_fraction", "box_cloud_fraction", "box_snow_fraction",
               "box_valid_fraction", "n_pixels", "width", "height"]
    assert whole[columns].tolist() == strips[columns].tolist()
    assert whole["nodata_pixels"] == 40 * grid.width and whole["box_cloud_fraction"] > 0


def test_every_refusal_above_is_a_glacierwatch_error() -> None:
    """The CLI prints these on one line without a traceback (it catches GlacierwatchError)."""
    for cls in (InputError, ConfigError, LockHeldError):
        assert issubclass(cls, GlacierwatchError)


def test_a_float_qa_band_with_nan_is_fill_not_clear() -> None:
    from glacierwatch.landsat import qa_bits, qa_invalid_mask

    qa = np.array([np.nan, np.inf, -np.inf, -3.0, 70000.0, float(QA.CLEAR), float(QA.CLOUD)], np.float32)
    assert qa_bits(qa).tolist() == [1, 1, 1, 1, 1, int(QA.CLEAR), int(QA.CLOUD)]
    assert qa_invalid_mask(qa).tolist() == [True] * 5 + [False, True]
    assert qa_bits(np.array([64], np.uint16)).dtype == np.uint16
