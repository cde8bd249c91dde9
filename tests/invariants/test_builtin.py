"""The built-in invariants: each one breaks on a real execution of a saga with the bug it is
about, says what broke, shows the ledger rows that prove it, and holds for the correct saga
under the same plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import saga_verify.reference as ref
from saga_verify import Execution, FaultPlan, Invariant, Ledger, LedgerRow, Saga, Step, TraceEntry, Violation, run_plan
from saga_verify.faults import (
    Delay,
    DeliveryPoint,
    Duplicate,
    FailBeforeEffect,
    Fault,
    LoseReply,
    Outage,
    Refuse,
    Timeout,
)
from saga_verify.invariants import (
    all_or_nothing,
    check,
    compensation_matches_effect,
    forward_order,
    full_compensation,
    invariants_for,
    irreversible_last,
    no_double_effect,
    no_forward_after_compensation,
    no_unhandled_error,
    reverse_compensation_order,
    standard_invariants,
    terminates,
)
from saga_verify.reference import ORDER, STEPS, Inventory, Notification, OrderSaga, Payment, Shipping

P = DeliveryPoint.parse


def plan(*faults: Fault) -> FaultPlan:
    return FaultPlan(tuple(faults))


def participants(payment: type[Payment] = Payment) -> Callable[[], dict[str, object]]:
    return lambda: {
        "inventory": Inventory(),
        "payment": payment(),
        "shipping": Shipping(),
        "notification": Notification(),
    }


def order_variant(name: str, saga_class: type[OrderSaga], payment: type[Payment] = Payment) -> Saga:
    return Saga(
        name, steps=STEPS, participants=participants(payment), run=lambda s, o: saga_class(s, o).run(), input=ORDER
    )


# -- in-test broken variants, for the bugs the reference variants do not carry ------------------


class ReserveWithoutKey(OrderSaga):
    """Reserves stock without an idempotency key."""

    def reserve(self) -> None:
        reply = self.step(self.services.inventory.reserve, self.release, order_id=self.order_id, sku="sku-1", qty=2)
        self.reservation_id = reply["reservation_id"]


class NotifyWithoutKey(OrderSaga):
    """Sends the notification without an idempotency key."""

    def notify(self) -> None:
        self.retry(self.services.notification.send, order_id=self.order_id, message="on its way")


class RefundsAnything(Payment):
    """Refunds a charge it never made (pays out money it never took)."""

    def refund(self, *, charge_key: str, idempotency_key: str | None = None) -> dict[str, Any]:
        self.ledger.record("refund", 100, None)
        return {"status": "ok"}


class NotifyThenRollBack(OrderSaga):
    """Notifies the customer, then rolls the order back anyway."""

    def run(self) -> str:
        self.reserve()
        self.charge()
        self.ship()
        self.notify()
        return self.compensate()


class LetsErrorsOut(OrderSaga):
    """Does not retry: a transport error escapes the saga."""

    def retry(self, call: Any, **request: Any) -> Any:
        return call(**request)


reserve_without_key = order_variant("reserve_without_key", ReserveWithoutKey)
notify_without_key = order_variant("notify_without_key", NotifyWithoutKey)
refunds_anything = order_variant("refunds_anything", OrderSaga, RefundsAnything)
notify_then_roll_back = order_variant("notify_then_roll_back", NotifyThenRollBack)
lets_errors_out = order_variant("lets_errors_out", LetsErrorsOut)


def violations_of(saga: Saga, the_plan: FaultPlan, invariant: Invariant) -> tuple[Execution, list[Violation]]:
    execution = run_plan(saga, the_plan)
    return execution, invariant(execution)


def rows(execution: Execution, participant: str, action: str) -> list[LedgerRow]:
    return execution.rows(participant, action)


def assert_correct_saga_holds(the_plan: FaultPlan) -> None:
    execution = run_plan(ref.order_saga, the_plan)
    assert check(execution, standard_invariants(ref.order_saga)) == []


# -- no_double_<action> ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("saga", "point", "participant", "action"),
    [
        (reserve_without_key, "inventory.reserve#1", "inventory", "reserve"),
        (ref.charge_without_key, "payment.charge#1", "payment", "charge"),
        (ref.fresh_key_on_retry, "shipping.create#1", "shipping", "create"),
        (notify_without_key, "notification.send#1", "notification", "send"),
    ],
    ids=["reserve", "charge", "create", "send"],
)
def test_no_double_effect(saga: Saga, point: str, participant: str, action: str) -> None:
    the_plan = plan(LoseReply(P(point)))
    step = next(s for s in saga.steps if (s.participant, s.action) == (participant, action))
    invariant = no_double_effect(step)
    assert invariant.name == f"no_double_{action}"
    execution, (violation,) = violations_of(saga, the_plan, invariant)
    assert violation.invariant == f"no_double_{action}"
    assert violation.message == f"{participant}.{action} took effect 2 times for order-1"
    assert violation.evidence == tuple(rows(execution, participant, action))
    assert len(violation.evidence) == 2
    assert all(isinstance(r, LedgerRow) for r in violation.evidence)
    assert str(violation) == f"no_double_{action}: {violation.message}"
    # the same plan on the correct saga: one effect, every invariant holds
    assert invariant(run_plan(ref.order_saga, the_plan)) == []
    assert_correct_saga_holds(the_plan)


def test_no_double_effect_counts_per_saga_instance() -> None:
    class TwoOrders:
        def __init__(self) -> None:
            self.ledger = Ledger()

        def charge(self) -> str:
            self.ledger.record("charge", correlation_id="order-1")
            self.ledger.record("charge", correlation_id="order-2")
            return "ok"

    step = Step("payment", "charge")
    saga = Saga(
        "two-orders",
        steps=[step],
        participants=lambda: {"payment": TwoOrders()},
        run=lambda s, o: (s.payment.charge(), "completed")[1],
    )
    execution = run_plan(saga)
    assert len(execution.rows("payment", "charge")) == 2
    assert no_double_effect(step)(execution) == []


# -- compensation_matches_effect ----------------------------------------------------------------


def test_compensation_matches_effect_catches_a_double_refund() -> None:
    the_plan = plan(Refuse(P("shipping.create#1")), Duplicate(P("payment.refund#1")))
    execution, (violation,) = violations_of(ref.non_idempotent_refund, the_plan, compensation_matches_effect)
    assert violation.invariant == "compensation_matches_effect"
    assert violation.message == "payment.refund took effect 2 times after only 1 payment.charge for order-1"
    (charge,) = rows(execution, "payment", "charge")
    refunds = rows(execution, "payment", "refund")
    assert len(refunds) == 2
    assert violation.evidence == (charge, *refunds)
    assert_correct_saga_holds(the_plan)


def test_compensation_matches_effect_catches_a_refund_without_a_charge() -> None:
    # the charge times out every time: its outcome is unknown, so the saga refunds to be safe
    the_plan = plan(Timeout(P("payment.charge#1")), Timeout(P("payment.charge#2")), Timeout(P("payment.charge#3")))
    execution, (violation,) = violations_of(refunds_anything, the_plan, compensation_matches_effect)
    assert rows(execution, "payment", "charge") == []
    assert violation.message == "payment.refund took effect before any payment.charge for order-1"
    assert violation.evidence == tuple(rows(execution, "payment", "refund"))
    assert_correct_saga_holds(the_plan)


# -- full_compensation -------------------------------------------------------------------------


def test_full_compensation_catches_a_leaked_charge() -> None:
    the_plan = plan(Refuse(P("shipping.create#1")), Outage(P("payment.refund#1")))
    execution, (violation,) = violations_of(ref.swallowed_compensation_error, the_plan, full_compensation)
    assert execution.status == "compensated"
    assert violation.invariant == "full_compensation"
    assert violation.message == (
        "the saga reported compensated, but payment.charge is still in effect for order-1 (1 x charge, 0 x refund, net 100)"
    )
    assert violation.evidence == tuple(rows(execution, "payment", "charge"))
    # the correct saga says "failed" under this plan: full_compensation does not apply to it
    correct = run_plan(ref.order_saga, the_plan)
    assert correct.status == "failed"
    assert full_compensation(correct) == []
    assert_correct_saga_holds(the_plan)


def test_full_compensation_catches_an_irreversible_step_that_took_effect() -> None:
    the_plan = plan(Refuse(P("shipping.create#1")))
    execution, (violation,) = violations_of(ref.notify_before_pivot, the_plan, full_compensation)
    assert (
        violation.message == "the saga reported compensated, but irreversible notification.send took effect for order-1"
    )
    assert violation.evidence == tuple(rows(execution, "notification", "send"))
    assert_correct_saga_holds(the_plan)


# -- all_or_nothing ----------------------------------------------------------------------------


def test_all_or_nothing_catches_a_completed_saga_missing_a_step() -> None:
    the_plan = plan(Refuse(P("payment.charge#1")))
    execution, (violation,) = violations_of(ref.decline_treated_as_success, the_plan, all_or_nothing)
    assert execution.status == "completed"
    assert violation.invariant == "all_or_nothing"
    assert violation.message == "the saga reported completed, but payment.charge is not in effect for order-1"
    assert rows(execution, "payment", "charge") == []
    assert_correct_saga_holds(the_plan)


def test_all_or_nothing_catches_a_failed_saga_that_never_tried_to_undo() -> None:
    the_plan = plan(LoseReply(P("shipping.create#1")), Outage(P("shipping.create#2")), Outage(P("payment.refund#1")))
    execution, (violation,) = violations_of(ref.lost_reply_not_compensated, the_plan, all_or_nothing)
    assert execution.status == "failed"
    assert violation.message == (
        "the saga reported failed and left shipping.create in effect for order-1 without trying shipping.cancel"
    )
    (shipment,) = rows(execution, "shipping", "create")
    assert violation.evidence == (shipment,)
    assert_correct_saga_holds(the_plan)


def test_all_or_nothing_accepts_a_failed_saga_that_tried() -> None:
    # the refund could not be made: the charge stays in effect, but the saga tried and said so
    execution = run_plan(ref.order_saga, plan(Refuse(P("shipping.create#1")), Outage(P("payment.refund#1"))))
    assert execution.status == "failed"
    assert len(rows(execution, "payment", "charge")) == 1
    assert all_or_nothing(execution) == []


# -- terminates --------------------------------------------------------------------------------


def test_terminates_catches_an_endless_retry() -> None:
    the_plan = plan(Outage(P("payment.charge#1")))
    execution, (violation,) = violations_of(ref.unbounded_retry, the_plan, terminates)
    assert execution.status == "halted"
    assert violation.invariant == "terminates"
    assert violation.message == "the saga did not finish: it made more than 200 calls"
    # the evidence is where it was spinning: the last deliveries
    assert len(violation.evidence) == 3
    assert all(isinstance(e, TraceEntry) for e in violation.evidence)
    assert violation.evidence == execution.trace[-3:]
    assert {(e.participant, e.operation, e.outcome) for e in violation.evidence} == {("payment", "charge", "failed")}
    assert_correct_saga_holds(the_plan)


def test_terminates_catches_a_status_that_is_not_terminal() -> None:
    saga = Saga("odd", steps=STEPS, participants=participants(), run=lambda s, o: "pending", input=ORDER)
    (violation,) = terminates(run_plan(saga))
    assert violation.message == "the saga ended with status 'pending', not one of completed, compensated, failed"


# -- no_unhandled_error ------------------------------------------------------------------------


def test_no_unhandled_error_catches_an_escaped_transport_error() -> None:
    the_plan = plan(FailBeforeEffect(P("payment.charge#1")))
    execution, (violation,) = violations_of(lets_errors_out, the_plan, no_unhandled_error)
    assert execution.status == "crashed"
    assert isinstance(execution.error, ConnectionRefusedError)
    assert violation.invariant == "no_unhandled_error"
    assert violation.message.startswith("the saga raised ConnectionRefusedError: payment.charge#1: connection refused")
    (entry,) = violation.evidence
    assert (entry.point, entry.outcome) == ("payment.charge#1", "failed")
    assert no_unhandled_error(run_plan(lets_errors_out)) == []  # fine on a good day
    assert_correct_saga_holds(the_plan)


# -- reverse_compensation_order ----------------------------------------------------------------


def test_reverse_compensation_order_judges_the_order_compensations_were_issued() -> None:
    # The network may land a held refund after the release; the correct saga issued them in
    # reverse and gave up on the refund honestly, so the order holds.
    the_plan = plan(Refuse(P("shipping.create#1")), Delay(P("payment.refund#1"), seconds=30.0), Outage(P("payment.refund#2")))
    execution = run_plan(ref.order_saga, the_plan)
    landed = [r.action for r in execution.rows() if r.action in ("refund", "release")]
    assert landed == ["release", "refund"]
    assert reverse_compensation_order(execution) == []


def test_reverse_compensation_order_catches_forward_order_undo() -> None:
    the_plan = plan(Refuse(P("shipping.create#1")))
    execution, (violation,) = violations_of(ref.forward_order_compensation, the_plan, reverse_compensation_order)
    assert violation.invariant == "reverse_compensation_order"
    assert violation.message == (
        "the saga called inventory.release before payment.refund for order-1, but inventory.reserve "
        "took effect before payment.charge: compensations must run in reverse"
    )
    release_call = next(e for e in execution.trace if e.point == "inventory.release#1")
    refund_call = next(e for e in execution.trace if e.point == "payment.refund#1")
    assert violation.evidence == (
        *rows(execution, "inventory", "reserve"),
        *rows(execution, "payment", "charge"),
        release_call,
        refund_call,
    )
    assert_correct_saga_holds(the_plan)


# -- no_forward_after_compensation -------------------------------------------------------------


@pytest.mark.parametrize(
    "late",
    [Duplicate(P("payment.charge#1"), lag=30.0), Delay(P("payment.charge#1"), seconds=30.0)],
    ids=["late-copy", "held-request"],
)
def test_no_forward_after_compensation_catches_a_late_charge(late: Fault) -> None:
    the_plan = plan(late, Refuse(P("shipping.create#1")))
    execution, (violation,) = violations_of(ref.refund_forgets_charge, the_plan, no_forward_after_compensation)
    assert violation.invariant == "no_forward_after_compensation"
    (refund,) = rows(execution, "payment", "refund")
    late_charge = rows(execution, "payment", "charge")[-1]
    assert late_charge.time >= 30.0
    assert violation.message == (
        f"payment.charge took effect for order-1 after compensation began (payment.refund at t={refund.time:.3f})"
    )
    assert violation.evidence == (refund, late_charge)
    assert_correct_saga_holds(the_plan)


# -- irreversible_last -------------------------------------------------------------------------


def test_irreversible_last_catches_a_notification_before_the_shipment() -> None:
    the_plan = plan(Refuse(P("shipping.create#1")))
    execution, (violation,) = violations_of(ref.notify_before_pivot, the_plan, irreversible_last)
    assert violation.invariant == "irreversible_last"
    assert (
        violation.message
        == "irreversible notification.send took effect for order-1 before shipping.create had succeeded"
    )
    assert violation.evidence == tuple(rows(execution, "notification", "send"))
    assert_correct_saga_holds(the_plan)


def test_irreversible_last_catches_an_undo_after_the_notification() -> None:
    execution, (violation,) = violations_of(notify_then_roll_back, plan(), irreversible_last)
    (send,) = rows(execution, "notification", "send")
    undone = [r for r in execution.rows() if r.action in ("cancel", "refund", "release")]
    assert [r.action for r in undone] == ["cancel", "refund", "release"]
    assert violation.message.startswith("irreversible notification.send took effect for order-1, then ")
    assert violation.message.endswith(" undid a step")
    for name in ("shipping.cancel", "payment.refund", "inventory.release"):
        assert name in violation.message
    assert violation.evidence[0] == send
    assert set(violation.evidence[1:]) == set(undone)
    assert len(violation.evidence) == 4


# -- all together ------------------------------------------------------------------------------

EVERY_PLAN = [
    plan(),
    plan(LoseReply(P("inventory.reserve#1"))),
    plan(LoseReply(P("payment.charge#1"))),
    plan(LoseReply(P("shipping.create#1"))),
    plan(LoseReply(P("notification.send#1"))),
    plan(Refuse(P("shipping.create#1")), Duplicate(P("payment.refund#1"))),
    plan(Refuse(P("shipping.create#1")), Outage(P("payment.refund#1"))),
    plan(Refuse(P("payment.charge#1"))),
    plan(LoseReply(P("shipping.create#1")), Outage(P("shipping.create#2")), Outage(P("payment.refund#1"))),
    plan(Outage(P("payment.charge#1"))),
    plan(FailBeforeEffect(P("payment.charge#1"))),
    plan(Refuse(P("shipping.create#1"))),
    plan(Duplicate(P("payment.charge#1"), lag=30.0), Refuse(P("shipping.create#1"))),
    plan(Delay(P("payment.charge#1"), seconds=30.0), Refuse(P("shipping.create#1"))),
    plan(Timeout(P("payment.charge#1")), Timeout(P("payment.charge#2")), Timeout(P("payment.charge#3"))),
]


@pytest.mark.parametrize("the_plan", EVERY_PLAN, ids=str)
def test_the_correct_saga_holds_every_invariant(the_plan: FaultPlan) -> None:
    execution = run_plan(ref.order_saga, the_plan)
    assert check(execution, standard_invariants(ref.order_saga)) == []
    assert check(execution, invariants_for(ref.order_saga)) == []


def test_each_broken_reference_variant_breaks_what_its_plan_targets() -> None:
    expected = {
        "charge_without_key": (plan(LoseReply(P("payment.charge#1"))), {"no_double_charge"}),
        "fresh_key_on_retry": (plan(LoseReply(P("shipping.create#1"))), {"no_double_create"}),
        "forward_order_compensation": (plan(Refuse(P("shipping.create#1"))), {"reverse_compensation_order"}),
        "notify_before_pivot": (plan(Refuse(P("shipping.create#1"))), {"full_compensation", "irreversible_last", "forward_order"}),
        "unbounded_retry": (plan(Outage(P("payment.charge#1"))), {"terminates"}),
    }
    by_name = {v.name: v for v in ref.variants()}
    for name, (the_plan, broken) in expected.items():
        variant = by_name[name]
        assert variant.broken
        assert variant.bug
        execution = run_plan(variant.saga, the_plan)
        assert {v.invariant for v in check(execution, standard_invariants(variant.saga))} == broken, name


def test_check_reports_in_the_order_the_invariants_are_given() -> None:
    execution = run_plan(
        ref.refund_forgets_charge, plan(Duplicate(P("payment.charge#1"), lag=30.0), Refuse(P("shipping.create#1")))
    )
    invariants = list(standard_invariants(ref.refund_forgets_charge))
    forward = [v.invariant for v in check(execution, invariants)]
    assert forward == ["no_double_charge", "full_compensation", "no_forward_after_compensation"]
    backward = [v.invariant for v in check(execution, invariants[::-1])]
    assert backward == forward[::-1]
    assert check(execution, []) == []


def test_standard_invariant_names() -> None:
    names = [i.name for i in standard_invariants(ref.order_saga)]
    assert names == [
        "terminates",
        "no_unhandled_error",
        "no_double_reserve",
        "no_double_charge",
        "no_double_create",
        "no_double_send",
        "compensation_matches_effect",
        "full_compensation",
        "all_or_nothing",
        "no_forward_after_compensation",
        "reverse_compensation_order",
        "irreversible_last",
        "forward_order",
    ]
    assert all(i.description for i in standard_invariants(ref.order_saga))
    assert [i.name for i in standard_invariants(STEPS)] == names  # the steps alone will do


def test_standard_invariant_names_are_unique_when_actions_share_a_name() -> None:
    # Names key a search's findings (one bug per broken invariant, the plan's "violated" list,
    # minimisation towards the broken invariant), so two steps with the same action on different
    # participants must not give two invariants one name.
    steps = [Step("shipping", "create", compensation="cancel"), Step("invoice", "create", compensation="void")]
    names = [i.name for i in standard_invariants(steps)]
    assert len(names) == len(set(names)), names


def test_a_saga_may_name_its_own_invariants() -> None:
    saga = Saga(
        "own",
        steps=STEPS,
        participants=participants(),
        run=lambda s, o: OrderSaga(s, o).run(),
        input=ORDER,
        invariants=[terminates],
    )
    assert invariants_for(saga) == (terminates,)
    assert [i.name for i in invariants_for(ref.order_saga)] == [i.name for i in standard_invariants(ref.order_saga)]


def test_invariants_read_the_ledgers_not_the_plan() -> None:
    # Two plans, one with a fault that never happens: same execution, same verdict.
    a = run_plan(ref.charge_without_key, plan(LoseReply(P("payment.charge#1"))))
    b = run_plan(ref.charge_without_key, plan(LoseReply(P("payment.charge#1")), Outage(P("payment.refund#3"))))
    invariants = standard_invariants(ref.charge_without_key)
    assert [str(v) for v in check(a, invariants)] == [str(v) for v in check(b, invariants)]


# -- over-compensation, step dependencies ------------------------------------------------------------
def test_a_double_refund_is_named_over_compensation() -> None:
    # It used to say the charge was "still in effect (net -100)".
    execution = run_plan(ref.non_idempotent_refund, plan(Refuse(P("shipping.create#1")), LoseReply(P("payment.refund#1"))))
    (violation,) = full_compensation(execution)
    assert violation.message == (
        "the saga reported compensated, but payment.charge was over-compensated for order-1: "
        "payment.refund undid more than took effect (1 x charge, 2 x refund, net -100)"
    )


class _Recorder:
    """A participant whose every operation records itself, so a saga can make effects land in
    any order."""

    def __init__(self) -> None:
        self.ledger = Ledger()

    def __getattr__(self, operation: str) -> Callable[..., str]:
        def do(**_: Any) -> str:
            self.ledger.record(operation)
            return "ok"

        return do


def _ordered(steps: list[Step], calls: list[tuple[str, str]]) -> Execution:
    """Run a saga that makes ``calls`` (participant, operation) in this order and says it compensated."""

    def run(services: Any, order: Any) -> str:
        for participant, operation in calls:
            getattr(getattr(services, participant), operation)()
        return "compensated"

    names = {s.participant for s in steps}
    return run_plan(Saga("ordered", steps=steps, participants=lambda: {n: _Recorder() for n in names}, run=run, input={"order_id": "o-1"}))


def test_forward_order_needs_the_step_before_by_default() -> None:
    steps = [Step("a", "do", "undo"), Step("b", "do", "undo")]
    assert forward_order(_ordered(steps, [("a", "do"), ("b", "do")])) == []
    (early,) = forward_order(_ordered(steps, [("b", "do"), ("a", "do")]))
    assert early.message == "b.do took effect for o-1 before a.do, which it depends on"
    (alone,) = forward_order(_ordered(steps, [("b", "do")]))
    assert alone.message == "b.do took effect for o-1 without a.do, which it depends on"


def test_forward_order_follows_what_each_step_declares() -> None:
    independent = [Step("a", "do", "undo"), Step("b", "do", "undo", depends_on=())]
    assert forward_order(_ordered(independent, [("b", "do"), ("a", "do")])) == []
    joined = [Step("a", "do", "undo"), Step("b", "do", "undo", depends_on=()), Step("c", "do", "undo", depends_on=("a.do", "b.do"))]
    (violation,) = forward_order(_ordered(joined, [("a", "do"), ("c", "do"), ("b", "do")]))
    assert violation.message == "c.do took effect for o-1 before b.do, which it depends on"


def test_reverse_compensation_order_constrains_only_steps_that_depend_on_each_other() -> None:
    chained = [Step("a", "do", "undo"), Step("b", "do", "undo")]
    forward_undo = [("a", "do"), ("b", "do"), ("a", "undo"), ("b", "undo")]
    assert [v.invariant for v in reverse_compensation_order(_ordered(chained, forward_undo))] == ["reverse_compensation_order"]
    independent = [Step("a", "do", "undo"), Step("b", "do", "undo", depends_on=())]
    assert reverse_compensation_order(_ordered(independent, forward_undo)) == []
    # Dependence goes through other steps: c depends on a through b.
    through = [Step("a", "do", "undo"), Step("x", "do", "undo", depends_on=()), Step("b", "do", "undo", depends_on=("a.do",)), Step("c", "do", "undo", depends_on=("b.do",))]
    calls = [("a", "do"), ("x", "do"), ("b", "do"), ("c", "do"), ("a", "undo"), ("x", "undo"), ("b", "undo"), ("c", "undo")]
    broken = {v.message.split(" for ")[0] for v in reverse_compensation_order(_ordered(through, calls))}
    assert broken == {
        "the saga called a.undo before b.undo",
        "the saga called a.undo before c.undo",
        "the saga called b.undo before c.undo",
    }
