"""The reference order saga as an Arazzo workflow (contracts/arazzo/order.arazzo.yaml): it holds
under the same search as the coded saga, and gives the same verdict and outcome for every plan
either one's sweep tries, on the same runtime; and the two broken workflows are caught."""

from __future__ import annotations

from pathlib import Path

import hypothesis
import pytest
from arazzo_documents import NO_KEY, ORDER

from saga_verify import FaultPlan, Saga, explore, replay
from saga_verify._exploration._sweep import run_plan_unchecked, sweep
from saga_verify._runtimes import place
from saga_verify.arazzo import load
from saga_verify.reference import STEPS, order_saga, reference_http_system

NO_DB = hypothesis.settings(database=None)


def _workflow() -> Saga:
    return load(ORDER)


def test_the_workflow_is_the_reference_sagas_steps() -> None:
    saga = _workflow()
    assert [(s.participant, s.action, s.compensation) for s in saga.steps] == [(s.participant, s.action, s.compensation) for s in STEPS]
    assert saga.input == order_saga.input
    assert [i.name for i in saga.invariants or ()] == [i.name for i in order_saga.invariants or ()]


def _plans(runtime: str, faults: int) -> list[FaultPlan]:
    """Every plan the sweeps of both sagas try, up to ``faults`` faults, once each."""
    found: dict[frozenset[object], FaultPlan] = {}
    for saga in (order_saga, _workflow()):
        placed = place(saga, runtime)
        for plan, _ in sweep(placed, run_plan_unchecked(placed), max_faults=faults, budget=None):
            found.setdefault(frozenset(plan.faults), FaultPlan(plan.faults, seed=plan.seed))
    return list(found.values())


def _same_verdicts(runtime: str, faults: int) -> int:
    workflow, differ = _workflow(), []
    plans = _plans(runtime, faults)
    for plan in plans:
        verdicts = []
        for saga in (order_saga, workflow):
            execution, violations = replay(saga, plan, runtime=runtime)
            verdicts.append((execution.status, sorted({v.invariant for v in violations})))
        if verdicts[0] != verdicts[1]:
            differ.append(f"{plan}: coded {verdicts[0]}, workflow {verdicts[1]}")
    assert differ == []
    return len(plans)


def test_the_same_verdict_and_outcome_for_every_one_fault_plan_on_asgi() -> None:
    assert _same_verdicts("asgi", 1) > 35


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["asgi", "process"])
def test_the_same_verdict_and_outcome_for_every_two_fault_plan(runtime: str) -> None:
    assert _same_verdicts(runtime, 2) > 700


def _holds_like_the_coded_saga(runtime: str, tmp_path: Path, sweep_faults: int) -> None:
    results = {}
    for saga in (order_saga, _workflow()):
        results[saga.name] = explore(saga, runtime=runtime, settings=NO_DB, report_dir=tmp_path, sweep_faults=sweep_faults, max_examples=50, seed=3)
    for name, result in results.items():
        assert result.ok, f"{name}: {[str(f.plan) for f in result.failures]}"
        assert result.hypothesis_examples == 50
    # The workflow undoes a step whose calls all failed before delivery too: a few more plans.
    assert results["placeOrder"].sweep_executions >= results["order"].sweep_executions > (35 if sweep_faults == 1 else 700)


def test_the_workflow_holds_under_the_coded_sagas_search_on_asgi(tmp_path: Path) -> None:
    _holds_like_the_coded_saga("asgi", tmp_path, sweep_faults=1)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["asgi", "process"])
def test_the_workflow_holds_under_the_full_search(runtime: str, tmp_path: Path) -> None:
    _holds_like_the_coded_saga(runtime, tmp_path, sweep_faults=2)


@pytest.mark.parametrize("runtime", ["asgi", pytest.param("process", marks=pytest.mark.slow)])
def test_a_retry_without_a_key_is_caught_by_the_search_with_a_minimal_plan(runtime: str, tmp_path: Path) -> None:
    saga = load(NO_KEY, strict=False, participants=reference_http_system(), name="charge_retry_without_key")
    result = explore(saga, runtime=runtime, settings=NO_DB, report_dir=tmp_path, max_examples=0, all_failures=False)
    (failure,) = result.failures
    assert str(failure.plan) == "lose-reply at payment.charge#1"
    assert failure.invariants == ("no_double_charge",)
    assert failure.found_by == "sweep"
    assert [r.ref for r in failure.execution.rows("payment", "charge")] == ["ch-1", "ch-2"]
