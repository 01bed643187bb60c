"""Figures of the trends stage (the paper's Figures 13, 16 and 18), drawn with matplotlib's
object-oriented API (no pyplot, no global backend switch), saved as PNG.

* ``glacier_<GLIMS_ID>.png`` (Figure 16): one glacier's areas, annual means and fitted trend.
* ``region_<name>.png`` (Figure 18): left, each glacier normalised to its own geometric mean (grey),
  the regional geometric mean per calendar year (black), its log-linear fit (blue) and the panel
  slope (dashed); right, the histogram of glacier rates with the weighted mean +/- 2 SE (red).
* ``inventory_summary.png`` (Figure 13): observations per glacier and glaciers per year.

``figures.json`` beside them lists every figure: ``kind`` (glacier, region, inventory), ``name``
(glacier id or region) and ``file``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from glacierwatch.config import TrendsConfig
from glacierwatch.layout import FIGURES_MANIFEST
from glacierwatch.trends.core import TOTAL, TrendResult, _included, geomean_rate

#: Default cap on per-glacier figures (a run over thousands of glaciers writes this many).
DEFAULT_MAX_GLACIER_FIGURES = TrendsConfig().max_glacier_figures
DPI = 100

_GREY = "0.55"
_BLUE = "tab:blue"
_RED = "tab:red"


def _pct(value: float, digits: int = 3, sign: bool = True) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value * 100:{'+' if sign else ''}.{digits}f}"


def safe_name(text: str) -> str:
    """A file-name-safe form of a glacier id or region name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    return slug or "unnamed"


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


# ---------------------------------------------------------------- Figure 16

