"""Every broken reference variant is caught by the search itself, with its minimal plan; the
correct saga holds. The test names the plans the search must find, never the other way round."""

from __future__ import annotations

import dataclasses

import hypothesis
import pytest

import saga_verify
from saga_verify.faults._alphabet import alphabet
from saga_verify.faults._kinds import FAULT_KINDS
from saga_verify.reference import order_saga, variants

#: What the default pipeline (database, sweep, Hypothesis) finds first for each broken variant,
#: seed 0: the smallest plan, and what it breaks.
EXPECTED = {
    "charge_without_key": ("lose-reply at payment.charge#1", ("no_double_charge",)),
    "fresh_key_on_retry": ("lose-reply at shipping.create#1", ("no_double_create",)),
    "lost_reply_not_compensated": (
        "lose-reply at inventory.reserve#1; outage at inventory.reserve#2",
        ("full_compensation",),
    ),
    "forward_order_compensation": ("refuse at shipping.create#1", ("reverse_compensation_order",)),
    "notify_before_pivot": ("no faults", ("irreversible_last", "forward_order")),
    "swallowed_compensation_error": (
        "refuse at payment.charge#1; outage at inventory.release#1",
        ("full_compensation",),
    ),
    "unbounded_retry": ("outage at inventory.reserve#1", ("terminates",)),
    "decline_treated_as_success": ("refuse at payment.charge#1", ("all_or_nothing", "irreversible_last", "forward_order")),
    "non_idempotent_refund": (
        "refuse at shipping.create#1; lose-reply at payment.refund#1",
        ("compensation_matches_effect", "full_compensation"),
    ),
    "refund_forgets_charge": (
        "delay seconds=30 at payment.charge#1; outage at payment.charge#2",
        ("full_compensation", "no_forward_after_compensation"),
    ),
    "volatile_dedupe": ("crash at payment.charge#1", ("no_double_charge",)),
    # The timed order saga's variants: a payment webhook and a deadline.
    "timeout_without_compensation": ("drop at payment.paid#1", ("all_or_nothing",)),
    "webhook_wait_without_deadline": ("drop at payment.paid#1", ("terminates", "within_deadline")),
    "retries_past_budget": ("outage at payment.charge#1", ("retry_budget",)),
}

BROKEN = [v for v in variants() if v.broken]


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def _broken_by(saga: saga_verify.Saga, plan: saga_verify.FaultPlan) -> set[str]:
    _, violations = saga_verify.replay(saga, plan)
    return {v.invariant for v in violations}


def assert_one_minimal(failure: saga_verify.Failure, shown_before: set[str] | frozenset[str] = frozenset()) -> None:
    """No fault of the plan can be dropped, and none made a simpler kind, and still break what it
    shows that no earlier failure shows (what it was made minimal for)."""
    saga, plan = failure.saga, failure.plan
    broken = set(failure.invariants) - set(shown_before)
    for i, fault in enumerate(plan.faults):
        without = plan.with_faults(plan.faults[:i] + plan.faults[i + 1 :])
        assert not _broken_by(saga, without) & broken, f"{fault} can be dropped from {plan}"
    target = next(name for name in failure.invariants if name in broken)
    templates = alphabet(saga)
    for i, fault in enumerate(plan.faults):
        for template in templates[(fault.at.participant, fault.at.operation)]:
            if FAULT_KINDS.index(template.cls) >= FAULT_KINDS.index(type(fault)):
                break
            simpler = plan.with_faults((*plan.faults[:i], template.at(fault.at), *plan.faults[i + 1 :]))
            assert target not in _broken_by(saga, simpler), f"{fault} can be made simpler in {plan}: {simpler}"


def test_expected_table_names_every_broken_variant() -> None:
    # A new broken variant must come with the plan the search has to find for it.
    assert sorted(v.name for v in BROKEN) == sorted(EXPECTED)
    # Each kind of reference saga: its correct saga first, then its broken variants.
    kinds = [v.kind for v in variants()]
    for kind in dict.fromkeys(kinds):
        of_kind = [v for v in variants() if v.kind == kind]
        assert [v.broken for v in of_kind] == [False] + [True] * (len(of_kind) - 1)
        assert all(v.correct in (None, of_kind[0].saga) for v in of_kind)
    assert kinds == sorted(kinds, key=kinds.index)  # one run of each kind
    assert variants()[0].saga is order_saga
    assert all(v.bug and v.bug.strip() == v.bug for v in BROKEN)


