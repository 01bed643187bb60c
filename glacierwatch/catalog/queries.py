"""SQL over the catalog (DuckDB), and the paper's scene selections as parameterised SQL files.

The catalog is the table ``scenes``. With an inventory, ``glaciers`` (``glims_id, region, hemisphere,
area_km2, outline_date``) is available too, and the inventory's hemisphere and region replace the
catalog's in ``scenes``. The selections' SQL lives in ``glacierwatch/catalog/sql/*.sql``
(:func:`selection_sql`); it is plain SQL that also runs on Athena or Trino, with the configuration's
values bound as query parameters, never pasted into the SQL text.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias

import duckdb
import pandas as pd
import pyarrow as pa

from glacierwatch.catalog.schema import REQUIRED_COLUMNS
from glacierwatch.config import CatalogConfig
from glacierwatch.errors import ConfigError, DatasetNotFoundError, InputError
from glacierwatch.ids import is_glims_id
from glacierwatch.io import read_table
from glacierwatch.landsat import SLC_OFF_DATE

log = logging.getLogger(__name__)

#: Named selections (``glacierwatch catalog select NAME``) and their SQL files.
SELECTIONS: Final[tuple[str, ...]] = ("inference", "training", "inference-glaciers")
_SQL_FILES: Final[dict[str, str]] = {
    "inference": "inference.sql", "training": "training.sql", "inference-glaciers": "inference_glaciers.sql",
}

CatalogSource: TypeAlias = str | os.PathLike[str] | pd.DataFrame

_GLACIER_SCHEMA = pa.schema([
    ("glims_id", pa.string()), ("region", pa.string()), ("hemisphere", pa.string()),
    ("area_km2", pa.float64()), ("outline_date", pa.date32()),
])


def selection_sql(name: str) -> str:
    """The SQL text of a named selection (read it to see exactly what a selection does)."""
    if name not in _SQL_FILES:
        raise InputError(f"unknown selection {name!r}; choose one of {', '.join(SELECTIONS)}")
    return importlib.resources.files("glacierwatch.catalog").joinpath("sql").joinpath(_SQL_FILES[name]).read_text("utf-8")


def _check_config(config: CatalogConfig) -> None:
    for key in ("summer_months_north", "summer_months_south"):
        months = getattr(config, key)
        if not all(isinstance(m, int) and 1 <= m <= 12 for m in months):
            raise ConfigError(f"catalog.{key}: months must be integers 1-12, got {months!r}")
    for key in ("min_pixels", "max_nodata_pixels", "training_window_days", "inference_glaciers_per_region",
                "min_inference_scenes"):
        if getattr(config, key) < 0:
            raise ConfigError(f"catalog.{key} must not be negative")


def selection_params(config: CatalogConfig) -> dict[str, Any]:
    """The query parameters of the selections, from a catalog configuration."""
    return {
        "max_cloud_cover": float(config.max_cloud_cover),
        "image_quality": None if config.image_quality is None else int(config.image_quality),
        "min_pixels": int(config.min_pixels),
        "max_nodata_pixels": int(config.max_nodata_pixels),
        "max_zero_pixel_pct": float(config.max_zero_pixel_pct),
        "include_l7_slc_off": bool(config.include_l7_slc_off),
        "slc_off_date": SLC_OFF_DATE,
        "training_window_days": int(config.training_window_days),
        "inference_glaciers_per_region": int(config.inference_glaciers_per_region),
        "min_inference_scenes": int(config.min_inference_scenes),
    }


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _used_params(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    names = set(re.findall(r"\$([A-Za-z_]\w*)", _strip_comments(sql)))
    missing = names - set(params)
    if missing:
        raise InputError(f"query parameter(s) without a value: {', '.join(sorted(missing))}")
    return {k: v for k, v in params.items() if k in names}


def _glaciers_table(inventory: str | os.PathLike[str] | pd.DataFrame) -> pa.Table:
    df = inventory if isinstance(inventory, pd.DataFrame) else read_table(inventory)
    if "glims_id" not in df.columns:
        raise InputError("the inventory has no glims_id column")
    ids = df["glims_id"].astype(object)
    bad = [g for g in ids if not is_glims_id(g)]
    if bad:
        raise InputError(f"the inventory holds values that are not GLIMS ids, e.g. {bad[0]!r}")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(f"the inventory has {len(dup)} duplicate glims_id(s), e.g. {dup.iloc[0]} "
                         "(one outline per glacier is expected)")
    n = len(df)

    def col(name: str) -> list[Any]:
        return df[name].astype(object).where(df[name].notna(), None).tolist() if name in df.columns else [None] * n

    hemi = [h if h in ("N", "S") else g[-1] for h, g in zip(col("hemisphere"), ids, strict=True)]
    if "outline_date" in df.columns:
        dates = pd.to_datetime(df["outline_date"], errors="coerce")
        outline = [None if pd.isna(d) else d.date() for d in dates]
    else:
        outline = [None] * n
    area = [None if a is None else float(a) for a in col("area_km2")]
    region = [None if r is None else str(r) for r in col("region")]
    return pa.table([pa.array(ids.tolist(), pa.string()), pa.array(region, pa.string()),
                     pa.array(hemi, pa.string()), pa.array(area, pa.float64()),
                     pa.array(outline, pa.date32())], schema=_GLACIER_SCHEMA)


def connect(catalog: CatalogSource, *, inventory: str | os.PathLike[str] | pd.DataFrame | None = None,
            config: CatalogConfig | None = None, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views ``scenes``, ``summer_months`` and (with an
    inventory) ``glaciers``.

    ``read_only`` (default): once the views exist, the connection can no longer touch the file
    system — ``COPY ... TO``, ``read_csv('/any/file')``, ``ATTACH``, ``INSTALL`` fail with a
    permission error (DuckDB ``enable_external_access = false``, then ``lock_configuration``, so a
    query cannot switch it back). The catalog file is therefore loaded into the connection first
    (DuckDB's compressed columns) rather than read lazily by the view.
    """
    con = duckdb.connect()
    if isinstance(catalog, pd.DataFrame):
        con.register("scenes_catalog", catalog)
    else:
        path = Path(catalog)
        if not path.exists():
            raise DatasetNotFoundError(f"catalog not found: {path} (build it with: glacierwatch catalog build)")
        try:
            if read_only:  # the view could not read the file once file access is off: load it now
                con.execute("CREATE TABLE scenes_catalog AS SELECT * FROM read_parquet(?)", [str(path)])
            else:
                con.read_parquet(str(path)).create_view("scenes_catalog")
        except duckdb.Error as exc:
            raise InputError(f"{path}: not a readable Parquet catalog ({exc})") from exc
    columns = [row[0] for row in con.execute("DESCRIBE scenes_catalog").fetchall()]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"the catalog lacks column(s) {missing}; rebuild it with: glacierwatch catalog build")
    if inventory is not None:
        con.register("glaciers", _glaciers_table(inventory))
        extra = ", coalesce(g.region, s.region) AS region" if "region" in columns else ""
        con.execute("CREATE VIEW scenes AS SELECT s.* REPLACE (coalesce(g.hemisphere, s.hemisphere) AS hemisphere"
                    f"{extra}) FROM scenes_catalog AS s LEFT JOIN glaciers AS g ON g.glims_id = s.glims_id")
    else:
        con.execute("CREATE VIEW scenes AS SELECT * FROM scenes_catalog")
    config = config or CatalogConfig()
    months = [("N", int(m)) for m in config.summer_months_north] + [("S", int(m)) for m in config.summer_months_south]
    con.register("summer_months", pa.table({"hemisphere": pa.array([h for h, _ in months], pa.string()),
                                            "month": pa.array([m for _, m in months], pa.int32())}))
    if read_only:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def _run_arrow(con: duckdb.DuckDBPyConnection, sql: str,
               params: Mapping[str, Any] | Sequence[Any] | None) -> pa.Table | None:
    try:
        if params is None:
            rel = con.sql(sql)
        elif isinstance(params, Mapping):
            rel = con.sql(sql, params=_used_params(sql, params))
        else:
            rel = con.sql(sql, params=list(params))
        return None if rel is None else rel.to_arrow_table()
    except duckdb.Error as exc:
        message = " ".join(str(exc).split())
        raise InputError(f"query failed: {message}") from exc


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | Sequence[Any] | None) -> pd.DataFrame:
    table = _run_arrow(con, sql, params)
    return pd.DataFrame() if table is None else table.to_pandas()


