"""The command line: lazy start-up (no heavy imports for --help), verbosity anywhere, console logging
through tqdm with each message once, one-line errors, and the small behaviours of the verbs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from glacierwatch import cli
from glacierwatch.logs import OnceFilter, console_logging, level_for

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "statsmodels", "matplotlib")
#: Verbs whose --help imports none of HEAVY (every verb: the stage packages load their names lazily).
LIGHT_VERBS = ("synth", "inventory", "imagery", "catalog", "chips", "train", "evaluate", "timeseries", "trends",
               "validate", "report", "run", "init", "demo")

_PROBE = """
import json, sys
from glacierwatch.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded_after(args: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_top_level_help_imports_no_heavy_library() -> None:
    assert _loaded_after(["--help"]) == []
    assert _loaded_after([]) == []  # no verb: the help, then exit 1


@pytest.mark.parametrize("verb", LIGHT_VERBS)
def test_verb_help_imports_no_heavy_library(verb: str) -> None:
    assert _loaded_after([verb, "--help"]) == []


def test_every_verb_is_registered_by_its_module() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for verb in cli.VERBS:
        assert sub.choices[verb]._actions, f"{verb}: only the one-line stub, {cli.VERBS[verb].module} did not add it"


def test_help_lists_every_verb_without_loading_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for verb, entry in cli.VERBS.items():
        assert verb in out and entry.help.split()[0] in out


def test_verbosity_is_accepted_anywhere() -> None:
    assert cli.split_verbosity(["-v", "init", "x.toml"]) == (["init", "x.toml"], 1)
    assert cli.split_verbosity(["init", "x.toml", "-vv"]) == (["init", "x.toml"], 2)
    assert cli.split_verbosity(["-q", "trends", "a", "--quiet"]) == (["trends", "a"], -2)
    assert cli.split_verbosity(["run", "--", "-v"]) == (["run", "--", "-v"], 0)
    assert cli.split_verbosity(["catalog", "query", "-vx"]) == (["catalog", "query", "-vx"], 0)
    assert level_for(0) == logging.WARNING and level_for(1) == logging.INFO
    assert level_for(5) == logging.DEBUG and level_for(-3) == logging.ERROR


def test_quiet_and_verbose_after_the_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["init", str(tmp_path / "a.toml"), "-q"]) == 0
    assert cli.main(["init", str(tmp_path / "b.toml"), "--verbose"]) == 0
    assert (tmp_path / "a.toml").is_file() and (tmp_path / "b.toml").is_file()


def test_init_into_a_missing_folder_creates_it(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "glacierwatch.toml"
    assert cli.main(["init", str(target)]) == 0
    assert target.is_file()
    assert cli.main(["init", str(tmp_path / "new" / "deeper")]) == 2  # a folder: its glacierwatch.toml exists


def test_os_errors_are_one_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["init", str(blocker / "sub" / "g.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glacierwatch: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert cli.main(["-v", "init", str(blocker / "sub" / "g.toml")]) == 2
    assert "Traceback" in capsys.readouterr().err  # -v shows where it came from


def test_repeated_messages_are_logged_once(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("glacierwatch.test_cli")
    with console_logging(1) as once:
        for _ in range(36):
            log.info("bf16 autocast requested but not supported on cpu; running fp32")
        log.warning("another message")
    err = capsys.readouterr().err
    assert err.count("bf16 autocast requested") == 1 and err.count("another message") == 1
    assert once.repeats == 35


def test_console_logging_goes_through_tqdm_and_is_removed_afterwards() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    with console_logging(0):
        modules = {type(h).__module__ for h in root.handlers if h not in before}
        assert modules == {"tqdm.contrib.logging"}
        assert all(any(isinstance(f, OnceFilter) for f in h.filters) for h in root.handlers if h not in before)
    assert root.handlers == before


def test_default_level_hides_info_and_quiet_hides_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("glacierwatch.test_cli")
    for verbosity, shown in ((0, {"warning"}), (-1, set()), (1, {"info", "warning"})):
        with console_logging(verbosity):
            log.info("info")
            log.warning("warning")
        err = capsys.readouterr().err
        assert {w for w in ("info", "warning") if f": {w}" in err} == shown, verbosity


def test_quiet_turns_progress_bars_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}

    def fake_run(config, *, stages, force, progress):
        seen["progress"] = progress
        return {}

    monkeypatch.setattr("glacierwatch.pipeline.run_pipeline", fake_run)
    config = tmp_path / "g.toml"
    assert cli.main(["init", str(config)]) == 0
    assert cli.main(["run", str(config), "-q"]) == 0 and seen["progress"] is False
    assert cli.main(["run", str(config)]) == 0 and seen["progress"] is True


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["trends", "--help"], ["imagery", "fetch", "--help"], ["timeseries", "run", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(args)
    out = capsys.readouterr().out
    assert "%%" not in out and "-1 % per year" in out
    assert "default default" not in out and "(default: [imagery] source" in out
    fetch = out[out.index("usage: glacierwatch imagery fetch"):out.index("usage: glacierwatch timeseries run")]
    assert "--threads" in fetch and "Dask worker processes" in fetch and "--dask-workers" not in fetch
    assert "--no-progress" in out[out.index("usage: glacierwatch timeseries run"):]


def test_inventory_select_keeping_no_glacier_fails(tiny_world, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "inventory.parquet"
    assert cli.main(["inventory", "select", str(tiny_world.outlines), "--out", str(out),
                     "--min-area", "5000", "--max-area", "6000"]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("glacierwatch: error:")]
    assert len(errors) == 1 and "no glacier passed the selection" in errors[0] and not out.exists()
    assert "Traceback" not in captured.err and "Inventory selection" in captured.out  # the steps are shown


def test_empty_catalog_selection_says_so(tiny_catalog, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["catalog", "select", "inference", "--catalog", str(tiny_catalog["catalog"]),
                     "--set", "max_cloud_cover=0"]) == 0
    out = capsys.readouterr().out
    assert "Empty DataFrame" not in out and "(0 rows)" in out
    assert "cloud_cover" in out  # the condition that emptied the selection is named
