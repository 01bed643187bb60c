"""Synthetic Landsat world with known truth (``glacierwatch synth``).

``make_world(out_dir, ...)`` writes GLIMS-like outlines, per-glacier Landsat C2 L2 scene files with
Earth Engine metadata, DEMs and the exact truth (true masks via a potential field and levels, true
areas and relative change rates); see :mod:`glacierwatch.synth.world` and ``docs/CONTRACTS.md``.
"""

from glacierwatch.synth.world import (
    TREND_COLUMNS,
    TRUTH_COLUMNS,
    WorldInfo,
    load_world,
    make_world,
    make_world_from_config,
    true_mask,
)

__all__ = ["TREND_COLUMNS", "TRUTH_COLUMNS", "WorldInfo", "load_world", "make_world", "make_world_from_config",
           "true_mask"]
