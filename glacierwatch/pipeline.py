"""``glacierwatch run CONFIG.toml``: every stage in order, skipping stages whose outputs are up to date.

A stage is up to date when its outputs exist and its stamp (``WORKDIR/.stamps/<stage>.json``)
records the same configuration and the same input files (size and modification time) as now. So
editing one option reruns that stage and those after it, and a crashed run resumes at the stage it
was in (per-glacier stages also resume glacier by glacier).

The work folder's files and folders are named by :mod:`glacierwatch.layout` (table in
docs/formats.md); what each stage reads and writes: docs/stages.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glacierwatch.config import Config
from glacierwatch.errors import ConfigError
from glacierwatch.io import write_json
from glacierwatch.layout import WorkLayout

log = logging.getLogger(__name__)

STAGES = ("inventory", "imagery", "catalog", "chips", "train", "timeseries", "trends", "report")


#: The work-folder layout under its former name (glacierwatch.demo and older scripts import it from here).
WorkPaths = WorkLayout


def _file_signature(paths: Iterable[Path]) -> list[list[Any]]:
    sig = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(".part"))
            h = hashlib.sha256()
            for f in files:
                st = f.stat()
                h.update(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            sig.append([str(path), len(files), h.hexdigest()[:16]])
        elif path.exists():
            st = path.stat()
            sig.append([str(path), st.st_size, st.st_mtime_ns])
        else:
            sig.append([str(path), None, None])
    return sig


@dataclass
class Stage:
    name: str
    inputs: Callable[[WorkLayout, Config], list[Path]]
    outputs: Callable[[WorkLayout], list[Path]]
    settings: Callable[[Config], Any]
    run: Callable[[WorkLayout, Config, bool], None]


def _stamp(paths: WorkLayout, config: Config, stage: Stage) -> dict[str, Any]:
    return {"settings": json.loads(json.dumps(stage.settings(config), default=str)),
            "inputs": _file_signature(stage.inputs(paths, config))}


def is_up_to_date(paths: WorkLayout, config: Config, stage: Stage) -> bool:
    """True if the stage's outputs exist and were made from the same settings and inputs."""
    stamp_file = paths.stamp(stage.name)
    if not stamp_file.exists() or not all(p.exists() for p in stage.outputs(paths)):
        return False
    try:
        return json.loads(stamp_file.read_text()) == _stamp(paths, config, stage)
    except (OSError, ValueError):
        return False


def _cpu_setting(config: Config) -> dict[str, str]:
    """The CPU cap where it is not the default, for the stamps of the stages that run the network (a work
    folder made before the option existed stays up to date)."""
    return {} if config.cpu_instructions == "native" else {"cpu_instructions": config.cpu_instructions}


# ------------------------------------------------------------------ stage bodies

def _run_inventory(paths: WorkLayout, config: Config, progress: bool) -> None:
    from glacierwatch.inventory import read_inventory_outlines, select_glaciers, write_inventory

    if not config.inventory.outlines:
        raise ConfigError("[inventory] outlines is empty: name at least one outline file")
    outlines = read_inventory_outlines(config.inventory)
    selection = select_glaciers(outlines, config=config.inventory, regions=config.inventory.regions or None)
    write_inventory(selection, paths.inventory)
    log.info("inventory: %d glaciers selected -> %s", len(selection.inventory), paths.inventory)


def _run_imagery(paths: WorkLayout, config: Config, progress: bool) -> None:
    from glacierwatch.imagery import fetch_imagery

    complete = paths.fetch.complete
    complete.unlink(missing_ok=True)
    if not config.imagery.source:
        log.info("imagery: no [imagery] source set; using the scene files already in %s", paths.scenes)
        write_json(complete, {"source": "", "note": f"nothing fetched: scene files are provided in {paths.scenes}"})
        return
    incomplete = 0
    for mode in config.imagery.modes:
        report = fetch_imagery(paths.inventory, paths.root, source=config.imagery.source, mode=mode,
                               config=config.imagery, window_days=config.catalog.training_window_days,
                               progress=progress)
        if report.failed:
            # the other glaciers' scenes are written; the run goes on with them, as the ledger says
            log.warning("imagery (%s): %d glacier(s) incomplete, see %s; 'glacierwatch imagery retry-failed "
                        "--out %s' fetches them again", mode, len(report.failed),
                        paths.fetch.ledger, paths.root)
            incomplete += len(report.failed)
    if not incomplete:  # only a complete fetch marks the stage done; otherwise the next run tries again
        write_json(complete, {"source": config.imagery.source, "modes": config.imagery.modes})


def _run_catalog(paths: WorkLayout, config: Config, progress: bool) -> None:
    from glacierwatch.catalog import build_catalog

    build_catalog(paths.scenes, paths.catalog, inventory=paths.inventory, workers=config.catalog.workers,
                  progress=progress)


def _truth_dir(paths: WorkLayout, config: Config) -> Path | None:
    """``[chips] truth_dir`` (a synthetic world's truth for dated chips) resolved against the work folder."""
    if not config.chips.truth_dir:
        return None
    folder = Path(config.chips.truth_dir)
    return folder if folder.is_absolute() else paths.root / folder


