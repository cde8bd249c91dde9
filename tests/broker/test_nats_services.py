"""A team's own services written with nats-py (`nats_shop`), verified unchanged over a real NATS
server: each connects through the harness's proxy, the plan's faults land on its publishes and
on the deliveries to its consumers, and the services' state is judged once the server is quiet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats_shop as shop
import pytest

from saga_verify import FaultPlan, explore, invariant, replay, run_plan
from saga_verify.broker import BrokerError, NatsServer, NatsServices
from saga_verify.errors import SagaDefinitionError
from saga_verify.faults import Delay, DeliveryPoint, Duplicate, FailBeforeEffect, Fault, LoseReply
from saga_verify.invariants import check

ORDER = "order-1"


@invariant
def charged_once(execution: Any) -> None:
    charges = execution.participants["payment"].charges.get(ORDER, 0)
    assert charges <= 1, f"{ORDER} charged {charges} times"


@invariant
def reserved_once(execution: Any) -> None:
    reserved = execution.participants["stock"].reserved.get(ORDER, 0)
    assert reserved <= 1, f"{ORDER} reserved {reserved} times"


@invariant
def order_completes(execution: Any) -> None:
    """Once order.placed reached the server, the order completes (unless the run was stopped)."""
    stored = any(e.participant == "orders" and e.operation == "publish" and e.outcome not in ("failed", "timed-out", "held") for e in execution.trace)
    if stored and execution.halted is None:
        assert execution.status == "completed", f"the order ended {execution.status!r}"


def shop_over(url: str, *, idempotent: bool = True, **overrides: Any) -> NatsServices:
    options: dict[str, Any] = {
        "services": lambda: {"orders": shop.Orders(), "stock": shop.Stock(), "payment": shop.Payment(idempotent)},
        "consumers": {"orders": ["confirm"], "stock": ["reserve"], "payment": ["charge"]},
        "setup": shop.create_stream,
        "begin": lambda services: services["orders"].place(ORDER),
        "outcome": lambda services: services["orders"].status.get(ORDER),
        "invariants": [charged_once, reserved_once, order_completes],
        "answer_within": 3.0,
        **overrides,
    }
    return NatsServices("nats-shop", url=url, **options)


def _points(execution: Any) -> list[str]:
    return [f"{e.participant}.{e.operation}#{e.attempt}:{e.outcome}" for e in execution.trace]


def _broken(execution: Any) -> list[str]:
    return sorted({v.invariant for v in check(execution, list(execution.saga.invariants or ()))})


def _one(kind: type[Fault], point: str, **params: Any) -> FaultPlan:
    service, operation = point.split(".")
    return FaultPlan((kind(DeliveryPoint(service, operation), **params),))


def test_a_fault_free_run_passes_every_frame_through_the_delivery_points_in_order(nats_server: NatsServer) -> None:
    execution = run_plan(shop_over(nats_server.url).saga)
    assert _points(execution) == [
        "orders.publish#1:ok", "stock.reserve#1:ok", "stock.publish#1:ok",
        "payment.charge#1:ok", "payment.publish#1:ok", "orders.confirm#1:ok",
    ]  # fmt: skip
    assert execution.status == "completed"
    assert execution.participants["payment"].charges == {ORDER: 1}
    assert _broken(execution) == []


@pytest.mark.parametrize("kind", [FailBeforeEffect, LoseReply])
def test_a_delivery_lost_before_the_consumer_or_its_ack_lost_is_delivered_again(nats_server: NatsServer, kind: type[Fault]) -> None:
    execution = run_plan(shop_over(nats_server.url).saga, _one(kind, "payment.charge"))
    charges = [p for p in _points(execution) if p.startswith("payment.charge")]
    assert charges == [f"payment.charge#1:{'failed' if kind is FailBeforeEffect else 'reply-lost'}", "payment.charge#2:ok"]
    assert execution.participants["payment"].charges == {ORDER: 1}  # it deduplicates the redelivery
    assert execution.status == "completed"
    assert _broken(execution) == []


def test_a_duplicated_delivery_reaches_the_consumer_twice(nats_server: NatsServer) -> None:
    execution = run_plan(shop_over(nats_server.url).saga, _one(Duplicate, "stock.reserve", lag=0.0))
    stock = execution.participants["stock"]
    # Both copies reached its callback: it published stock.reserved once per copy, and reserved once.
    assert [p for p in _points(execution) if p.startswith("stock.publish")] == ["stock.publish#1:ok", "stock.publish#2:ok"]
    assert stock.reserved == {ORDER: 1}
    assert execution.participants["payment"].charges == {ORDER: 1}
    assert _broken(execution) == []


def test_a_delivery_held_past_its_patience_is_redelivered_and_the_held_copy_lands_later(nats_server: NatsServer) -> None:
    execution = run_plan(shop_over(nats_server.url).saga, _one(Delay, "payment.charge", seconds=30.0))
    charges = [p for p in _points(execution) if p.startswith("payment.charge")]
    assert charges == ["payment.charge#1:held", "payment.charge#2:ok", "payment.charge#1:late"]
    assert execution.participants["payment"].charges == {ORDER: 1}
    assert _broken(execution) == []


def test_a_lost_publish_is_never_stored_and_the_publisher_publishes_again(nats_server: NatsServer) -> None:
    execution = run_plan(shop_over(nats_server.url).saga, _one(FailBeforeEffect, "orders.publish"))
    points = _points(execution)
    assert points[:2] == ["orders.publish#1:failed", "orders.publish#2:ok"]
    assert [p for p in points if p.startswith("stock.reserve")] == ["stock.reserve#1:ok"]  # one copy stored, one delivered
    assert execution.status == "completed"


def test_a_lost_puback_leaves_the_message_stored_and_the_retry_stores_a_second_copy(nats_server: NatsServer) -> None:
    execution = run_plan(shop_over(nats_server.url).saga, _one(LoseReply, "orders.publish"))
    points = _points(execution)
    assert points[0] == "orders.publish#1:reply-lost"
    assert "orders.publish#2:ok" in points
    # Two order.placed in the stream: stock gets both, and deduplicates by event id.
    assert [p for p in points if p.startswith("stock.reserve")] == ["stock.reserve#1:ok", "stock.reserve#2:ok"]
    assert execution.participants["stock"].reserved == {ORDER: 1}
    assert _broken(execution) == []


def test_the_same_plan_gives_the_same_verdict_every_time(nats_server: NatsServer) -> None:
    saga = shop_over(nats_server.url, idempotent=False).saga
    plan = _one(LoseReply, "payment.charge")
    verdicts = []
    for _ in range(3):
        execution, violations = replay(saga, plan)
        verdicts.append((execution.status, sorted(v.invariant for v in violations), _points(execution)))
    assert verdicts[0][1] == ["charged_once"]
    assert verdicts == [verdicts[0]] * 3


# -- bad input --------------------------------------------------------------------------------------
class _Silent:
    """A service that never connects."""

    async def start(self, url: str) -> None:
        return None


class _Elsewhere(shop.Stock):
    """A service that connects to the server itself, not to the address it was given."""

    server = ""

    async def start(self, url: str) -> None:
        await super().start(self.server)


class _Raising(shop.Stock):
    async def on_placed(self, msg: Any) -> None:
        raise ValueError("no such sku")


class _Ephemeral(shop.Stock):
    async def start(self, url: str) -> None:
        await self.connect(url)
        await self.js.subscribe("order.placed", cb=self.on_placed, manual_ack=True)  # no durable name


def _with_stock(url: str, stock: object) -> NatsServices:
    return shop_over(url, services=lambda: {"orders": shop.Orders(), "stock": stock, "payment": shop.Payment()})


def test_a_service_that_never_connects_is_named(nats_server: NatsServer) -> None:
    with pytest.raises(BrokerError, match=r"service 'stock' did not connect through nats://127\.0\.0\.1:\d+, the address its start\(url\) was given"):
        run_plan(_with_stock(nats_server.url, _Silent()).saga)


def test_a_service_that_connects_elsewhere_is_named(nats_server: NatsServer) -> None:
    stock = _Elsewhere()
    stock.server = nats_server.url
    with pytest.raises(BrokerError, match=r"service 'stock' did not connect through .*connected elsewhere"):
        run_plan(_with_stock(nats_server.url, stock).saga)


def test_a_service_whose_callback_raises_is_named_with_its_delivery_point(nats_server: NatsServer) -> None:
    with pytest.raises(BrokerError, match=r"stock\.reserve was delivered 'order\.placed' and service 'stock' neither acknowledged nor refused it within 3 s .*callback raised"):
        run_plan(_with_stock(nats_server.url, _Raising()).saga)


def test_a_service_whose_start_raises_is_named(nats_server: NatsServer) -> None:
    class Broken(shop.Stock):
        async def start(self, url: str) -> None:
            raise OSError("no config")

    with pytest.raises(BrokerError, match=r"service 'stock''s start\(.*\) raised OSError: no config"):
        run_plan(_with_stock(nats_server.url, Broken()).saga)


def test_a_delivery_from_an_undeclared_consumer_is_refused_by_name(nats_server: NatsServer) -> None:
    with pytest.raises(BrokerError, match=r"service 'stock' received a delivery of 'order\.placed' from consumer '\w+'.*which it does not declare"):
        run_plan(_with_stock(nats_server.url, _Ephemeral()).saga)


def test_a_begin_that_is_not_async_is_named(nats_server: NatsServer) -> None:
    with pytest.raises(SagaDefinitionError, match=r"begin must be 'async def'"):
        run_plan(shop_over(nats_server.url, begin=lambda services: None).saga)


def test_a_server_that_cannot_be_reached_is_named() -> None:
    with pytest.raises(BrokerError, match=r"cannot reach the NATS server at nats://127\.0\.0\.1:1"):
        run_plan(shop_over("nats://127.0.0.1:1", connect_within=2.0).saga)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://x"}, "url must read nats://"),
        ({"consumers": {"stock": "reserve"}}, r"consumers\['stock'\] must be a list"),
        ({"consumers": {"stock": ["publish"]}}, "not a service or consumer name"),
        ({"answer_within": 0}, "answer_within must be a positive number"),
    ],
)
def test_bad_definitions_are_refused_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SagaDefinitionError, match=message):
        shop_over(**{"url": "nats://127.0.0.1:4222", **options})


# -- the search -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_correct_services_hold_under_every_one_fault_plan(nats_server: NatsServer) -> None:
    result = explore(shop_over(nats_server.url).saga, sweep_faults=1, max_examples=0, report_dir=None)
    assert [str(f.plan) for f in result.failures] == []
    assert result.sweep_complete
    # Every reached delivery point (6) times every fault of the alphabet (8), and the fault-free run.
    assert result.sweep_executions >= 6 * 8


@pytest.mark.slow
def test_the_search_finds_the_consumer_that_does_not_deduplicate(nats_server: NatsServer) -> None:
    result = explore(shop_over(nats_server.url, idempotent=False).saga, sweep_faults=1, max_examples=0, all_failures=True, report_dir=None)
    assert result.failures, "the non-idempotent payment consumer was not caught"
    for failure in result.failures:
        assert [v.invariant for v in failure.violations] == ["charged_once"]
        [fault] = failure.plan.faults
        # A second copy reaches payment: its delivery duplicated or its ack lost, or a publish
        # upstream of it duplicated or its PubAck lost (the publisher publishes again).
        assert fault.kind in ("duplicate", "lose-reply", "delay"), str(failure.plan)


def test_the_services_are_plain_nats_py() -> None:
    """The example services know nothing of saga-verify: the harness reaches them only by the wire."""
    source = Path(shop.__file__).read_text(encoding="utf-8")
    assert "saga_verify" not in source
    assert "nats.connect(url" in source


def test_on_real_time_the_same_plan_is_held_to_the_same_verdict_not_the_same_trace(nats_server: NatsServer) -> None:
    from dataclasses import replace as replace_field

    from saga_verify._exploration._search import compare_traces
    from saga_verify.errors import NondeterminismError

    saga = shop_over(nats_server.url).saga
    assert saga.real_time
    plain = run_plan(saga)
    # Stands for a run whose frames interleaved otherwise: another trace, the same ending.
    other = run_plan(saga, _one(Duplicate, "stock.reserve", lag=0.0))
    assert _points(plain) != _points(other)
    assert plain.status == other.status == "completed"
    compare_traces(saga, plain, other, "no faults")
    with pytest.raises(NondeterminismError, match="gave two different traces"):
        compare_traces(replace_field(saga, real_time=False), plain, other, "no faults")
