"""What a search covered: every execution it checks, in every phase, lands in the matrix of
fault kinds by operations; a cell the search cannot try is told apart from one it never did."""

from __future__ import annotations

import dataclasses
from collections import Counter

import hypothesis
from hypothesis.database import InMemoryExampleDatabase

from saga_verify import FaultPlan, Step, explore
from saga_verify._exploration import Coverage, run_plan_unchecked, sweep
from saga_verify._exploration import explore as explore_with_progress
from saga_verify._runtimes import place
from saga_verify.faults import FAULT_KINDS, DeliveryPoint, Duplicate, LoseReply, Outage
from saga_verify.reference import charge_without_key, fresh_key_on_retry, order_saga


def _no_db() -> hypothesis.settings:
    return hypothesis.settings(database=None)


def test_the_sweep_is_counted_plan_by_plan() -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=0)
    coverage = result.coverage
    assert coverage is not None
    # Tally the same sweep independently: each plan counts once in the cell of its fault.
    tally: Counter[tuple[str, str, str]] = Counter()
    plans = 0
    placed = place(order_saga, "sim")
    for _plan, execution in sweep(placed, run_plan_unchecked(placed), max_faults=1, budget=None):
        plans += 1
        for fault in execution.faults:
            tally[(fault.at.participant, fault.at.operation, fault.kind)] += 1
    assert plans == result.sweep_executions
    for kind in coverage.kinds:
        for participant, operation in coverage.operations:
            assert coverage.cell(kind, participant, operation).plans == tally[(participant, operation, kind)]
    assert coverage.broken == 0
    assert coverage.executions == 1 + plans  # the fault-free run, then each plan of the sweep


def test_every_checked_execution_of_every_phase_is_recorded() -> None:
    # A failing search: fault-free runs, the sweep, each minimisation, Hypothesis.
    broken = explore(fresh_key_on_retry, settings=_no_db(), report_dir=None)
    assert broken.coverage is not None
    # Not checked: the second fault-free run (it only proves determinism) and the final replay
    # of each minimal plan.
    assert broken.coverage.executions == broken.executions - 1 - len(broken.failures)
    assert broken.coverage.broken >= 1
    cell = broken.coverage.cell("lose-reply", "shipping", "create")
    assert cell.plans >= 1
    assert cell.broke >= 1

    # Hypothesis alone.
    drawn = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=30)
    assert drawn.coverage is not None
    assert drawn.coverage.executions == 1 + drawn.hypothesis_examples
    assert sum(drawn.coverage.cell(k, p, o).plans for k in drawn.coverage.kinds for p, o in drawn.coverage.operations) > 0


def test_plans_from_the_example_database_are_recorded() -> None:
    db = InMemoryExampleDatabase()
    settings = hypothesis.settings(database=db)
    explore(charge_without_key, settings=settings, report_dir=None)
    again = explore(charge_without_key, settings=settings, report_dir=None)
    assert [f.found_by for f in again.failures] == ["database"] * len(again.failures)
    assert again.coverage is not None
    assert again.coverage.cell("lose-reply", "payment", "charge").broke >= 1


def test_a_plan_counts_once_per_cell_and_breaking_is_counted_apart() -> None:
    coverage = Coverage(order_saga)
    charge = DeliveryPoint("payment", "charge", 1)
    coverage.record((LoseReply(charge), LoseReply(DeliveryPoint("payment", "charge", 2))), broke=True)
    coverage.record((LoseReply(charge), Duplicate(DeliveryPoint("shipping", "create", 1))), broke=False)
    coverage.record((), broke=False)
    assert coverage.cell("lose-reply", "payment", "charge")[:2] == (2, 1)
    assert coverage.cell("duplicate", "shipping", "create")[:2] == (1, 0)
    assert coverage.cell("outage", "payment", "charge")[:2] == (0, 0)
    assert (coverage.executions, coverage.broken) == (3, 1)


