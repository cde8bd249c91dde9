"""Writing your own invariants: the decorator, what a check may return, asserts, errors, and
custom invariants in a search."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest

from saga_verify import (
    Execution,
    FaultPlan,
    Invariant,
    Saga,
    SagaVerifyError,
    SagaViolationError,
    Violation,
    explore,
    invariant,
    run_plan,
    verify,
)
from saga_verify.faults import DeliveryPoint, LoseReply, Refuse
from saga_verify.invariants import check
from saga_verify.reference import ORDER, STEPS, Inventory, Notification, OrderSaga, Payment, Shipping, order_saga

P = DeliveryPoint.parse


@pytest.fixture(scope="module")
def happy() -> Execution:
    return run_plan(order_saga)


@pytest.fixture(scope="module")
def retried() -> Execution:
    return run_plan(order_saga, FaultPlan((LoseReply(P("payment.charge#1")),)))


def charge_calls(execution: Execution) -> int:
    return sum(1 for e in execution.trace if (e.participant, e.operation) == ("payment", "charge"))


# -- the decorator -----------------------------------------------------------------------------


def test_bare_decorator_takes_name_and_docstring() -> None:
    @invariant
    def charged_once(execution: Execution) -> bool:
        """The card is
        charged   once."""
        return len(execution.rows("payment", "charge")) == 1

    assert isinstance(charged_once, Invariant)
    assert charged_once.name == "charged_once"
    assert charged_once.description == "The card is charged once."


def test_decorator_with_name_and_description() -> None:
    @invariant(name="one-charge", description="exactly one charge per order")
    def check_it(execution: Execution) -> bool:
        """Not this."""
        return True

    assert check_it.name == "one-charge"
    assert check_it.description == "exactly one charge per order"


def test_decorator_with_empty_parentheses_and_an_empty_description() -> None:
    @invariant()
    def quiet(execution: Execution) -> bool:
        """Docstring."""
        return False

    assert (quiet.name, quiet.description) == ("quiet", "Docstring.")

    @invariant(description="")
    def bare(execution: Execution) -> bool:
        """Docstring ignored: an explicit description wins, even an empty one."""
        return False

    assert bare.description == ""


# -- what a check may return -------------------------------------------------------------------


@pytest.mark.parametrize("result", [None, True, [], ()], ids=["None", "True", "empty-list", "empty-tuple"])
def test_holding_results(result: Any, happy: Execution) -> None:
    assert Invariant("holds", lambda e: result)(happy) == []


def test_false_uses_the_description(happy: Execution) -> None:
    @invariant
    def never(execution: Execution) -> bool:
        """Nothing ever holds."""
        return False

    assert never(happy) == [Violation("Nothing ever holds.", (), "never")]
    # without a description the message says so plainly
    assert Invariant("nameless", lambda e: False)(happy) == [Violation("does not hold", (), "nameless")]


def test_text_is_the_message(retried: Execution) -> None:
    @invariant
    def one_charge_call(execution: Execution) -> str | None:
        calls = charge_calls(execution)
        return f"payment.charge was called {calls} times" if calls > 1 else None

    (violation,) = one_charge_call(retried)
    assert violation == Violation("payment.charge was called 2 times", (), "one_charge_call")
    assert str(violation) == "one_charge_call: payment.charge was called 2 times"


def test_a_violation_keeps_its_evidence_and_gets_the_name(retried: Execution) -> None:
    @invariant(name="charge-evidence")
    def shows_rows(execution: Execution) -> Violation:
        return Violation("look at these", tuple(execution.rows("payment")))

    (violation,) = shows_rows(retried)
    assert violation.invariant == "charge-evidence"
    assert violation.message == "look at these"
    assert violation.evidence == tuple(retried.rows("payment"))


def test_a_violation_may_name_another_invariant(happy: Execution) -> None:
    @invariant
    def umbrella(execution: Execution) -> Violation:
        return Violation("sub-check failed", (), "umbrella.sub")

    assert [v.invariant for v in umbrella(happy)] == ["umbrella.sub"]


def test_several_results_flatten_in_order(happy: Execution) -> None:
    @invariant
    def many(execution: Execution) -> list[Any]:
        return ["first", Violation("second", (execution.trace[0],)), ["third", None, True], "fourth"]

    violations = many(happy)
    assert [v.message for v in violations] == ["first", "second", "third", "fourth"]
    assert {v.invariant for v in violations} == {"many"}
    assert violations[1].evidence == (happy.trace[0],)


def test_a_generator_of_messages(happy: Execution) -> None:
    @invariant
    def each_step(execution: Execution) -> Iterator[str]:
        for entry in execution.trace:
            if entry.participant in ("payment", "shipping"):
                yield f"{entry.point} happened"

    assert [v.message for v in each_step(happy)] == ["payment.charge#1 happened", "shipping.create#1 happened"]


def test_an_assert_inside_becomes_a_violation(retried: Execution, happy: Execution) -> None:
    @invariant
    def single_call(execution: Execution) -> None:
        """payment.charge is called once."""
        calls = charge_calls(execution)
        assert calls == 1, f"payment.charge was called {calls} times"

    assert single_call(happy) == []
    (violation,) = single_call(retried)
    assert violation.invariant == "single_call"
    # pytest's assertion rewriting (active in this file) may append its explanation
    assert violation.message.startswith("payment.charge was called 2 times")


def test_a_bare_assert_falls_back_to_the_description(retried: Execution) -> None:
    # Outside pytest's assertion rewriting a bare `assert` raises AssertionError with no message;
    # raising it directly is the same thing and stays the same inside this test module.
    @invariant
    def described(execution: Execution) -> None:
        """Only one charge call."""
        if charge_calls(execution) != 1:
            raise AssertionError

    @invariant
    def undescribed(execution: Execution) -> None:
        if charge_calls(execution) != 1:
            raise AssertionError

    assert [v.message for v in described(retried)] == ["Only one charge call."]
    assert [v.message for v in undescribed(retried)] == ["assertion failed"]


def test_an_invariant_that_raises_is_an_error_naming_it(happy: Execution) -> None:
    @invariant(name="reads-missing-thing")
    def broken(execution: Execution) -> bool:
        return execution.participants["warehouse"] is not None  # KeyError

    with pytest.raises(SagaVerifyError) as info:
        broken(happy)
    message = str(info.value)
    assert "invariant 'reads-missing-thing' itself raised KeyError" in message
    assert "'warehouse'" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_an_invariant_returning_something_unusable_is_an_error_naming_it(happy: Execution) -> None:
    # A check that returns a count instead of a verdict is a mistake in the invariant: the error
    # must say which invariant, as it does when an invariant raises.
    @invariant
    def charge_count(execution: Execution) -> Any:
        return len(execution.rows("payment", "charge"))

    with pytest.raises(SagaVerifyError) as info:
        charge_count(happy)
    assert "charge_count" in str(info.value)


def test_check_runs_custom_and_built_in_invariants_together(retried: Execution) -> None:
    @invariant
    def first(execution: Execution) -> str:
        return "one"

    @invariant
    def second(execution: Execution) -> list[str]:
        return ["two", "three"]

    assert [str(v) for v in check(retried, [second, first])] == ["second: two", "second: three", "first: one"]


def test_invariants_may_read_participant_state(happy: Execution) -> None:
    @invariant
    def stock_is_taken(execution: Execution) -> str | None:
        stock = execution.participants["inventory"].stock["sku-1"]  # type: ignore[attr-defined]
        return None if stock == 8 else f"stock is {stock}"

    assert stock_is_taken(happy) == []
    compensated = run_plan(order_saga, FaultPlan((Refuse(P("shipping.create#1")),)))
    assert [v.message for v in stock_is_taken(compensated)] == ["stock is 10"]


# -- in a search -------------------------------------------------------------------------------


@invariant
def charge_called_once(execution: Execution) -> str | None:
    """payment.charge is called at most once (a stricter rule than no double charge)."""
    calls = charge_calls(execution)
    return f"payment.charge was called {calls} times" if calls > 1 else None


def quick(saga: Saga, tmp_path: Path, **options: Any) -> Any:
    return explore(
        saga,
        settings=hypothesis.settings(database=None),
        report_dir=tmp_path,
        max_examples=0,
        sweep_faults=1,
        **options,
    )


def test_explore_reports_the_custom_invariant(tmp_path: Path) -> None:
    # the correct saga holds every standard invariant, so only the custom one can break
    assert quick(order_saga, tmp_path).ok
    result = quick(order_saga, tmp_path, invariants=[charge_called_once])
    assert not result.ok
    (failure,) = result.failures
    assert failure.invariants == ("charge_called_once",)
    assert failure.violations[0].message == "payment.charge was called 2 times"
    assert len(failure.plan.faults) == 1
    (fault,) = failure.plan.faults
    assert fault.at == P("payment.charge#1")
    assert failure.plan.violated == ("charge_called_once",)
    assert failure.plan_path is not None
    saved = json.loads(failure.plan_path.read_text(encoding="utf-8"))
    assert saved["violated"] == ["charge_called_once"]
    assert FaultPlan.load(failure.plan_path) == failure.plan


def test_a_sagas_own_invariants_are_explored(tmp_path: Path) -> None:
    saga = Saga(
        "strict-order",
        steps=STEPS,
        participants=lambda: {
            "inventory": Inventory(),
            "payment": Payment(),
            "shipping": Shipping(),
            "notification": Notification(),
        },
        run=lambda s, o: OrderSaga(s, o).run(),
        input=ORDER,
        invariants=[charge_called_once],
    )
    result = quick(saga, tmp_path)
    assert [f.invariants for f in result.failures] == [("charge_called_once",)]


def test_verify_raises_with_the_custom_invariant_in_the_report(tmp_path: Path) -> None:
    with pytest.raises(SagaViolationError) as info:
        verify(
            order_saga,
            invariants=[charge_called_once],
            settings=hypothesis.settings(database=None),
            report_dir=tmp_path,
            max_examples=0,
            sweep_faults=1,
        )
    assert "charge_called_once" in str(info.value)
    assert info.value.result.failures[0].invariants == ("charge_called_once",)


def test_an_invariant_that_raises_stops_the_search(tmp_path: Path) -> None:
    @invariant
    def explodes(execution: Execution) -> bool:
        raise ZeroDivisionError("oops")

    with pytest.raises(SagaVerifyError, match="invariant 'explodes' itself raised ZeroDivisionError: oops"):
        quick(order_saga, tmp_path, invariants=[explodes])
