"""The invariants every choreography holds: each one breaks on the execution it is about, and
holds where it should."""

from __future__ import annotations

from typing import Any

from saga_verify import Choreography, FaultPlan, Handler, run_plan
from saga_verify._world import SimBus
from saga_verify.faults import DeliveryPoint, FailBeforeEffect
from saga_verify.invariants import (
    choreography_invariants,
    correlated_events,
    dead_letters_are_poison,
    invariants_for,
    nothing_lost,
    settles,
)


class Emitter:
    """Publishes ``events`` at the start; its handler of ``b`` does what it is told."""

    def __init__(self, events: list[dict[str, Any]], fail_b: bool = False, reject_b: bool = False) -> None:
        self.events = events
        self.fail_b = fail_b
        self.reject_b = reject_b
        self.done = False

    def start(self, order: Any, bus: Any) -> None:
        for event in self.events:
            bus.publish(event)

    def on_a(self, message: Any, bus: Any) -> None:
        pass

    def on_b(self, message: Any, bus: Any) -> None:
        if self.reject_b:
            bus.reject("b cannot be read")
        if self.fail_b:
            raise ValueError("b is poison")
        self.done = True


def event(event_type: str, event_id: str, corr: Any = "order-1", cause: Any = None) -> dict[str, Any]:
    return {"type": event_type, "id": event_id, "correlation_id": corr, "causation_id": cause}


def execute(events: list[dict[str, Any]], faults: tuple[Any, ...] = (), broker: Any = None, **service: Any) -> Any:
    choreography = Choreography(
        name="invariants",
        services=lambda: {"svc": Emitter(events, **service)},
        handlers=(Handler("svc", "a", "on_a"), Handler("svc", "b", "on_b")),
        start="svc.start",
        outcome=lambda services, corr: "completed" if services["svc"].done else "pending",
        correlation_id="order-1",
        max_attempts=2,
        broker=broker,
    )
    return run_plan(choreography.saga, FaultPlan(faults))


GOOD = [event("a", "a1"), event("b", "b1", cause="a1")]


def test_a_choreography_without_its_own_invariants_is_held_to_these() -> None:
    saga = Choreography("x", dict, (Handler("a", "t", "m"),), start="a.s", outcome=lambda s, c: "completed").saga
    assert invariants_for(saga) == choreography_invariants()
    assert [i.name for i in choreography_invariants()] == ["settles", "correlated_events", "nothing_lost", "dead_letters_are_poison"]


def test_a_good_execution_holds_them_all() -> None:
    execution = execute(GOOD)
    assert execution.status == "completed"
    assert [v for inv in choreography_invariants() for v in inv(execution)] == []


def test_settles_breaks_when_the_bus_goes_quiet_with_the_saga_unfinished() -> None:
    [violation] = settles(execute([event("a", "a1")]))
    assert "went quiet with the saga order-1 at 'pending'" in violation.message


def test_settles_holds_for_a_saga_parked_in_the_dead_letter_queue_or_never_begun() -> None:
    assert settles(execute(GOOD, reject_b=True)) == []
    assert settles(execute([])) == []


def test_settles_breaks_when_the_bus_never_goes_quiet() -> None:
    class Forever(Emitter):
        def on_a(self, message: Any, bus: Any) -> None:
            bus.publish(event("a", f"a{bus.attempt}-{len(bus.message.id)}", cause=message["id"]))

    choreography = Choreography(
        "forever", lambda: {"svc": Forever([event("a", "a1")])}, (Handler("svc", "a", "on_a"),), start="svc.start",
        outcome=lambda s, c: "pending", max_deliveries=30,
    )
    [violation] = settles(run_plan(choreography.saga))
    assert "never went quiet" in violation.message


def test_correlated_events_breaks_on_a_missing_or_foreign_correlation_id_and_an_unknown_cause() -> None:
    found = correlated_events(
        execute([event("a", "a1"), event("b", "b1", corr=None, cause="a1"), event("b", "b2", corr="order-2", cause="a1"), event("a", "a2", cause="zz")])
    )
    assert [v.message for v in found] == [
        "svc's b b1 carries no correlation id: no one can tell which saga it belongs to",
        "svc's b b2 carries correlation id 'order-2', not its saga's 'order-1'",
        "svc's a a2 names cause 'zz', which no event published before it has as id",
    ]


def test_correlated_events_allows_one_first_event_without_a_cause() -> None:
    [violation] = correlated_events(execute([event("a", "a1"), event("a", "a2")]))
    assert violation.message == "svc's a a2 names no cause, and only the saga's first event (a1) may"


def test_nothing_lost_breaks_when_a_broker_never_delivers_a_message() -> None:
    class Lossy(SimBus):
        """A broker that loses every message of type b."""

        def receive(self) -> Any:
            while (delivery := super().receive()) is not None and delivery.message.type == "b":
                pass
            return delivery

    execution = execute(GOOD, broker=Lossy)
    [violation] = nothing_lost(execution)
    assert violation.message == "b b1 -> svc.on_b was published, and neither processed nor dead-lettered (0 deliveries)"
    assert nothing_lost(execute(GOOD)) == []


def test_dead_letters_are_poison_breaks_on_a_healthy_message_lost_to_faults() -> None:
    faults = (FailBeforeEffect(DeliveryPoint("svc", "on_b", 1)), FailBeforeEffect(DeliveryPoint("svc", "on_b", 2)))
    [violation] = dead_letters_are_poison(execute(GOOD, faults))
    assert "b b1 for svc.on_b was dead-lettered, but nothing was wrong with it" in violation.message
    assert dead_letters_are_poison(execute(GOOD, fail_b=True)) == []
    assert dead_letters_are_poison(execute(GOOD, reject_b=True)) == []
