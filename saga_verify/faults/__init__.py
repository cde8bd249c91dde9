"""The fault model: where faults get decided (delivery points), which faults exist, and plans."""

from ._kinds import (
    FAULT_KINDS,
    Crash,
    Delay,
    DeliveryPoint,
    Duplicate,
    FailBeforeEffect,
    Fault,
    FaultTemplate,
    LoseReply,
    Outage,
    Pause,
    Refuse,
    Timeout,
)
from ._plan import FaultPlan, write_atomically

__all__ = [
    "FAULT_KINDS",
    "Crash",
    "Delay",
    "DeliveryPoint",
    "Duplicate",
    "FailBeforeEffect",
    "Fault",
    "FaultPlan",
    "FaultTemplate",
    "LoseReply",
    "Outage",
    "Pause",
    "Refuse",
    "Timeout",
    "write_atomically",
]

from ._alphabet import templates_for
from ._strategies import fault_plans

__all__ += ["fault_plans", "templates_for"]
