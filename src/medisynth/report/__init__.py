"""The evaluation report: plots (matplotlib, PNG bytes) and one self-contained HTML page."""
from medisynth.report.html import render_report

__all__ = ["render_report"]
