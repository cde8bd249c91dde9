"""The example database: a failure found once is replayed first next time, and a stored plan
that no longer breaks the saga is forgotten."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis.database import DirectoryBasedExampleDatabase, InMemoryExampleDatabase

from saga_verify import FaultPlan, explore
from saga_verify._exploration._search import database_key
from saga_verify.faults import DeliveryPoint, LoseReply, Outage
from saga_verify.invariants import invariants_for, no_double_effect
from saga_verify.reference import STEPS, charge_without_key, fresh_key_on_retry, order_saga


def _key(saga) -> bytes:
    return database_key(saga, invariants_for(saga))


def _stored(db, saga) -> list[FaultPlan]:
    return [FaultPlan.loads(raw.decode("utf-8")) for raw in db.fetch(_key(saga))]


@pytest.fixture(params=["memory", "directory"])
def db(request, tmp_path):
    if request.param == "memory":
        return InMemoryExampleDatabase()
    return DirectoryBasedExampleDatabase(tmp_path / "examples")


def test_second_search_replays_the_stored_failure_first(db, tmp_path) -> None:
    settings = hypothesis.settings(database=db)
    first = explore(charge_without_key, settings=settings, report_dir=tmp_path)
    assert first.failures[0].found_by == "sweep"
    assert sorted(str(p) for p in _stored(db, charge_without_key)) == sorted(str(f.plan) for f in first.failures)

    second = explore(charge_without_key, settings=settings, report_dir=tmp_path)

    # Every failure comes back from the database, smallest plan first; the search finds nothing more.
    assert [f.found_by for f in second.failures] == ["database"] * len(first.failures)
    assert second.failures[0].examples == 3  # two fault-free runs, then the first stored plan
    assert str(second.failures[0].plan) == str(first.failures[0].plan)
    assert sorted((str(f.plan), f.invariants, f.plan_path) for f in second.failures) == sorted(
        (str(f.plan), f.invariants, f.plan_path) for f in first.failures
    )
    assert len(_stored(db, charge_without_key)) == len(first.failures)  # the same plans, not second copies


def test_a_failure_found_by_hypothesis_is_replayed_from_the_database() -> None:
    db = InMemoryExampleDatabase()
    settings = hypothesis.settings(database=db)
    # With the sweep off, Hypothesis has to find the bug the hard way.
    first = explore(fresh_key_on_retry, settings=settings, report_dir=None, sweep_faults=0, max_examples=500)
    assert first.failures[0].found_by == "hypothesis"

    second = explore(fresh_key_on_retry, settings=settings, report_dir=None, sweep_faults=0, max_examples=500)

    assert [f.found_by for f in second.failures] == ["database"] * len(first.failures)
    assert str(second.failures[0].plan) == str(first.failures[0].plan)
    assert second.failures[0].examples == 3


def test_a_plan_that_no_longer_breaks_the_saga_is_forgotten(db) -> None:
    key = _key(order_saga)
    fixed = FaultPlan((LoseReply(DeliveryPoint("payment", "charge", 1)),), saga="order", saga_ref="saga_verify.reference:order_saga")
    db.save(key, fixed.dumps().encode("utf-8"))
    assert len(list(db.fetch(key))) == 1

    result = explore(order_saga, settings=hypothesis.settings(database=db), report_dir=None, sweep_faults=0, max_examples=0)

    assert result.ok
    assert result.executions == 3  # two fault-free runs and the stored plan
    assert list(db.fetch(key)) == []


def test_unreadable_and_foreign_entries_are_dropped(db) -> None:
    key = _key(order_saga)
    db.save(key, b"not json at all")
    db.save(key, b'{"format": "saga-verify/plan@9", "faults": []}')
    db.save(key, FaultPlan((Outage(DeliveryPoint("billing", "charge", 1)),)).dumps().encode("utf-8"))
    db.save(key, b"\xff\xfe")

    result = explore(order_saga, settings=hypothesis.settings(database=db), report_dir=None, sweep_faults=0, max_examples=0)

    assert result.ok
    assert result.executions == 2  # none of them was run
    assert list(db.fetch(key)) == []


def test_a_stored_failure_is_shrunk_again_before_it_is_reported() -> None:
    db = InMemoryExampleDatabase()
    key = _key(charge_without_key)
    noisy = FaultPlan(
        (
            LoseReply(DeliveryPoint("inventory", "reserve", 1)),
            LoseReply(DeliveryPoint("payment", "charge", 1)),
            LoseReply(DeliveryPoint("notification", "send", 1)),
        )
    )
    db.save(key, noisy.dumps().encode("utf-8"))

    result = explore(charge_without_key, settings=hypothesis.settings(database=db), report_dir=None)

    failure = result.failures[0]
    assert failure.found_by == "database"
    assert failure.examples == 3
    assert str(failure.plan) == "lose-reply at payment.charge#1"
    assert "lose-reply at payment.charge#1" in {str(p) for p in _stored(db, charge_without_key)}


def test_each_saga_and_set_of_invariants_has_its_own_entries() -> None:
    keys = {
        _key(order_saga),
        _key(charge_without_key),
        database_key(charge_without_key, [no_double_effect(STEPS[1])]),
    }
    assert len(keys) == 3
    assert all(k.startswith(b"saga-verify:") for k in keys)
    assert _key(order_saga) == _key(order_saga)


def test_a_stored_failure_of_one_saga_is_not_replayed_against_another(db) -> None:
    settings = hypothesis.settings(database=db)
    found = explore(charge_without_key, settings=settings, report_dir=None)

    result = explore(order_saga, settings=settings, report_dir=None, sweep_faults=0, max_examples=0)

    assert result.ok
    assert result.executions == 2
    assert len(_stored(db, charge_without_key)) == len(found.failures)  # the other saga's entries are left alone


def test_no_database_remembers_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = explore(charge_without_key, settings=hypothesis.settings(database=None), report_dir=None)
    second = explore(charge_without_key, settings=hypothesis.settings(database=None), report_dir=None)
    assert first.failures[0].found_by == second.failures[0].found_by == "sweep"
    assert first.executions == second.executions
    assert list(tmp_path.iterdir()) == []


def test_hypothesis_keeps_each_sagas_examples_under_a_key_of_its_own() -> None:
    """Hypothesis reads a test's extra database digest from ``test.hypothesis.inner_test``: set
    anywhere else, the Hypothesis phase of every saga would read and write one set of entries."""

    class Watched(InMemoryExampleDatabase):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[bytes] = []

        def fetch(self, key: bytes):  # type: ignore[no-untyped-def]
            self.asked.append(key)
            return super().fetch(key)

    db = Watched()
    settings = hypothesis.settings(database=db)
    for saga in (order_saga, charge_without_key):
        # Unseeded: Hypothesis uses its database only when it draws at random.
        explore(saga, settings=settings, report_dir=None, sweep_faults=0, max_examples=5, seed=None)
    ours = {_key(order_saga), _key(charge_without_key)}
    derived = (b".secondary", b".pareto", b".observed")  # Hypothesis' sub-keys of a test's key
    theirs = {key for key in db.asked if key not in ours and not key.endswith(derived)}
    assert len(theirs) == 2, theirs