@pytest.mark.parametrize("variant", BROKEN, ids=lambda v: v.name)
def test_search_finds_the_minimal_plan(variant, tmp_path) -> None:
    result = saga_verify.explore(variant.saga, settings=_no_db(), report_dir=tmp_path, seed=0)

    assert not result.ok
    failure = result.failures[0]
    plan_text, invariants = EXPECTED[variant.name]
    assert str(failure.plan) == plan_text
    assert failure.invariants == invariants
    assert failure.examples <= 100
    assert failure.found_by == ("baseline" if plan_text == "no faults" else "sweep")
    assert result.examples_to_violation == failure.examples
    assert (failure.plan.saga, failure.plan.saga_ref) == (variant.name, f"saga_verify.reference:{variant.name}")
    # The correct saga of its kind holds under the plan that breaks the variant.
    assert _broken_by(variant.correct or order_saga, dataclasses.replace(failure.plan, saga=None)) == set()
    assert_one_minimal(failure)
    # It really breaks what it says it breaks, when run on its own.
    assert _broken_by(variant.saga, failure.plan) >= set(invariants)
    # The search went on after it for the invariants it did not break: the whole sweep ran, then
    # Hypothesis. Every other failure shows an invariant no failure before it shows, under a plan
    # of its own that really breaks it.
    assert result.sweep_complete
    assert result.hypothesis_examples > 0
    shown = set(failure.invariants)
    for other in result.failures[1:]:
        assert set(other.invariants) - shown, f"{other.plan} shows nothing new"
        assert other.plan.faults != failure.plan.faults
        assert _broken_by(variant.saga, other.plan) >= set(other.invariants)
        shown |= set(other.invariants)


def test_with_pauses_on_one_frozen_participant_explains_what_took_two_faults(tmp_path) -> None:
    """A saga that lets searches freeze participants: the search finds the lost-reply bug with a
    single pause (the reservation and its retries wait in the frozen inventory and land after
    the saga said "compensated"), where call-level faults needed two."""
    variant = next(v for v in BROKEN if v.name == "lost_reply_not_compensated")
    saga = dataclasses.replace(variant.saga, pauses=True)
    result = saga_verify.explore(saga, settings=_no_db(), report_dir=tmp_path, seed=0)

    assert not result.ok
    failure = result.failures[0]
    assert [type(f) for f in failure.plan.faults] == [saga_verify.faults.Pause]
    assert failure.found_by == "sweep"
    assert "full_compensation" in failure.invariants
    assert_one_minimal(failure)
    assert [e.outcome for e in failure.execution.trace].count("frozen") >= 2
    # The correct saga under every single pause (and the rest) still holds.
    correct = saga_verify.explore(
        dataclasses.replace(order_saga, pauses=True), settings=_no_db(), report_dir=None, seed=0, sweep_faults=1, max_examples=0
    )
    assert correct.ok, saga_verify.report(correct)


def test_correct_saga_holds_exhaustively_and_under_hypothesis(tmp_path) -> None:
    result = saga_verify.explore(
        order_saga, settings=_no_db(), report_dir=tmp_path, seed=0, sweep_faults=2, sweep_budget=None, max_examples=50
    )

    assert result.ok, saga_verify.report(result)
    assert result.failures == ()
    # Every 1- and 2-fault plan over the reached points (the sweep tests count them), then Hypothesis.
    assert result.sweep_executions == 744
    assert result.hypothesis_examples == 50
    assert result.executions == 2 + 744 + 50
    assert list(tmp_path.iterdir()) == []  # nothing to write when nothing broke


@pytest.mark.slow
@pytest.mark.parametrize("variant", BROKEN, ids=lambda v: v.name)
def test_hypothesis_alone_finds_and_shrinks_each_variant(variant) -> None:
    result = saga_verify.explore(
        variant.saga, settings=_no_db(), report_dir=None, seed=0, sweep_faults=0, max_examples=2000
    )

    assert not result.ok, f"Hypothesis missed {variant.name} in {result.executions} executions"
    assert result.sweep_executions == 0
    assert (result.failures[0].found_by == "baseline") == (variant.name == "notify_before_pivot")
    shown: set[str] = set()
    for failure in result.failures:
        assert len(failure.plan.faults) <= 3, str(failure.plan)
        assert failure.found_by == ("baseline" if not failure.plan.faults else "hypothesis")
        assert _broken_by(variant.saga, failure.plan) >= set(failure.invariants)
        assert_one_minimal(failure, shown)
        shown |= set(failure.invariants)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_correct_saga_holds_under_hypothesis_alone(seed) -> None:
    result = saga_verify.explore(order_saga, settings=_no_db(), report_dir=None, seed=seed, sweep_faults=0, max_examples=1000)

    assert result.ok, saga_verify.report(result)
    assert result.hypothesis_examples == 1000


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 7, 2024])
def test_sweep_finds_the_same_plans_whatever_the_seed(seed) -> None:
    # The sweep does not depend on the Hypothesis seed, so neither does what it reports.
    for variant in BROKEN:
        result = saga_verify.explore(variant.saga, settings=_no_db(), report_dir=None, seed=seed)
        assert (str(result.failures[0].plan), result.failures[0].invariants) == EXPECTED[variant.name]


def test_correct_saga_holds_under_three_fault_plans() -> None:
    """The reference says order_saga "holds every invariant under every plan". A deeper sweep than
    the default (three faults, default budget) must not raise a false alarm against it."""
    result = saga_verify.explore(order_saga, settings=_no_db(), report_dir=None, seed=0, sweep_faults=3, max_examples=0)

    assert result.ok, saga_verify.report(result)
