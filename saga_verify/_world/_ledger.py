"""Ledgers: what each participant says took effect, the evidence invariants read. In a service
that the harness reaches over the network, effects are recorded into the scope of the request
being served (`EffectsScope`, set by `saga_verify.systems.EffectsMiddleware`)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, NamedTuple, Protocol

from ..errors import SagaDefinitionError


class _Clock(Protocol):
    def now(self) -> float: ...


class LedgerBinding(Protocol):
    """What a ledger asks when it stamps a row: a `World` in this process, or a service's
    per-request context when the harness reaches the participant over the network."""

    @property
    def clock(self) -> _Clock: ...

    def current_delivery(self) -> tuple[int, str]:
        """The trace entry being delivered (-1 outside one) and the saga instance it belongs to."""
        ...

    def next_row_seq(self) -> int:
        """The next row's position in the order of effects."""
        ...


class LedgerRow(NamedTuple):
    """One effect a participant applied (a charge, a refund, a reservation)."""

    participant: str
    seq: int
    """Order across all participants of the execution."""
    time: float
    """Virtual seconds when it took effect."""
    correlation_id: str
    """The saga instance whose request caused it."""
    action: str
    """The operation whose effect this is: a step's action or its compensation."""
    amount: float
    """How much (money, units); 1 when the effect has no size."""
    ref: str | None
    """The participant's id for what it created or undid (``"ch-1"``)."""
    delivery: int
    """The trace entry that caused it, or -1 outside an execution."""

    def __str__(self) -> str:
        amount = int(self.amount) if float(self.amount).is_integer() else self.amount
        ref = f" {self.ref}" if self.ref else ""
        cause = f" (delivery #{self.delivery})" if self.delivery >= 0 else ""
        return (
            f"{self.participant}: {self.action} {amount}{ref} for {self.correlation_id} "
            f"at t={self.time:.3f}{cause}"
        )


class EffectsScope:
    """The effects one request to a service records, stamped with what the harness's headers said
    about it: the delivery, the saga instance and the virtual time."""

    __slots__ = ("correlation", "delivery", "rows", "time")

    def __init__(self, delivery: int, correlation: str, time: float) -> None:
        self.delivery = delivery
        self.correlation = correlation
        self.time = time
        self.rows: list[LedgerRow] = []

    def add(self, participant: str, action: str, amount: float, ref: str | None, correlation_id: str | None) -> LedgerRow:
        row = LedgerRow(participant, len(self.rows), self.time, correlation_id or self.correlation, action, amount, ref, self.delivery)
        self.rows.append(row)
        return row


#: The scope of the request a service is serving (None outside one).
EFFECTS_SCOPE: ContextVar[EffectsScope | None] = ContextVar("saga_verify_effects_scope", default=None)


def record_effect(action: str, amount: float = 1.0, ref: str | None = None, *, correlation_id: str | None = None) -> LedgerRow | None:
    """Record, from a service's own code, that ``action`` (an operation of the saga's steps) took
    effect while serving the current request: with its size and the service's id for what it
    created or undid. The `saga_verify.systems.EffectsMiddleware` the service mounts in its test
    build sends it to the harness. Outside a request the harness sent, it does nothing (None)."""
    scope = EFFECTS_SCOPE.get()
    if scope is None:
        return None
    return scope.add("", action, amount, ref, correlation_id)


class Ledger:
    """Where a participant records each effect it applies. Inside an execution the harness stamps
    each row with the saga instance, the time and the delivery that caused it."""

    __slots__ = ("_participant", "_world", "rows")

    def __init__(self) -> None:
        self.rows: list[LedgerRow] = []
        self._world: LedgerBinding | None = None
        self._participant = ""

    def record(self, action: str, amount: float = 1.0, ref: str | None = None, *, correlation_id: str | None = None) -> LedgerRow:
        """Record that ``action`` took effect (with its size and the participant's id for it)."""
        world = self._world
        if world is None:
            scope = EFFECTS_SCOPE.get()
            if scope is not None:
                # Served over the network: the request's scope stamps it and carries it back.
                scoped = scope.add(self._participant, action, amount, ref, correlation_id)
                row = scoped._replace(seq=len(self.rows))
            else:
                row = LedgerRow(self._participant, len(self.rows), 0.0, correlation_id or "", action, amount, ref, -1)
        else:
            delivery, corr = world.current_delivery()
            row = LedgerRow(
                self._participant,
                world.next_row_seq(),
                world.clock.now(),
                correlation_id or corr,
                action,
                amount,
                ref,
                delivery,
            )
        self.rows.append(row)
        return row

    def send(self, event: str, payload: Any = None, *, after: float = 0.0) -> None:
        """Send the saga ``event`` (a webhook, an approval; declared in the Step's ``events=``)
        carrying ``payload``: it arrives ``after`` virtual seconds from now, unless the plan
        delays, duplicates or drops it. The saga takes it with ``services.wait_for``. Only in
        simulation, where the harness carries it."""
        send = getattr(self._world, "send_event", None)
        if send is None:
            raise SagaDefinitionError(
                f"{self._participant or 'a participant'} sent event {event!r} outside a simulated execution: "
                "events travel only where saga-verify runs the participant (runtime 'sim')"
            )
        send(self._participant, event, payload, after)

    def bind(self, world: LedgerBinding, participant: str) -> None:
        """Attach to an execution (the harness does this when it builds the world), or to whatever
        else stamps rows (a service stamps them with the delivery its request carries)."""
        self._world = world
        self._participant = participant

    @property
    def binding(self) -> LedgerBinding | None:
        """What stamps this ledger's rows (a `World` during an execution), or None."""
        return self._world

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)
