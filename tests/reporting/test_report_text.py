"""The text people read when a saga breaks, pinned exactly: minimal plan, timeline, what broke
with its ledger rows, and the line that reproduces it."""

from __future__ import annotations

import re

import hypothesis
import pytest

import saga_verify
from saga_verify import FaultPlan, explore, replay
from saga_verify._reporting import render_execution, render_failure, render_result, render_timeline
from saga_verify.reference import charge_without_key, forward_order_compensation, notify_before_pivot, order_saga

CHARGE_WITHOUT_KEY_REPORT = """\
saga 'charge_without_key' broke no_double_charge
  minimal plan (1 fault):
    1. lose-reply at payment.charge#1
  found by sweep after 14 executions; minimised in <S> s

Timeline (virtual seconds; saga instance order-1):
  #0   t=   0.011  inventory.reserve#1      order_id=order-1 sku=sku-1 qty=2 key=order-1:reserve
                   -> ok: status=ok reservation_id=res-1
  #1   t=   0.024  payment.charge#1         order_id=order-1 amount=100
                   -> REPLY LOST (applied; caller timed out): status=ok charge_id=ch-1   <- lose-reply
  #2   t=   1.236  payment.charge#2         order_id=order-1 amount=100
                   -> ok: status=ok charge_id=ch-2
  #3   t=   1.247  shipping.create#1        order_id=order-1 reservation_id=res-1 key=order-1:ship
                   -> ok: status=ok shipment_id=sh-1
  #4   t=   1.260  notification.send#1      order_id=order-1 message=order order-1 is on its way key=order-1:notify
                   -> ok: status=ok message_id=msg-1
  => saga outcome: completed

Broken:
  no_double_charge: payment.charge took effect 2 times for order-1
      ledger  payment: charge 100 ch-1 for order-1 at t=0.024 (delivery #1)
      ledger  payment: charge 100 ch-2 for order-1 at t=1.236 (delivery #2)

Reproduce with: saga-verify replay <DIR>/charge_without_key-no_double_charge-<HASH>.json"""

PASSING_REPLAY = """\
Timeline (virtual seconds; saga instance order-1):
  #0   t=   0.011  inventory.reserve#1      order_id=order-1 sku=sku-1 qty=2 key=order-1:reserve
                   -> ok: status=ok reservation_id=res-1
  #1   t=   0.024  payment.charge#1         order_id=order-1 amount=100 key=order-1:charge
                   -> ok: status=ok charge_id=ch-1
  #2   t=   0.036  shipping.create#1        order_id=order-1 reservation_id=res-1 key=order-1:ship
                   -> ok: status=ok shipment_id=sh-1
  #3   t=   0.047  notification.send#1      order_id=order-1 message=order order-1 is on its way key=order-1:notify
                   -> ok: status=ok message_id=msg-1
  => saga outcome: completed

Every invariant held."""

_SECONDS = re.compile(r"minimised in (\d+\.\d{3}) s")
_PLAN_FILE = re.compile(r"charge_without_key-no_double_charge-([0-9a-f]{8})\.json")


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


@pytest.fixture
def failure(tmp_path):
    return explore(charge_without_key, settings=_no_db(), report_dir=tmp_path, seed=0).failures[0]


def _normalised(text: str, report_dir) -> str:
    # Only what differs between runs is replaced: the wall-clock shrink time and the report dir
    # (the plan file's hash is checked against the file itself).
    text = _SECONDS.sub("minimised in <S> s", text)
    text = text.replace(str(report_dir), "<DIR>")
    return _PLAN_FILE.sub("charge_without_key-no_double_charge-<HASH>.json", text)


def test_failure_report_is_pinned(failure, tmp_path) -> None:
    text = saga_verify.report(failure)

    assert _normalised(text, tmp_path) == CHARGE_WITHOUT_KEY_REPORT
    assert _SECONDS.search(text)
    assert text.endswith(f"Reproduce with: saga-verify replay {failure.plan_path}")
    assert failure.plan_path.name == _PLAN_FILE.search(text).group(0)
    assert failure.plan_path.parent == tmp_path


def test_failure_report_reads_top_to_bottom(failure) -> None:
    text = saga_verify.report(failure)
    order = [
        text.index("minimal plan (1 fault):"),
        text.index("1. lose-reply at payment.charge#1"),
        text.index("Timeline"),
        text.index("REPLY LOST"),
        text.index("=> saga outcome: completed"),
        text.index("Broken:"),
        text.index("ledger  payment: charge 100 ch-1"),
        text.index("Reproduce with: saga-verify replay "),
    ]
    assert order == sorted(order)


def test_result_report_of_a_single_failure_is_the_failure_report(tmp_path) -> None:
    result = explore(forward_order_compensation, settings=_no_db(), report_dir=tmp_path)
    assert len(result.failures) == 1
    assert saga_verify.report(result) == render_result(result) == render_failure(result.failures[0]) == saga_verify.report(result.failures[0])


