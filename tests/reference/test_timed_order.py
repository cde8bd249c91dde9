"""The timed order saga (a payment webhook awaited with a deadline, retries within budget): the
correct saga holds under deep searches, each broken variant is caught by the search with a
minimal plan that holds the event fault or the outage that matters, and the timeline shows time
as it passed. The expected plans of the variants are in tests/exploration/test_broken_variants.py."""

from __future__ import annotations

import dataclasses

import hypothesis
import pytest

import saga_verify
from saga_verify.reference import (
    retries_past_budget,
    timed_order_saga,
    timeout_without_compensation,
    variants,
    webhook_wait_without_deadline,
)

NO_DB = hypothesis.settings(database=None)


def test_the_timed_sagas_are_durable_sim_only_variants_with_their_correct_saga() -> None:
    timed = [v for v in variants() if v.kind == "durable"]
    assert [v.saga for v in timed] == [timed_order_saga, timeout_without_compensation, webhook_wait_without_deadline, retries_past_budget]
    assert all(v.runtimes == ("sim",) and v.correct is timed_order_saga for v in timed)
    assert {i.name for i in saga_verify.invariants.invariants_for(timed_order_saga)} >= {"within_deadline", "retry_budget"}


def test_the_correct_timed_saga_holds_under_every_plan_of_three_faults() -> None:
    result = saga_verify.explore(timed_order_saga, settings=NO_DB, report_dir=None, seed=0, sweep_faults=3, sweep_budget=None, max_examples=200)
    assert result.ok, saga_verify.report(result)
    assert result.sweep_complete
    # Every kind the search may put at the webhook's arrival was tried there.
    assert result.coverage is not None
    tried = {kind for kind in ("drop", "duplicate", "delay", "outage") if result.coverage.cell(kind, "payment", "paid").plans}
    assert tried == {"drop", "duplicate", "delay", "outage"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_correct_timed_saga_holds_under_hypothesis_alone_with_pauses(seed: int) -> None:
    saga = dataclasses.replace(timed_order_saga, pauses=True)
    result = saga_verify.explore(saga, settings=NO_DB, report_dir=None, seed=seed, sweep_faults=0, max_examples=1000)
    assert result.ok, saga_verify.report(result)


@pytest.mark.parametrize(
    ("saga", "broken", "point"),
    [
        (timeout_without_compensation, "all_or_nothing", "payment.paid#1"),
        (webhook_wait_without_deadline, "within_deadline", "payment.paid#1"),
        (retries_past_budget, "retry_budget", "payment.charge#1"),
    ],
    ids=lambda p: getattr(p, "name", None) or str(p),
)
def test_hypothesis_alone_finds_each_timing_bug_at_the_point_that_matters(saga: saga_verify.Saga, broken: str, point: str) -> None:
    result = saga_verify.explore(saga, settings=NO_DB, report_dir=None, seed=0, sweep_faults=0, max_examples=500)
    failures = [f for f in result.failures if broken in f.invariants]
    assert failures, f"Hypothesis missed {broken} in {saga.name}"
    assert {str(f.at) for f in failures[0].plan.faults} == {point}


def test_the_report_reads_the_webhook_as_it_happened() -> None:
    result = saga_verify.explore(timeout_without_compensation, settings=NO_DB, report_dir=None, seed=0, all_failures=False)
    text = saga_verify.report(result)
    lines = text.splitlines()
    start = lines.index("Timeline (virtual seconds; saga instance order-7):")
    assert [line.split()[0] for line in lines[start + 1 : start + 8]] == ["#0", "->", "~~", "#1", "->", "~~", "=>"]
    assert "payment.paid#1" in lines[start + 4]
    assert "EVENT LOST" in lines[start + 5]
    assert "waits: the saga waits for payment.paid until t=90.000" in lines[start + 3]
    assert "WAIT TIMED OUT" in lines[start + 6]


def test_the_coverage_matrix_has_a_column_for_the_webhook() -> None:
    result = saga_verify.explore(timed_order_saga, settings=NO_DB, report_dir=None, seed=0, max_examples=0)
    assert result.coverage is not None
    data = result.coverage.to_json()
    assert data["operations"][-1] == "payment.paid"
    assert data["cells"]["drop"]["payment.paid"]["plans"] > 0
    assert data["cells"]["drop"]["payment.charge"] is None  # a call is never dropped: it fails
    assert data["cells"]["fail"]["payment.paid"] is None
