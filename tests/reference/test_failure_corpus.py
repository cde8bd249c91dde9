"""The failure corpus in fixtures/corpus: the minimal plan of every broken reference variant.
Each still breaks its variant the way it did when it was found, and the correct saga of its kind
holds under every one of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from saga_verify import FaultPlan, load_saga, replay
from saga_verify.reference import choreographed_variants, messaging_variants, order_saga, variants

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"
PLANS = sorted(CORPUS.glob("*.json"))


def test_corpus_covers_every_broken_variant() -> None:
    names = {p.stem for p in PLANS}
    assert names == {v.name for v in (*variants(), *choreographed_variants(), *messaging_variants()) if v.broken}


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_corpus_plan_still_breaks_its_variant(path: Path) -> None:
    plan = FaultPlan.load(path)
    assert plan.saga == path.stem
    assert plan.saga_ref is not None
    saga = load_saga(plan.saga_ref)
    assert saga.name == path.stem
    _, violations = replay(saga, plan)
    assert tuple(dict.fromkeys(v.invariant for v in violations)) == plan.violated


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_correct_saga_holds_under_corpus_plan(path: Path) -> None:
    plan = dataclasses.replace(FaultPlan.load(path), saga=None)  # the broken variant's plan, on the correct saga
    variant = next(v for v in (*variants(), *choreographed_variants(), *messaging_variants()) if v.name == path.stem)
    execution, violations = replay(variant.correct or order_saga, plan)
    assert violations == [], [str(v) for v in violations]
    # Ended, or (a choreography under a poison message) parked in the dead-letter queue for a person.
    parked = execution.bus is not None and any(d.rejected for d in execution.bus.dead_letters)
    assert execution.status in ("completed", "compensated", "failed") or parked
