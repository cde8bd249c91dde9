"""The reference choreographed order saga over a real NATS JetStream server: the same messages as
on the simulated bus, the broker's own redelivery and dead-letter stream under the plan's faults,
the correct saga holding and broken variants found by a search whose every execution runs over
the broker, judged by the same invariants at quiescence."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga_verify import FaultPlan, explore, run_plan
from saga_verify.broker import BrokerError, NatsBroker, NatsServer
from saga_verify.faults import Corrupt, Crash, DeliveryPoint, Duplicate, FailBeforeEffect, Fault, LoseReply
from saga_verify.invariants import check, invariants_for
from saga_verify.reference import (
    choreographed_order_saga,
    missing_compensation_handler,
    non_idempotent_consumer,
    order_saga,
)


@pytest.fixture(scope="module")
def broker(nats_server: NatsServer) -> Iterator[NatsBroker]:
    with NatsBroker(nats_server.url) as connection:
        yield connection


def _broken(execution) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted({v.invariant for v in check(execution, invariants_for(execution.saga))})


def test_a_fault_free_run_publishes_what_the_simulated_bus_does_and_acknowledges_every_delivery(broker: NatsBroker) -> None:
    over_nats = run_plan(broker.over(choreographed_order_saga))
    simulated = run_plan(choreographed_order_saga)
    assert over_nats.status == simulated.status == "completed"
    assert over_nats.bus is not None
    assert simulated.bus is not None
    assert [(m.source, m.envelope) for m in over_nats.bus.messages] == [(m.source, m.envelope) for m in simulated.bus.messages]
    assert {d.state for d in over_nats.bus.deliveries} == {"acked"}
    assert over_nats.bus.dead_letters == ()
    assert _broken(over_nats) == []


@pytest.mark.parametrize("kind", [FailBeforeEffect, LoseReply, Crash])
def test_a_delivery_lost_or_crashed_before_its_ack_comes_back_when_the_brokers_ack_wait_runs_out(broker: NatsBroker, kind: type[Fault]) -> None:
    execution = run_plan(broker.over(choreographed_order_saga), FaultPlan((kind(DeliveryPoint("payment", "charge")),)))
    assert execution.bus is not None
    charge = next(d for d in execution.bus.deliveries if d.handler.method == "charge")
    assert (charge.attempts, charge.state) == (2, "acked")
    [left] = [m.text for m in execution.moments if m.kind == "nacked"]
    assert "payment.charge" in left
    assert "the broker redelivers it when its ack wait" in left
    assert any(m.kind == "redelivered" and "payment.charge" in m.text for m in execution.moments)
    assert execution.status == "completed"
    assert _broken(execution) == []
    assert len(execution.participants["payment"].saved["charges"]) == 1


def test_a_handler_that_raises_is_nacked_and_redelivered_by_the_broker(broker: NatsBroker) -> None:
    # The saga's first publish goes to a broker its publisher cannot reach: the order service's
    # handler raises, so its message is nacked (not left to the ack wait) and delivered again.
    execution = run_plan(broker.over(choreographed_order_saga), FaultPlan((FailBeforeEffect(DeliveryPoint("inventory", "publish")),)))
    assert [m.text for m in execution.moments if m.kind == "nacked"] == [
        "order.placed order-1:order.placed -> inventory.reserve nacked: the broker redelivers it"
    ]
    assert execution.status == "completed"
    assert _broken(execution) == []


def test_a_duplicate_publish_reaches_the_broker_twice_and_the_consumer_dedupes(broker: NatsBroker) -> None:
    execution = run_plan(broker.over(choreographed_order_saga), FaultPlan((Duplicate(DeliveryPoint("inventory", "publish")),)))
    assert [m.type for m in execution.bus.messages].count("stock.reserved") == 2  # type: ignore[union-attr]
    charges = [d for d in execution.bus.deliveries if d.handler.method == "charge"]  # type: ignore[union-attr]
    assert [d.state for d in charges] == ["acked", "acked"]
    assert len(execution.participants["payment"].saved["charges"]) == 1
    assert _broken(execution) == []


def test_a_mangled_message_goes_to_the_dead_letter_stream_with_its_reason(broker: NatsBroker) -> None:
    execution = run_plan(broker.over(choreographed_order_saga), FaultPlan((Corrupt(DeliveryPoint("payment", "charge")),)))
    assert execution.bus is not None
    [letter] = execution.bus.dead_letters  # read back from the broker's dead-letter stream
    assert (letter.handler.method, letter.message.type, letter.poison, letter.rejected) == ("charge", "stock.reserved", True, True)
    assert letter.reason
    assert any(m.kind == "dead-lettered" for m in execution.moments)


@pytest.mark.slow
def test_the_correct_saga_holds_under_every_one_fault_plan_over_the_broker(broker: NatsBroker) -> None:
    result = explore(broker.over(choreographed_order_saga), max_examples=0, sweep_faults=1, sweep_budget=None, report_dir=None)
    assert result.failures == ()
    assert result.executions > 50  # every delivery and publish point, each with every fault kind


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "invariant"),
    [
        (non_idempotent_consumer, "no_double_effect"),
        (missing_compensation_handler, "settles"),
    ],
    ids=lambda v: getattr(v, "name", v),
)
def test_a_search_over_the_broker_finds_a_broken_variant(broker: NatsBroker, variant, invariant: str) -> None:  # type: ignore[no-untyped-def]
    result = explore(broker.over(variant), max_examples=0, sweep_faults=1, sweep_budget=None, report_dir=None, all_failures=False)
    assert [f.violations[0].invariant for f in result.failures] == [invariant]
    assert len(result.failures[0].plan.faults) == 1


def test_an_unreachable_broker_is_an_error_naming_it(nats_client: None) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: nothing answers there
        url = f"nats://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(BrokerError, match=f"cannot reach the NATS server at {url}: ConnectionRefusedError"):
            NatsBroker(url, connect_within=2).connect()


def test_a_stream_that_cannot_be_created_is_an_error_naming_it(nats_server: NatsServer) -> None:
    import nats

    async def greedy(create: bool) -> None:
        client = await nats.connect(nats_server.url)
        try:
            js = client.jetstream()
            await (js.add_stream(name="GREEDY", subjects=["sv.>"]) if create else js.delete_stream("GREEDY"))
        finally:
            await client.close()

    asyncio.run(greedy(True))  # every subject the adapter would use is taken
    try:
        with NatsBroker(nats_server.url) as broker, pytest.raises(BrokerError, match=r"cannot create JetStream stream 'SAGA_\w+' .* on nats://127\.0\.0\.1:\d+"):
            run_plan(broker.over(choreographed_order_saga))
    finally:
        asyncio.run(greedy(False))


def test_only_a_choreography_goes_over_a_broker() -> None:
    with pytest.raises(BrokerError, match="saga 'order' is not a choreography"):
        NatsBroker("nats://127.0.0.1:4222").over(order_saga)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://127.0.0.1:4222"}, "url must read nats://host:port"),
        ({"ack_wait": 0}, "ack_wait must be a number of seconds > 0"),
        ({"nack_delay": -1}, "nack_delay must be a number of seconds >= 0"),
        ({"stream": "a.b"}, "stream 'a.b'"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(BrokerError, match=message):
        NatsBroker(**{"url": "nats://127.0.0.1:4222", **options})  # type: ignore[arg-type]


def test_the_readme_example_runs(nats_server: NatsServer) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Over a real broker", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README lost its 'Over a real broker' example"
    exec(compile(match.group(1), "README.md", "exec"), {})


def test_a_message_consumed_before_its_publisher_has_the_brokers_answer_is_not_lost(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nats.js.client import JetStreamContext

    answer = JetStreamContext.publish

    async def late_answer(self: JetStreamContext, subject: str, *args: object, **kwargs: object) -> object:
        ack = await answer(self, subject, *args, **kwargs)  # type: ignore[arg-type]
        # The publisher learns the message's number only once every consumer it is for has had it.
        stream = kwargs.get("stream")
        assert isinstance(stream, str)
        deadline = time.monotonic() + 60
        while any(
            info.config.filter_subject == subject and (info.delivered is None or (info.delivered.stream_seq or 0) < ack.seq)
            for info in await self.consumers_info(stream)
        ):
            assert time.monotonic() < deadline, f"no consumer of {subject} was given message {ack.seq} within 60 s"
            await asyncio.sleep(0.01)  # polled: the broker tells no one when a consumer was given a message
        return ack

    monkeypatch.setattr(JetStreamContext, "publish", late_answer)
    with NatsBroker(nats_server.url) as broker:
        execution = run_plan(broker.over(choreographed_order_saga))
    assert execution.bus is not None
    assert {d.state for d in execution.bus.deliveries} == {"acked"}
    assert execution.status == "completed"
    assert _broken(execution) == []
