"""``glacierwatch catalog build | query | select | plot | columns``."""

from __future__ import annotations

import argparse
import shutil
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported by the handlers, not for --help
    import pandas as pd

from glacierwatch.config import CatalogConfig, Config
from glacierwatch.errors import InputError
from glacierwatch.io import write_table
from glacierwatch.layout import CATALOG

DEFAULT_CATALOG = CATALOG

#: Columns printed by ``select`` when no --out and no --columns are given.
_BRIEF = ["glims_id", "date", "satellite", "cloud_cover", "image_quality", "n_pixels", "nodata_pixels",
          "zero_pixel_pct", "box_cloud_fraction"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "catalog", help="scene catalog: build it, query it with SQL, run the paper's selections",
        description="One row per scene file (provider metadata + raster statistics + status), as Parquet, "
                    "queried with SQL (DuckDB; the catalog is the table 'scenes').")
    sub = parser.add_subparsers(dest="catalog_command", metavar="VERB")
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])

    p = sub.add_parser("build", help="read every scene file under SCENES_DIR into catalog.parquet")
    p.add_argument("scenes_dir", metavar="SCENES_DIR", help="folder of <GLIMS_ID>/<GLIMS_ID>_<date>_<sat>_C02_T1_L2_SR.tif")
    p.add_argument("--out", default=DEFAULT_CATALOG, help=f"catalog file, .parquet (default {DEFAULT_CATALOG}); "
                   "if it exists, only new or changed files are read again")
    p.add_argument("--workers", type=int, default=None, help="processes reading files (default: [catalog] workers, 1)")
    p.add_argument("--inventory", help="inventory.parquet: compute statistics in each glacier grid's box, "
                   "take hemisphere and region from it")
    p.add_argument("--config", help="glacierwatch TOML configuration ([catalog] section)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_build)

    p = sub.add_parser("query", help="run SQL on the catalog (table 'scenes'; with --inventory also 'glaciers')",
                       description="Values typed by a user go in --param NAME=VALUE and are referenced as $NAME, "
                                   "never pasted into the SQL text.")
    p.add_argument("sql", metavar="SQL")
    _common(p, config=False)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="bind $NAME to VALUE (TOML syntax: 5, 9.99, true, 2003-05-31, \"text\"); repeatable")
    p.set_defaults(func=_query)

    from glacierwatch.catalog.queries import SELECTIONS

    p = sub.add_parser("select", help=f"run a named selection: {', '.join(SELECTIONS)}",
                       description="The paper's selections, with the [catalog] configuration values as query "
                                   "parameters. The SQL is in glacierwatch/catalog/sql/.")
    p.add_argument("name", choices=SELECTIONS, metavar="NAME", help=" | ".join(SELECTIONS))
    _common(p, config=True)
    p.add_argument("--columns", help="comma-separated columns to print (default: a short set; --out writes all)")
    p.add_argument("--show-sql", action="store_true", help="print the selection's SQL and parameters, run nothing")
    p.set_defaults(func=_select)

    p = sub.add_parser("plot", help="figure 7: cloud cover, zero pixels, pixel counts, quality after the filter")
    p.add_argument("--catalog", default=DEFAULT_CATALOG, help=f"catalog file (default {DEFAULT_CATALOG})")
    p.add_argument("--inventory", help="inventory.parquet (hemispheres for the summer-month filter)")
    p.add_argument("--out", default="catalog_figure7.png", help="figure file, .png/.pdf/.svg")
    _config_args(p)
    p.set_defaults(func=_plot)

    p = sub.add_parser("columns", help="print the catalog's columns with units and meaning")
    p.set_defaults(func=_columns)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="glacierwatch TOML configuration ([catalog] section)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a [catalog] option, e.g. --set max_cloud_cover=5; repeatable")
    slc = p.add_mutually_exclusive_group()
    slc.add_argument("--l7-slc-off", dest="include_l7_slc_off", action="store_true", default=None,
                     help="keep Landsat 7 scenes after the SLC failure (2003-05-31)")
    slc.add_argument("--no-l7-slc-off", dest="include_l7_slc_off", action="store_false",
                     help="drop Landsat 7 scenes after the SLC failure")


