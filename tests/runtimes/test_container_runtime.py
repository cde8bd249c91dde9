"""The container runtime: each reference service in a container (testcontainers, a private network,
published on 127.0.0.1), the same fault plans and invariants through the same fault transport. It
reaches the verdicts and minimal plans the simulation does; its crash fault really kills a
container, which comes back from its store; and it leaves nothing behind."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from demo_rows import assert_demo_matches_simulation
from durable_plans import assert_durable_plans_replay_as_in_simulation

from saga_verify import FaultPlan, Saga, explore, replay, run_plan
from saga_verify._pytest_plugin import require_docker
from saga_verify._runtimes import _placements, stop_services
from saga_verify.containers import session_leftovers
from saga_verify.containers._engine import engine
from saga_verify.errors import OptionError
from saga_verify.reference import variants

pytestmark = pytest.mark.slow

NO_DB = hypothesis.settings(database=None)
CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "corpus"


def _corpus() -> list[Path]:
    """The corpus plans of the variants that run on container (the timed sagas run on sim only)."""
    here = {v.name for v in variants() if "container" in v.runtimes}
    return [p for p in sorted(CORPUS.glob("*.json")) if p.stem in here]


def _variant(name: str) -> Saga:
    return next(v.saga for v in variants() if v.name == name)


def _session() -> str | None:
    """The id of the container session the runtime's services run in, if it made one."""
    holder = _placements._containers
    session = None if holder is None else holder._session
    return None if session is None else str(session.id)


@pytest.fixture(scope="module")
def docker_engine() -> None:
    require_docker()


@pytest.fixture(scope="module", autouse=True)
def _nothing_left(docker_engine: None) -> Iterator[None]:
    """The tests share the runtime's containers; when the module is done they are removed, and
    nothing of their session may remain."""
    yield
    session = _session()
    stop_services()
    if session is not None:
        assert not any(session_leftovers(session).values()), session_leftovers(session)


def _started_at(container_id: str) -> str:
    return str(engine().api.inspect_container(container_id)["State"]["StartedAt"])


def _supervisor_and_child(container_id: str) -> tuple[int, int]:
    """The host pids of the container's service supervisor and of the one service process it runs."""
    rows = engine().api.top(container_id, ps_args="-o pid,ppid,args")["Processes"]
    found = {int(pid): int(ppid) for pid, ppid, args in rows if "saga_verify.reference.services" in args}
    ((child, supervisor),) = [(pid, ppid) for pid, ppid in found.items() if ppid in found]
    return supervisor, child


@pytest.mark.parametrize("name", [v.name for v in variants() if v.broken and "container" in v.runtimes])
def test_containers_find_the_same_minimal_plan_as_simulation(name: str, tmp_path: Path) -> None:
    found = {}
    for runtime in ("sim", "container"):
        result = explore(
            _variant(name), settings=NO_DB, report_dir=tmp_path / runtime, max_examples=0, runtime=runtime, all_failures=False
        )
        (failure, *_) = result.failures
        found[runtime] = (failure.plan.faults, failure.invariants, failure.examples)
    assert found["container"] == found["sim"]


@pytest.mark.parametrize("plan", _corpus(), ids=lambda p: p.stem)
def test_the_correct_saga_holds_in_containers_under_every_corpus_plan(plan: Path) -> None:
    _, violations = replay(_variant("order"), dataclasses.replace(FaultPlan.load(plan), saga=None), runtime="container")
    assert violations == [], [str(v) for v in violations]


def test_a_crash_kills_the_service_process_and_it_comes_back_from_its_store() -> None:
    saga = _variant("volatile_dedupe")
    plan = FaultPlan.load(CORPUS / "volatile_dedupe.json")
    run_plan(saga, runtime="container")  # the containers run
    payment = _placements.get(saga.participants["payment"], "container")  # type: ignore[index]
    started = _started_at(payment.container.id)
    supervisor, child = _supervisor_and_child(payment.container.id)
    execution, violations = replay(saga, plan, runtime="container")
    # The same container, running since it started; its supervisor forked a new service process
    # once the old one was killed.
    assert _started_at(payment.container.id) == started
    again, new_child = _supervisor_and_child(payment.container.id)
    assert again == supervisor
    assert new_child != child
    crashed, retry = execution.trace[1], execution.trace[2]
    assert (crashed.point, crashed.outcome, retry.point) == ("payment.charge#1", "crashed", "payment.charge#2")
    # It forgot the key (kept in memory only) and charged again; the correct payment does not.
    assert [v.invariant for v in violations] == ["no_double_charge"]
    execution, violations = replay(_variant("order"), dataclasses.replace(plan, saga=None), runtime="container")
    assert violations == []
    assert [r.action for r in execution.ledgers["payment"]] == ["charge"]


def test_demo_in_containers_matches_simulation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_demo_matches_simulation("container", capsys, tmp_path)


def test_without_an_engine_the_runtime_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(OptionError) as caught:
        run_plan(_variant("order"), runtime="container")
    assert "runtime 'container' needs a Docker engine" in str(caught.value)
    assert "fixtures/containers/docker-engine.sh start" in str(caught.value)


def test_stopped_services_leave_nothing(docker_engine: None) -> None:
    run_plan(_variant("order"), runtime="container")
    session = _session()
    assert session is not None
    assert len(session_leftovers(session)["containers"]) >= 4
    stop_services()
    assert not any(session_leftovers(session).values())


def test_an_image_that_does_not_build_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    from saga_verify import Step
    from saga_verify.systems import Service, ServiceSetupError, System

    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nRUN exit 7\n", encoding="utf-8")
    service = Service("ledger", routes={"post": "POST /entries"}, dockerfile=str(dockerfile))
    saga = Saga("unbuildable", steps=[Step("ledger", "post")], participants=System(service), run=lambda services, order: "completed")
    with pytest.raises(ServiceSetupError, match=r"service 'ledger': the image of .*Dockerfile could not be built"):
        run_plan(saga, runtime="container")
    assert _session() is None  # the session made for it was removed with it


def test_plans_that_crash_the_durable_coordinator_replay_as_in_simulation() -> None:
    assert_durable_plans_replay_as_in_simulation("container")
