"""``glacierwatch report WORKDIR``: one self-contained HTML page with the results of a run.

Reads from WORKDIR:

* ``areas.parquet`` (required; ``areas.csv`` is accepted too);
* ``trends/`` — the outputs of ``glacierwatch trends``; the stage is run only when they are missing
  (or with ``rerun_trends``). Outputs older than the areas table, or made with other ``min_obs`` /
  ``by`` values than asked for, are used as they are and the page says they are stale;
* optional: ``inventory.parquet`` (outlines: the map, EPSG:4326), ``synthetic/truth_trends.csv`` (or
  ``truth_trends.csv``; columns ``glims_id, region, true_rel_change_per_year``) for an
  estimated-versus-true table, ``model/model_card.json`` for the model's metrics, ``catalog.parquet``
  for scene counts, ``validation/validation_summary.csv`` and ``validation/validation.csv`` (written
  by ``glacierwatch validate``), and the run's scenes (``areas.scenes.parquet``) with
  ``model/model.pt`` for overlays (:mod:`glacierwatch.timeseries.overlay`) on a few dates.

Rates are shown in % per year everywhere on the page; the files in ``trends/`` (``table2.md`` too)
keep the paper's fractions per year. Figures are 1200 px wide (8 in at 150 dpi).

Writes ``WORKDIR/report/index.html`` (atomically): inline CSS and JavaScript, figures embedded as
base64 ``data:`` URIs, no external resource of any kind, so it opens offline and can be mailed.
After loading, the page's script sets ``document.body.dataset.rendered`` to
``tables=N;rows=N;images=N;images_ok=N`` (``images_ok`` counts images with a decoded width > 0).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from glacierwatch import __version__
from glacierwatch.config import TrendsConfig
from glacierwatch.errors import DatasetNotFoundError, GlacierwatchError
from glacierwatch.io import atomic_path, read_table
from glacierwatch.layout import (
    ANNUAL_TABLE,
    AREAS,
    AREAS_CSV,
    CATALOG,
    DEM_CANDIDATES,
    FIGURES,
    FIGURES_MANIFEST,
    GLACIER_TABLE,
    INVENTORY,
    MODEL,
    MODEL_CARD,
    REGION_TABLE,
    REPORT,
    SUMMARY,
    TABLE2_MD,
    TRENDS,
    TRUTH_CANDIDATES,
    VALIDATION_ROWS,
    VALIDATION_SUMMARY,
    TimeseriesOutputs,
)
from glacierwatch.trends.core import TOTAL, decimal_year
from glacierwatch.trends.figures import DEFAULT_MAX_GLACIER_FIGURES
from glacierwatch.trends.stage import write_trends

log = logging.getLogger(__name__)

#: Interval columns of the areas table (km²), drawn as a band around each glacier's series.
INTERVAL_COLUMNS = ("area_km2_low", "area_km2_high")
#: Figures: 8 in wide at 150 dpi = 1200 px.
FIG_WIDTH_IN = 8.0
FIG_DPI = 150
DEFAULT_OVERLAY_GLACIERS = 2
OVERLAY_DATES = 3
VALIDATION_ROWS_SHOWN = 20
_TREND_FILES = (f"{GLACIER_TABLE}.parquet", f"{REGION_TABLE}.parquet", ANNUAL_TABLE, TABLE2_MD, SUMMARY)


# ---------------------------------------------------------------- inputs

def find_areas(workdir: Path) -> Path:
    for name in (AREAS, AREAS_CSV):
        if (workdir / name).exists():
            return workdir / name
    raise DatasetNotFoundError(f"{workdir}: no areas.parquet (run the time-series stage first)")


def _trends_current(trends_dir: Path, areas_path: Path, min_obs: int | None, by: str | None) -> str | None:
    """None if the trends outputs can be reused, else why they cannot."""
    missing = [n for n in (*_TREND_FILES, f"{FIGURES}/{FIGURES_MANIFEST}") if not (trends_dir / n).exists()]
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        summary = json.loads((trends_dir / SUMMARY).read_text(encoding="utf-8"))
        manifest = json.loads((trends_dir / FIGURES / FIGURES_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable {SUMMARY} or {FIGURES_MANIFEST} ({exc})"
    if any(not (trends_dir / FIGURES / m.get("file", "")).is_file() for m in manifest):
        return "a figure listed in figures.json is missing"
    if (trends_dir / SUMMARY).stat().st_mtime < areas_path.stat().st_mtime:
        return f"{areas_path.name} is newer"
    if min_obs is not None and summary.get("min_obs") != min_obs:
        return f"made with min_obs {summary.get('min_obs')}"
    if by is not None and summary.get("by") != by:
        return f"made with by {summary.get('by')!r}"
    return None


@dataclass
class ReportInputs:
    """Everything the page shows, loaded from a work folder."""

    workdir: Path
    areas_path: Path
    trends_dir: Path
    summary: dict[str, Any]
    glaciers: pd.DataFrame
    regions: pd.DataFrame
    annual: pd.DataFrame
    figures: list[dict[str, Any]]
    truth: pd.DataFrame | None = None
    truth_path: Path | None = None
    model_card: dict[str, Any] | None = None
    catalog: pd.DataFrame | None = None
    areas: pd.DataFrame | None = None
    outlines: Any = None  #: GeoDataFrame (glims_id, geometry) in EPSG:4326, from inventory.parquet
    validation_summary: pd.DataFrame | None = None
    validation_rows: pd.DataFrame | None = None
    overlays: list[tuple[str, bytes]] = field(default_factory=list)  #: (caption, PNG)
    stale: str | None = None  #: why the trends outputs may not match the areas table
    notices: list[str] = field(default_factory=list)

    @property
    def by(self) -> str:
        return str(self.summary.get("by", "region"))


def load_inputs(workdir: str | os.PathLike[str], *, min_obs: int | None = None, by: str | None = None,
                rerun_trends: bool = False,
                max_glacier_figures: int | None = DEFAULT_MAX_GLACIER_FIGURES,
                overlay_glaciers: int = DEFAULT_OVERLAY_GLACIERS,
                dem_dir: str | os.PathLike[str] | None = None) -> ReportInputs:
    """Load everything the report shows. The trends stage is run only when ``WORKDIR/trends`` is
    missing (or ``rerun_trends``): the report shows the trends the run made, and says when they are
    stale instead of silently replacing them."""
    work = Path(workdir)
    if not work.is_dir():
        raise DatasetNotFoundError(f"work folder not found: {work}")
    areas_path = find_areas(work)
    trends_dir = work / TRENDS
    why = _trends_current(trends_dir, areas_path, min_obs, by)
    stale = None
    if rerun_trends or (why is not None and why.startswith("missing")):
        defaults = TrendsConfig()
        log.info("running the trends stage into %s (%s)", trends_dir, "--rerun-trends" if rerun_trends else why)
        write_trends(areas_path, trends_dir, min_obs=defaults.min_obs if min_obs is None else min_obs,
                     by=by or defaults.by, max_glacier_figures=max_glacier_figures)
    elif why is not None:
        stale = why
        log.warning("trends in %s are stale (%s); the report shows them as they are", trends_dir, why)
    summary = json.loads((trends_dir / SUMMARY).read_text(encoding="utf-8"))
    inputs = ReportInputs(
        workdir=work, areas_path=areas_path, trends_dir=trends_dir, summary=summary,
        glaciers=read_table(trends_dir / "glacier_trends.parquet"),
        regions=read_table(trends_dir / "region_trends.parquet"),
        annual=read_table(trends_dir / "region_annual.csv"),
        figures=json.loads((trends_dir / FIGURES / FIGURES_MANIFEST).read_text(encoding="utf-8")),
        stale=stale,
    )
    inputs.areas = read_table(areas_path)
    _load_optional(inputs)
    if overlay_glaciers > 0:
        _load_overlays(inputs, overlay_glaciers, Path(dem_dir) if dem_dir is not None else None)
    return inputs


def _load_optional(inputs: ReportInputs) -> None:
    work = inputs.workdir
    for rel in TRUTH_CANDIDATES:
        path = work / rel
        if path.exists():
            try:
                inputs.truth = read_table(path, columns=["glims_id", "true_rel_change_per_year"])
                inputs.truth_path = path
            except GlacierwatchError as exc:
                inputs.notices.append(f"truth table skipped: {exc}")
            break
    path = work / MODEL_CARD
    if path.exists():
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(card, dict):
                raise ValueError("not a JSON object")
            inputs.model_card = card
        except (OSError, ValueError) as exc:
            inputs.notices.append(f"model card skipped: {path}: {exc}")
    path = work / CATALOG
    if path.exists():
        try:
            inputs.catalog = read_table(path)
        except GlacierwatchError as exc:
            inputs.notices.append(f"catalog skipped: {exc}")
    path = work / INVENTORY
    if path.exists():
        try:
            inputs.outlines = _read_outlines(path)
        except (GlacierwatchError, OSError, ValueError, ImportError) as exc:
            inputs.notices.append(f"map skipped: {path}: {exc}")
    for attr, rel in (("validation_summary", VALIDATION_SUMMARY), ("validation_rows", VALIDATION_ROWS)):
        path = work / rel
        if path.exists():
            try:
                setattr(inputs, attr, pd.read_csv(path))
            except (OSError, ValueError) as exc:
                inputs.notices.append(f"validation table skipped: {path}: {exc}")
    for notice in inputs.notices:
        log.warning(notice)


def _read_outlines(path: Path) -> Any:
    """glims_id and outline of every inventory glacier, in EPSG:4326."""
    import geopandas as gpd

    outlines = gpd.read_parquet(path, columns=["glims_id", "geometry"])
    if outlines.crs is None:
        raise ValueError("the inventory's geometry has no CRS")
    return outlines.to_crs(4326)


def _overlay_dates(rows: pd.DataFrame, n: int) -> list[Any]:
    """``n`` dates spread over a glacier's record (first, middle, last...), among well-observed scenes."""
    rows = rows.dropna(subset=["area_km2"]).sort_values("date")
    if "valid_fraction" in rows.columns and (rows["valid_fraction"] >= 0.9).sum() >= n:
        rows = rows.loc[rows["valid_fraction"] >= 0.9]
    if rows.empty:
        return []
    picks = np.unique(np.linspace(0, len(rows) - 1, n).round().astype(int))
    return [pd.Timestamp(d).date() for d in rows["date"].iloc[picks]]