def query(catalog: CatalogSource, sql: str, *, params: Mapping[str, Any] | Sequence[Any] | None = None,
          inventory: str | os.PathLike[str] | pd.DataFrame | None = None) -> pd.DataFrame:
    """Run ``sql`` with the catalog as the table ``scenes`` (and the inventory as ``glaciers``).

    Read-only: the query cannot read or write files (``COPY ... TO`` fails; see :func:`connect`);
    write a result with ``glacierwatch catalog query --out FILE`` instead.

    ``params``: values for ``$name`` (a mapping) or ``?`` (a sequence) placeholders; user-supplied
    values belong there, not in the SQL text.
    """
    con = connect(catalog, inventory=inventory)
    try:
        return _run(con, sql, params)
    finally:
        con.close()


def select(catalog: CatalogSource, name: str, *, config: CatalogConfig | None = None,
           inventory: str | os.PathLike[str] | pd.DataFrame | None = None) -> pd.DataFrame:
    """Run a named selection (:data:`SELECTIONS`) with the values of ``config`` (default: the paper's).

    * ``inference``: scenes passing the paper's inference filter (one row per scene);
    * ``training``: scenes within ``training_window_days`` of each glacier's outline date (needs an
      inventory with ``outline_date``), with ``outline_date`` and ``days_from_outline``;
    * ``inference-glaciers``: the inference set, ``inference_glaciers_per_region`` glaciers per region,
      largest first, among those with ``min_inference_scenes`` passing scenes (needs an inventory with
      ``region`` and ``area_km2``); one row per glacier.
    """
    config = config or CatalogConfig()
    _check_config(config)
    sql = selection_sql(name)
    if name != "inference":
        need = {"training": "outline_date", "inference-glaciers": "region and area_km2"}[name]
        if inventory is None:
            raise InputError(f"the {name} selection needs an inventory (--inventory) with {need}")
        inv = inventory if isinstance(inventory, pd.DataFrame) else read_table(inventory)
        cols = ["outline_date"] if name == "training" else ["region", "area_km2"]
        lacking = [c for c in cols if c not in inv.columns]
        if lacking:
            raise InputError(f"the {name} selection needs the inventory column(s) {lacking}")
        inventory = inv
    params = selection_params(config)
    con = connect(catalog, inventory=inventory, config=config)
    try:
        if name == "inference-glaciers":
            con.register("inference_scenes", _run_arrow(con, selection_sql("inference"), params))
        result = _run(con, sql, params)
    finally:
        con.close()
    if result.empty:
        # say which condition dropped the last rows (the inference set, for the per-glacier selection)
        explanation = explain_selection(catalog, "inference" if name == "inference-glaciers" else name,
                                        config=config, inventory=inventory)
        if explanation is not None and explanation.first_emptying() is not None:
            result.attrs["why_empty"] = explanation.message()
            log.warning("catalog select %s: %s", name, explanation.message())
    return result


