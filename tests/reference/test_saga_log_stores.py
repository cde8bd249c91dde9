"""The saga log's two stores, SQLite and PostgreSQL, pass the same tests: what they keep across a
coordinator crash, what they refuse to open, and the durable saga's recovery over each."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from saga_verify import Durable, FaultPlan, Saga, replay
from saga_verify.errors import RecoveryError
from saga_verify.faults import DeliveryPoint, Switch
from saga_verify.reference import (
    SUPERSEDED,
    Lease,
    LeaseLost,
    PostgresSagaLog,
    SqliteSagaLog,
    calls_before_intent,
    durable_order_saga,
    durable_order_takeover,
)

_schemas = itertools.count()


class Backend(ABC):
    """Opens logs of one store, and reaches behind a log to damage it."""

    name = ""
    log_class: Any = None

    @abstractmethod
    def open(self) -> Any:
        """A new, empty log of this store."""

    @abstractmethod
    def sql(self, log: Any, statement: str) -> None:
        """Run ``statement`` on the database behind ``log`` (to damage it)."""

    @abstractmethod
    def reopen_same(self, log: Any) -> Any:
        """The log behind ``log``, opened again."""


class Sqlite(Backend):
    name = "sqlite"
    log_class = SqliteSagaLog

    def __init__(self, folder: Any) -> None:
        self.folder = folder

    def open(self) -> SqliteSagaLog:
        return SqliteSagaLog(str(self.folder / f"log-{next(_schemas)}.sqlite"))

    def sql(self, log: SqliteSagaLog, statement: str) -> None:
        with sqlite3.connect(log.path) as db:
            db.execute(statement.replace("{schema}.", ""))

    def reopen_same(self, log: SqliteSagaLog) -> SqliteSagaLog:
        return SqliteSagaLog(log.path)


class Postgres(Backend):
    name = "postgres"
    log_class = PostgresSagaLog

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def open(self) -> PostgresSagaLog:
        return PostgresSagaLog(self.conninfo, schema=f"log_{next(_schemas)}")

    def sql(self, log: PostgresSagaLog, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as db:
            db.execute(statement.replace("{schema}", log.schema).encode())

    def reopen_same(self, log: PostgresSagaLog) -> PostgresSagaLog:
        return PostgresSagaLog(self.conninfo, log.schema)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Sqlite(tmp_path)
    else:
        yield Postgres(request.getfixturevalue("postgres"))


def test_committed_entries_survive_a_reopen_in_order(backend: Backend) -> None:
    log = backend.open()
    log.append("o-1", {"type": "started"})
    log.append("o-2", {"type": "started"})
    log.append("o-1", {"type": "intent", "step": "charge", "key": "k"})
    log.append("o-2", {"type": "ended", "status": "completed"})
    reopened = log.reopen()
    assert reopened.entries("o-1") == [{"type": "started"}, {"type": "intent", "step": "charge", "key": "k"}]
    assert reopened.unfinished() == ["o-1"]
    assert reopened.entries("nobody") == []
    reopened.close()


def test_a_lease_is_held_until_it_expires_then_taken_with_a_higher_token(backend: Backend) -> None:
    log = backend.open()
    assert log.lease("o-1") is None
    assert log.acquire("o-1", "first", 0.0, 30.0) == 1
    assert log.acquire("o-1", "second", 29.9, 59.9) is None  # live: turned away
    assert log.acquire("o-2", "second", 29.9, 59.9) == 1  # each instance has its own
    assert log.lease("o-1") == Lease("first", 1, 30.0)
    log.append("o-1", {"type": "started"}, token=1, until=40.0)  # a write extends the lease
    assert log.acquire("o-1", "second", 35.0, 65.0) is None
    log = log.reopen()
    assert log.lease("o-1") == Lease("first", 1, 40.0)  # durable, like the entries
    assert log.acquire("o-1", "second", 40.0, 70.0) == 2
    assert log.lease("o-1") == Lease("second", 2, 70.0)
    log.close()


def test_a_write_under_a_stale_token_is_refused_and_writes_nothing(backend: Backend) -> None:
    log = backend.open()
    first = log.acquire("o-1", "first", 0.0, 30.0)
    log.append("o-1", {"type": "started"}, token=first, until=30.0)
    second = log.acquire("o-1", "second", 31.0, 61.0)
    assert second == 2
    with pytest.raises(LeaseLost, match=r"saga 'o-1' was taken over \(fencing token 2\); a write under token 1 is refused"):
        log.append("o-1", {"type": "intent", "step": "charge", "key": "k"}, token=first, until=99.0)
    with pytest.raises(LeaseLost, match=r"saga 'o-2' has no lease"):
        log.append("o-2", {"type": "started"}, token=1)
    log.append("o-1", {"type": "resumed"}, token=second)
    assert log.entries("o-1") == [{"type": "started"}, {"type": "resumed"}]
    assert log.entries("o-2") == []
    assert log.lease("o-1") == Lease("second", 2, 61.0)  # the refused write extended nothing
    log.close()


def test_a_log_of_the_layout_before_leases_is_brought_up_to_date(backend: Backend) -> None:
    log = backend.open()
    log.append("o-1", {"type": "started"})
    log.close()
    backend.sql(log, "DROP TABLE {schema}.saga_lease")
    backend.sql(log, "UPDATE {schema}.saga_log_meta SET value = '1' WHERE key = 'version'")
    old = backend.reopen_same(log)
    assert old.entries("o-1") == [{"type": "started"}]
    assert old.acquire("o-1", "recovery", 0.0, 30.0) == 1
    old.close()
    backend.sql(log, "UPDATE {schema}.saga_log_meta SET value = '3' WHERE key = 'version'")
    with pytest.raises(RecoveryError, match=r"newer than this code reads \(2\)"):  # it said version 2 after the update
        backend.reopen_same(log)


def test_another_programs_tables_are_refused(backend: Backend) -> None:
    log = backend.open()
    log.close()
    backend.sql(log, "DROP TABLE {schema}.saga_log_meta")
    with pytest.raises(RecoveryError, match=r"is another program's database \(tables: saga_lease, saga_log\), not a saga log"):
        backend.reopen_same(log)


def test_a_log_of_a_newer_layout_is_refused(backend: Backend) -> None:
    log = backend.open()
    log.close()
    backend.sql(log, "UPDATE {schema}.saga_log_meta SET value = '3' WHERE key = 'version'")
    with pytest.raises(RecoveryError, match=r"written in layout version 3, newer than this code reads \(2\)"):
        backend.reopen_same(log)


def test_an_entry_that_is_no_log_entry_is_refused(backend: Backend) -> None:
    log = backend.open()
    backend.sql(log, "INSERT INTO {schema}.saga_log (saga_id, seq, entry) VALUES ('o-1', 1, '[1, 2]')")
    with pytest.raises(RecoveryError, match=r"entry 1 of saga 'o-1' is corrupt"):
        log.entries("o-1")
    log.close()


def _over(backend: Backend, saga: Saga) -> Saga:
    opened: Callable[[], Any] = backend.open
    return dataclasses.replace(
        saga, durable=Durable(store=opened, recover=saga.durable.recover, reopen=backend.log_class.reopen, close=backend.log_class.close)
    )


CRASHES = [
    '{"faults": [{"kind": "coordinator-crash-after", "at": "payment.charge#1"}]}',
    '{"faults": [{"kind": "coordinator-crash-before", "at": "inventory.reserve#1"}, {"kind": "coordinator-crash-after", "at": "inventory.reserve#2"}]}',
    '{"faults": [{"kind": "refuse", "at": "shipping.create#1"}, {"kind": "coordinator-crash-after", "at": "payment.refund#1"},'
    ' {"kind": "coordinator-crash-before", "at": "inventory.release#1"}]}',
    '{"faults": [{"kind": "lose-reply", "at": "shipping.create#1"}, {"kind": "coordinator-crash-after", "at": "notification.send#1"}]}',
]


@pytest.mark.parametrize("plan", CRASHES, ids=range(len(CRASHES)))
def test_the_durable_saga_recovers_over_the_store(backend: Backend, plan: str) -> None:
    saga = _over(backend, durable_order_saga)
    execution, violations = replay(saga, FaultPlan.loads(plan))
    assert violations == []
    assert execution.status in ("completed", "compensated")
    assert any(e.outcome in ("unsent", "unread") for e in execution.trace)


def test_a_takeover_fences_the_first_coordinator_over_the_store(backend: Backend) -> None:
    saga = _over(backend, durable_order_takeover)
    execution, violations = replay(saga, FaultPlan((Switch(DeliveryPoint("payment", "charge", 1)),)))
    assert violations == []
    assert [a.status for a in execution.actors] == [SUPERSEDED, "completed"]
    assert len(execution.rows("payment", "charge")) == 1


def test_a_broken_variant_breaks_over_the_store_as_over_sqlite_in_memory(backend: Backend) -> None:
    plan = FaultPlan.loads(CRASHES[0])
    _, violations = replay(_over(backend, calls_before_intent), plan)
    assert {v.invariant for v in violations} == {v.invariant for v in replay(calls_before_intent, plan)[1]} == {"no_double_charge"}


def test_an_unreachable_server_is_refused_by_name(tmp_path: Any) -> None:
    with pytest.raises(RecoveryError, match=r"saga log 'saga_log' at .*: PostgreSQL is unreachable"):
        PostgresSagaLog(f"host={tmp_path} port=1 user=nobody dbname=nothing connect_timeout=2")
    with pytest.raises(RecoveryError, match=r"saga log schema must be a plain lower-case name, got 'x; DROP TABLE y'"):
        PostgresSagaLog("host=/nowhere", schema="x; DROP TABLE y")
    saga = dataclasses.replace(durable_order_saga, durable=Durable(store=lambda: PostgresSagaLog(f"host={tmp_path} port=1 connect_timeout=2")))
    with pytest.raises(RecoveryError, match="PostgreSQL is unreachable"):
        replay(saga, FaultPlan())