def _load_overlays(inputs: ReportInputs, n_glaciers: int, dem_dir: Path | None = None) -> None:
    """Overlays (scene, probability, outline) on a few dates of the first glaciers drawn in the report,
    redrawn by :mod:`glacierwatch.timeseries.overlay` from the run's scenes. Skipped (with a notice)
    when the work folder lacks what they need."""
    work, areas = inputs.workdir, inputs.areas
    if areas is None or not TimeseriesOutputs.for_path(inputs.areas_path).scenes.exists():
        return  # areas not made by `timeseries run` here (e.g. imported): nothing to redraw
    if not (work / INVENTORY).exists():
        inputs.notices.append(f"overlays skipped: no {INVENTORY} in the work folder")
        return
    from glacierwatch.timeseries.overlay import overlay_data, overlay_figure

    model = work / MODEL
    if dem_dir is None:
        dem_dir = next((work / d for d in DEM_CANDIDATES if (work / d).is_dir()), None)
    for glims_id in _series_glaciers(inputs)[:n_glaciers]:
        dates = _overlay_dates(areas.loc[areas["glims_id"] == glims_id], OVERLAY_DATES)
        try:
            items = overlay_data(glims_id, dates, areas_path=inputs.areas_path, inventory_path=work / INVENTORY,
                                 model=model if model.exists() else None, dem_dir=dem_dir)
        except Exception as exc:  # noqa: BLE001 - an optional figure must not cost the whole report
            inputs.notices.append(f"overlays of {glims_id} skipped: {type(exc).__name__}: {exc}")
            continue
        for item in items:
            inputs.overlays.append((f"{glims_id} {item.date} {item.satellite}: observed "
                                    f"{item.valid_fraction:.0%}, area {item.area_km2:.3f} km²",
                                    _png(overlay_figure(item))))


