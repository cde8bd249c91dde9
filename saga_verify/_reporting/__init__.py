"""Reporting: timelines, failure reports and replay lines."""

from ._timeline import render_entry, render_execution, render_failure, render_result, render_timeline

__all__ = ["render_entry", "render_execution", "render_failure", "render_result", "render_timeline"]
