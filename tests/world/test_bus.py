"""The message bus of a choreography: delivery order, acknowledgements, redelivery, the dead-letter
queue, and the plan's faults at deliveries and publishes."""

from __future__ import annotations

from typing import Any

import pytest

from saga_verify import Choreography, FaultPlan, Handler, run_plan
from saga_verify.errors import PlanError, SagaDefinitionError
from saga_verify.faults import Corrupt, DeliveryPoint, Duplicate, FailBeforeEffect, LoseReply


class Log:
    """A service that records what it handled, and publishes what it is told to."""

    def __init__(self, then: dict[str, list[str]] | None = None, poison: bool = False) -> None:
        self.handled: list[tuple[str, str]] = []
        self.then = then or {}
        self.poison = poison
        self.committed: list[str] = []

    def start(self, order: Any, bus: Any) -> None:
        bus.publish({"type": "a", "id": "a1", "correlation_id": "c", "causation_id": None})

    def _handle(self, name: str, message: Any, bus: Any) -> None:
        if not isinstance(message, dict):
            bus.reject(f"cannot read {message!r}")
            return
        if self.poison and message["type"] == "b":
            raise ValueError("cannot process b")
        self.handled.append((name, message["id"]))
        for i, event_type in enumerate(self.then.get(name, [])):
            bus.publish({"type": event_type, "id": f"{event_type}{i + 1}", "correlation_id": "c", "causation_id": message["id"]})

    def on_a(self, message: Any, bus: Any) -> None:
        self._handle("on_a", message, bus)

    def on_a_too(self, message: Any, bus: Any) -> None:
        self._handle("on_a_too", message, bus)

    def on_b(self, message: Any, bus: Any) -> None:
        self._handle("on_b", message, bus)

    def relay(self, bus: Any) -> None:
        pass


def chain(service: Log, *, max_attempts: int | None = 3, handlers: tuple[Handler, ...] | None = None) -> Choreography:
    return Choreography(
        name="chain",
        services=lambda: {"svc": service, "other": Log()},
        handlers=handlers or (Handler("svc", "a", "on_a"), Handler("svc", "b", "on_b")),
        start="svc.start",
        outcome=lambda services, corr: "completed" if services["svc"].handled else "pending",
        max_attempts=max_attempts,
        restart={"svc": lambda s: None},
        invariants=(),
    )


def plan(*faults: Any) -> FaultPlan:
    return FaultPlan(tuple(faults))


def test_each_subscriber_gets_each_message_once_in_publish_order() -> None:
    service = Log(then={"on_a": ["b", "b"]})
    handlers = (Handler("svc", "a", "on_a"), Handler("svc", "a", "on_a_too"), Handler("svc", "b", "on_b"))
    execution = run_plan(chain(service, handlers=handlers).saga)
    assert service.handled == [("on_a", "a1"), ("on_a_too", "a1"), ("on_b", "b1"), ("on_b", "b2")]
    assert execution.status == "completed"
    assert execution.bus is not None
    assert [m.id for m in execution.bus.messages] == ["a1", "b1", "b2"]
    assert {d.state for d in execution.bus.deliveries} == {"acked"}
    assert [(m.kind, m.text.split(" ")[0]) for m in execution.moments][:2] == [("published", "svc"), ("delivered", "a")]


def test_a_delivery_lost_on_its_way_is_redelivered_after_the_delay() -> None:
    service = Log()
    execution = run_plan(chain(service).saga, plan(FailBeforeEffect(DeliveryPoint("svc", "on_a", 1))))
    assert service.handled == [("on_a", "a1")]
    entries = [e for e in execution.trace if e.operation == "on_a"]
    assert [e.outcome for e in entries] == ["failed", "ok"]
    assert entries[1].time - entries[0].time >= 5.0  # the redelivery delay
    assert [m.kind for m in execution.moments].count("redelivered") == 1


def test_an_acknowledgement_lost_after_the_effect_redelivers_the_message() -> None:
    service = Log()
    run_plan(chain(service).saga, plan(LoseReply(DeliveryPoint("svc", "on_a", 1))))
    assert service.handled == [("on_a", "a1"), ("on_a", "a1")]


def test_a_duplicate_delivery_reaches_the_handler_twice() -> None:
    service = Log()
    run_plan(chain(service).saga, plan(Duplicate(DeliveryPoint("svc", "on_a", 1))))
    assert service.handled == [("on_a", "a1"), ("on_a", "a1")]


def test_a_message_its_handler_raises_on_is_dead_lettered_after_max_attempts() -> None:
    service = Log(then={"on_a": ["b"]}, poison=True)
    execution = run_plan(chain(service, max_attempts=3).saga)
    assert execution.bus is not None
    [dead] = execution.bus.dead_letters
    assert (dead.message.id, dead.attempts, dead.poison, dead.rejected) == ("b1", 3, True, False)
    assert dead.reason == "not processed after 3 deliveries; last: ValueError: cannot process b"
    assert [e.attempt for e in execution.trace if e.operation == "on_b"] == [1, 2, 3]


