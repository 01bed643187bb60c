"""Report stage: one self-contained HTML page (``WORKDIR/report/index.html``) with a map, Table II, the
regional estimates, Figures 13, 16 and 18, and, where the work folder has them, estimated-versus-true
rates, the model's metrics, scene counts and the validation. See ``docs/trends.md``.

The names are loaded on first use (PEP 562), so ``glacierwatch report --help`` does not import
matplotlib and statsmodels through :mod:`glacierwatch.report.builder`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from glacierwatch.report.builder import ReportInputs, build_report, load_inputs, render_report, write_report

__all__ = ["ReportInputs", "build_report", "load_inputs", "render_report", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("glacierwatch.report.builder"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
