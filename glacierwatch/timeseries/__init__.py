"""Time-series stage: each glacier's area on every scene that passes the inference filter.

Public API: :func:`run_timeseries` (many glaciers, resumable, Dask-capable), :func:`glacier_areas`
(one glacier), segmenters (:class:`SegmenterSpec`, :class:`NDSISegmenter`, :class:`UNetSegmenter`,
:class:`OracleSegmenter`), :func:`smooth_stack` and :func:`smooth_block` (the same values for a block
of scenes, reading only the block and its halo).
"""

from glacierwatch.timeseries.areas import AREA_COLUMNS, glacier_areas, outline_on_grid
from glacierwatch.timeseries.run import TimeseriesOutputs, TimeseriesResult, read_areas, run_timeseries
from glacierwatch.timeseries.segmenters import (
    NDSISegmenter, OracleSegmenter, SegmenterSpec, UNetSegmenter, make_segmenter,
)
from glacierwatch.timeseries.stack import SMOOTHING_MODES, read_stack, smooth_block, smooth_stack

__all__ = [
    "AREA_COLUMNS", "NDSISegmenter", "OracleSegmenter", "SMOOTHING_MODES", "SegmenterSpec",
    "TimeseriesOutputs", "TimeseriesResult", "UNetSegmenter", "glacier_areas", "make_segmenter",
    "outline_on_grid", "read_areas", "read_stack", "run_timeseries", "smooth_block", "smooth_stack",
]
