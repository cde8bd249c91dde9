"""The reference durable order saga: its SQLite saga log in memory and a corrupt file (what both
stores do is in test_saga_log_stores.py), an idempotent start by order id, the log written ahead,
and recovery on the HTTP runtime."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from saga_verify import Durable, FaultPlan, Saga, replay, run_plan
from saga_verify.errors import RecoveryError
from saga_verify.reference import ORDER, DurableOrderSaga, SqliteSagaLog, durable_order_saga


def test_in_memory_the_log_outlives_its_coordinator_and_loses_what_it_had_not_committed() -> None:
    log = SqliteSagaLog()
    log.append("o-1", {"type": "started"})
    # A transaction the dead coordinator had open: rolled back when the store comes back.
    log._db.execute("BEGIN")
    log.append("o-1", {"type": "intent", "step": "charge", "key": "k"})
    reopened = log.reopen()
    assert reopened is not log
    assert reopened.entries("o-1") == [{"type": "started"}]
    reopened.close()


def test_a_corrupt_file_is_refused_by_name(tmp_path) -> None:
    path = tmp_path / "log.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(RecoveryError, match=rf"saga log {str(path)!r} cannot be read: .*not an SQLite database"):
        SqliteSagaLog(str(path))


def test_a_saga_over_a_store_it_cannot_read_stops_with_that_error(tmp_path) -> None:
    path = tmp_path / "log.sqlite"
    path.write_bytes(b"garbage" * 100)
    saga = dataclasses.replace(durable_order_saga, durable=Durable(store=lambda: SqliteSagaLog(str(path))))
    with pytest.raises(RecoveryError, match="cannot be read"):
        run_plan(saga)


class _Services:
    """The services of a second start command: the participants of a finished execution."""

    def __init__(self, execution: Any, store: SqliteSagaLog) -> None:
        for name, obj in execution.participants.items():
            setattr(self, name, obj)
        self.store = store


def test_a_second_start_of_a_finished_order_answers_its_outcome_and_calls_nobody() -> None:
    log = SqliteSagaLog()
    execution = run_plan(_over(log))
    assert execution.status == "completed"
    calls = {name: len(obj.ledger) for name, obj in execution.participants.items()}
    entries = len(log.entries(ORDER["order_id"]))
    assert DurableOrderSaga(_Services(execution, log), dict(ORDER)).run() == "completed"
    assert {name: len(obj.ledger) for name, obj in execution.participants.items()} == calls
    assert len(log.entries(ORDER["order_id"])) == entries


def _over(log: SqliteSagaLog) -> Saga:
    """The durable saga over a log this test holds."""
    return dataclasses.replace(durable_order_saga, durable=Durable(store=lambda: log, reopen=SqliteSagaLog.reopen))


def test_the_log_is_written_ahead_of_every_call() -> None:
    log = SqliteSagaLog()
    run_plan(_over(log))
    kinds = [(e["type"], e.get("step")) for e in log.entries(ORDER["order_id"])]
    assert kinds == [
        ("started", None),
        ("intent", "reserve"), ("outcome", "reserve"),
        ("intent", "charge"), ("outcome", "charge"),
        ("intent", "ship"), ("outcome", "ship"),
        ("intent", "notify"), ("outcome", "notify"),
        ("ended", None),
    ]  # fmt: skip


@pytest.mark.parametrize("runtime", ["sim", "asgi"])
def test_recovery_after_a_crash_mid_compensation_finishes_the_order(runtime: str) -> None:
    plan = FaultPlan.loads(
        '{"faults": [{"kind": "refuse", "at": "shipping.create#1"},'
        ' {"kind": "coordinator-crash-after", "at": "payment.refund#1"},'
        ' {"kind": "coordinator-crash-before", "at": "inventory.release#1"}]}'
    )
    execution, violations = replay(durable_order_saga, plan, runtime=runtime)
    assert violations == []
    assert execution.status == "compensated"
    assert [e.outcome for e in execution.trace if e.operation in ("refund", "release")] == ["unread", "ok", "unsent", "ok"]
    assert [r.action for r in execution.rows()] == ["reserve", "charge", "refund", "release"]