def test_without_a_bound_a_poison_message_is_redelivered_until_the_execution_is_stopped() -> None:
    service = Log(then={"on_a": ["b"]}, poison=True)
    execution = run_plan(chain(service, max_attempts=None).saga)
    assert execution.halted is not None
    assert execution.bus is not None
    assert execution.bus.dead_letters == ()


def test_a_healthy_message_lost_to_faults_only_is_not_poison() -> None:
    service = Log()
    faults = [FailBeforeEffect(DeliveryPoint("svc", "on_a", n)) for n in (1, 2, 3)]
    execution = run_plan(chain(service, max_attempts=3).saga, plan(*faults))
    assert execution.bus is not None
    [dead] = execution.bus.dead_letters
    assert (dead.poison, dead.rejected) == (False, False)


def test_a_corrupted_message_is_mangled_at_every_redelivery_and_rejected_with_the_reason() -> None:
    service = Log()
    execution = run_plan(chain(service).saga, plan(Corrupt(DeliveryPoint("svc", "on_a", 1))))
    assert execution.bus is not None
    [dead] = execution.bus.dead_letters
    assert dead.rejected
    assert dead.poison
    assert dead.reason.startswith("cannot read '{")
    assert service.handled == []
    [entry] = [e for e in execution.trace if e.operation == "on_a"]
    assert isinstance(entry.request["args"][0], str)  # the trace shows what arrived
    assert any(m.kind == "dead-lettered" for m in execution.moments)


def test_corrupt_is_refused_where_no_handler_receives_a_message() -> None:
    saga = chain(Log()).saga
    with pytest.raises(PlanError, match="corrupt is for where a Handler receives a message"):
        run_plan(saga, plan(Corrupt(DeliveryPoint("svc", "publish", 1))))


def test_a_publish_that_fails_raises_inside_the_handler_and_the_message_is_redelivered() -> None:
    service = Log(then={"on_a": ["b"]})
    execution = run_plan(chain(service).saga, plan(FailBeforeEffect(DeliveryPoint("svc", "publish", 2))))
    assert [e.outcome for e in execution.trace if e.operation == "on_a"] == ["raised", "ok"]
    assert service.handled == [("on_a", "a1"), ("on_a", "a1"), ("on_b", "b1")]


def test_a_handler_that_acknowledges_early_is_not_redelivered_when_it_then_fails() -> None:
    class Early(Log):
        def on_a(self, message: Any, bus: Any) -> None:
            bus.ack()
            raise RuntimeError("after the ack")

    execution = run_plan(chain(Early()).saga)
    assert execution.bus is not None
    assert [d.state for d in execution.bus.deliveries] == ["acked"]
    assert [e.attempt for e in execution.trace if e.operation == "on_a"] == [1]
    assert any(m.kind == "acked" for m in execution.moments)


def test_the_same_plan_gives_the_same_trace_and_timeline() -> None:
    def once() -> str:
        execution = run_plan(chain(Log(then={"on_a": ["b", "b"]})).saga, plan(Duplicate(DeliveryPoint("svc", "on_b", 1), lag=30.0)))
        return repr((execution.trace, execution.moments))

    first = once()
    assert "on_b" in first
    assert first == once()


def test_choreography_declarations_are_checked() -> None:
    with pytest.raises(SagaDefinitionError, match=r"start= must read 'service\.method'"):
        Choreography("x", dict, (Handler("a", "t", "m"),), start="nodot", outcome=lambda s, c: "completed")
    with pytest.raises(SagaDefinitionError, match="handles both"):
        Choreography("x", dict, (Handler("a", "t", "m"), Handler("a", "u", "m")), start="a.s", outcome=lambda s, c: "completed")
    with pytest.raises(SagaDefinitionError, match="'publish' is the bus's own operation"):
        Handler("a", "t", "publish")
    with pytest.raises(SagaDefinitionError, match=r"event type like 'stock\.reserved'"):
        Handler("a", "not a type", "m")
    with pytest.raises(SagaDefinitionError, match="max_attempts must be a whole number >= 1 or None"):
        Choreography("x", dict, (Handler("a", "t", "m"),), start="a.s", outcome=lambda s, c: "completed", max_attempts=0)


def test_a_choreographys_saga_refuses_to_run_without_its_bus() -> None:
    saga = chain(Log()).saga
    with pytest.raises(SagaDefinitionError, match="drives its bus"):
        saga.run(None, None)


def test_an_async_handler_is_refused_with_a_reason() -> None:
    class Async(Log):
        async def on_b(self, message: Any, bus: Any) -> None:  # type: ignore[override]
            pass

    with pytest.raises(SagaDefinitionError, match=r"svc\.on_b is 'async def'; the bus calls handlers"):
        run_plan(chain(Async()).saga)
