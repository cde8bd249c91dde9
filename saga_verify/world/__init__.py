"""The simulated world: transport seam (plain calls and httpx), virtual clock, network that holds
and duplicates requests, ledgers, and the trace of one deterministic execution."""

from ._clock import VirtualClock
from ._http import HttpParticipant
from ._ledger import Ledger, LedgerRow
from ._trace import OUTCOMES, TraceEntry, trace_to_json
from ._world import Endpoint, Execution, Services, World, plan_chooser, run_plan

__all__ = [
    "OUTCOMES",
    "Endpoint",
    "Execution",
    "HttpParticipant",
    "Ledger",
    "LedgerRow",
    "Services",
    "TraceEntry",
    "VirtualClock",
    "World",
    "plan_chooser",
    "run_plan",
    "trace_to_json",
]
