"""A saga set up wrongly fails early with a SagaDefinitionError (or SagaCrashedError) that says
what is wrong and how to put it right."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest

from saga_verify import FaultPlan, Ledger, Saga, SagaVerifyError, Step, explore, load_saga, run_plan
from saga_verify.errors import SagaCrashedError, SagaDefinitionError
from saga_verify.reference import order_saga


class Svc:
    def __init__(self) -> None:
        self.ledger = Ledger()

    def go(self, **request: Any) -> dict[str, str]:
        self.ledger.record("go")
        return {"status": "ok"}

    def undo(self, **request: Any) -> dict[str, str]:
        self.ledger.record("undo")
        return {"status": "ok"}


STEPS = [Step("svc", "go", compensation="undo")]


def completes(services: Any, order: Any) -> str:
    services.svc.go()
    return "completed"


def make(run: Any = completes, participants: Any = None, **options: Any) -> Saga:
    return Saga(
        "tiny",
        steps=options.pop("steps", STEPS),
        participants=participants or (lambda: {"svc": Svc()}),
        run=run,
        **options,
    )


def quiet_explore(saga: Saga) -> Any:
    return explore(saga, settings=hypothesis.settings(database=None), report_dir=None, max_examples=0, sweep_faults=0)


def test_errors_are_type_errors_under_one_root() -> None:
    assert issubclass(SagaDefinitionError, SagaVerifyError)
    assert issubclass(SagaDefinitionError, TypeError)
    assert not issubclass(SagaCrashedError, SagaDefinitionError)


# -- steps -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"participant": "pay ment", "action": "charge"},
            "Step participant must be a plain name like 'payment', got 'pay ment'",
        ),
        ({"participant": "payment", "action": ""}, "Step action must be a plain name"),
        ({"participant": "payment", "action": "charge.now"}, "Step action must be a plain name"),
        ({"participant": 3, "action": "charge"}, "got 3"),
        (
            {"participant": "payment", "action": "charge", "compensation": "re fund"},
            "Step compensation must be a plain name or None, got 're fund'",
        ),
        (
            {"participant": "payment", "action": "charge", "refuse": "decline"},
            "Step refuse= must be callable, got 'decline'",
        ),
    ],
)
def test_bad_steps(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(SagaDefinitionError) as info:
        Step(**kwargs)
    assert expected in str(info.value)


def test_a_step_without_compensation_is_irreversible() -> None:
    assert Step("notification", "send").irreversible
    assert not Step("payment", "charge", compensation="refund").irreversible
    assert str(Step("payment", "charge", compensation="refund")) == "payment.charge"


# -- sagas -------------------------------------------------------------------------------------


def test_a_saga_needs_steps() -> None:
    with pytest.raises(SagaDefinitionError, match=r"saga 'tiny' has no steps; give it at least one Step"):
        make(steps=[])


def test_a_saga_needs_a_name() -> None:
    with pytest.raises(SagaDefinitionError, match="Saga name must be non-empty text"):
        Saga("  ", steps=STEPS, participants=dict, run=completes)


def test_steps_must_be_steps() -> None:
    with pytest.raises(SagaDefinitionError, match=r"steps must be Step values, got 'svc\.go'"):
        make(steps=["svc.go"])


def test_clock_is_a_reserved_participant_name() -> None:
    with pytest.raises(SagaDefinitionError) as info:
        make(steps=[Step("clock", "tick")])
    assert "participant name 'clock' is reserved" in str(info.value)
    assert "services.clock" in str(info.value)


@pytest.mark.parametrize(
    "steps",
    [
        [Step("svc", "go", compensation="undo"), Step("svc", "go")],
        [Step("svc", "go", compensation="undo"), Step("svc", "undo")],
        [Step("svc", "go", compensation="go")],
    ],
    ids=["action-twice", "compensation-as-action", "own-compensation"],
)
def test_an_operation_belongs_to_one_step(steps: list[Step]) -> None:
    with pytest.raises(SagaDefinitionError, match=r"svc\.\w+ appears twice in the steps"):
        make(steps=steps)


def test_the_same_operation_name_on_two_participants_is_fine() -> None:
    saga = make(steps=[Step("svc", "go", compensation="undo"), Step("other", "go", compensation="undo")])
    assert saga.operations == {("svc", "go"), ("svc", "undo"), ("other", "go"), ("other", "undo")}
    assert saga.participant_names == ("svc", "other")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"participants": "not callable"}, "participants must be a callable"),
        ({"run": None}, "run must be callable as run(services, input)"),
        ({"call_timeout": 0}, "call_timeout must be a positive number, got 0"),
        ({"call_timeout": True}, "call_timeout must be a positive number, got True"),
        ({"max_seconds": -1.0}, "max_seconds must be a positive number"),
        ({"max_deliveries": 0}, "max_deliveries must be a positive whole number, got 0"),
        ({"max_deliveries": 2.5}, "max_deliveries must be a positive whole number"),
        ({"pauses": "yes"}, "pauses must be True or False, got 'yes'"),
    ],
)
def test_bad_saga_options(options: dict[str, Any], expected: str) -> None:
    participants = options.pop("participants", lambda: {"svc": Svc()})
    run = options.pop("run", completes)
    with pytest.raises(SagaDefinitionError) as info:
        Saga("tiny", steps=STEPS, participants=participants, run=run, **options)
    assert expected in str(info.value)
    assert "'tiny'" in str(info.value)


# -- when the world is built -------------------------------------------------------------------


def test_participants_must_give_every_participant() -> None:
    saga = make(steps=[Step("svc", "go", compensation="undo"), Step("mailer", "send")])
    with pytest.raises(SagaDefinitionError) as info:
        run_plan(saga)
    assert "participants() gave no 'mailer'" in str(info.value)
    assert "it gave 'svc'" in str(info.value)


def test_participants_must_return_a_mapping() -> None:
    with pytest.raises(SagaDefinitionError, match="participants\\(\\) must return a mapping"):
        run_plan(make(participants=lambda: [Svc()]))


def test_a_participant_must_have_each_operation() -> None:
    class NoUndo:
        def go(self) -> str:
            return "ok"

    with pytest.raises(SagaDefinitionError) as info:
        run_plan(make(participants=lambda: {"svc": NoUndo()}))
    assert "participant 'svc' (NoUndo) has no method 'undo' for step svc.go" in str(info.value)


def test_calling_an_undeclared_operation() -> None:
    def run(services: Any, order: Any) -> str:
        services.svc.delete_everything()
        return "completed"

    with pytest.raises(SagaDefinitionError) as info:
        run_plan(make(run))
    message = str(info.value)
    assert "the saga called svc.delete_everything, which no step declares" in message
    assert "declared operations of svc: go, undo" in message


def test_asking_for_an_unknown_participant() -> None:
    def run(services: Any, order: Any) -> str:
        services.warehouse.go()
        return "completed"

    with pytest.raises(SagaDefinitionError) as info:
        run_plan(make(run))
    assert "the saga asked for services.warehouse; this saga's participants are: svc" in str(info.value)


def test_services_by_name() -> None:
    def run(services: Any, order: Any) -> str:
        services["svc"].go()
        return "completed"

    assert run_plan(make(run)).status == "completed"


def test_a_definition_error_is_not_swallowed_as_a_crash() -> None:
    def run(services: Any, order: Any) -> str:
        services.clock.sleep(-1)
        return "completed"

    with pytest.raises(SagaDefinitionError, match=r"clock.sleep\(\) takes a finite number of seconds >= 0, got -1"):
        run_plan(make(run))


def test_a_sync_run_returning_an_awaitable() -> None:
    class Later:
        def __await__(self) -> Iterator[str]:
            yield "completed"

    def run(services: Any, order: Any) -> Any:
        return Later()

    with pytest.raises(SagaDefinitionError, match="run returned an awaitable; declare it with 'async def'"):
        run_plan(make(run))


# -- found by the preflight of explore ---------------------------------------------------------


def test_a_non_terminal_outcome_without_faults() -> None:
    def run(services: Any, order: Any) -> str:
        services.svc.go()
        return "done and dusted"

    saga = make(run)
    assert run_plan(saga).status == "done and dusted"  # run_plan reports what it saw
    with pytest.raises(SagaDefinitionError) as info:
        quiet_explore(saga)
    message = str(info.value)
    assert "returned 'done and dusted' with no fault injected" in message
    assert "completed, compensated, failed" in message
    assert "outcome=" in message


def test_outcome_maps_what_run_returns() -> None:
    def run(services: Any, order: Any) -> dict[str, str]:
        services.svc.go()
        return {"state": "DONE"}

    saga = make(run, outcome=lambda r: {"DONE": "completed"}[r["state"]])
    assert run_plan(saga).status == "completed"
    assert quiet_explore(saga).ok  # the preflight accepts it


def test_outcome_objects_with_a_status() -> None:
    class Result:
        status = "completed"

    def run(services: Any, order: Any) -> Result:
        services.svc.go()
        return Result()

    assert run_plan(make(run)).status == "completed"


def test_a_saga_that_raises_without_faults_has_crashed() -> None:
    def run(services: Any, order: Any) -> str:
        services.svc.go()
        raise KeyError("reservation_id")

    saga = make(run)
    execution = run_plan(saga)
    assert execution.status == "crashed"
    assert isinstance(execution.error, KeyError)
    with pytest.raises(SagaCrashedError) as info:
        quiet_explore(saga)
    message = str(info.value)
    assert "saga 'tiny' raised KeyError: 'reservation_id' with no fault injected" in message
    assert __file__ in message  # where it raised
    assert isinstance(info.value.__cause__, KeyError)


def test_a_participant_that_raises_without_faults_has_crashed_the_saga() -> None:
    class Broken(Svc):
        def go(self, **request: Any) -> dict[str, str]:
            raise RuntimeError("database is down")

    saga = make(participants=lambda: {"svc": Broken()})
    execution = run_plan(saga)
    assert execution.trace[0].outcome == "raised"
    assert execution.trace[0].reply == "RuntimeError: database is down"
    with pytest.raises(SagaCrashedError, match="raised RuntimeError: database is down"):
        quiet_explore(saga)


def test_explore_takes_a_saga() -> None:
    from saga_verify.errors import OptionError

    with pytest.raises(OptionError, match=r"explore\(\) takes a saga_verify\.Saga, got str"):
        explore("saga_verify.reference:order_saga")  # type: ignore[arg-type]


# -- load_saga ---------------------------------------------------------------------------------


@pytest.fixture
def module_with_things() -> Iterator[str]:
    name = "sv_test_saga_definition_module"
    module = types.ModuleType(name)
    module.saga = make()  # type: ignore[attr-defined]
    module.not_a_saga = 42  # type: ignore[attr-defined]
    sys.modules[name] = module
    yield name
    del sys.modules[name]


def test_load_saga_imports_package_module_attribute(module_with_things: str) -> None:
    assert load_saga("saga_verify.reference:order_saga") is order_saga
    assert load_saga(f"{module_with_things}:saga").name == "tiny"


def test_a_saga_knows_where_it_is_imported_from() -> None:
    assert order_saga.ref == "saga_verify.reference:order_saga"
    assert load_saga(order_saga.ref) is order_saga
    assert make().ref is None  # made in a function: nowhere to import it from


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("saga_verify.reference.order_saga", "write it as package.module:attribute"),
        ("no_such_package_xyz.sagas:order", "module 'no_such_package_xyz.sagas' does not import"),
        ("saga_verify.reference:no_such_saga", "module 'saga_verify.reference' has no 'no_such_saga'"),
        ("saga_verify.reference:ORDER", "is a dict, not a saga_verify.Saga"),
    ],
)
def test_load_saga_errors(ref: str, expected: str) -> None:
    with pytest.raises(SagaDefinitionError) as info:
        load_saga(ref)
    assert expected in str(info.value)
    assert repr(ref) in str(info.value)


def test_load_saga_of_something_else(module_with_things: str) -> None:
    with pytest.raises(SagaDefinitionError, match=r"is a int, not a saga_verify\.Saga"):
        load_saga(f"{module_with_things}:not_a_saga")
    with pytest.raises(SagaDefinitionError, match=r"write it as package\.module:attribute"):
        load_saga(None)  # type: ignore[arg-type]


def test_a_plan_names_its_saga_and_loads_it_back() -> None:
    plan = FaultPlan(saga=order_saga.ref)
    assert load_saga(FaultPlan.loads(plan.dumps()).saga or "") is order_saga


# -- the public names ---------------------------------------------------------------------------


def test_the_public_explore_is_the_function_whatever_was_imported_first() -> None:
    # `from saga_verify import explore` is the documented way to get the search. Importing the
    # subpackage saga_verify._exploration first (as the plugin, the CLI or a test may) must not turn
    # the public name into the module. A fresh interpreter makes the import order certain.
    code = (
        "import saga_verify._exploration\n"
        "from saga_verify import explore\n"
        "print(type(explore).__name__, callable(explore))\n"
    )
    root = Path(__import__("saga_verify").__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert done.stdout.split() == ["function", "True"]


# -- step dependencies, the saga's clocks and real-time limit ------------------------------------------
def test_a_step_depends_on_the_one_before_unless_it_says_otherwise() -> None:
    steps = [Step("a", "go", "undo"), Step("b", "go", "undo"), Step("c", "go", "undo", depends_on=()), Step("d", "go", depends_on=("a.go", "c.go"))]
    saga = Saga("deps", steps=steps, participants=dict, run=lambda s, o: "completed")
    assert saga.dependencies == ((), (0,), (), (0, 2))
    assert [saga.depends(3, 0), saga.depends(1, 0), saga.depends(2, 0), saga.depends(3, 1)] == [True, True, False, False]
    assert Step("a", "go", depends_on="b.go").depends_on == ("b.go",)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([Step("a", "go", depends_on=("b.go",)), Step("b", "go")], r"step a.go depends on b.go, which does not come before it; list the steps"),
        ([Step("a", "go"), Step("b", "go", depends_on=("b.go",))], r"step b.go depends on b.go, which does not come before it"),
        ([Step("a", "go"), Step("b", "go", depends_on=("z.go",))], r"step b.go depends on z.go, which is no step of this saga; its steps: a.go, b.go"),
    ],
    ids=["later", "itself", "unknown"],
)
def test_a_dependency_on_an_unknown_or_later_step_is_refused(steps: list[Step], message: str) -> None:
    with pytest.raises(SagaDefinitionError, match=message):
        Saga("deps", steps=steps, participants=dict, run=lambda s, o: "completed")


@pytest.mark.parametrize("bad", ["payment", ["payment.charge", 3], 7, "payment.charge.extra"])
def test_depends_on_takes_step_names(bad: Any) -> None:
    with pytest.raises(SagaDefinitionError, match=r"Step depends_on= takes step names like 'payment.charge'"):
        Step("shipping", "create", depends_on=bad)


@pytest.mark.parametrize(("option", "value"), [("virtual_time", 1), ("max_real_seconds", 0), ("max_real_seconds", True)])
def test_clock_options_are_checked(option: str, value: Any) -> None:
    with pytest.raises(SagaDefinitionError, match=rf"saga 'x': {option} must be"):
        Saga("x", steps=[Step("a", "go")], participants=dict, run=lambda s, o: "completed", **{option: value})