def test_a_saga_without_refuse_hooks_shows_an_empty_refuse_row() -> None:
    steps = [Step(s.participant, s.action, s.compensation, restart=s.restart) for s in order_saga.steps]
    no_refusals = dataclasses.replace(order_saga, name="no_refusals", steps=steps)
    result = explore(no_refusals, settings=_no_db(), report_dir=None, max_examples=20)
    coverage = result.coverage
    assert coverage is not None
    refuse_row = [coverage.cell("refuse", p, o) for p, o in coverage.operations]
    assert all(not cell.searched and cell.plans == 0 for cell in refuse_row)
    assert coverage.to_json()["cells"]["refuse"] == dict.fromkeys(coverage.to_json()["operations"])
    # The reference saga declares its refusals: the search tries them at each forward step.
    full = explore(order_saga, settings=_no_db(), report_dir=None, max_examples=0).coverage
    assert full is not None
    assert full.cell("refuse", "payment", "charge").plans > 0
    assert not full.cell("refuse", "payment", "refund").searched  # compensations are never refused


def test_never_tried_names_the_cells_the_search_could_try_and_did_not() -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=0)
    coverage = result.coverage
    assert coverage is not None
    never = coverage.never_tried()
    # One fault never reaches a compensation of shipping (nothing before it fails), so no plan
    # of one fault can disturb it.
    assert "lose-reply at shipping.cancel" in never
    assert "lose-reply at payment.charge" not in never
    # Pauses are searched only for sagas that ask for them: not "never tried", not possible.
    assert not any(item.startswith("pause") for item in never)
    assert coverage.to_json()["never_tried"] == never


def test_json_has_every_kind_and_operation() -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=0)
    assert result.coverage is not None
    data = result.coverage.to_json()
    # A switch happens only between actors, a corrupt message only in a choreography: no rows for
    # an orchestrated saga that runs one actor.
    assert data["kinds"] == [k.kind for k in FAULT_KINDS if k.kind not in ("switch", "corrupt")]
    assert data["operations"] == [
        "inventory.reserve",
        "inventory.release",
        "payment.charge",
        "payment.refund",
        "shipping.create",
        "shipping.cancel",
        "notification.send",
    ]
    assert set(data["cells"]) == set(data["kinds"])
    assert data["cells"]["pause"]["payment.charge"] is None
    assert data["cells"]["outage"]["payment.charge"]["plans"] == result.coverage.cell("outage", "payment", "charge").plans
    assert data["executions"] == result.coverage.executions


def test_a_fault_the_plan_names_but_never_reaches_is_not_counted() -> None:
    coverage = Coverage(order_saga)
    # The saga calls inventory.reserve once when it succeeds: an outage at the second attempt never happens.
    plan = FaultPlan((Outage(DeliveryPoint("inventory", "reserve", 2)),))
    execution = run_plan_unchecked(place(order_saga, "sim"))(plan)
    coverage.record(execution.faults, broke=False)
    assert coverage.cell("outage", "inventory", "reserve").plans == 0


def test_the_sweep_says_whether_it_was_complete() -> None:
    complete = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=0)
    assert (complete.sweep_faults, complete.sweep_complete) == (1, True)
    cut = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=2, sweep_budget=50, max_examples=0)
    assert cut.sweep_executions == 50
    assert cut.sweep_complete is False
    stopped = explore(charge_without_key, settings=_no_db(), report_dir=None, all_failures=False)
    assert stopped.sweep_complete is False  # it stopped at the failure
    went_on = explore(charge_without_key, settings=_no_db(), report_dir=None)
    assert went_on.sweep_complete is True  # it went on after its failures, to the end
    off = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=0)
    assert (off.sweep_faults, off.sweep_complete) == (0, False)


def test_progress_is_told_each_phase() -> None:
    seen: list[tuple[str, int, int]] = []
    explore_with_progress(place(fresh_key_on_retry, "sim"), settings=_no_db(), report_dir=None, progress=lambda *args: seen.append(args))
    phases = [phase for phase, _, _ in seen]
    assert phases[0] == "preflight"
    assert "sweep" in phases
    assert "shrinking" in phases
    assert phases.index("sweep") < phases.index("shrinking")
    counts = [n for _, n, _ in seen]
    assert counts == sorted(counts)
    found = [f for _, _, f in seen]
    assert found == sorted(found)
    assert found[-1] >= 1
    hypothesis_only: list[str] = []
    explore_with_progress(place(order_saga, "sim"), settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=5, progress=lambda p, n, f: hypothesis_only.append(p))
    assert hypothesis_only.count("hypothesis") == 5
