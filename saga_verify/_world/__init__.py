"""The simulated world: transport seam (plain calls and httpx), virtual clock, network that holds
and duplicates requests, ledgers, and the trace of one deterministic execution.

httpx loads only with `HttpParticipant` (and the in-process ASGI transport): a world of plain
Python participants, and everything that reads executions (invariants), never needs it."""

from typing import Any

from ._bus import BusHandle, BusRecord, DeadLetter, Delivery, Message, MessageBroker, SimBus
from ._clock import VirtualClock
from ._current import current_services
from ._events import Moment
from ._execution import Execution
from ._ledger import Ledger, LedgerRow
from ._services import Endpoint, Services
from ._trace import OUTCOMES, TraceEntry, trace_to_json
from ._world import Transported, World, plan_chooser, run_plan

__all__ = [
    "OUTCOMES",
    "BusHandle",
    "BusRecord",
    "DeadLetter",
    "Delivery",
    "Message",
    "MessageBroker",
    "SimBus",
    "Endpoint",
    "Execution",
    "HttpParticipant",
    "Ledger",
    "LedgerRow",
    "Moment",
    "Services",
    "SyncASGITransport",
    "TraceEntry",
    "Transported",
    "VirtualClock",
    "World",
    "current_services",
    "plan_chooser",
    "run_plan",
    "trace_to_json",
]

_LAZY = {"HttpParticipant": "._http", "SyncASGITransport": "._asgi"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
