"""Trends stage: relative area change per glacier and per region (the paper's Appendix A,
Figures 13, 16, 18 and Table II). See ``docs/trends.md``.

Rates are fractions per year (the slope of ln(area) on the decimal year): -0.01 = -1 % per year.
"""

from glacierwatch.trends.core import (
    REQUIRED_COLUMNS,
    TOTAL,
    PAPER_OPTIONS,
    AreaCounts,
    TrendOptions,
    TrendResult,
    annual_geomean,
    compute_trends,
    decimal_year,
    geomean_rate,
    glacier_trends,
    panel_rate,
    prepare_areas,
    region_trends,
    table2,
    table2_markdown,
    weighted_mean_rate,
)
from glacierwatch.trends.figures import glacier_figure, inventory_figure, make_figures, region_figure
from glacierwatch.trends.stage import annual_table_path, read_areas, write_trends

__all__ = [
    "PAPER_OPTIONS", "REQUIRED_COLUMNS", "TOTAL", "AreaCounts", "TrendOptions", "annual_table_path", "TrendResult", "annual_geomean", "compute_trends",
    "decimal_year", "geomean_rate", "glacier_figure", "glacier_trends", "inventory_figure",
    "make_figures", "panel_rate", "prepare_areas", "read_areas", "region_figure", "region_trends",
    "table2", "table2_markdown", "weighted_mean_rate", "write_trends",
]