def test_result_report_of_several_failures_lists_each(tmp_path) -> None:
    result = explore(charge_without_key, settings=_no_db(), report_dir=tmp_path)
    parts = [render_failure(f) for f in result.failures]
    assert len(parts) > 1
    head = f"{len(parts)} distinct broken invariants in saga 'charge_without_key':"
    assert saga_verify.report(result) == head + "\n\n" + "\n\n".join(parts)


def test_result_report_of_a_saga_that_holds() -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=3)
    text = saga_verify.report(result)
    assert re.fullmatch(
        r"saga 'order' held every invariant over 44 executions \(39 in the sweep, 3 from Hypothesis\) in \d+\.\d\d s\n"
        r"  every plan of up to 1 fault over these calls holds \(39 plans\)",
        text,
    ), text


def test_result_report_of_a_saga_that_holds_says_when_the_sweep_stopped_early() -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=3, sweep_budget=25, max_examples=0)
    assert result.ok
    assert saga_verify.report(result).splitlines()[1] == (
        "  the sweep stopped at its budget after 25 plans: not every plan of up to 3 faults was tried "
        "(raise sweep_budget, or --sweep-budget, to go further)"
    )


def test_result_report_of_a_search_without_a_sweep_claims_no_sweep() -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=3)
    assert "\n" not in saga_verify.report(result)


def test_report_of_a_saga_that_breaks_on_a_good_day(tmp_path) -> None:
    failure = explore(notify_before_pivot, settings=_no_db(), report_dir=tmp_path).failures[0]
    lines = saga_verify.report(failure).splitlines()
    assert lines[0] == "saga 'notify_before_pivot' broke irreversible_last, forward_order"
    assert lines[1] == "  minimal plan (0 faults): none: it breaks on a good day"
    assert lines[2] == "  found by baseline after 2 executions; minimised in 0.000 s"
    assert lines[-7:-1] == [
        "  irreversible_last: irreversible notification.send took effect for order-1 before shipping.create had succeeded",
        "      ledger  notification: send 1 msg-1 for order-1 at t=0.036 (delivery #2)",
        "  forward_order: notification.send took effect for order-1 before shipping.create, which it depends on",
        "      ledger  notification: send 1 msg-1 for order-1 at t=0.036 (delivery #2)",
        "      ledger  shipping: create 1 sh-1 for order-1 at t=0.047 (delivery #3)",
        "",
    ]
    assert lines[-1] == f"Reproduce with: saga-verify replay {failure.plan_path}"


def test_report_without_a_plan_file_reproduces_in_python() -> None:
    failure = explore(charge_without_key, settings=_no_db(), report_dir=None).failures[0]
    last = saga_verify.report(failure).splitlines()[-1]
    plan_json = failure.plan.dumps().strip()
    assert last == f"Reproduce with: saga_verify.replay(saga, saga_verify.FaultPlan.loads({plan_json!r}))"


def test_report_lists_every_reproduce_command(failure, tmp_path) -> None:
    from dataclasses import replace

    with_pytest = replace(failure, pytest_replay="pytest test_x.py::test_saga --saga-replay=plan.json")
    lines = saga_verify.report(with_pytest).splitlines()
    assert lines[-2:] == [
        f"Reproduce with: saga-verify replay {failure.plan_path}",
        "            or: pytest test_x.py::test_saga --saga-replay=plan.json",
    ]


def test_replayed_execution_that_passes(tmp_path) -> None:
    execution, violations = replay(order_saga, FaultPlan())
    assert render_execution(execution, violations) == PASSING_REPLAY


def test_replayed_execution_that_breaks_shows_the_same_timeline_and_evidence(failure) -> None:
    execution, violations = replay(charge_without_key, FaultPlan.load(failure.plan_path))
    text = render_execution(execution, violations)
    report = saga_verify.report(failure)
    timeline = render_timeline(execution)
    assert text.startswith(timeline + "\n\nBroken:\n")
    assert timeline in report
    broken = report[report.index("Broken:") : report.index("\n\nReproduce with:")]
    assert text.endswith(broken)


@pytest.mark.parametrize(
    ("plan", "shown"),
    [
        ('{"faults": [{"kind": "fail", "at": "payment.charge#1"}]}', "-> FAILED (connection error, not delivered)   <- fail"),
        ('{"faults": [{"kind": "timeout", "at": "payment.charge#1"}]}', "-> TIMED OUT (not delivered)   <- timeout"),
        ('{"faults": [{"kind": "duplicate", "at": "payment.charge#1", "lag": 0}]}', "-> DUPLICATE COPY"),
        ('{"faults": [{"kind": "delay", "at": "payment.charge#1", "seconds": 30}]}', "-> HELD (caller timed out; lands later)   <- delay seconds=30"),
        ('{"faults": [{"kind": "delay", "at": "payment.charge#1", "seconds": 30}]}', "-> LANDED LATE"),
        ('{"faults": [{"kind": "refuse", "at": "payment.charge#1"}]}', "-> ok: status=refused reason=card_declined   <- refuse"),
    ],
)
def test_timeline_names_each_outcome(plan, shown) -> None:
    execution, _ = replay(order_saga, FaultPlan.loads(plan))
    assert shown in render_timeline(execution)