# ------------------------------------------------------------------ why a selection keeps nothing

#: What to try when a predicate using this parameter (or table) drops every row.
_PREDICATE_HINTS: Final[dict[str, str]] = {
    "status": "no scene file is readable (see the catalog's error column)",
    "max_cloud_cover": "every scene is cloudier: raise catalog.max_cloud_cover",
    "image_quality": "scenes without IMAGE_QUALITY metadata (STAC items, local files without a side-car) never "
                     "pass: set catalog.image_quality = \"none\"",
    "min_pixels": "the scene files hold fewer values (height x width x bands of the glacier grid): a small glacier's "
                  "box; lower catalog.min_pixels",
    "max_nodata_pixels": "the scenes have fill pixels in the glacier box: exports that cover less than the glacier "
                         "grid, or SLC-off gaps; raise catalog.max_nodata_pixels",
    "max_zero_pixel_pct": "the scenes have too many zero values: raise catalog.max_zero_pixel_pct",
    "summer_months": "no scene falls in its hemisphere's summer months (catalog.summer_months_north / _south)",
    "training_window_days": "no scene lies within catalog.training_window_days of the outline date",
    "include_l7_slc_off": "only Landsat 7 SLC-off scenes: set catalog.include_l7_slc_off = true",
    "outline_date": "the inventory has no outline dates",
}


def _top_level_and(text: str) -> list[str]:
    """``a AND (b AND c) AND d`` -> ``[a, (b AND c), d]`` (parentheses and quotes respected)."""
    parts, depth, start, i, quote = [], 0, 0, 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and re.match(r"\bAND\b", text[i:i + 4], re.IGNORECASE) and (i == 0 or not text[i - 1].isalnum()):
            parts.append(text[start:i])
            start = i = i + 3
            continue
        i += 1
    parts.append(text[start:])
    return [" ".join(p.split()) for p in parts if p.strip()]