def _chips_inputs(paths: WorkLayout, config: Config) -> list[Path]:
    inputs = [paths.catalog, paths.inventory, paths.dem, paths.inventory_validation]
    truth = _truth_dir(paths, config)
    return inputs + ([truth / "truth.csv"] if truth is not None else [])


def _run_chips(paths: WorkLayout, config: Config, progress: bool) -> None:
    from glacierwatch.chips import build_chips_from_catalog

    build_chips_from_catalog(paths.catalog, paths.inventory, dem_dir=paths.dem, out_dir=paths.chips,
                             config=config.chips, catalog_config=config.catalog,
                             truth_dir=_truth_dir(paths, config), progress=progress)


def _run_train(paths: WorkLayout, config: Config, progress: bool) -> None:
    from glacierwatch.model.train import train

    # changed [train] settings start a new run instead of refusing to touch the old one
    train(paths.chips, paths.model_dir, config=config.train, progress=progress, restart_if_changed=True)


def _run_timeseries(paths: WorkLayout, config: Config, progress: bool) -> None:
    from glacierwatch.timeseries import run_timeseries

    run_timeseries(catalog=paths.catalog, inventory=paths.inventory, out=paths.areas, model=paths.model,
                   dem_dir=paths.dem, config=config.timeseries, catalog_config=config.catalog,
                   progress=progress)


def _run_trends(paths: WorkLayout, config: Config, progress: bool) -> None:
    from glacierwatch.trends import write_trends
    from glacierwatch.trends.core import TrendOptions

    write_trends(paths.areas, paths.trends, min_obs=config.trends.min_obs, by=config.trends.by,
                 max_glacier_figures=config.trends.max_glacier_figures,
                 options=TrendOptions.from_config(config.trends), fit_on=config.trends.fit_on,
                 annual=paths.annual if config.trends.fit_on == "annual" else None, inventory=paths.inventory)


def _run_report(paths: WorkLayout, config: Config, progress: bool) -> None:
    from glacierwatch.report import write_report

    write_report(paths.root, out=paths.report, dem_dir=paths.dem)


def build_stages() -> list[Stage]:
    return [
        Stage("inventory", lambda p, c: [Path(o) for o in c.inventory.outlines], lambda p: [p.inventory],
              lambda c: asdict(c.inventory), _run_inventory),
        Stage("imagery", lambda p, c: [p.inventory], lambda p: [p.fetch.complete],
              lambda c: asdict(c.imagery) if c.imagery.source else {}, _run_imagery),
        Stage("catalog", lambda p, c: [p.scenes, p.inventory], lambda p: [p.catalog],
              lambda c: {}, _run_catalog),
        Stage("chips", _chips_inputs, lambda p: [p.chips],
              lambda c: {"chips": asdict(c.chips), "catalog": asdict(c.catalog)}, _run_chips),
        Stage("train", lambda p, c: [p.chips], lambda p: [p.model],
              lambda c: asdict(c.train) | _cpu_setting(c), _run_train),
        Stage("timeseries", lambda p, c: [p.catalog, p.inventory, p.model, p.dem], lambda p: [p.areas],
              lambda c: {"timeseries": asdict(c.timeseries), "catalog": asdict(c.catalog)} | _cpu_setting(c),
              _run_timeseries),
        Stage("trends", lambda p, c: [p.areas, p.annual, p.inventory], lambda p: [p.glacier_trends_csv],
              lambda c: asdict(c.trends), _run_trends),
        Stage("report", lambda p, c: [p.areas, p.trends], lambda p: [p.report], lambda c: {}, _run_report),
    ]


def run_pipeline(config: Config, *, stages: Sequence[str] | None = None, force: bool = False,
                 progress: bool = True) -> dict[str, str]:
    """Run the stages (all by default) in order; returns stage -> 'ran' | 'up to date'.

    ``force`` reruns the stages even when up to date. The work folder is locked for the run: a second
    ``glacierwatch run`` on it stops at once naming the holder, or waits ``config.lock_wait_s`` seconds.
    """
    from glacierwatch.cpu import cap_cpu_instructions
    from glacierwatch.io import ensure_dir
    from glacierwatch.lock import stage_lock

    cap_cpu_instructions(config.cpu_instructions)  # before any stage loads PyTorch
    paths = WorkLayout.from_config(config)
    ensure_dir(paths.root)
    wanted = list(STAGES) if stages is None else list(stages)
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    with stage_lock(paths.root, wait_s=config.lock_wait_s):
        return _run_stages(paths, config, wanted, force=force, progress=progress)


def _run_stages(paths: WorkLayout, config: Config, wanted: Sequence[str], *, force: bool,
                progress: bool) -> dict[str, str]:
    status: dict[str, str] = {}
    for stage in build_stages():
        if stage.name not in wanted:
            continue
        if not force and is_up_to_date(paths, config, stage):
            log.info("stage %s: up to date, skipped", stage.name)
            status[stage.name] = "up to date"
            continue
        log.info("stage %s: running", stage.name)
        t0 = time.perf_counter()
        stage.run(paths, config, progress)
        write_json(paths.stamp(stage.name), _stamp(paths, config, stage))
        status[stage.name] = f"ran in {time.perf_counter() - t0:.1f} s"
        log.info("stage %s: %s", stage.name, status[stage.name])
    return status
