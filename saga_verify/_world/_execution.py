"""A finished execution: its status, trace, ledgers, participants and injected faults, what
invariants and reports read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .._saga import TERMINAL_STATUSES, Saga
from ..faults._kinds import Fault
from ..faults._plan import FaultPlan
from ._actors import ActorRun
from ._bus import BusRecord
from ._events import Moment
from ._ledger import LedgerRow
from ._trace import TraceEntry

_TERMINAL = frozenset(TERMINAL_STATUSES)


@dataclass(frozen=True)
class Execution:
    """A finished execution: what invariants and reports read."""

    saga: Saga
    status: str
    """``completed``, ``compensated``, ``failed``, or ``halted`` / ``crashed`` / an unrecognised value."""
    result: Any
    """What the saga returned (None if it raised or was halted)."""
    error: BaseException | None
    """The exception the saga raised, if it raised."""
    halted: str | None
    """Why the harness stopped the saga, if it did (budget exceeded)."""
    trace: tuple[TraceEntry, ...]
    ledgers: Mapping[str, tuple[LedgerRow, ...]]
    participants: Mapping[str, object]
    """The participant objects themselves, for invariants that read their state."""
    faults: tuple[Fault, ...]
    """The faults that were injected, in order (reporting only; invariants should not need it)."""
    seed: int = 0
    correlation_id: str = ""
    elapsed: float = 0.0
    """Virtual seconds from start to the last delivery."""
    returned_at: float | None = None
    """Virtual seconds from start to when the saga's code returned or raised (None if it was
    stopped)."""
    moments: tuple[Moment, ...] = ()
    """What happened to time besides the deliveries (waits for events, back-offs, the deadline
    passing), in time order: for the timeline."""
    actors: tuple[ActorRun, ...] = ()
    """How each actor ended, the saga's own instance first, when the saga declares other actors
    (``Saga(actors=...)``); empty otherwise."""
    owned: frozenset[str] = frozenset()
    """The saga instances provably still owned when the execution ended, as the saga's
    ``Durable(owned=...)`` says (a live lease); empty without it."""
    bus: BusRecord | None = None
    """What the message bus did (published, delivered, dead-lettered), when the saga is a
    choreography; None otherwise."""
    _rows: tuple[LedgerRow, ...] = field(default=(), repr=False)

    def status_of(self, correlation_id: str) -> str:
        """The status of one saga instance: of the first of its actors (in declared order) that
        reached a terminal status, else of its first actor. With no other actors, ``status``."""
        if not self.actors:
            return self.status
        mine = [a.status for a in self.actors if a.correlation_id == correlation_id]
        if not mine:
            return self.status
        return next((s for s in mine if s in _TERMINAL), mine[0])

    @property
    def plan(self) -> FaultPlan:
        """The injected faults as a plan that replays this execution."""
        return FaultPlan(self.faults, seed=self.seed, saga=self.saga.name, saga_ref=self.saga.ref)

    @cached_property
    def effects(self) -> Mapping[str, Mapping[tuple[str, str], list[LedgerRow]]]:
        """Ledger rows by saga instance, then by (participant, action), in effect order."""
        out: dict[str, dict[tuple[str, str], list[LedgerRow]]] = {}
        for row in self._rows:
            out.setdefault(row.correlation_id, {}).setdefault((row.participant, row.action), []).append(row)
        return out

    def rows(self, participant: str | None = None, action: str | None = None) -> list[LedgerRow]:
        """Ledger rows of every participant in effect order, optionally filtered."""
        return [
            r
            for r in self._rows
            if (participant is None or r.participant == participant) and (action is None or r.action == action)
        ]