# ---------------------------------------------------------------- formatting helpers

def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def pct(value: Any, digits: int = 3, sign: bool = True) -> str:
    """A fraction per year as percent per year text ('' where undefined); -0.00256 -> '−0.256'."""
    if not _finite(value):
        return ""
    text = f"{float(value) * 100:{'+' if sign else ''}.{digits}f}"
    return text.replace("-", "\u2212")


def num(value: Any, digits: int = 5) -> str:
    if not _finite(value):
        return ""
    return f"{float(value):.{digits}f}".replace("-", "\u2212")


def html_table(rows: list[list[Any]], header: list[str], *, numeric: set[int] | None = None,
               row_classes: list[str] | None = None, caption: str | None = None,
               table_class: str = "", sortable: bool = False) -> str:
    """An escaped HTML table; cells are already-formatted values."""
    numeric = numeric or set()
    cls = " ".join(c for c in (table_class, "sortable" if sortable else "") if c)
    out = [f'<table class="{cls}">' if cls else "<table>"]
    if caption:
        out.append(f"<caption>{caption}</caption>")
    out.append("<thead><tr>" + "".join(
        f'<th class="num">{_esc(h)}</th>' if i in numeric else f"<th>{_esc(h)}</th>"
        for i, h in enumerate(header)) + "</tr></thead><tbody>")
    for k, row in enumerate(rows):
        rc = row_classes[k] if row_classes else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        out.append("".join(f'<td class="num">{_esc(v)}</td>' if i in numeric else f"<td>{_esc(v)}</td>"
                           for i, v in enumerate(row)))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, caption: str) -> str:
    return (f'<figure><img src="{data_uri(png)}" alt="{_esc(alt)}" loading="eager">'
            f"<figcaption>{caption}</figcaption></figure>")


def _png(fig: Figure) -> bytes:
    """A report figure as PNG bytes at :data:`FIG_DPI`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIG_DPI)
    return buf.getvalue()


def _series_glaciers(inp: ReportInputs) -> list[str]:
    """Glaciers whose series the page draws: those the trends stage drew (its choice: the most
    observations), in its order."""
    return [str(m["name"]) for m in _figure_by_kind(inp, "glacier")]


# ---------------------------------------------------------------- sections

def _cards(inp: ReportInputs) -> str:
    s = inp.summary
    total = inp.regions.loc[inp.regions[inp.by] == TOTAL].iloc[0]
    obs_years = inp.annual.loc[inp.annual[inp.by] == TOTAL, "year"]
    years = f"{int(obs_years.min())}\u2013{int(obs_years.max())}" if len(obs_years) else "\u2013"
    se = f"\u00b1 {pct(total['se'], sign=False)}" if _finite(total["se"]) else "no SE"
    cards = [
        (f"{pct(total['rel_change_per_year'])} %/yr" if _finite(total["rel_change_per_year"]) else "n/a",
         f"all glaciers, weighted mean {se}"),
        (f"{s['n_glaciers'] - s['n_glaciers_flagged']} / {s['n_glaciers']}", "glaciers used / in the table"),
        (f"{s['n_valid_rows']:,}", f"area observations ({s['n_rows'] - s['n_valid_rows']} rows dropped)"),
        (f"{s['n_regions']}", f"{_esc(inp.by)} groups"),
        (years, "years with observations"),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="big">{_esc(v)}</div><div class="small">{_esc(t)}</div></div>'
        for v, t in cards) + "</div>"


def _table2_section(inp: ReportInputs) -> str:
    rows = [[r[inp.by], pct(r["rel_change_per_year"]), pct(r["se"], sign=False), num(r["rel_se"], 3)]
            for _, r in inp.regions.iterrows()]
    classes = ["total" if r[0] == TOTAL else "" for r in rows]
    table = html_table(rows, ["Region", "Relative area change (%/yr)", "Standard error (%/yr)",
                              "Relative std. error"],
                       numeric={1, 2, 3}, row_classes=classes, table_class="paper")
    return (f'<section id="table2"><h2>Table II: relative area change by {_esc(inp.by)}</h2>{table}'
            "<p class=\"note\">Relative area change in % per year, like every rate on this page: the mean of "
            "the per-glacier log-linear slopes weighted by each glacier's number of observations. Standard "
            "error: the spread between glaciers (WLS of the slopes on a constant). Relative std. error = "
            "standard error / |change| (no unit). Empty cells are undefined (e.g. one glacier). "
            f"<code>{_esc(inp.trends_dir.name)}/table2.csv</code> and <code>table2.md</code> give the same "
            "values as the paper does, as fractions per year (\u22120.00256 = \u22120.256 %/yr).</p></section>")


def _regions_section(inp: ReportInputs) -> str:
    rows, classes = [], []
    for _, r in inp.regions.iterrows():
        ci = (f"{pct(r['ci95_low'])} to {pct(r['ci95_high'])}" if _finite(r["ci95_low"]) else "")
        rows.append([r[inp.by], int(r["n_glaciers"]), int(r["n_glaciers_flagged"]), f"{int(r['n_obs']):,}",
                     pct(r["rel_change_per_year"]), pct(r["se"], sign=False), ci,
                     pct(r["geomean_rel_change_per_year"]), pct(r["geomean_se"], sign=False),
                     pct(r["panel_rel_change_per_year"]), pct(r["panel_se"], sign=False)])
        classes.append("total" if r[inp.by] == TOTAL else "")
    header = [inp.by.replace("_", " ").capitalize(), "Glaciers", "Flagged", "Obs.", "Weighted mean", "SE",
              "95 % CI", "Geometric mean", "SE", "Panel (FE)", "SE"]
    table = html_table(rows, header, numeric=set(range(1, 11)), row_classes=classes)
    return f"""<section id="regions"><h2>Regional estimates, three ways (% per year)</h2>{table}
