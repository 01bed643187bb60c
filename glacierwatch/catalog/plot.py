"""Figure 7 of the paper: distributions of cloud cover, zero pixels, pixel counts and image quality of
the catalog's scenes, all readable scenes against those left after the inference filter."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from glacierwatch.catalog.queries import CatalogSource, query, select
from glacierwatch.config import CatalogConfig
from glacierwatch.io import atomic_path


def plot_catalog(catalog: CatalogSource, out: str | os.PathLike[str], *, config: CatalogConfig | None = None,
                 inventory: str | os.PathLike[str] | pd.DataFrame | None = None, dpi: int = 150) -> Path:
    """Write the four-panel figure (PNG, PDF or SVG by suffix) and return its path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    config = config or CatalogConfig()
    cols = "cloud_cover, zero_pixel_pct, n_pixels, image_quality"
    everything = query(catalog, f"SELECT {cols} FROM scenes WHERE status = 'ok'", inventory=inventory)
    kept = select(catalog, "inference", config=config, inventory=inventory)[
        ["cloud_cover", "zero_pixel_pct", "n_pixels", "image_quality"]]
    labels = (f"all readable scenes (n = {len(everything):,})", f"after the inference filter (n = {len(kept):,})")

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panels = [
        ("cloud_cover", "scene cloud cover (%)", np.linspace(0, 100, 51), False),
        ("zero_pixel_pct", "zero values (% of all values)", np.linspace(0, 100, 51), False),
        ("n_pixels", "values in the box (height x width x bands)", None, True),
        ("image_quality", "image quality (IMAGE_QUALITY / _OLI)", np.arange(-0.5, 10.5, 1.0), False),
    ]
    for ax, (column, title, bins, log_x) in zip(axes.ravel(), panels, strict=True):
        series = [pd.to_numeric(df[column], errors="coerce").dropna().to_numpy(float) for df in (everything, kept)]
        if log_x:
            positive = np.concatenate([s[s > 0] for s in series]) if any(len(s) for s in series) else np.array([])
            lo, hi = (positive.min(), positive.max()) if len(positive) else (1.0, 10.0)
            bins = np.logspace(np.log10(lo), np.log10(max(hi, lo * 1.01)), 41)
            ax.set_xscale("log")
            ax.axvline(config.min_pixels, color="k", ls="--", lw=1, label=f"> {config.min_pixels:,}")
        for values, label, color in zip(series, labels, ("0.75", "tab:blue"), strict=True):
            if len(values):
                ax.hist(values, bins=bins, color=color, label=label, alpha=0.9 if color == "0.75" else 0.8)
        if column == "cloud_cover":
            ax.axvline(config.max_cloud_cover, color="k", ls="--", lw=1, label=f"< {config.max_cloud_cover:g} %")
        if column == "zero_pixel_pct":
            ax.axvline(config.max_zero_pixel_pct, color="k", ls="--", lw=1, label=f"< {config.max_zero_pixel_pct:g} %")
        ax.set_xlabel(title)
        ax.set_ylabel("scenes")
    axes[0, 0].legend(fontsize=8)
    for ax in axes.ravel()[1:]:
        ax.legend(fontsize=7)
    fig.suptitle("Scene metadata before and after the inference filter")
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format=out.suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    return out
