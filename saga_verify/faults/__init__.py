"""The fault model: where faults get decided (delivery points), which faults exist, and plans.

`fault_plans` (a Hypothesis strategy) loads Hypothesis when it is first used, not before."""

from typing import TYPE_CHECKING, Any

from ._alphabet import templates_for
from ._kinds import (
    COORDINATOR_CRASHES,
    FAULT_KINDS,
    CoordinatorCrashAfter,
    CoordinatorCrashBefore,
    Corrupt,
    Crash,
    Delay,
    DeliveryPoint,
    Drop,
    Duplicate,
    FailBeforeEffect,
    Fault,
    FaultTemplate,
    LoseReply,
    Outage,
    Pause,
    Refuse,
    Switch,
    Timeout,
)
from ._plan import FaultPlan

__all__ = [
    "COORDINATOR_CRASHES",
    "FAULT_KINDS",
    "CoordinatorCrashAfter",
    "CoordinatorCrashBefore",
    "Corrupt",
    "Crash",
    "Delay",
    "DeliveryPoint",
    "Drop",
    "Duplicate",
    "FailBeforeEffect",
    "Fault",
    "FaultPlan",
    "FaultTemplate",
    "LoseReply",
    "Outage",
    "Pause",
    "Refuse",
    "Switch",
    "Timeout",
    "fault_plans",
    "templates_for",
]


if TYPE_CHECKING:
    from ._strategies import fault_plans


def __getattr__(name: str) -> Any:
    if name == "fault_plans":
        from ._strategies import fault_plans

        globals()[name] = fault_plans
        return fault_plans
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
