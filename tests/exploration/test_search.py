"""explore(), verify() and replay(): options, Hypothesis settings, plan files that replay."""

from __future__ import annotations

import dataclasses
import json
import re

import hypothesis
import pytest

import saga_verify
from saga_verify import FaultPlan, SagaVerifyError, SagaViolationError, explore, replay, verify
from saga_verify._runtimes import place
from saga_verify._world import trace_to_json
from saga_verify.errors import OptionError, SagaViolationGroup
from saga_verify.reference import (
    charge_without_key,
    forward_order_compensation,
    fresh_key_on_retry,
    order_saga,
    refund_forgets_charge,
)


def _no_db(**kw) -> hypothesis.settings:
    return hypothesis.settings(database=None, **kw)


# -- verify ------------------------------------------------------------------------------------
def test_verify_raises_with_the_report(tmp_path) -> None:
    with pytest.raises(SagaViolationError) as info:
        verify(forward_order_compensation, settings=_no_db(), report_dir=tmp_path)

    error = info.value
    assert type(error) is SagaViolationError  # one broken invariant: no group
    assert isinstance(error, AssertionError)
    assert isinstance(error, SagaVerifyError)
    result = error.result
    assert isinstance(result, saga_verify.ExplorationResult)
    assert not result.ok
    assert str(error) == saga_verify.report(result) == saga_verify.report(result.failures[0])
    assert "refuse at shipping.create#1" in str(error)
    assert "reverse_compensation_order" in str(error)


def test_verify_raises_every_distinct_broken_invariant_as_a_group(tmp_path) -> None:
    """A saga with several bugs shows them all in one run, each with its own minimal plan, as
    Hypothesis reports several bugs: a group of violation errors, one per failure."""
    with pytest.raises(SagaViolationError) as info:
        verify(charge_without_key, settings=_no_db(), report_dir=tmp_path)

    group = info.value
    assert isinstance(group, SagaViolationGroup)
    assert isinstance(group, ExceptionGroup)
    assert isinstance(group, SagaVerifyError)
    result = group.result
    assert len(result.failures) == len(group.exceptions) > 1
    assert group.message == f"{len(result.failures)} distinct broken invariants in saga 'charge_without_key'"
    assert [str(e) for e in group.exceptions] == [saga_verify.report(f) for f in result.failures]
    assert all(type(e) is SagaViolationError and e.result is result for e in group.exceptions)
    assert str(result.failures[0].plan) == "lose-reply at payment.charge#1"
    shown = [set(f.invariants) for f in result.failures]
    assert "no_double_charge" in shown[0]
    assert all(s - set().union(*shown[:i]) for i, s in enumerate(shown)), shown
    assert len({f.plan.faults for f in result.failures}) == len(result.failures)
    # It splits like any exception group.
    matched, rest = group.split(SagaViolationError)
    assert rest is None
    assert isinstance(matched, SagaViolationGroup)
    assert matched.result is result


def test_verify_returns_the_result_when_the_saga_holds(tmp_path) -> None:
    result = verify(order_saga, settings=_no_db(), report_dir=tmp_path, max_examples=20)
    assert isinstance(result, saga_verify.ExplorationResult)
    assert result.ok
    assert result.saga is order_saga
    assert result.seed == 0
    assert result.hypothesis_examples == 20


def test_verify_passes_options_through(tmp_path) -> None:
    # With the sweep off and no examples nothing can find the bug: the options reached explore().
    result = verify(charge_without_key, settings=_no_db(), report_dir=tmp_path, sweep_faults=0, max_examples=0)
    assert result.ok
    assert result.executions == 2


