"""saga-verify: find the failure schedules under which a saga breaks its promises.

The public API is what ``__all__`` lists; everything else is private. Names load on first use,
so that the pytest plugin costs nothing until a test asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # defining a saga
    "Saga": "._saga",
    "Step": "._saga",
    "load_saga": "._saga",
    "Ledger": ".world",
    "LedgerRow": ".world",
    "HttpParticipant": ".world",
    "Services": ".world",
    "VirtualClock": ".world",
    # faults and plans
    "DeliveryPoint": ".faults",
    "Fault": ".faults",
    "FailBeforeEffect": ".faults",
    "Timeout": ".faults",
    "LoseReply": ".faults",
    "Crash": ".faults",
    "Refuse": ".faults",
    "Duplicate": ".faults",
    "Delay": ".faults",
    "Outage": ".faults",
    "Pause": ".faults",
    "FaultPlan": ".faults",
    "fault_plans": ".faults",
    # invariants
    "Invariant": ".invariants",
    "Violation": ".invariants",
    "invariant": ".invariants",
    "standard_invariants": ".invariants",
    "no_double_effect": ".invariants",
    "compensation_matches_effect": ".invariants",
    "full_compensation": ".invariants",
    "all_or_nothing": ".invariants",
    "terminates": ".invariants",
    "no_unhandled_error": ".invariants",
    "reverse_compensation_order": ".invariants",
    "no_forward_after_compensation": ".invariants",
    "irreversible_last": ".invariants",
    # running and exploring
    "run_plan": ".world",
    "Execution": ".world",
    "TraceEntry": ".world",
    "explore": ".exploration",
    "verify": ".exploration",
    "replay": ".exploration",
    "ExplorationResult": ".exploration",
    "Failure": ".exploration",
    # errors
    "SagaVerifyError": "._errors",
    "PlanError": "._errors",
    "SagaDefinitionError": "._errors",
    "SagaCrashedError": "._errors",
    "NondeterminismError": "._errors",
    "OptionError": "._errors",
    "SagaViolationError": "._errors",
}

__all__ = [
    "__version__",
    "Saga",
    "Step",
    "load_saga",
    "Ledger",
    "LedgerRow",
    "HttpParticipant",
    "Services",
    "VirtualClock",
    "DeliveryPoint",
    "Fault",
    "FailBeforeEffect",
    "Timeout",
    "LoseReply",
    "Crash",
    "Refuse",
    "Duplicate",
    "Delay",
    "Outage",
    "Pause",
    "FaultPlan",
    "fault_plans",
    "Invariant",
    "Violation",
    "invariant",
    "standard_invariants",
    "no_double_effect",
    "compensation_matches_effect",
    "full_compensation",
    "all_or_nothing",
    "terminates",
    "no_unhandled_error",
    "reverse_compensation_order",
    "no_forward_after_compensation",
    "irreversible_last",
    "run_plan",
    "Execution",
    "TraceEntry",
    "explore",
    "verify",
    "replay",
    "ExplorationResult",
    "Failure",
    "SagaVerifyError",
    "PlanError",
    "SagaDefinitionError",
    "SagaCrashedError",
    "NondeterminismError",
    "OptionError",
    "SagaViolationError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'saga_verify' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from ._errors import (
        NondeterminismError,
        OptionError,
        PlanError,
        SagaCrashedError,
        SagaDefinitionError,
        SagaVerifyError,
        SagaViolationError,
    )
    from ._saga import Saga, Step, load_saga
    from .exploration import ExplorationResult, Failure, explore, replay, verify
    from .faults import (
        Crash,
        Delay,
        DeliveryPoint,
        Duplicate,
        FailBeforeEffect,
        Fault,
        FaultPlan,
        LoseReply,
        Outage,
        Pause,
        Refuse,
        Timeout,
        fault_plans,
    )
    from .invariants import (
        Invariant,
        Violation,
        all_or_nothing,
        compensation_matches_effect,
        full_compensation,
        invariant,
        irreversible_last,
        no_double_effect,
        no_forward_after_compensation,
        no_unhandled_error,
        reverse_compensation_order,
        standard_invariants,
        terminates,
    )
    from .world import Execution, HttpParticipant, Ledger, LedgerRow, Services, TraceEntry, VirtualClock, run_plan
