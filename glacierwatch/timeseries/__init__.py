"""Time-series stage: each glacier's area on every scene that passes the inference filter.

Public API: :func:`run_timeseries` (many glaciers, resumable, Dask-capable), :func:`glacier_areas`
(one glacier), segmenters (:class:`SegmenterSpec`, :class:`NDSISegmenter`, :class:`UNetSegmenter`,
:class:`OracleSegmenter`), :func:`smooth_stack` and :func:`smooth_block` (the same values for a block
of scenes, reading only the block and its halo).

Names load on first use (PEP 562), so importing a submodule (``timeseries.cli`` for ``--help``)
does not import torch.
"""

from __future__ import annotations

from glacierwatch.lazy import lazy_exports

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "ANNUAL_COLUMNS": "annual",
    "AREA_COLUMNS": "areas",
    "NDSISegmenter": "segmenters",
    "OracleSegmenter": "segmenters",
    "SMOOTHING_MODES": "stack",
    "SegmenterSpec": "segmenters",
    "TimeseriesOutputs": "run",
    "TimeseriesResult": "run",
    "UNetSegmenter": "segmenters",
    "annual_areas": "annual",
    "glacier_areas": "areas",
    "make_segmenter": "segmenters",
    "outline_on_grid": "areas",
    "read_areas": "run",
    "read_stack": "stack",
    "run_timeseries": "run",
    "smooth_block": "stack",
    "smooth_stack": "stack",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
