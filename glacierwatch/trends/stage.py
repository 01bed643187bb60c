"""The trends stage on disk: read an areas table, compute, write every output or none.

Outputs in ``out_dir``: ``glacier_trends.csv|.parquet``, ``region_trends.csv|.parquet``,
``region_annual.csv`` (the per-year geometric-mean series), ``table2.csv``, ``table2.md``,
``trends_summary.json`` and ``figures/`` (PNG files and ``figures.json``).

Everything is computed and drawn before anything is moved into ``out_dir``: the files are written to
a hidden staging folder inside it and renamed into place at the end, so a bad input or a failure
while drawing leaves ``out_dir`` as it was (and does not create it when the input is unusable).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from glacierwatch import __version__
from glacierwatch.config import FitOn, choices
from glacierwatch.errors import ConfigError, InputError
from glacierwatch.io import read_table
from glacierwatch.layout import (
    ANNUAL_TABLE,
    FIGURES,
    FIGURES_MANIFEST,
    GLACIER_TABLE,
    REGION_TABLE,
    SUMMARY,
    TABLE2_CSV,
    TABLE2_MD,
)
from glacierwatch.trends.core import TrendOptions, TrendResult, compute_trends
from glacierwatch.trends.figures import DEFAULT_MAX_GLACIER_FIGURES, make_figures

log = logging.getLogger(__name__)

#: Files a trends run owns in ``figures/`` (older ones matching these are replaced).
_FIGURE_PATTERNS = ("glacier_*.png", "region_*.png", "inventory_summary.png", FIGURES_MANIFEST)


FIT_ON = choices(FitOn)


def annual_table_path(areas_path: str | os.PathLike[str]) -> Path:
    """The conventional place of the annual table beside a per-scene areas table:
    ``<areas stem>.annual.parquet`` (``areas.parquet`` -> ``areas.annual.parquet``)."""
    path = Path(areas_path)
    return path.with_name(f"{path.stem}.annual.parquet")


def read_areas(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an areas table (Parquet or CSV); an unreadable file raises a one-line InputError.

    Columns and values are checked by :func:`~glacierwatch.trends.core.prepare_areas`.
    """
    try:
        table = read_table(path)
    except InputError as exc:
        message = " ".join(str(exc).split())
        raise InputError(message[:500] + (" ..." if len(message) > 500 else "")) from exc
    if Path(path).is_dir() and len(table.columns) == 0:
        raise InputError(f"{path}: folder holds no Parquet table")
    return table