def test_timeline_of_a_saga_that_never_ends() -> None:
    from saga_verify.reference import unbounded_retry

    execution, violations = replay(unbounded_retry, FaultPlan.loads('{"faults": [{"kind": "outage", "at": "inventory.reserve#1"}]}'))
    text = render_execution(execution, violations)
    assert text.splitlines()[-7:] == [
        "  => saga outcome: halted: made more than 200 calls",
        "",
        "Broken:",
        "  terminates: the saga did not finish: it made more than 200 calls",
        "      trace   #197 inventory.reserve#198 -> FAILED (connection error, not delivered)",
        "      trace   #198 inventory.reserve#199 -> FAILED (connection error, not delivered)",
        "      trace   #199 inventory.reserve#200 -> FAILED (connection error, not delivered)",
    ]
    assert [v.invariant for v in violations] == [saga_verify.invariants.terminates.name]


def test_the_timeline_shows_back_offs_and_the_deadline_between_the_deliveries() -> None:
    from saga_verify import Ledger, Saga, Step, run_plan
    from saga_verify.faults import DeliveryPoint, Outage

    class Payment:
        def __init__(self) -> None:
            self.ledger = Ledger()

        def charge(self, idempotency_key: str) -> dict[str, str]:
            return {"status": "ok"}

        def refund(self, idempotency_key: str) -> dict[str, str]:
            return {"status": "ok"}

    def run(services: object, _: object) -> str:
        services.clock.sleep(9.0)  # type: ignore[attr-defined]
        try:
            services.retry(services.payment.charge, idempotency_key="k")  # type: ignore[attr-defined]
        except ConnectionError:
            services.clock.sleep(1.0)  # type: ignore[attr-defined]  # compensating past the deadline is allowed
            services.payment.refund(idempotency_key="r")  # type: ignore[attr-defined]
            return "compensated"
        return "completed"

    saga = Saga(
        "backing-off",
        steps=[Step("payment", "charge", "refund", retries=3, backoff=1.0, max_backoff=2.0)],
        participants=lambda: {"payment": Payment()},
        run=run,
        deadline=10.0,
    )
    execution = run_plan(saga, FaultPlan((Outage(DeliveryPoint("payment", "charge")),)))
    from saga_verify.invariants import check, invariants_for

    text = render_execution(execution, check(execution, invariants_for(saga)))
    lines = [line for line in text.splitlines() if line.startswith(("  ~~", "  #"))]
    assert [line.split()[0] for line in lines] == ["#0", "~~", "#1", "~~", "~~", "#2"]
    assert "backs off: payment.charge failed; back-off" in lines[1]
    assert "before retry 1" in lines[1]
    assert "GIVES UP: payment.charge failed; a retry after" in lines[3]
    assert "would pass the deadline (t=10)" in lines[3]
    assert lines[4].endswith("DEADLINE: the saga's deadline passes (t=10)")
    assert "payment.refund#1" in lines[5]
    assert "Every invariant held." in text


def test_timeline_shows_each_coordinator_crash_and_the_recovery_after_it() -> None:
    from saga_verify.reference import durable_order_saga

    plan = FaultPlan.loads(
        '{"faults": [{"kind": "coordinator-crash-after", "at": "payment.charge#1"},'
        ' {"kind": "coordinator-crash-before", "at": "payment.charge#2"}]}'
    )
    execution, _ = replay(durable_order_saga, plan)
    lines = render_timeline(execution).splitlines()
    assert lines[3:9] == [
        "  #1   t=   0.024  payment.charge#1         order_id=order-1 amount=100 key=order-1:charge:0",
        "                   -> COORDINATOR DIED before reading the reply (applied): status=ok charge_id=ch-1   <- coordinator-crash-after",
        "  ~~~~ coordinator crashed: a fresh coordinator, with nothing of the old one's memory, reopens the store and recovers (recovery 1)",
        # The recovering coordinator waited for the dead one's lease to expire (30 s after its last write).
        "  #2   t=  30.023  payment.charge#2         order_id=order-1 amount=100 key=order-1:charge:0",
        "                   -> COORDINATOR DIED before sending it (not delivered)   <- coordinator-crash-before",
        "  ~~~~ coordinator crashed: a fresh coordinator, with nothing of the old one's memory, reopens the store and recovers (recovery 2)",
    ]
    assert lines[-1] == "  => saga outcome: completed"
