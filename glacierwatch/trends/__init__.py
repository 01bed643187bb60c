"""Trends stage: relative area change per glacier and per region (the paper's Appendix A,
Figures 13, 16, 18 and Table II). See ``docs/trends.md``.

Rates are fractions per year (the slope of ln(area) on the decimal year): -0.01 = -1 % per year.

Names load on first use (PEP 562), so importing a submodule (``trends.cli`` for ``--help``)
does not import statsmodels or matplotlib.
"""

from __future__ import annotations

from glacierwatch.lazy import lazy_exports

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "AreaCounts": "core",
    "PAPER_OPTIONS": "core",
    "REQUIRED_COLUMNS": "core",
    "TOTAL": "core",
    "TrendOptions": "core",
    "TrendResult": "core",
    "annual_geomean": "core",
    "annual_table_path": "stage",
    "compute_trends": "core",
    "decimal_year": "core",
    "geomean_rate": "core",
    "glacier_figure": "figures",
    "glacier_trends": "core",
    "inventory_figure": "figures",
    "make_figures": "figures",
    "panel_rate": "core",
    "prepare_areas": "core",
    "read_areas": "stage",
    "region_figure": "figures",
    "region_trends": "core",
    "table2": "core",
    "table2_markdown": "core",
    "weighted_mean_rate": "core",
    "write_trends": "stage",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
