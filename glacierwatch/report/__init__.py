"""Report stage: one self-contained HTML page (``WORKDIR/report/index.html``) with Table II, the
regional estimates, Figures 13, 16 and 18, and, where the work folder has them, estimated-versus-true
rates, the model's metrics and scene counts. See ``docs/trends.md``."""

from glacierwatch.report.builder import ReportInputs, build_report, load_inputs, render_report, write_report

__all__ = ["ReportInputs", "build_report", "load_inputs", "render_report", "write_report"]
