"""saga-verify: find the failure schedules under which a saga breaks its promises.

The public API is what ``__all__`` lists; everything else is private. The values a saga is made
of load with the package; the search (Hypothesis) and the HTTP seam (httpx) load on first use,
so that the pytest plugin costs nothing until a test asks for it. More lives in the public
namespaces ``saga_verify.faults`` (the fault kinds), ``saga_verify.invariants`` (the built-in
invariants), ``saga_verify.errors``, ``saga_verify.contracts``, ``saga_verify.containers`` and
``saga_verify.proxy``, ``saga_verify.systems`` (your own services) and
``saga_verify.reference`` (the reference system).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._choreography import Choreography, Handler
from ._saga import Actor, Durable, Saga, Step, load_saga
from ._system import Service, System
from ._world import Execution, Ledger, LedgerRow, TraceEntry, current_services
from .errors import SagaVerifyError, SagaViolationError
from .faults import FaultPlan
from .invariants import Invariant, Violation, invariant

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # defining a saga
    "Saga",
    "Step",
    "Durable",
    "Actor",
    "load_saga",
    "Ledger",
    "LedgerRow",
    "HttpParticipant",
    "System",
    "Service",
    "current_services",
    "Choreography",
    "Handler",
    # plans and what must hold
    "FaultPlan",
    "Invariant",
    "Violation",
    "invariant",
    # running and exploring
    "explore",
    "verify",
    "replay",
    "run_plan",
    "report",
    "ExplorationResult",
    "Failure",
    "Execution",
    "TraceEntry",
    # errors (the rest are in saga_verify.errors)
    "SagaVerifyError",
    "SagaViolationError",
]

#: Names that load their module on first use (it imports Hypothesis or httpx).
_LAZY: dict[str, str] = {
    "HttpParticipant": "._world._http",
    "explore": "._verify",
    "verify": "._verify",
    "replay": "._verify",
    "run_plan": "._verify",
    "report": "._verify",
    "ExplorationResult": "._exploration",
    "Failure": "._exploration",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'saga_verify' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from ._exploration import ExplorationResult, Failure
    from ._verify import explore, replay, report, run_plan, verify
    from ._world._http import HttpParticipant