def _common(p: argparse.ArgumentParser, *, config: bool) -> None:
    p.add_argument("--catalog", default=DEFAULT_CATALOG, help=f"catalog file (default {DEFAULT_CATALOG})")
    p.add_argument("--inventory", help="inventory.parquet, available as the table 'glaciers'")
    p.add_argument("--out", help="write the result to a .parquet or .csv file instead of printing it")
    p.add_argument("--max-rows", type=int, default=40, help="rows printed (default 40)")
    if config:
        _config_args(p)


def parse_value(text: str) -> Any:
    """A command-line value in TOML syntax (number, boolean, date, list, quoted string); else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _pairs(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{what} expects NAME=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def _catalog_config(args: argparse.Namespace) -> CatalogConfig:
    from glacierwatch.catalog.queries import config_with

    config = Config.from_toml(args.config).catalog if getattr(args, "config", None) else CatalogConfig()
    overrides = _pairs(getattr(args, "set", []) or [], "--set")
    if getattr(args, "include_l7_slc_off", None) is not None:
        overrides["include_l7_slc_off"] = args.include_l7_slc_off
    return config_with(config, overrides) if overrides else config


def _emit(df: pd.DataFrame, args: argparse.Namespace, columns: list[str] | None = None) -> None:
    if args.out:
        suffix = Path(args.out).suffix.lower()
        if suffix not in (".parquet", ".pq", ".csv"):
            raise InputError(f"--out must be a .parquet or .csv file, not {args.out}")
        write_table(df, args.out)
        print(f"{len(df):,} row(s) -> {args.out}")
        return
    if df.empty:
        # not pandas' "Empty DataFrame / Columns: [...]": say so, and why where the query says
        explanation = df.attrs.get("explanation") or df.attrs.get("why_empty")
        lines = [explanation] if isinstance(explanation, str) else list(explanation or [])
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        print("(0 rows)")
        return
    shown = df[[c for c in columns if c in df.columns]] if columns else df
    import pandas as pd

    width = shutil.get_terminal_size((160, 20)).columns
    with pd.option_context("display.width", width, "display.max_columns", None):
        text = shown.to_string(max_rows=args.max_rows, max_colwidth=60, index=False) if len(shown.columns) else ""
    sys.stdout.write(text + ("\n" if text else ""))
    print(f"({len(df):,} row(s))")


def _build(args: argparse.Namespace) -> int:
    from glacierwatch.catalog.build import build_catalog

    config = _catalog_config(args)
    workers = args.workers if args.workers is not None else config.workers
    df = build_catalog(args.scenes_dir, args.out, inventory=args.inventory, workers=workers,
                       progress=not args.no_progress)
    info = df.attrs.get("build", {})
    status = ", ".join(f"{k}: {v:,}" for k, v in sorted(info.get("status", {}).items()))
    print(f"{info.get('files', len(df)):,} scene file(s): {info.get('read', 0):,} read, {info.get('reused', 0):,} "
          f"unchanged, {info.get('removed', 0):,} removed; status {status or '-'} -> {args.out}")
    return 0


def _query(args: argparse.Namespace) -> int:
    from glacierwatch.catalog.queries import query

    df = query(args.catalog, args.sql, params=_pairs(args.param, "--param"), inventory=args.inventory)
    _emit(df, args)
    return 0


def _select(args: argparse.Namespace) -> int:
    from glacierwatch.catalog.queries import select, selection_params, selection_sql

    config = _catalog_config(args)
    if args.show_sql:
        print(selection_sql(args.name))
        print("-- parameters:")
        for key, value in selection_params(config).items():
            print(f"--   ${key} = {value!r}")
        print(f"-- summer_months: N {config.summer_months_north}, S {config.summer_months_south}")
        return 0
    df = select(args.catalog, args.name, config=config, inventory=args.inventory)
    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    if columns is None and args.name != "inference-glaciers":
        columns = _BRIEF + (["days_from_outline"] if args.name == "training" else [])
    _emit(df, args, columns)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from glacierwatch.catalog.plot import plot_catalog

    out = plot_catalog(args.catalog, args.out, config=_catalog_config(args), inventory=args.inventory)
    print(f"figure -> {out}")
    return 0


def _columns(args: argparse.Namespace) -> int:
    from glacierwatch.catalog.schema import markdown_table

    sys.stdout.write(markdown_table())
    return 0
