"""Guide, style 5: a durable scheduler. The library keeps each saga's due step in its database
(SQLite here), and a worker calls ``run_due()`` in a loop: every call claims the steps that are
due, runs each, and saves the next one due, so a worker that dies loses nothing the database
holds. A claim is a lease: it expires, and then another worker (or the same one, restarted) runs
the step again under the same idempotency key.

Adapter: the worker loop is ``run``, and also how the saga recovers (``Durable(store=...)``, no
``recover=``): a fresh worker after a coordinator crash opens the same database, starting the
saga again changes nothing, and it polls ``run_due()`` until the saga has an outcome.

The classic bug: a claim that never expires (a ``running`` flag). A worker that dies mid-step
leaves the step claimed for ever, and the saga never ends: ``terminates``."""

from __future__ import annotations

import json
import sqlite3
import time
from abc import ABC, abstractmethod
from typing import Any

import guide_shop as shop
import hypothesis
import pytest

import saga_verify
from saga_verify import Durable, Saga, current_services

Record = dict[str, Any]


# -- the library, in this style ----------------------------------------------------------------------
class SagaStep(ABC):
    name = ""

    @abstractmethod
    def run(self, payload: Record) -> bool:
        """Do the step; False when its business refuses. Transport errors are retried later."""

    @abstractmethod
    def compensate(self, payload: Record) -> None:
        """Undo what ``run`` did."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS sagas (id TEXT PRIMARY KEY, payload TEXT NOT NULL, outcome TEXT);
CREATE TABLE IF NOT EXISTS due (
    saga_id TEXT PRIMARY KEY, step INTEGER NOT NULL, forward INTEGER NOT NULL, attempt INTEGER NOT NULL,
    at REAL NOT NULL, undone INTEGER NOT NULL, claimed_until REAL NOT NULL)
"""


class DurableScheduler:
    """Runs sagas of ``steps`` from the database ``db`` (an sqlite3 connection in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection, steps: list[SagaStep], attempts: int = 3, backoff: float = 30.0, lease: float = 60.0) -> None:
        self.db, self.steps, self.attempts, self.backoff, self.lease = db, steps, attempts, backoff, lease
        db.executescript(SCHEMA)

    def start(self, saga_id: str, payload: Record) -> None:
        """Start a saga; starting one the database holds already changes nothing."""
        if self.db.execute("INSERT OR IGNORE INTO sagas VALUES (?, ?, NULL)", (saga_id, json.dumps(payload))).rowcount:
            self.db.execute("INSERT INTO due VALUES (?, 0, 1, 0, ?, 1, 0)", (saga_id, time.time()))

    def outcome(self, saga_id: str) -> str | None:
        row = self.db.execute("SELECT outcome FROM sagas WHERE id = ?", (saga_id,)).fetchone()
        return None if row is None else row[0]

    def run_due(self) -> None:
        now = time.time()
        for saga_id, step, forward, attempt, undone in self.db.execute(
            "SELECT saga_id, step, forward, attempt, undone FROM due WHERE at <= ? AND claimed_until <= ?", (now, now)
        ).fetchall():
            if self.claim(saga_id, now):
                self._advance(saga_id, step, bool(forward), attempt, bool(undone))

    def claim(self, saga_id: str, now: float) -> bool:
        """Take the step for ``lease`` seconds; False if another worker took it first."""
        taken = self.db.execute("UPDATE due SET claimed_until = ? WHERE saga_id = ? AND claimed_until <= ?", (now + self.lease, saga_id, now))
        return taken.rowcount == 1

    def _advance(self, saga_id: str, step: int, forward: bool, attempt: int, undone: bool) -> None:
        payload = json.loads(self.db.execute("SELECT payload FROM sagas WHERE id = ?", (saga_id,)).fetchone()[0])
        try:
            ok = self.steps[step].run(payload) if forward else (self.steps[step].compensate(payload) or True)
        except (ConnectionError, TimeoutError):
            if attempt + 1 < self.attempts:
                self._save(saga_id, step, forward, attempt + 1, undone, at=time.time() + self.backoff * (attempt + 1))
                return
            ok, undone = False, undone and forward
        if forward and ok:
            step += 1
        elif forward:
            forward = False  # undo from the step that failed (it may have happened) back
        else:
            step -= 1
        if forward and step == len(self.steps):
            self._end(saga_id, "completed")
        elif step < 0:
            self._end(saga_id, "compensated" if undone else "failed")
        else:
            self._save(saga_id, step, forward, 0, undone, at=time.time())

    def _save(self, saga_id: str, step: int, forward: bool, attempt: int, undone: bool, at: float) -> None:
        self.db.execute(
            "UPDATE due SET step = ?, forward = ?, attempt = ?, at = ?, undone = ?, claimed_until = 0 WHERE saga_id = ?",
            (step, int(forward), attempt, at, int(undone), saga_id),
        )

    def _end(self, saga_id: str, outcome: str) -> None:
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM due WHERE saga_id = ?", (saga_id,))
        self.db.execute("UPDATE sagas SET outcome = ? WHERE id = ?", (outcome, saga_id))
        self.db.execute("COMMIT")


class SchedulerWithAClaimFlag(DurableScheduler):
    def claim(self, saga_id: str, now: float) -> bool:
        # The classic bug: a "running" flag, not a lease. A worker that dies mid-step never clears it.
        taken = self.db.execute("UPDATE due SET claimed_until = 1e300 WHERE saga_id = ? AND claimed_until <= ?", (saga_id, now))
        return taken.rowcount == 1


# -- the user's step classes -----------------------------------------------------------------------
def _key(payload: Record, what: str) -> str:
    return f"{payload['order_id']}:{what}"


class Reserve(SagaStep):
    def run(self, payload: Record) -> bool:
        reply = current_services().inventory.reserve(order_id=payload["order_id"], sku=payload["sku"], qty=payload["qty"], idempotency_key=_key(payload, "reserve"))
        return reply["status"] == "ok"  # type: ignore[no-any-return]

    def compensate(self, payload: Record) -> None:
        current_services().inventory.release(reserve_key=_key(payload, "reserve"), idempotency_key=_key(payload, "release"))


class Charge(SagaStep):
    def run(self, payload: Record) -> bool:
        reply = current_services().payment.charge(order_id=payload["order_id"], amount=payload["amount"], idempotency_key=_key(payload, "charge"))
        return reply["status"] == "ok"  # type: ignore[no-any-return]

    def compensate(self, payload: Record) -> None:
        current_services().payment.refund(charge_key=_key(payload, "charge"), idempotency_key=_key(payload, "refund"))


class Ship(SagaStep):
    def run(self, payload: Record) -> bool:
        return current_services().shipping.create(order_id=payload["order_id"], idempotency_key=_key(payload, "ship"))["status"] == "ok"  # type: ignore[no-any-return]

    def compensate(self, payload: Record) -> None:
        current_services().shipping.cancel(create_key=_key(payload, "ship"), idempotency_key=_key(payload, "cancel"))


# -- the adapter -------------------------------------------------------------------------------------
def open_db() -> sqlite3.Connection:
    """The scheduler's database: one per execution, and it outlives a coordinator crash."""
    return sqlite3.connect(":memory:", isolation_level=None)


