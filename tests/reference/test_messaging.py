"""The order saga orchestrated by messaging: its happy and compensating paths, replies delivered
twice and late, receivers that dead-letter what they cannot read, its message schemas, and every
broken variant found by the search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema
import pytest

from saga_verify import FaultPlan, explore, replay, run_plan
from saga_verify.faults import Corrupt, DeliveryPoint, Duplicate, FailBeforeEffect, Refuse
from saga_verify.invariants import invariants_for
from saga_verify.reference import messaging_order_saga, messaging_variants
from saga_verify.reference._messaging import REPLY_TIMEOUT
from saga_verify.reference._messaging_events import COMMAND_TYPES, REPLY_TYPES, invalid, message_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "contracts" / "events" / "messaging"


def violations(execution: Any) -> list[str]:
    return [str(v) for inv in invariants_for(execution.saga) for v in inv(execution)]


def commands(execution: Any) -> list[str]:
    return [m.type for m in execution.bus.messages if m.role == "command"]


def effects(execution: Any, service: str) -> list[dict[str, Any]]:
    return list(execution.participants[service].saved["effects"])


def run(*faults: Any) -> Any:
    return run_plan(messaging_order_saga, FaultPlan(tuple(faults)))


def test_the_happy_path_sends_each_command_once_and_notifies_last() -> None:
    execution = run()
    assert execution.status == "completed"
    assert commands(execution) == ["inventory.reserve", "payment.charge", "shipping.create", "notification.send"]
    assert violations(execution) == []
    messages = execution.bus.messages
    assert all(invalid(m.envelope, m.type) is None for m in messages)
    # Each reply names its command as its cause and comes back as the type the command asked for.
    by_id = {m.id: m for m in messages}
    replies = [m for m in messages if m.role == "reply"]
    assert len(replies) == 4
    assert all(by_id[r.envelope["causation_id"]].envelope["reply_to"] == r.type for r in replies)
    # Every command has its deadline, deferred by the orchestrator's patience.
    deadlines = [m for m in messages if m.role == "deferred"]
    assert [d.envelope["causation_id"] for d in deadlines] == [m.id for m in messages if m.role == "command"]
    assert all(d.due == pytest.approx(d.time + REPLY_TIMEOUT) for d in deadlines)


@pytest.mark.parametrize(
    ("refused", "compensations"),
    [
        ("inventory.reserve#1", []),
        ("payment.charge#1", ["inventory.release"]),
        ("shipping.create#1", ["payment.refund", "inventory.release"]),
    ],
)
def test_a_refusal_sends_the_compensations_in_reverse(refused: str, compensations: list[str]) -> None:
    execution = run(Refuse(DeliveryPoint.parse(refused)))
    assert execution.status == "compensated"
    forward = commands(execution)[: len(commands(execution)) - len(compensations)]
    assert forward[-1] == refused.split("#")[0]
    assert commands(execution)[len(forward) :] == compensations
    assert violations(execution) == []


def test_a_reply_delivered_twice_is_acted_on_once() -> None:
    execution = run(Duplicate(DeliveryPoint.parse("order.on_reserved#1"), lag=0.0))
    assert [e.point for e in execution.trace if e.point.startswith("order.on_reserved")] == ["order.on_reserved#1"] * 2
    assert execution.status == "completed"
    assert commands(execution).count("payment.charge") == 1
    assert len(effects(execution, "payment")) == 1
    assert violations(execution) == []


def test_a_reply_late_after_the_orchestrator_began_compensating_is_ignored() -> None:
    # The charge's reply cannot be published at first: it goes out with the next relay, after
    # the orchestrator's deadline, while it is already refunding and releasing.
    execution = run(FailBeforeEffect(DeliveryPoint.parse("payment.publish#1")))
    assert execution.status == "compensated"
    late = next(m for m in execution.bus.messages if m.type == "payment.charge.reply")
    deadline = next(m for m in execution.bus.messages if m.role == "deferred" and m.envelope["causation_id"] == late.envelope["causation_id"])
    refund = next(m for m in execution.bus.messages if m.type == "payment.refund")
    assert deadline.due is not None
    assert deadline.due < late.time
    assert refund.seq < late.seq  # compensating before the reply came
    assert commands(execution) == ["inventory.reserve", "payment.charge", "payment.refund", "inventory.release"]
    assert all(e["undone"] for e in effects(execution, "payment") + effects(execution, "inventory"))
    assert violations(execution) == []


def test_a_command_redelivered_after_its_compensation_is_refused() -> None:
    # The reservation never reaches inventory at first; its redelivery comes after the release.
    execution = run(FailBeforeEffect(DeliveryPoint.parse("inventory.reserve#1")))
    assert execution.status == "compensated"
    assert effects(execution, "inventory") == []
    reply = next(m for m in execution.bus.messages if m.type == "inventory.reserve.reply")
    assert reply.envelope["data"] == {"status": "refused", "detail": "cancelled before it arrived"}
    assert violations(execution) == []


def test_a_command_it_cannot_read_is_dead_lettered_with_the_reason_and_compensated() -> None:
    execution = run(Corrupt(DeliveryPoint.parse("payment.charge#1")))
    [dead] = execution.bus.dead_letters
    assert dead.rejected
    assert dead.poison
    assert dead.reason.startswith("not an envelope")
    assert (dead.handler.service, dead.handler.method) == ("payment", "charge")
    assert execution.status == "compensated"  # the deadline passed: the orchestrator undid the order
    assert violations(execution) == []


def test_every_message_type_has_its_schema_on_disk_and_messages_meet_it() -> None:
    on_disk = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    assert on_disk == set(COMMAND_TYPES) | set(REPLY_TYPES)
    for message_type in on_disk:
        schema = json.loads((SCHEMAS / f"{message_type}.schema.json").read_text(encoding="utf-8"))
        assert schema == message_schema(message_type)
        jsonschema.Draft202012Validator.check_schema(schema)
    for message in run(Refuse(DeliveryPoint.parse("shipping.create#1"))).bus.messages:
        jsonschema.validate(message.envelope, message_schema(message.type))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.pop("reply_to"), "lacks reply_to"),
        (lambda m: m.update(reply_to="payment.refund.reply"), "reply_to must be 'payment.charge.reply'"),
        (lambda m: m.update(version=2), "unknown envelope version 2"),
        (lambda m: m["data"].update(amount="100"), "data.amount must be integer"),
        (lambda m: m.update(type="payment.steal"), "unknown message type 'payment.steal'"),
    ],
)
def test_a_receiver_says_why_it_cannot_act_on_a_command(change: Any, reason: str) -> None:
    charge = next(m for m in run().bus.messages if m.type == "payment.charge")
    message = json.loads(json.dumps(charge.envelope))
    change(message)
    problem = invalid(message, "payment.charge")
    assert problem is not None
    assert reason in problem


def _search(saga: Any) -> Any:
    return explore(saga, max_examples=200, sweep_faults=2, settings=hypothesis.settings(database=None), all_failures=False)


#: Each broken variant: the invariants its minimal plan breaks, and that plan.
EXPECTED = {
    "reply_not_deduplicated": (("no_double_effect",), "duplicate lag=0 at inventory.publish#1"),
    "timeout_forgets_step": (("services_agree",), "fail at inventory.reserve#1"),
    "late_reply_resumes": (("services_agree",), "fail at inventory.publish#1"),
}


@pytest.mark.parametrize("variant", [v for v in messaging_variants() if v.broken], ids=lambda v: v.name)
def test_the_search_finds_each_broken_variant_with_a_one_fault_plan(variant: Any) -> None:
    assert variant.kind == "messaging"
    assert variant.runtimes == ("sim",)
    result = _search(variant.saga)
    first = result.failures[0]
    assert (first.invariants, str(first.plan)) == EXPECTED[variant.name]
    assert {v.invariant for v in replay(variant.saga, first.plan)[1]} == set(first.invariants)
    assert replay(messaging_order_saga, first.plan.for_saga(messaging_order_saga))[1] == []


def test_every_variant_is_listed_once_after_the_correct_saga() -> None:
    found = messaging_variants()
    assert found[0].saga is messaging_order_saga
    assert not found[0].broken
    assert all(v.correct is messaging_order_saga for v in found)
    assert {v.name for v in found[1:]} == set(EXPECTED)
    assert all(v.bug for v in found[1:])


@pytest.mark.slow
def test_the_correct_saga_holds_under_the_demo_search() -> None:
    result = _search(messaging_order_saga)
    assert result.failures == ()
    assert result.executions > 1000
