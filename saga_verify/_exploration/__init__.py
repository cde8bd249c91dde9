"""Exploration: the database replay, the exhaustive bounded sweep, the Hypothesis search,
minimisation and replay; what a search covered."""

from ._coverage import Cell, Coverage
from ._search import (
    DEFAULT_REPORT_DIR,
    DEFAULT_SWEEP_BUDGET,
    DEFAULT_SWEEP_FAULTS,
    ExplorationResult,
    Failure,
    Progress,
    compare_traces,
    decision_strategies,
    explore,
    replay,
)
from ._sweep import SweepSummary, reached_points, run_plan_unchecked, sweep

__all__ = [
    "Cell",
    "Coverage",
    "DEFAULT_REPORT_DIR",
    "DEFAULT_SWEEP_BUDGET",
    "DEFAULT_SWEEP_FAULTS",
    "ExplorationResult",
    "Failure",
    "Progress",
    "SweepSummary",
    "compare_traces",
    "decision_strategies",
    "explore",
    "reached_points",
    "replay",
    "run_plan_unchecked",
    "sweep",
]