def selection_predicates(name: str) -> tuple[str, str, list[str]] | None:
    """(select list, FROM clause, top-level WHERE predicates) of a named selection's SQL, read from its
    file (so the explanation counts exactly what the selection runs); None for one of another shape."""
    sql = _strip_comments(selection_sql(name))
    m = re.match(r"\s*SELECT\s(?P<cols>.*?)\bFROM\b(?P<src>.*?)\bWHERE\b(?P<where>.*?)\bORDER\s+BY\b",
                 sql, re.IGNORECASE | re.DOTALL)
    if m is None:
        return None
    return m["cols"], m["src"], _top_level_and(m["where"])


@dataclasses.dataclass(frozen=True)
class SelectionExplanation:
    """Rows surviving each predicate of a selection, in the SQL's order (cumulative counts)."""

    name: str
    n_rows: int
    steps: tuple[tuple[str, int], ...]  # (predicate as it reads with its values, rows left after it)
    hints: tuple[str | None, ...]

    def first_emptying(self) -> int | None:
        """Index of the first predicate after which no row is left (None if rows survive)."""
        return next((i for i, (_, left) in enumerate(self.steps) if left == 0), None)

    def message(self) -> str:
        """One line: which predicate dropped the last rows, and what to try."""
        i = self.first_emptying()
        if i is None:
            return f"the {self.name} selection keeps {self.steps[-1][1] if self.steps else self.n_rows} of {self.n_rows} rows"
        before = self.n_rows if i == 0 else self.steps[i - 1][1]
        text = f"0 of {before} scenes (of {self.n_rows} in the catalog) have {self.steps[i][0]}"
        return f"{text}: {self.hints[i]}" if self.hints[i] else text


def _readable(predicate: str, params: Mapping[str, Any]) -> str:
    """A predicate with its parameters' values in place, table aliases dropped."""
    if "summer_months" in predicate:  # the EXISTS sub-query reads badly: say what it asks
        return "a date in their hemisphere's summer months (summer_months)"
    def value(m: re.Match[str]) -> str:
        if m[1] not in params:
            return m[0]
        v = params[m[1]]
        return v.isoformat() if hasattr(v, "isoformat") else repr(v) if isinstance(v, str) else str(v)

    text = " ".join(re.sub(r"\b[sg]\.", "", re.sub(r"\$([A-Za-z_]\w*)", value, predicate)).split())
    # "($p IS NULL OR x = $p)" with p set reads as "x = p"
    optional = re.fullmatch(r"\((\S+) IS NULL OR (.*)\)", text)
    return optional[2] if optional and optional[1] != "None" else text


def explain_selection(catalog: CatalogSource, name: str = "inference", *, config: CatalogConfig | None = None,
                      inventory: str | os.PathLike[str] | pd.DataFrame | None = None) -> SelectionExplanation | None:
    """How many catalog rows survive each predicate of a selection (:func:`selection_predicates`),
    counted in one query; None for a selection whose SQL is not a single filtered SELECT."""
    parsed = selection_predicates(name)
    if parsed is None:
        return None
    _, source, predicates = parsed
    config = config or CatalogConfig()
    params = selection_params(config)
    counts = ", ".join(f"count(*) FILTER (WHERE {' AND '.join(predicates[:k + 1])})" for k in range(len(predicates)))
    sql = f"SELECT count(*){', ' + counts if counts else ''} FROM {source}"
    con = connect(catalog, inventory=inventory, config=config)
    try:
        row = _run_arrow(con, sql, params)
    finally:
        con.close()
    assert row is not None
    values = [int(v[0].as_py()) for v in row.columns]
    hints = []
    for predicate in predicates:
        used = re.findall(r"\$([A-Za-z_]\w*)", predicate) + re.findall(r"\b(status|summer_months|outline_date)\b", predicate)
        hints.append(next((_PREDICATE_HINTS[u] for u in used if u in _PREDICATE_HINTS), None))
    steps = tuple((_readable(p, params), v) for p, v in zip(predicates, values[1:], strict=True))
    return SelectionExplanation(name=name, n_rows=values[0], steps=steps, hints=tuple(hints))


def config_with(config: CatalogConfig, overrides: Mapping[str, Any]) -> CatalogConfig:
    """A copy of ``config`` with ``overrides`` applied and type-checked (as the TOML loader does)."""
    from glacierwatch.config import Config

    merged = {**dataclasses.asdict(config), **overrides}
    return Config.from_dict({"catalog": merged}).catalog