def _stage_files(result: TrendResult, stage: Path, *, figures: bool,
                 max_glacier_figures: int | None) -> list[Path]:
    """Write every output into ``stage``; return the paths relative to it."""
    files: list[Path] = []

    def table(df: pd.DataFrame, name: str) -> None:
        for suffix in (".csv", ".parquet"):
            path = stage / f"{name}{suffix}"
            if suffix == ".csv":
                df.to_csv(path, index=False, date_format="%Y-%m-%d")
            else:
                df.to_parquet(path, index=False)
            files.append(path.relative_to(stage))

    table(result.glaciers, GLACIER_TABLE)
    table(result.regions, REGION_TABLE)
    result.annual.to_csv(stage / ANNUAL_TABLE, index=False)
    result.table2.to_csv(stage / TABLE2_CSV, index=False)
    (stage / TABLE2_MD).write_text(result.table2_markdown(), encoding="utf-8")
    summary = result.summary() | {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "glacierwatch_version": __version__,
        "max_glacier_figures": max_glacier_figures if figures else 0,
    }
    (stage / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    files += [Path(ANNUAL_TABLE), Path(TABLE2_CSV), Path(TABLE2_MD), Path(SUMMARY)]
    if figures:
        for path in make_figures(result, stage / FIGURES, max_glacier_figures=max_glacier_figures):
            files.append(path.relative_to(stage))
    return files


def _commit(stage: Path, out: Path, files: list[Path], figures: bool) -> None:
    """Move staged files into ``out`` (renames within one folder tree: each is atomic)."""
    if figures:
        fig_dir = out / FIGURES
        if fig_dir.is_dir():
            for pattern in _FIGURE_PATTERNS:
                for old in fig_dir.glob(pattern):
                    old.unlink()
        fig_dir.mkdir(exist_ok=True)
    # tables last-but-one, summary last: a reader that sees the summary sees a finished run
    for rel in sorted(files, key=lambda p: (p.name == SUMMARY, p.parts[0] != FIGURES)):
        os.replace(stage / rel, out / rel)


def _default_options() -> TrendOptions:
    from glacierwatch.config import TrendsConfig

    return TrendOptions.from_config(TrendsConfig())


def write_trends(areas: str | os.PathLike[str] | pd.DataFrame, out_dir: str | os.PathLike[str], *,
                 min_obs: int = 10, by: str = "region", figures: bool = True,
                 max_glacier_figures: int | None = DEFAULT_MAX_GLACIER_FIGURES,
                 options: TrendOptions | None = None, fit_on: str = "annual",
                 annual: str | os.PathLike[str] | pd.DataFrame | None = None,
                 inventory: str | os.PathLike[str] | None = None) -> TrendResult:
    """Compute the trends of an areas table (a path or a DataFrame) and write all outputs to ``out_dir``.

    ``fit_on="annual"`` fits the annual table ``annual`` (``glims_id, region, year, date, area_km2,
    area_km2_low, area_km2_high, n_scenes, valid_fraction``; default: :func:`annual_table_path` beside
    ``areas`` when it exists) and falls back to the per-scene ``areas`` (logged) when there is none;
    ``fit_on="scenes"`` fits every row of ``areas`` (the paper's method). ``options``: quality rules
    and HAC lag (default: ``[trends]`` defaults of :class:`~glacierwatch.config.TrendsConfig`).
    Raises :class:`~glacierwatch.errors.InputError` (nothing written) for an unusable input.
    ``max_glacier_figures``: at most this many per-glacier figures (None: all; 0: none).
    ``inventory``: the inventory GeoParquet; when given, the glacier and region trends are also
    written as GeoParquet with their outline / region geometry (EPSG:4326, :mod:`glacierwatch.geo_outputs`).
    """
    if fit_on not in FIT_ON:
        raise ConfigError(f"[trends] fit_on must be one of {list(FIT_ON)}, got {fit_on!r}")
    options = _default_options() if options is None else options
    if annual is None and fit_on == "annual" and not isinstance(areas, pd.DataFrame):
        candidate = annual_table_path(areas)
        annual = candidate if candidate.exists() else None
    if fit_on == "annual" and annual is not None:
        annual_rows = len(annual) if isinstance(annual, pd.DataFrame) else len(read_table(annual))
        if annual_rows == 0:
            raise InputError(f"{annual}: no annual area: no scene counts (end-of-season window, enough of the "
                             "outline observed, the sun high enough; see the use, valid_fraction and sun_elevation "
                             "columns of the areas table); widen [timeseries] season / min_valid_fraction / "
                             "min_sun_elevation, or fit every scene with "
                             "--fit-on scenes")
        areas = annual
    elif fit_on == "annual":
        log.info("no annual areas table given: fitting every scene of the areas table")
        fit_on = "scenes"
    if isinstance(areas, pd.DataFrame):
        table, source = areas, f"{fit_on} areas table"
    else:
        table, source = read_areas(areas), str(areas)
    first_line = 2 if not isinstance(areas, pd.DataFrame) and Path(areas).suffix.lower() in {".csv", ".txt"} else None
    result = compute_trends(table, min_obs=min_obs, by=by, source=source, first_line=first_line,
                            options=options, fit_on=fit_on)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".trends-staging-", dir=out))
    try:
        files = _stage_files(result, stage, figures=figures, max_glacier_figures=max_glacier_figures)
        _commit(stage, out, files, figures)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / FIGURES).rmdir()  # only if empty (figures=False on a fresh folder)
    result.out_dir = out
    result.files = [out / f for f in files]
    if inventory is not None:
        from glacierwatch.geo_outputs import write_trends_geoparquet

        result.files += list(write_trends_geoparquet(result.glaciers, result.regions, inventory, out, by=by).values())
    log.info("trends of %d glaciers (%d flagged) in %d %s(s) written to %s", len(result.glaciers),
             int(result.glaciers["flagged"].sum()), len(result.regions) - 1, by, out)
    return result