# -- bad options -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_examples": -1}, "max_examples"),
        ({"max_examples": 1.5}, "max_examples"),
        ({"max_examples": True}, "max_examples"),
        ({"max_examples": "10"}, "max_examples"),
        ({"sweep_faults": None}, "sweep_faults"),
        ({"sweep_faults": -2}, "sweep_faults"),
        ({"sweep_faults": False}, "sweep_faults"),
        ({"sweep_budget": -1}, "sweep_budget"),
        ({"sweep_budget": 2.0}, "sweep_budget"),
        ({"seed": "x"}, "seed"),
        ({"seed": 1.0}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
@pytest.mark.parametrize("entry", [explore, verify], ids=["explore", "verify"])
def test_bad_options_are_option_errors_naming_the_option(entry, options, named, tmp_path) -> None:
    with pytest.raises(OptionError) as info:
        entry(order_saga, settings=_no_db(), report_dir=tmp_path, **options)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith(f"{named} must be a whole number")
    assert repr(next(iter(options.values()))) in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("not_a_saga", [None, "saga_verify.reference:order_saga", order_saga.run, object()])
def test_explore_takes_only_sagas(not_a_saga) -> None:
    with pytest.raises(OptionError, match=r"explore\(\) takes a saga_verify.Saga, got "):
        explore(not_a_saga, settings=_no_db(), report_dir=None)


def test_unseeded_search_is_allowed() -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, seed=None, sweep_faults=0, max_examples=5)
    assert result.ok
    assert result.seed is None


# -- Hypothesis settings -----------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 7])
def test_max_examples_bounds_the_hypothesis_phase(n) -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=n)
    assert result.hypothesis_examples == n
    assert result.sweep_executions == 0
    assert result.executions == 2 + n  # two fault-free runs check determinism first


def test_settings_max_examples_is_honoured_when_the_option_is_not_given() -> None:
    result = explore(order_saga, settings=_no_db(max_examples=5), report_dir=None, sweep_faults=0)
    assert result.hypothesis_examples == 5


def test_the_option_wins_over_the_settings() -> None:
    result = explore(order_saga, settings=_no_db(max_examples=5), report_dir=None, sweep_faults=0, max_examples=3)
    assert result.hypothesis_examples == 3


def test_one_example_is_too_few_to_find_a_bug_that_needs_a_fault() -> None:
    result = explore(fresh_key_on_retry, settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=1, seed=0)
    assert result.ok
    assert result.hypothesis_examples == 1
    assert result.executions == 3


def test_same_seed_same_hypothesis_search() -> None:
    def run(seed):
        r = explore(fresh_key_on_retry, settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=500, seed=seed)
        return [(str(f.plan), f.invariants, f.examples) for f in r.failures], r.executions

    first = run(3)
    assert first == run(3)
    assert first[0][0][:2] == ("lose-reply at shipping.create#1", ("no_double_create",))


def test_hypothesis_phase_finds_what_the_sweep_is_too_shallow_for() -> None:
    # refund_forgets_charge needs two faults; a one-fault sweep cannot find it, Hypothesis can.
    shallow = explore(refund_forgets_charge, settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=0)
    assert shallow.ok
    assert shallow.sweep_executions > 0
    deeper = explore(refund_forgets_charge, settings=_no_db(), report_dir=None, sweep_faults=2, max_examples=0)
    assert deeper.failures
    assert {f.found_by for f in deeper.failures} == {"sweep"}


def test_sweep_budget_limits_the_sweep() -> None:
    result = explore(order_saga, settings=_no_db(), report_dir=None, sweep_budget=40, max_examples=0)
    assert result.ok
    assert result.sweep_executions == 40
    assert result.sweep_executions == 40
    assert result.executions == 42


def test_a_broken_plan_found_by_hypothesis_is_shrunk_and_counted() -> None:
    result = explore(fresh_key_on_retry, settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=500, seed=0)
    (failure,) = result.failures
    assert failure.found_by == "hypothesis"
    assert str(failure.plan) == "lose-reply at shipping.create#1"
    # examples counts up to the first violation; executions also holds the shrinking.
    assert 2 < failure.examples <= result.executions
    assert result.hypothesis_examples == result.executions - 2


# -- plan files and replay ---------------------------------------------------------------------
@pytest.fixture
def found(tmp_path):
    result = explore(charge_without_key, settings=_no_db(), report_dir=tmp_path, seed=0)
    return result.failures[0]