def verified(name: str, scheduler: type[DurableScheduler]) -> Saga:
    def work(services: Any, order: dict[str, Any]) -> str:
        jobs = scheduler(services.store, [Reserve(), Charge(), Ship()])
        jobs.start(order["order_id"], order)  # a recovering worker: already started, nothing new
        while (outcome := jobs.outcome(order["order_id"])) is None:
            jobs.run_due()
            time.sleep(5.0)  # the worker's polling interval
        return outcome

    return Saga(
        name, steps=shop.STEPS, participants=shop.participants, run=work, input=shop.ORDER,
        durable=Durable(store=open_db, close=lambda db: db.close()),  # recovers by running the worker again
    )  # fmt: skip


order = verified("durable_scheduler", DurableScheduler)
stuck = verified("durable_scheduler_claim_flag", SchedulerWithAClaimFlag)


def test_the_durable_scheduler_holds_with_coordinator_crashes(saga_verify: Any) -> None:
    result = saga_verify(order)
    assert result.ok
    assert result.sweep_complete


def test_a_crash_after_a_step_was_applied_is_retried_after_the_lease_under_the_same_key() -> None:
    plan = saga_verify.FaultPlan.loads('{"faults": [{"kind": "coordinator-crash-after", "at": "payment.charge#1"}]}')
    execution, violations = saga_verify.replay(order, plan)
    assert (execution.status, violations) == ("completed", [])
    charges = [e for e in execution.trace if e.operation == "charge"]
    assert [e.outcome for e in charges] == ["unread", "ok"]
    # The recovering worker waited out the dead one's lease (60 s) on the virtual clock.
    assert charges[1].time - charges[0].time >= 60.0
    assert [r.action for r in execution.rows()] == ["reserve", "charge", "create"]


def test_a_claim_that_never_expires_is_caught() -> None:
    with pytest.raises(saga_verify.errors.SagaViolationError) as info:
        saga_verify.verify(stuck, settings=hypothesis.settings(database=None), report_dir=None)
    first = info.value.result.failures[0]
    # The worker died with the first step claimed; the one that recovers waits for it for ever.
    assert (str(first.plan), first.invariants) == ("coordinator-crash-before at inventory.reserve#1", ("terminates",))
