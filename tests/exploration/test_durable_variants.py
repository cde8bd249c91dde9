"""The durable broken variants are caught by the search itself, each with a minimal plan that
holds a coordinator crash, or the interleaving of actors that matters; the correct durable saga
holds with coordinator crashes on, and with the same actors and switches on."""

from __future__ import annotations

import hypothesis
import pytest

import saga_verify
from saga_verify.faults import COORDINATOR_CRASHES
from saga_verify.reference import durable_order_saga, durable_variants

#: What the search must break for each durable variant (it finds the plan itself).
EXPECTED = {
    "calls_before_intent": {"no_double_reserve"},
    "fresh_keys_on_recovery": {"no_double_reserve"},
    "compensation_not_resumed": {"compensation_resumed", "saga_owned"},
}
#: The variants whose bug another actor shows: the minimal plan the sweep finds, and what it breaks.
AMONG_ACTORS = {
    "lease_without_fencing": ("switch at inventory.reserve#1", {"no_double_charge", "no_double_create", "no_double_send"}),
    # The start delivered again after the order ended: the actors' own order is the schedule.
    "duplicate_start_after_completion": ("no faults", {"no_double_reserve", "no_double_charge", "no_double_create", "no_double_send"}),
    "check_then_act_oversell": ("switch at inventory.reserve#1", {"stock_never_sold_twice"}),
}

BROKEN = [v for v in durable_variants() if v.broken and v.name in EXPECTED]
ACTORS = [v for v in durable_variants() if v.broken and v.name not in EXPECTED]


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def test_every_durable_variant_is_listed_with_what_it_breaks() -> None:
    assert sorted(v.name for v in BROKEN) == sorted(EXPECTED)
    assert sorted(v.name for v in ACTORS) == sorted(AMONG_ACTORS)
    assert all(v.saga.actors and v.correct is not None and v.correct.actors for v in ACTORS)
    assert durable_variants()[0].saga is durable_order_saga
    assert {v.kind for v in durable_variants()} == {"durable"}


@pytest.mark.parametrize("variant", BROKEN, ids=lambda v: v.name)
def test_the_search_catches_it_with_a_coordinator_crash(variant, tmp_path) -> None:
    result = saga_verify.explore(variant.saga, settings=_no_db(), report_dir=tmp_path, seed=0, all_failures=False)
    assert not result.ok
    failure = result.failures[0]
    assert EXPECTED[variant.name] <= set(failure.invariants), failure.invariants
    assert any(isinstance(f, COORDINATOR_CRASHES) for f in failure.plan.faults), str(failure.plan)
    # Minimal: without its coordinator crash (or any other of its faults), the plan breaks nothing.
    for i in range(len(failure.plan.faults)):
        fewer = failure.plan.with_faults(failure.plan.faults[:i] + failure.plan.faults[i + 1 :])
        assert saga_verify.replay(variant.saga, fewer)[1] == [], f"{failure.plan.faults[i]} can be dropped"
    # The plan breaks what it says when replayed on its own, and the correct saga holds under it.
    assert {v.invariant for v in saga_verify.replay(variant.saga, failure.plan)[1]} >= EXPECTED[variant.name]
    assert saga_verify.replay(durable_order_saga, failure.plan.for_saga(durable_order_saga))[1] == []


def test_the_correct_durable_saga_holds_with_coordinator_crashes_on(tmp_path) -> None:
    result = saga_verify.explore(durable_order_saga, settings=_no_db(), report_dir=tmp_path, seed=0)
    assert result.ok, [str(f.plan) for f in result.failures]
    assert result.sweep_complete
    coverage = result.coverage
    assert coverage is not None
    tried = sum(
        coverage.cell(cls.kind, participant, operation).plans
        for cls in COORDINATOR_CRASHES
        for participant, operation in coverage.operations
    )
    assert tried > 100  # coordinator crashes at every call, alone and with other faults


@pytest.mark.parametrize("variant", BROKEN, ids=lambda v: v.name)
def test_hypothesis_alone_finds_and_shrinks_a_coordinator_crash(variant, tmp_path) -> None:
    result = saga_verify.explore(variant.saga, sweep_faults=0, settings=_no_db(), report_dir=tmp_path, seed=0, all_failures=False)
    failure = result.failures[0]
    assert failure.found_by == "hypothesis"
    assert any(isinstance(f, COORDINATOR_CRASHES) for f in failure.plan.faults), str(failure.plan)
    # Shrunk: no fault can be dropped and still break what it broke.
    for i in range(len(failure.plan.faults)):
        fewer = failure.plan.with_faults(failure.plan.faults[:i] + failure.plan.faults[i + 1 :])
        assert not {v.invariant for v in saga_verify.replay(variant.saga, fewer)[1]} & set(failure.invariants)


@pytest.mark.parametrize("variant", ACTORS, ids=lambda v: v.name)
def test_the_sweep_catches_it_among_actors_with_a_minimal_plan(variant, tmp_path) -> None:
    result = saga_verify.explore(variant.saga, settings=_no_db(), report_dir=tmp_path, seed=0, all_failures=False)
    assert not result.ok
    failure = result.failures[0]
    plan_text, broken = AMONG_ACTORS[variant.name]
    assert (str(failure.plan), set(failure.invariants)) == (plan_text, broken)
    for i in range(len(failure.plan.faults)):
        fewer = failure.plan.with_faults(failure.plan.faults[:i] + failure.plan.faults[i + 1 :])
        assert saga_verify.replay(variant.saga, fewer)[1] == [], f"{failure.plan.faults[i]} can be dropped"
    # The correct saga with the same actors holds under it.
    assert variant.correct is not None
    assert saga_verify.replay(variant.correct, failure.plan.for_saga(variant.correct))[1] == []


@pytest.mark.parametrize("correct", sorted({v.correct.name: v.correct for v in ACTORS if v.correct}.values(), key=lambda s: s.name), ids=lambda s: s.name)
def test_the_correct_durable_saga_holds_among_actors_with_switches_on(correct, tmp_path) -> None:
    result = saga_verify.explore(correct, settings=_no_db(), report_dir=tmp_path, seed=0, max_examples=100)
    assert result.ok, [str(f.plan) for f in result.failures]
    assert result.sweep_complete