def test_plan_file_is_written_into_the_report_dir(found, tmp_path) -> None:
    path = found.plan_path
    assert path is not None
    assert path.exists()
    assert path.parent == tmp_path
    assert re.fullmatch(r"charge_without_key-no_double_charge-[0-9a-f]{8}\.json", path.name)
    # One file per failure, each named after the invariant it was found for; no temporary files.
    result = explore(charge_without_key, settings=_no_db(), report_dir=tmp_path, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.plan_path.name for f in result.failures)


def test_plan_file_is_json_naming_the_saga(found) -> None:
    data = json.loads(found.plan_path.read_text(encoding="utf-8"))
    assert data == {
        "format": "saga-verify/plan@2",
        "saga": {"name": "charge_without_key", "ref": "saga_verify.reference:charge_without_key"},
        "seed": 0,
        "faults": [{"kind": "lose-reply", "at": "payment.charge#1"}],
        "violated": ["no_double_charge"],
    }


def test_plan_file_replays_the_same_violations_and_trace(found) -> None:
    plan = FaultPlan.load(found.plan_path)
    assert plan == found.plan
    assert plan.violated == ("no_double_charge",)

    execution, violations = replay(charge_without_key, plan)

    assert [(v.invariant, v.message) for v in violations] == [(v.invariant, v.message) for v in found.violations]
    assert trace_to_json(execution.trace) == trace_to_json(found.execution.trace)
    assert execution.status == found.execution.status == "completed"


def test_replay_is_deterministic_byte_for_byte(found) -> None:
    plan = FaultPlan.load(found.plan_path)
    traces = {trace_to_json(replay(charge_without_key, plan)[0].trace) for _ in range(3)}
    assert len(traces) == 1


def test_replay_of_a_fixed_saga_finds_nothing(found) -> None:
    # The same schedule against the correct saga: the idempotency key makes the retry harmless.
    plan = dataclasses.replace(FaultPlan.load(found.plan_path), saga=None)  # the broken variant's plan, on the correct saga
    execution, violations = replay(order_saga, plan)
    assert violations == []
    assert len(execution.rows("payment", "charge")) == 1


def test_replay_with_chosen_invariants(found) -> None:
    plan = FaultPlan.load(found.plan_path)
    _, violations = replay(charge_without_key, plan, invariants=[saga_verify.invariants.terminates])
    assert violations == []


def test_replay_rejects_a_plan_for_operations_the_saga_lacks() -> None:
    plan = FaultPlan.loads('{"faults": [{"kind": "fail", "at": "payment.chrage#1"}]}')
    with pytest.raises(saga_verify.errors.PlanError, match=r"payment\.chrage.*did you mean payment\.charge\?"):
        replay(order_saga, plan)


def test_same_plan_same_file(tmp_path) -> None:
    a = explore(charge_without_key, settings=_no_db(), report_dir=tmp_path / "a").failures[0]
    b = explore(charge_without_key, settings=_no_db(), report_dir=tmp_path / "b").failures[0]
    assert a.plan_path.name == b.plan_path.name
    assert a.plan_path.read_bytes() == b.plan_path.read_bytes()


