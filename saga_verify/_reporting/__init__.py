"""Reporting: timelines and failure reports, the HTML report with sequence diagrams and the
coverage matrix, CI properties and annotations, regression tests from failures, and progress on
a terminal."""

from ._ci import GITHUB_ACTIONS, annotations_from_properties, failure_annotation, in_github_actions, junit_properties
from ._diagram import sequence_diagram
from ._html import (
    REPORT_FILE,
    RenderedSection,
    SagaSection,
    bound_proven,
    check_report_dir,
    render_page,
    render_section,
    verdict,
    write_report,
)
from ._progress import TerminalProgress
from ._regression import append_regression, regression_id, regression_test
from ._timeline import (
    distinct_head,
    render_entry,
    render_execution,
    render_failure,
    render_result,
    render_sweep,
    render_timeline,
)

__all__ = [
    "GITHUB_ACTIONS",
    "REPORT_FILE",
    "RenderedSection",
    "SagaSection",
    "TerminalProgress",
    "annotations_from_properties",
    "append_regression",
    "bound_proven",
    "check_report_dir",
    "distinct_head",
    "failure_annotation",
    "in_github_actions",
    "junit_properties",
    "regression_id",
    "regression_test",
    "render_entry",
    "render_execution",
    "render_failure",
    "render_page",
    "render_result",
    "render_section",
    "render_sweep",
    "render_timeline",
    "sequence_diagram",
    "verdict",
    "write_report",
]
