"""Exploration: the database replay, the exhaustive bounded sweep, the Hypothesis search,
minimisation and replay."""

from ._search import (
    DEFAULT_REPORT_DIR,
    DEFAULT_SWEEP_BUDGET,
    DEFAULT_SWEEP_FAULTS,
    ExplorationResult,
    Failure,
    compare_traces,
    decision_strategies,
    explore,
    replay,
)
from ._sweep import reached_points, run_plan_unchecked, sweep

__all__ = [
    "DEFAULT_REPORT_DIR",
    "DEFAULT_SWEEP_BUDGET",
    "DEFAULT_SWEEP_FAULTS",
    "ExplorationResult",
    "Failure",
    "compare_traces",
    "decision_strategies",
    "explore",
    "reached_points",
    "replay",
    "run_plan_unchecked",
    "sweep",
]