def test_no_report_dir_writes_nothing_and_reproduces_in_python(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    failure = explore(charge_without_key, settings=_no_db(), report_dir=None).failures[0]
    assert failure.plan_path is None
    assert list(tmp_path.iterdir()) == []
    (command,) = failure.replay_commands
    assert command.startswith("saga_verify.replay(saga, saga_verify.FaultPlan.loads(")
    # The line runs as it stands and reproduces the violation.
    _, violations = eval(command, {"saga_verify": saga_verify, "saga": charge_without_key})
    assert {v.invariant for v in violations} == {"no_double_charge"}


def test_baseline_failure_is_not_saved_to_the_database_but_is_written(tmp_path) -> None:
    from hypothesis.database import InMemoryExampleDatabase

    from saga_verify.reference import notify_before_pivot

    db = InMemoryExampleDatabase()
    result = explore(notify_before_pivot, settings=hypothesis.settings(database=db), report_dir=tmp_path, max_examples=0)
    failure = result.failures[0]
    assert failure.found_by == "baseline"
    assert failure.plan.faults == ()
    assert failure.examples == 2
    assert failure.plan_path is not None
    assert FaultPlan.load(failure.plan_path).faults == ()
    # A plan with no faults teaches the database nothing; the plans of the other failures it found
    # after it (the search goes on for the invariants the baseline did not break) are saved.
    stored = [FaultPlan.loads(raw.decode("utf-8")) for values in db.data.values() for raw in values]
    assert all(plan.faults for plan in stored)
    assert sorted(str(p) for p in stored) == sorted(str(f.plan) for f in result.failures[1:])


# -- sagas that cannot be judged, and invariants of one's own -------------------------------------
class _Box:
    """A participant with one step and its compensation, recording each effect."""

    def __init__(self) -> None:
        self.ledger = saga_verify.Ledger()

    def put(self, **request) -> str:
        self.ledger.record("put")
        return "ok"

    def take(self, **request) -> str:
        self.ledger.record("take")
        return "ok"


def _box_saga(name: str, run) -> saga_verify.Saga:
    return saga_verify.Saga(name, steps=[saga_verify.Step("box", "put", "take")], participants=lambda: {"box": _Box()}, run=run)


def _careless(services, _input) -> str:
    services.box.put(idempotency_key="k")  # a connection error or timeout escapes
    return "completed"


def test_a_saga_that_crashes_under_a_fault_breaks_no_unhandled_error() -> None:
    result = explore(_box_saga("careless", _careless), settings=_no_db(), report_dir=None)
    failure = result.failures[0]
    assert str(failure.plan) == "fail at box.put#1"
    assert failure.invariants == ("no_unhandled_error",)
    assert failure.violations[0].message == "the saga raised ConnectionRefusedError: box.put#1: connection refused (injected fail)"


def test_hypothesis_reports_distinct_broken_invariants_together() -> None:
    result = explore(_box_saga("careless", _careless), settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=200)
    assert [f.found_by for f in result.failures] == ["hypothesis", "hypothesis"]
    assert sorted(f.invariants for f in result.failures) == [("no_double_put",), ("no_unhandled_error",)]
    assert all(len(f.plan.faults) == 1 for f in result.failures)
    text = saga_verify.report(result)
    assert text.startswith("2 distinct broken invariants in saga 'careless':\n\nsaga 'careless' broke ")
    assert text.count("Reproduce with: ") == 2


def test_a_saga_that_crashes_on_a_good_day_is_refused() -> None:
    def run(services, _input):
        raise KeyError("no such order")

    with pytest.raises(saga_verify.errors.SagaCrashedError, match=r"saga 'crash' raised KeyError: 'no such order' with no fault injected \(at "):
        explore(_box_saga("crash", run), settings=_no_db(), report_dir=None)


def test_a_saga_that_returns_no_status_is_refused() -> None:
    with pytest.raises(saga_verify.errors.SagaDefinitionError, match=r"saga 'vague' returned 'done' with no fault injected; return one of completed, compensated, failed"):
        explore(_box_saga("vague", lambda services, _input: "done"), settings=_no_db(), report_dir=None)


def _drifting(at: int):
    """A saga that puts twice more on its ``at``-th execution: state kept between executions."""
    runs = iter(range(1, 10**6))

    def run(services, _input) -> str:
        drift = next(runs) == at
        try:
            services.box.put(idempotency_key="k")
        except OSError:
            return "failed"
        finally:
            if drift:
                services.box.put()
                services.box.put()
        return "completed"

    return _box_saga("drifting", run)


def test_nondeterminism_on_a_good_day_is_caught_before_searching() -> None:
    with pytest.raises(saga_verify.errors.NondeterminismError, match=r"saga 'drifting' is not deterministic: the same plan \(with no faults\) gave two different traces: one run made 1 deliveries, the other 3"):
        explore(_drifting(2), settings=_no_db(), report_dir=None)


def test_nondeterminism_during_the_sweep_is_caught_when_minimising() -> None:
    with pytest.raises(saga_verify.errors.NondeterminismError, match=r"broke no_double_put once and not when run again"):
        explore(_drifting(5), settings=_no_db(), report_dir=None)


def test_nondeterminism_during_hypothesis_is_caught() -> None:
    with pytest.raises(saga_verify.errors.NondeterminismError, match=r"saga 'drifting' broke an invariant under a plan and not when Hypothesis ran it again"):
        explore(_drifting(5), settings=_no_db(), report_dir=None, sweep_faults=0, max_examples=50)


@saga_verify.invariant
def _touchy(execution) -> None:
    """Raises instead of answering once payment sees a fault."""
    if any(e.fault for e in execution.trace if e.participant == "payment"):
        raise ZeroDivisionError("boom")


@pytest.mark.parametrize("sweep_faults", [2, 0])
def test_an_invariant_that_raises_is_an_error_not_a_violation(sweep_faults) -> None:
    with pytest.raises(SagaVerifyError, match=r"invariant '_touchy' itself raised ZeroDivisionError: boom") as info:
        explore(order_saga, invariants=[_touchy], settings=_no_db(), report_dir=None, sweep_faults=sweep_faults, max_examples=200)
    assert not isinstance(info.value, SagaViolationError)


def test_own_invariants_replace_the_standard_ones(tmp_path) -> None:
    @saga_verify.invariant(name="at_most_five_calls")
    def few_calls(execution):
        return len(execution.trace) <= 5 or f"{len(execution.trace)} calls"

    result = explore(order_saga, invariants=[few_calls], settings=_no_db(), report_dir=tmp_path)
    (failure,) = result.failures
    assert failure.invariants == ("at_most_five_calls",)
    # The simplest single fault that adds a delivery: a request held past the timeout lands late.
    assert str(failure.plan) == "delay seconds=30 at inventory.reserve#1"
    assert failure.violations[0].message == "6 calls"
    assert failure.plan_path.name.startswith("order-at_most_five_calls-")
    # Replayed with the same invariants it breaks; with the standard ones the saga holds.
    assert [v.invariant for v in replay(order_saga, failure.plan, invariants=[few_calls])[1]] == ["at_most_five_calls"]
    assert replay(order_saga, failure.plan)[1] == []


# -- what the search reports about itself ---------------------------------------------------------
def test_executions_count_every_execution_the_search_ran() -> None:
    """``ExplorationResult.executions`` is documented as every execution the search ran. Count
    the worlds actually built (each builds its participants once) and compare."""
    built = []

    placed = place(order_saga, "sim").participants
    assert callable(placed)

    def participants():
        built.append(1)
        return placed()

    saga = dataclasses.replace(order_saga, participants=participants)
    result = explore(saga, settings=_no_db(), report_dir=None, sweep_faults=1, max_examples=0)

    assert result.ok
    assert result.sweep_executions == 39
    assert result.executions == len(built)


def test_each_failure_is_reported_once() -> None:
    """Hypothesis may find the same bug through two invariants; after minimising both lead to one
    plan, and a report of "N distinct broken invariants" must not list that plan twice."""
    result = explore(refund_forgets_charge, settings=_no_db(), report_dir=None, seed=7, sweep_faults=0, max_examples=600)

    plans = [str(f.plan) for f in result.failures]
    assert plans, "the search should find refund_forgets_charge"
    assert len(plans) == len(set(plans)), saga_verify.report(result)


def test_a_failure_at_every_attempt_shrinks_to_one_outage() -> None:
    from saga_verify._exploration._search import _Counter, _minimize
    from saga_verify.invariants import invariants_for
    from saga_verify.reference import swallowed_compensation_error

    plan = FaultPlan.loads(
        '{"faults": [{"kind": "refuse", "at": "payment.charge#1"}, {"kind": "fail", "at": "inventory.release#1"},'
        ' {"kind": "fail", "at": "inventory.release#2"}, {"kind": "fail", "at": "inventory.release#3"}]}'
    )
    saga = place(swallowed_compensation_error, "sim")
    shrunk, _, violations = _minimize(saga, plan, invariants_for(saga), "full_compensation", _Counter())
    assert str(shrunk) == "refuse at payment.charge#1; outage at inventory.release#1"
    assert "full_compensation" in {v.invariant for v in violations}