def glacier_figure(result: TrendResult, glims_id: str) -> Figure:
    """Area over time, annual means and the fitted trend of one glacier (the paper's Figure 16)."""
    row = result.glaciers.loc[result.glaciers["glims_id"] == glims_id]
    if row.empty:
        raise KeyError(f"no glacier {glims_id!r} in the trend result")
    g = row.iloc[0]
    obs = result.observations.loc[result.observations["glims_id"] == glims_id].sort_values("t")
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(obs["t"], obs["area_km2"], "o", ms=3.5, color=_GREY, alpha=0.75, label="area per scene")
    annual = obs.groupby("year").agg(t=("t", "mean"), area=("area_km2", "mean"))
    ax.plot(annual["t"], annual["area"], "s-", ms=4, lw=1, color="black", label="annual mean")
    slope, intercept = g["rel_change_per_year"], g["intercept"]
    if np.isfinite(slope):
        tt = np.linspace(obs["t"].min(), obs["t"].max(), 100)
        ax.plot(tt, np.exp(intercept + slope * tt), lw=2, color=_BLUE,
                label=f"log-linear fit: {_pct(slope)} %/yr")
    title = (f"{glims_id} ({g['region']}): {_pct(slope)} ± {_pct(g['rel_change_se'], sign=False)} %/yr, "
             f"{int(g['n_obs'])} observations")
    low, high = g.get("rel_change_ci95_low", np.nan), g.get("rel_change_ci95_high", np.nan)
    if np.isfinite(low) and np.isfinite(high):
        # the paper's classical SE stays in the title; the interval to quote follows it
        title += f"\n95 % interval {_pct(low)} to {_pct(high)} %/yr (autocorrelation and systematic error)"
    if g["flagged"]:
        title += f"\nflagged: {g['flag_reason']} (not in regional estimates)"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("year")
    ax.set_ylabel("area (km²)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


# ---------------------------------------------------------------- Figure 18

def region_figure(result: TrendResult, name: str) -> Figure:
    """Normalised series, geometric mean and fits (left) and the histogram of glacier rates (right)
    for one region or ``Total`` (the paper's Figure 18)."""
    by = result.by
    reg = result.regions.loc[result.regions[by] == name]
    if reg.empty:
        raise KeyError(f"no {by} {name!r} in the trend result")
    r = reg.iloc[0]
    glaciers = _included(result.glaciers if name == TOTAL else result.glaciers.loc[result.glaciers[by] == name])
    obs = result.observations.loc[result.observations["glims_id"].isin(glaciers["glims_id"])]
    annual = result.annual.loc[result.annual[by] == name]
    label = "All regions" if name == TOTAL else str(name)

    fig = Figure(figsize=(12, 4.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.6, 1])
    if glaciers.empty:
        for ax in (ax1, ax2):
            ax.text(0.5, 0.5, "no glacier passes the observation filter", ha="center", va="center",
                    transform=ax.transAxes)
        fig.suptitle(label)
        return fig

    first = True
    for _, g in obs.groupby("glims_id"):
        g = g.sort_values("t")
        ax1.plot(g["t"], np.exp(g["ln_area"] - g["ln_area"].mean()), "-", lw=0.7, color=_GREY, alpha=0.45,
                 label="glaciers (area / own geometric mean)" if first else None)
        first = False
    ref = float(obs["ln_area"].mean())
    ax1.plot(annual["t"], np.exp(annual["mean_ln_area"] - ref), "o-", ms=3, lw=1.2, color="black",
             label="geometric mean per year (÷ regional mean)")
    tt = np.linspace(obs["t"].min(), obs["t"].max(), 100)
    g_slope, _, g_intercept = geomean_rate(annual)
    if np.isfinite(g_slope):
        ax1.plot(tt, np.exp(g_intercept + g_slope * tt - ref), lw=2, color=_BLUE,
                 label=f"fit to geometric mean: {_pct(g_slope)} %/yr")
    p_slope = r["panel_rel_change_per_year"]
    if np.isfinite(p_slope):
        ax1.plot(tt, np.exp(p_slope * (tt - obs["t"].mean())), "--", lw=1.5, color="tab:orange",
                 label=f"panel (fixed effects): {_pct(p_slope)} %/yr")
    ax1.set_xlabel("year")
    ax1.set_ylabel("relative area")
    ax1.set_title(f"{label}: {int(r['n_glaciers'])} glaciers, {int(r['n_obs'])} observations", fontsize=11)
    ax1.grid(alpha=0.3)
    ax1.legend(loc="best", fontsize=8)

    rates = glaciers["rel_change_per_year"].to_numpy() * 100
    bins = int(np.clip(np.sqrt(rates.size) * 2, 5, 40))
    ax2.hist(rates, bins=bins, color=_BLUE, alpha=0.8, edgecolor="white")
    mean, se = r["rel_change_per_year"], r["se"]
    ax2.axvline(0, color="0.3", lw=0.8)
    ax2.axvline(mean * 100, color=_RED, lw=2, label=f"weighted mean {_pct(mean)} %/yr")
    if np.isfinite(se):
        for k, x in enumerate(((mean - 2 * se) * 100, (mean + 2 * se) * 100)):
            ax2.axvline(x, color=_RED, ls="--", lw=1.3, label="± 2 SE" if k == 0 else None)
    ax2.set_xlabel("relative area change (% per year)")
    ax2.set_ylabel("glaciers")
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    se_text = f"± {_pct(2 * se, sign=False)} (2 SE)" if np.isfinite(se) else "(no SE: one glacier)"
    ax2.set_title(f"weighted mean {_pct(mean)} %/yr {se_text}", fontsize=11)
    ax2.grid(alpha=0.3)
    ax2.legend(loc="best", fontsize=8)
    return fig


# ---------------------------------------------------------------- Figure 13

def inventory_figure(result: TrendResult) -> Figure:
    """Observations per glacier (left) and glaciers with observations per year (right), Figure 13."""
    obs = result.observations
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    n_obs = result.glaciers["n_obs"].to_numpy()
    bins = int(np.clip(np.sqrt(n_obs.size) * 2, 5, 40))
    ax1.hist(n_obs, bins=bins, color=_BLUE, alpha=0.85, edgecolor="white")
    ax1.axvline(result.min_obs, color=_RED, ls="--", lw=1.2, label=f"min_obs = {result.min_obs}")
    ax1.set_xlabel("images per glacier")
    ax1.set_ylabel("glaciers")
    ax1.set_title(f"{len(obs)} images of {len(n_obs)} glaciers", fontsize=11)
    ax1.legend(fontsize=8)
    per_year = obs.groupby("year")["glims_id"].nunique()
    ax2.bar(per_year.index, per_year.to_numpy(), color=_BLUE, alpha=0.85, width=0.85)
    ax2.set_xlabel("year")
    ax2.set_ylabel("glaciers with images")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_title("glaciers per year", fontsize=11)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    return fig


# ---------------------------------------------------------------- all of them

def select_glaciers(glaciers: pd.DataFrame, max_n: int | None = DEFAULT_MAX_GLACIER_FIGURES) -> list[str]:
    """Glacier ids to draw: all if ``max_n`` is None, else the ``max_n`` glaciers with the most
    observations (unflagged first, ties by id), returned in (region, id) order."""
    if max_n is None or max_n >= len(glaciers):
        chosen = glaciers
    else:
        order = glaciers.assign(_f=glaciers["flagged"].astype(bool), _n=-glaciers["n_obs"])
        chosen = order.sort_values(["_f", "_n", "glims_id"]).head(max(int(max_n), 0))
    return list(chosen.sort_values(["region", "glims_id"])["glims_id"])


def make_figures(result: TrendResult, out_dir: str | Path, *,
                 max_glacier_figures: int | None = DEFAULT_MAX_GLACIER_FIGURES) -> list[Path]:
    """Write every figure and ``figures.json`` into ``out_dir``; return the paths written.

    ``max_glacier_figures``: at most this many per-glacier figures (None: all, 0: none).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest: list[dict[str, Any]] = []
    written: list[Path] = []
    used: set[str] = set()

    def save(fig: Figure, stem: str, kind: str, name: str) -> None:
        base, k = stem, 1
        while stem.lower() in used:
            k += 1
            stem = f"{base}-{k}"
        used.add(stem.lower())
        path = out / f"{stem}.png"
        fig.savefig(path, format="png", dpi=DPI)
        manifest.append({"kind": kind, "name": name, "file": path.name})
        written.append(path)

    save(inventory_figure(result), "inventory_summary", "inventory", "inventory")
    for name in result.regions[result.by].astype(str):
        save(region_figure(result, name), f"region_{safe_name(name).lower()}", "region", name)
    for gid in select_glaciers(result.glaciers, max_glacier_figures):
        save(glacier_figure(result, gid), f"glacier_{safe_name(gid)}", "glacier", gid)
    manifest_path = out / FIGURES_MANIFEST
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    written.append(manifest_path)
    return written
