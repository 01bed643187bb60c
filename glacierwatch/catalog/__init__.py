"""The scene catalog: one row per scene file (provider metadata, raster statistics inside the
glacier's box, status), written as Parquet and queried with SQL (DuckDB), plus the paper's scene
selections as parameterised SQL files.

    >>> from glacierwatch.catalog import build_catalog, select
    >>> build_catalog("work/scenes", "work/catalog.parquet", workers=4)   # doctest: +SKIP
    >>> select("work/catalog.parquet", "inference")                       # doctest: +SKIP

Columns: :mod:`glacierwatch.catalog.schema` (rendered in docs/catalog.md).
"""

from glacierwatch.catalog.build import build_catalog
from glacierwatch.catalog.metadata import ProviderRecord, deduplicate, parse_metadata_file
from glacierwatch.catalog.queries import SELECTIONS, connect, query, select, selection_params, selection_sql
from glacierwatch.catalog.schema import COLUMN_NAMES, COLUMNS, REQUIRED_COLUMNS, STATUS_VALUES, Column
from glacierwatch.layout import SceneName, parse_scene_name, scene_file_name, scene_path

__all__ = [
    "COLUMNS", "COLUMN_NAMES", "REQUIRED_COLUMNS", "SELECTIONS", "STATUS_VALUES", "Column", "ProviderRecord",
    "SceneName", "build_catalog", "connect", "deduplicate", "parse_metadata_file", "parse_scene_name",
    "plot_catalog", "query", "scene_file_name", "scene_path", "select", "selection_params", "selection_sql",
]


def plot_catalog(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Figure 7 of the paper; see :func:`glacierwatch.catalog.plot.plot_catalog` (imports matplotlib lazily)."""
    from glacierwatch.catalog.plot import plot_catalog as _plot

    return _plot(*args, **kwargs)