<div class="explain">
<p><b>Weighted mean</b> (the paper's first method, Table II): every glacier gets its own log-linear
fit; the region's rate is the mean of those slopes weighted by the glaciers' numbers of observations.
Its standard error measures how much glaciers differ from each other, so it answers "how fast does a
typical glacier of this region shrink?".</p>
<p><b>Geometric mean</b> (the paper's second method): per calendar year, the mean of ln(area) over all
observations in the region, fitted against time. The glaciers observed change from year to year, and
a year that happens to include a large glacier jumps up: size differences leak into the trend, so this
estimate can be far off (and noisy) when coverage is uneven.</p>
<p><b>Panel (fixed effects)</b>: one regression of ln(area) on time with a separate level per
glacier, standard errors clustered by glacier. Each glacier is compared only with itself, so the mix
of glaciers per year does not matter; glaciers with more observations and a longer record weigh more.
It is the recommended check on the weighted mean.</p></div></section>"""


def _figure_by_kind(inp: ReportInputs, kind: str) -> list[dict[str, Any]]:
    return [m for m in inp.figures if m.get("kind") == kind]


def _read_png(inp: ReportInputs, entry: dict[str, Any]) -> bytes:
    return (inp.trends_dir / FIGURES / entry["file"]).read_bytes()


def _region_figures_section(inp: ReportInputs) -> str:
    parts = []
    counts = dict(zip(inp.regions[inp.by].astype(str), inp.regions["n_glaciers"], strict=False))
    single = []
    for m in _figure_by_kind(inp, "region"):
        if m["name"] != TOTAL and counts.get(str(m["name"]), 2) < 2:
            single.append(str(m["name"]))  # a histogram of one rate says nothing: its series is below
            continue
        name = "all regions" if m["name"] == TOTAL else m["name"]
        parts.append(_img(_read_png(inp, m), f"Figure 18, {name}",
                          f"<b>{_esc(name)}</b>. Left: each glacier's areas divided by its own geometric mean "
                          "(grey), the geometric mean per year (black, divided by the regional mean), its "
                          "log-linear fit (blue) and the panel slope (orange, dashed). Right: histogram of "
                          "glacier rates, weighted mean (red) \u00b1 2 standard errors (dashed)."))
    if single:
        parts.append(f'<p class="note">Not drawn, one glacier each: {_esc(", ".join(single))} '
                     "(see its series under Glaciers).</p>")
    return f'<section id="figure18"><h2>By region (Figure 18)</h2>{"".join(parts)}</section>'


def _truth_section(inp: ReportInputs) -> str:
    if inp.truth is None:
        return ""
    truth_path = inp.truth_path
    assert truth_path is not None  # the inputs set the path together with the table
    truth = inp.truth.copy()
    truth["glims_id"] = truth["glims_id"].astype(str).str.strip()
    truth = truth.drop_duplicates("glims_id")[["glims_id", "true_rel_change_per_year"]]
    merged = inp.glaciers.merge(truth, on="glims_id", how="inner")
    if merged.empty:
        return ('<section id="truth"><h2>Estimated versus true rates</h2><p class="warn">The truth table '
                f"{_esc(inp.truth_path)} shares no glims_id with the areas table.</p></section>")
    merged["error"] = merged["rel_change_per_year"] - merged["true_rel_change_per_year"]
    merged["z"] = merged["error"] / merged["rel_change_se"]
    used = merged.loc[~merged["flagged"].astype(bool) & np.isfinite(merged["error"])]
    rmse = float(np.sqrt(np.mean(used["error"] ** 2))) if len(used) else np.nan
    within = float((used["z"].abs() <= 2).mean() * 100) if used["z"].notna().any() else np.nan

    reg_rows = []
    for _, r in inp.regions.iterrows():
        name = r[inp.by]
        sub = used if name == TOTAL else used.loc[used[inp.by].astype(str) == str(name)]
        if sub.empty:
            continue
        true_mean = float(np.average(sub["true_rel_change_per_year"], weights=sub["n_obs"]))
        covered = (r["ci95_low"] <= true_mean <= r["ci95_high"]) if _finite(r["ci95_low"]) else None
        reg_rows.append([name, len(sub), pct(true_mean), pct(r["rel_change_per_year"]), pct(r["se"], sign=False),
                         "" if covered is None else ("yes" if covered else "no")])
    reg_table = html_table(reg_rows, [inp.by.capitalize(), "Glaciers", "True (weighted)", "Estimated",
                                      "SE", "True in 95 % CI"], numeric={1, 2, 3, 4},
                           row_classes=["total" if r[0] == TOTAL else "" for r in reg_rows])
    rows, classes = [], []
    for _, r in merged.sort_values([inp.by, "glims_id"]).iterrows():
        rows.append([r["glims_id"], r[inp.by], int(r["n_obs"]), pct(r["true_rel_change_per_year"]),
                     pct(r["rel_change_per_year"]), pct(r["rel_change_se"], sign=False), pct(r["error"]),
                     f"{r['z']:.2f}" if _finite(r["z"]) else ""])
        classes.append("flagged" if r["flagged"] else "")
    table = html_table(rows, ["Glacier", inp.by.capitalize(), "Obs.", "True", "Estimated", "SE", "Error", "z"],
                       numeric={2, 3, 4, 5, 6, 7}, row_classes=classes, sortable=True)

    fig = Figure(figsize=(FIG_WIDTH_IN * 0.65, 4.6), layout="constrained")
    ax = fig.add_subplot()
    x, y = used["true_rel_change_per_year"] * 100, used["rel_change_per_year"] * 100
    ax.errorbar(x, y, yerr=2 * used["rel_change_se"] * 100, fmt="o", ms=4, color="tab:blue", ecolor="0.7",
                elinewidth=1, label="glacier \u00b1 2 SE")
    if len(used):
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.05 * (hi - lo or 1)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="0.3", lw=1, label="1:1")
    ax.set_xlabel("true rate (% per year)")
    ax.set_ylabel("estimated rate (% per year)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    img = _img(_png(fig), "estimated versus true rates",
               "Estimated against true rate per glacier (flagged glaciers left out).")
    return f"""<section id="truth"><h2>Estimated versus true rates</h2>
<p>The work folder holds a synthetic world with known rates (<code>{_esc(truth_path.relative_to(inp.workdir))}</code>).
{len(used)} glaciers compared (flagged ones, shaded in the table, are left out): root-mean-square error {pct(rmse, sign=False)} %/yr;
{"" if not _finite(within) else f"{within:.0f} % of glacier estimates lie within 2 standard errors of the truth."}</p>
{reg_table}<div class="two">{img}<div class="scroll">{table}</div></div></section>"""


def _inventory_section(inp: ReportInputs) -> str:
    parts = [_img(_read_png(inp, m), "Figure 13, inventory summary",
                  "Left: valid area observations (images) per glacier, with the <code>min_obs</code> threshold. "
                  "Right: glaciers with at least one observation per year.")
             for m in _figure_by_kind(inp, "inventory")]
    cat = inp.catalog
    if cat is not None and len(cat):
        facts = [f"{len(cat):,} scene files"]
        if "glims_id" in cat.columns:
            facts.append(f"{cat['glims_id'].nunique():,} glaciers")
        if "status" in cat.columns:
            facts.append(f"{int((cat['status'] == 'ok').sum()):,} readable ('ok')")
        parts.append(f"<p>Scene catalog (<code>{CATALOG}</code>): {', '.join(facts)}.</p>")
        if "satellite" in cat.columns:
            status = cat["status"].astype(str) if "status" in cat.columns else pd.Series("all", index=cat.index)
            pivot = pd.crosstab(cat["satellite"].astype(str), status)
            pivot["total"] = pivot.sum(axis=1)
            rows = [[sat, *[int(v) for v in vals]] for sat, vals in zip(pivot.index, pivot.to_numpy(), strict=False)]
            rows.append(["all", *[int(v) for v in pivot.sum(axis=0).to_numpy()]])
            parts.append(html_table(rows, ["Satellite", *[f"status: {c}" if c != "total" else c
                                                          for c in pivot.columns]],
                                    numeric=set(range(1, len(pivot.columns) + 1)),
                                    row_classes=[""] * (len(rows) - 1) + ["total"],
                                    caption="Scenes per satellite and status", table_class="narrow"))
    return f'<section id="inventory"><h2>Inventory (Figure 13)</h2>{"".join(parts)}</section>'


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            items += _flatten(v, f"{prefix}{k}.")
    elif isinstance(data, list) and all(not isinstance(v, (dict, list)) for v in data):
        items.append((prefix.rstrip("."), ", ".join(str(v) for v in data)))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            items += _flatten(v, f"{prefix}{i}.")
    else:
        value = f"{data:.4g}" if isinstance(data, float) else str(data)
        items.append((prefix.rstrip("."), value))
    return items


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def metrics_matrix(metrics: dict[str, Any]) -> tuple[list[str], list[str], dict[tuple[str, str], Any]]:
    """(rows, columns, cells) of a model card's nested metrics: each dict of numbers becomes a column
    named by its path (``unet · overall``, ``unet · Alps``; ``per_region``-like levels dropped), its keys
    the rows (``dice``, ``iou``...); numbers at the top level form the column ``all``."""
    rows: list[str] = []
    columns: list[str] = []
    cells: dict[tuple[str, str], Any] = {}

    def visit(node: dict[str, Any], path: list[str]) -> None:
        leaves = {k: v for k, v in node.items() if _scalar(v)}
        if leaves:
            column = " \u00b7 ".join(p for p in path if not p.startswith("per_")) or "all"
            if column not in columns:
                columns.append(column)
            for key, value in leaves.items():
                if key not in rows:
                    rows.append(key)
                cells[(key, column)] = value
        for key, value in node.items():
            if isinstance(value, dict):
                visit(value, [*path, str(key)])

    visit(metrics, [])
    return rows, columns, cells


def _model_section(inp: ReportInputs) -> str:
    if inp.model_card is None:
        return ""
    card = inp.model_card
    others = [(k, v) for k, v in _flatten({k: v for k, v in card.items()
                                           if k not in ("metrics", "intended_use", "limitations")}) if len(v) < 300]
    parts = ['<section id="model"><h2>Segmentation model</h2>',
             f"<p>From <code>{MODEL_CARD}</code>.</p>"]
    rows, columns, cells = metrics_matrix(card.get("metrics", {}) if isinstance(card.get("metrics"), dict) else {})
    if rows:
        def cell(value: Any) -> str:
            return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

        body = [[r, *[cell(cells.get((r, c))) for c in columns]] for r in rows]
        parts.append('<div class="scroll">' + html_table(body, ["Metric", *columns],
                                                         numeric=set(range(1, len(columns) + 1)),
                                                         caption="Metrics (rows) by segmenter, region and sensor "
                                                                 "(columns)") + "</div>")
    if isinstance(card.get("intended_use"), str):
        parts.append(f"<p><b>Intended use.</b> {_esc(card['intended_use'])}</p>")
    limitations = card.get("limitations")
    if isinstance(limitations, str):
        limitations = [limitations]
    if isinstance(limitations, list) and limitations:
        parts.append("<p><b>Limitations.</b></p><ul>" + "".join(f"<li>{_esc(x)}</li>" for x in limitations)
                     + "</ul>")
    if others:
        parts.append("<details><summary>Model card details</summary>" +
                     html_table([list(o) for o in others[:200]], ["Field", "Value"], table_class="narrow") +
                     "</details>")
    parts.append("</section>")
    return "".join(parts)


def map_figure(outlines: Any, glaciers: pd.DataFrame) -> Figure:
    """All glaciers in longitude/latitude (EPSG:4326), each outline filled with its rate (%/yr) on a
    diverging scale, with a marker at its centroid so that small glaciers stay visible at any extent."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import TwoSlopeNorm

    merged = outlines.merge(glaciers[["glims_id", "rel_change_per_year", "flagged"]], on="glims_id", how="left")
    rate = merged["rel_change_per_year"].to_numpy(float) * 100
    finite = rate[np.isfinite(rate)]
    # symmetric about 0 (blue grows, red shrinks), at least +-0.05 %/yr so that noise is not shown as a trend
    span = max(float(np.max(np.abs(finite))) if finite.size else 0.0, 0.05)
    norm = TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)
    cmap = "RdBu"
    minx, miny, maxx, maxy = merged.total_bounds
    aspect = (maxy - miny + 1e-3) / max(maxx - minx, 1e-3) / max(np.cos(np.radians((miny + maxy) / 2)), 0.2)
    fig = Figure(figsize=(FIG_WIDTH_IN, float(np.clip(FIG_WIDTH_IN * aspect, 3.5, 7.0))), layout="constrained")
    ax = fig.add_subplot()
    colours = ScalarMappable(norm=norm, cmap=cmap)
    face = [colours.to_rgba(v) if np.isfinite(v) else (0.8, 0.8, 0.8, 1.0) for v in rate]
    merged.plot(ax=ax, color=face, edgecolor="0.2", linewidth=0.4)
    centre = merged.geometry.representative_point()
    flagged = merged["flagged"].fillna(True).astype(bool).to_numpy() | ~np.isfinite(rate)
    ax.scatter(centre.x[~flagged], centre.y[~flagged], c=rate[~flagged], cmap=cmap, norm=norm, s=36,
               edgecolors="k", linewidths=0.5, zorder=3, label="glacier (colour: rate)")
    if flagged.any():
        ax.scatter(centre.x[flagged], centre.y[flagged], s=30, facecolors="none", edgecolors="0.4",
                   linewidths=0.8, zorder=3, label="flagged / no rate")
    pad = 0.1 * max(maxx - minx, maxy - miny, 0.02)
    ax.set_xlim(minx - pad, maxx + pad)
    ax.set_ylim(miny - pad, maxy + pad)
    ax.set_aspect(1 / max(np.cos(np.radians((miny + maxy) / 2)), 0.2))
    ax.set_xlabel("longitude (\u00b0E)")
    ax.set_ylabel("latitude (\u00b0N)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.colorbar(colours, ax=ax, shrink=0.85, label="relative area change (% per year)")
    return fig


def _map_section(inp: ReportInputs) -> str:
    if inp.outlines is None:
        return ""
    shown = inp.outlines.loc[inp.outlines["glims_id"].isin(inp.glaciers["glims_id"])]
    if shown.empty:
        return ('<section id="map"><h2>Map</h2><p class="warn">No glacier of the areas table is in '
                f"<code>{INVENTORY}</code>.</p></section>")
    img = _img(_png(map_figure(shown, inp.glaciers)), "map of the glaciers coloured by their rate",
               f"{len(shown)} glaciers of <code>{INVENTORY}</code> (EPSG:4326), filled with their rate of "
               "relative area change (% per year; blue: growing, red: shrinking). Hollow markers: glaciers "
               "flagged (too few observations) or without a rate.")
    return f'<section id="map"><h2>Map</h2>{img}</section>'


def series_figure(rows: pd.DataFrame, trend: pd.Series | None) -> Figure:
    """One glacier's areas per scene (km²) with their interval where the table has one, the log-linear
    fit, and below it the observed (valid, non-cloud) fraction of the glacier box in each scene."""
    rows = rows.sort_values("date")
    t = decimal_year(rows["date"])
    fig = Figure(figsize=(FIG_WIDTH_IN, 4.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    area = rows["area_km2"].to_numpy(float)
    if all(c in rows.columns for c in INTERVAL_COLUMNS):
        low, high = (rows[c].to_numpy(float) for c in INTERVAL_COLUMNS)
        ok = np.isfinite(low) & np.isfinite(high)
        top.fill_between(t[ok], low[ok], high[ok], color="tab:blue", alpha=0.18, lw=0, label="interval")
    observed = rows["valid_fraction"].to_numpy(float) if "valid_fraction" in rows.columns else None
    if observed is not None:
        points = top.scatter(t, area, c=observed, cmap="viridis", vmin=0, vmax=1, s=12, zorder=3,
                             label="area per scene")
        fig.colorbar(points, ax=top, label="observed fraction", shrink=0.9)
        bottom.bar(t, observed, width=0.06, color="0.35")
    else:
        top.scatter(t, area, s=12, color="0.3", zorder=3, label="area per scene")
    if trend is not None and _finite(trend.get("rel_change_per_year")) and _finite(trend.get("intercept")):
        grid = np.linspace(float(np.nanmin(t)), float(np.nanmax(t)), 50)
        top.plot(grid, np.exp(trend["intercept"] + trend["rel_change_per_year"] * grid), color="tab:red", lw=1.5,
                 label=f"fit {pct(trend['rel_change_per_year'])} %/yr")
    top.set_ylabel("area (km\u00b2)")
    top.ticklabel_format(axis="y", useOffset=False)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="best")
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("observed")
    bottom.set_xlabel("year")
    bottom.grid(alpha=0.3)
    return fig


def _glacier_table_section(inp: ReportInputs) -> str:
    rows, classes = [], []
    for _, r in inp.glaciers.iterrows():
        rows.append([r["glims_id"], r[inp.by], int(r["n_obs"]), pd.Timestamp(r["first_date"]).date().isoformat(),
                     pd.Timestamp(r["last_date"]).date().isoformat(), pct(r["rel_change_per_year"]),
                     pct(r["rel_change_se"], sign=False), num(r["r2"], 3), r["flag_reason"]])
        classes.append("flagged" if r["flagged"] else "")
    table = html_table(rows, ["Glacier", inp.by.capitalize(), "Obs.", "First", "Last", "Rate %/yr", "SE",
                              "R\u00b2", "Flag"], numeric={2, 5, 6, 7}, row_classes=classes, sortable=True)
    n_flag = int(inp.glaciers["flagged"].sum())
    return (f'<section id="glaciers"><h2>Per-glacier trends</h2><p>{len(rows)} glaciers; {n_flag} flagged '
            f"(shaded) and left out of every regional estimate: fewer than {inp.summary['min_obs']} valid "
            "observations or a single date. Click a column header to sort.</p>"
            f'<div class="scroll">{table}</div></section>')


def _glacier_figures_section(inp: ReportInputs) -> str:
    names = _series_glaciers(inp)
    n_all = len(inp.glaciers)
    if not names or inp.areas is None:
        return ""
    trends = inp.glaciers.set_index(inp.glaciers["glims_id"].astype(str))
    areas = inp.areas.assign(glims_id=inp.areas["glims_id"].astype(str))
    parts = []
    for name in names:
        rows = areas.loc[areas["glims_id"] == name]
        if rows.empty:
            continue
        trend = trends.loc[name] if name in trends.index else None
        region = f" ({_esc(trend[inp.by])})" if trend is not None else ""
        parts.append(_img(_png(series_figure(rows, trend)), f"Figure 16, {name}", f"<b>{_esc(name)}</b>{region}"))
    has_interval = all(c in inp.areas.columns for c in INTERVAL_COLUMNS)
    note = "" if len(parts) >= n_all else (
        f" {len(parts)} of {n_all} glaciers are drawn (those with the most observations); "
        "<code>glacierwatch trends --glacier-figures all</code> then <code>glacierwatch report</code> draws every one.")
    overlays = ""
    if inp.overlays:
        overlays = ("<h3>Overlays</h3><p>Scenes of the first glaciers in true colour with the predicted glacier "
                    "probability, its threshold contour (cyan), the inventory outline (red) and the counted "
                    "region, redrawn from the run's scenes (<code>glacierwatch timeseries overlay</code>).</p>"
                    '<div class="gallery">' + "".join(_img(png, f"overlay {c}", _esc(c)) for c, png in inp.overlays)
                    + "</div>")
    return ('<section id="glacier-figures"><h2>Per-glacier series (Figure 16)</h2><p>Area per scene (dots, '
            "coloured by the observed fraction of the glacier box: 1 = clear, lower = cloud, shadow or no data), "
            + ("its interval (<code>area_km2_low</code> to <code>area_km2_high</code>, shaded), " if has_interval else "")
            + "the log-linear fit (red) and, below, the observed fraction of each scene."
            f"{note}</p><div class=\"gallery\">{''.join(parts)}</div>{overlays}</section>")


def _validation_section(inp: ReportInputs) -> str:
    if inp.validation_summary is None and inp.validation_rows is None:
        return ""
    parts = ['<section id="validation"><h2>Validation against reference outlines</h2>',
             "<p>From <code>glacierwatch validate</code> (<code>validation/</code>).</p>"]
    for frame, caption, limit in ((inp.validation_summary, "Summary", None),
                                  (inp.validation_rows, "Comparisons", VALIDATION_ROWS_SHOWN)):
        if frame is None:
            continue
        shown = frame if limit is None else frame.head(limit)
        numeric = {i for i, c in enumerate(shown.columns) if pd.api.types.is_numeric_dtype(shown[c])}
        rows = [[_cell(v) for v in r] for r in shown.itertuples(index=False)]
        more = "" if limit is None or len(frame) <= limit else f" (first {limit} of {len(frame):,} rows)"
        parts.append('<div class="scroll">' + html_table(rows, [str(c) for c in shown.columns], numeric=numeric,
                                                         caption=f"{caption}{more}") + "</div>")
    parts.append("</section>")
    return "".join(parts)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:.4g}".replace("-", "\u2212")
    return "" if value is None else str(value)


def _notices_section(inp: ReportInputs) -> str:
    items = list(inp.summary.get("warnings", [])) + inp.notices
    if inp.stale:
        items.insert(0, f"The trends in {inp.trends_dir} are stale ({inp.stale}): this page shows them as they "
                        "are. Run 'glacierwatch trends' again (or 'glacierwatch report --rerun-trends') to update.")
    if not items:
        return ""
    return ('<section id="warnings" class="warnbox"><h2>Warnings</h2><ul>' +
            "".join(f"<li>{_esc(w)}</li>" for w in items) + "</ul></section>")


def _methods_section(inp: ReportInputs) -> str:
    return f"""<section id="methods"><h2>How to read this report</h2>
<p>Every rate is the slope of ln(area) against the decimal year (year + (day of year − 1) / days in
the year), a fraction per year: −0.01 means the area shrinks by about 1 % per year, −0.00256 by 0.256 %.
Pages show rates in % per year; the CSV and Parquet tables in <code>{_esc(inp.trends_dir.name)}/</code>
hold fractions. Rows with a missing or non-positive area were dropped ({inp.summary['n_dropped_missing_area']}
missing, {inp.summary['n_dropped_nonpositive_area']} non-positive). Glaciers with fewer than
{inp.summary['min_obs']} observations are flagged. Details: <code>docs/trends.md</code>.</p></section>"""


_CSS = """
:root{--fg:#1d2733;--muted:#5b6b7b;--line:#d8dee6;--bg:#f6f8fa;--accent:#1f6fb2;--red:#b42318}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:#fff}
header{background:linear-gradient(135deg,#0f3d63,#1f6fb2);color:#fff;padding:28px 40px 22px}
header h1{margin:0 0 4px;font-size:28px;font-weight:650}
header p{margin:0;opacity:.9}
nav{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid var(--line);padding:8px 40px;font-size:14px}
nav a{color:var(--accent);text-decoration:none;margin-right:16px;white-space:nowrap}
main{max-width:1240px;margin:0 auto;padding:8px 40px 40px}
h2{font-size:21px;margin:34px 0 12px;padding-bottom:6px;border-bottom:2px solid var(--line)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:14px;margin:22px 0 8px}
.card{background:var(--bg);border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.card .big{font-size:24px;font-weight:650;color:#0f3d63}
.card .small{color:var(--muted);font-size:13px}
table{border-collapse:collapse;margin:10px 0 14px;font-size:14px;width:100%}
table.paper,table.narrow{width:auto;min-width:520px}
caption{text-align:left;font-weight:600;padding:4px 0;color:var(--muted)}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fbfcfd}
tr.total td{font-weight:650;border-top:2px solid #9aa8b6}
tr.flagged td{background:#fff6e5;color:#7a5a1a}
table.sortable th{cursor:pointer}
table.sortable th:hover{color:var(--accent)}
.scroll{max-height:560px;overflow:auto;border:1px solid var(--line);border-radius:6px}
.scroll table{margin:0}
figure{margin:14px 0 22px}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
figcaption{color:var(--muted);font-size:13px;margin-top:4px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:8px 18px}
.two{display:grid;grid-template-columns:minmax(300px,520px) 1fr;gap:18px;align-items:start}
.explain{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:14px;font-size:14px}
.explain p{background:var(--bg);border-left:3px solid var(--accent);padding:10px 12px;margin:0;border-radius:4px}
.note{color:var(--muted);font-size:13px}
.warnbox{background:#fff8eb;border:1px solid #f1c27d;border-radius:8px;padding:2px 18px;margin-top:20px}
.warnbox h2{border:none;margin-top:12px;font-size:17px}
.warn{color:var(--red)}
code{background:var(--bg);padding:1px 4px;border-radius:3px;font-size:13px}
footer{color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding:14px 40px 30px;max-width:1240px;margin:0 auto}
@media (max-width:800px){main,header,nav,footer{padding-left:14px;padding-right:14px}.two{grid-template-columns:1fr}}
"""

_JS = """
(function(){
  function sortBy(table, col, th){
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    var asc = th.getAttribute('data-dir') !== 'asc';
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(c){c.removeAttribute('data-dir');});
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    function key(r){var t = r.cells[col].textContent.replace('\\u2212','-').replace(/,/g,'');
      var v = parseFloat(t); return isNaN(v) || !/^[-+]?[0-9.]/.test(t) ? t.toLowerCase() : v;}
    rows.sort(function(a,b){var x = key(a), y = key(b);
      if (typeof x !== typeof y) return typeof x === 'number' ? -1 : 1;
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);});
    rows.forEach(function(r){body.appendChild(r);});
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, i){
      th.addEventListener('click', function(){sortBy(table, i, th);});});
  });
  function mark(){
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function(i){return i.complete && i.naturalWidth > 0;}).length;
    var tables = document.querySelectorAll('table').length;
    var rows = document.querySelectorAll('table tbody tr').length;
    document.body.dataset.rendered = 'tables=' + tables + ';rows=' + rows + ';images=' + imgs.length + ';images_ok=' + ok;
    var s = document.getElementById('render-status');
    if (s) s.textContent = 'Rendered ' + tables + ' tables and ' + ok + ' of ' + imgs.length + ' figures.';
  }
  if (document.readyState === 'complete') mark(); else window.addEventListener('load', mark);
})();
"""


def render_report(inp: ReportInputs) -> str:
    """The whole page as one HTML string."""
    sections = [
        ("map", "Map", _map_section(inp)),
        ("table2", "Table II", _table2_section(inp)),
        ("regions", "Regions", _regions_section(inp)),
        ("figure18", "Figure 18", _region_figures_section(inp)),
        ("truth", "Estimated vs true", _truth_section(inp)),
        ("inventory", "Inventory", _inventory_section(inp)),
        ("model", "Model", _model_section(inp)),
        ("glaciers", "Glaciers", _glacier_table_section(inp)),
        ("glacier-figures", "Glacier figures", _glacier_figures_section(inp)),
        ("validation", "Validation", _validation_section(inp)),
        ("methods", "Reading guide", _methods_section(inp)),
    ]
    nav = "".join(f'<a href="#{sid}">{_esc(title)}</a>' for sid, title, body in sections if body)
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(b for _, _, b in sections if b)
    title = f"Glacier area change \u2014 {inp.workdir.resolve().name}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{_CSS}</style></head>
<body data-rendered="pending">
<header><h1>Glacier area change</h1>
<p>{_esc(inp.summary['n_glaciers'])} glaciers from <code style="background:rgba(255,255,255,.15);color:#fff">{_esc(inp.areas_path)}</code>
 &middot; regional statistics by {_esc(inp.by)} &middot; generated {created}</p></header>
<nav>{nav}</nav>
<main>
{_cards(inp)}
{_notices_section(inp)}
{body}
</main>
<footer>glacierwatch {__version__} &middot; trends from <code>{_esc(inp.trends_dir)}</code> &middot;
method after Waismann, Budhwar &amp; Schwartzman (Appendix A) &middot; <span id="render-status">page script did not run</span></footer>
<script>{_JS}</script>
</body></html>
"""


def build_report(workdir: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None,
                 min_obs: int | None = None, by: str | None = None, rerun_trends: bool = False,
                 max_glacier_figures: int | None = DEFAULT_MAX_GLACIER_FIGURES,
                 overlay_glaciers: int = DEFAULT_OVERLAY_GLACIERS,
                 dem_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the report of a work folder (default ``WORKDIR/report/index.html``); return its path.

    The trends stage is run into ``WORKDIR/trends`` only when its outputs are missing (or with
    ``rerun_trends``); stale outputs are shown with a warning. ``overlay_glaciers``: glaciers drawn
    with overlays on a few dates (0: none); ``dem_dir``: the run's DEM folder for them (default
    ``WORKDIR/dem`` or ``WORKDIR/synthetic/dem``).
    """
    inputs = load_inputs(workdir, min_obs=min_obs, by=by, rerun_trends=rerun_trends,
                         max_glacier_figures=max_glacier_figures, overlay_glaciers=overlay_glaciers,
                         dem_dir=dem_dir)
    page = render_report(inputs)
    target = Path(out) if out is not None else Path(workdir) / REPORT
    if target.is_dir() or target.suffix.lower() not in {".html", ".htm"}:
        target = target / "index.html"
    with atomic_path(target) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("report written to %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


#: Alias used by the pipeline (``glacierwatch.pipeline``): same function.
write_report = build_report
