"""The process runtime: every service a command serving HTTP on loopback, started once and shared
by every execution. It reaches the simulation's verdicts, minimal plans and effects, and a command
that cannot serve is an error that names it and leaves nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from demo_rows import assert_demo_matches_simulation
from durable_plans import assert_durable_plans_replay_as_in_simulation

from saga_verify import FaultPlan, Saga, Step, explore, replay, run_plan
from saga_verify._runtimes import _placements, stop_services
from saga_verify._runtimes._process import ServiceProcess
from saga_verify.reference import order_saga, variants
from saga_verify.systems import Service, ServiceLostError, ServiceSetupError, System

NO_DB = hypothesis.settings(database=None)
ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fixtures" / "corpus"


def _corpus() -> list[Path]:
    """The corpus plans of the variants that run on process (the timed sagas run on sim only)."""
    here = {v.name for v in variants() if "process" in v.runtimes}
    return [p for p in sorted(CORPUS.glob("*.json")) if p.stem in here]


def _variant(name: str) -> Saga:
    return next(v.saga for v in variants() if v.name == name)


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text():
                return True  # a zombie nobody has reaped yet: not running either way
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("name", ["charge_without_key", "non_idempotent_refund", "refund_forgets_charge"])
def test_processes_find_the_same_minimal_plan_as_simulation(name: str, tmp_path: Path) -> None:
    found = {}
    for runtime in ("sim", "process"):
        result = explore(
            _variant(name), settings=NO_DB, report_dir=tmp_path / runtime, max_examples=0, runtime=runtime, all_failures=False
        )
        (failure, *_) = result.failures
        found[runtime] = (failure.plan.faults, failure.invariants, failure.examples)
    assert found["process"] == found["sim"]


@pytest.mark.parametrize("path", _corpus()[:6], ids=lambda p: p.stem)
def test_a_plan_takes_the_same_effects_over_loopback_as_in_simulation(path: Path) -> None:
    plan = FaultPlan.load(path)
    saga = _variant(path.stem)
    effects = {}
    for runtime in ("sim", "process"):
        execution = run_plan(saga, plan, runtime=runtime)
        effects[runtime] = (execution.status, [(r.participant, r.action, r.amount, r.correlation_id, r.delivery) for r in execution.rows()])
    assert effects["process"] == effects["sim"]


def test_correct_saga_holds_over_loopback_under_every_single_fault(tmp_path: Path) -> None:
    result = explore(order_saga, settings=NO_DB, report_dir=tmp_path, sweep_faults=1, max_examples=0, runtime="process")
    assert result.ok
    assert result.sweep_executions > 30


def test_each_execution_starts_from_fresh_services() -> None:
    first = run_plan(order_saga, runtime="process")
    second = run_plan(order_saga, runtime="process")
    assert [r.ref for r in first.rows()] == [r.ref for r in second.rows()] == ["res-1", "ch-1", "sh-1", "msg-1"]


def test_services_are_started_once_and_shared() -> None:
    run_plan(order_saga, runtime="process")
    payment = order_saga.participants["payment"]  # type: ignore[index]
    placed = _placements.get(payment, "process")
    pid = placed.process.pid
    run_plan(_variant("charge_without_key"), runtime="process")  # another saga, the same payment service
    assert _placements.get(payment, "process").process.pid == pid
    assert placed.process.running()


def _saga(service: Service, run: Any = None) -> Saga:
    def reserve(services: Any, order: Any) -> str:
        services.stock.post("/reservations", json=order, headers={"Idempotency-Key": "k"})
        return "completed"

    return Saga("one-step", steps=[Step("stock", "reserve", "release")], participants=System(service), run=run or reserve, input={"qty": 1})


def _stock(**options: Any) -> Service:
    return Service("stock", routes={"reserve": "POST /reservations", "release": "POST /releases"}, **options)


def test_a_command_that_exits_is_named_with_its_output() -> None:
    service = _stock(command=[sys.executable, "-c", "import sys; print('no database configured', file=sys.stderr); sys.exit(3)"])
    with pytest.raises(ServiceSetupError) as info:
        run_plan(_saga(service), runtime="process")
    message = str(info.value)
    assert message.startswith("service 'stock' (port ")
    assert "exited with status 3 before it answered GET /_saga-verify/ready" in message
    assert message.endswith("its output ends with:\nno database configured")


def test_a_command_that_never_listens_is_stopped_after_its_ready_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("saga_verify._runtimes._process.READY_TIMEOUT", 1.0)
    marker = "import os, sys, time; print(os.getpid(), flush=True); time.sleep(120)"
    service = ServiceProcess("stock", [sys.executable, "-c", marker], ready_timeout=1.0)
    with pytest.raises(ServiceSetupError, match=r"service 'stock' \(port \d+, .*\) did not answer GET /_saga-verify/ready within 1 s"):
        service.start()
    assert service.pid is not None
    assert _gone(service.pid)


def test_a_command_naming_something_it_cannot_fill_in_says_what() -> None:
    service = _stock(command=["serve", "--port", "{port}", "--db", "{database}"])
    with pytest.raises(ServiceSetupError, match=r"its command .* names 'database' to fill in; it may name \{host\}, \{port\} and \{parent_pid\}"):
        run_plan(_saga(service), runtime="process")


def test_a_service_without_the_middleware_is_named_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "bare.py").write_text(
        textwrap.dedent(
            """
            from fastapi import FastAPI
            app = FastAPI()

            @app.post("/reservations")
            def reserve(body: dict):
                return {"status": "ok"}

            @app.get("/ready")
            def ready():
                return {}
            """
        )
    )
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "bare:app", "--host", "{host}", "--port", "{port}"]
    service = _stock(command=command, ready="/ready")
    with pytest.raises(ServiceLostError, match=r"was answered without passing saga_verify.systems.EffectsMiddleware: mount it in the service's test build"):
        run_plan(_saga(service), runtime="process")


def test_a_service_lost_mid_run_ends_the_search_naming_it() -> None:
    saga = _variant("order")
    assert run_plan(saga, runtime="process").status == "completed"
    inventory = _placements.get(saga.participants["inventory"], "process")  # type: ignore[index]
    inventory.process.kill()
    lost = r"POST /reservations to the inventory service at http://127.0.0.1:\d+ failed for real .*the process is gone"
    try:
        with pytest.raises(ServiceLostError, match=lost):
            replay(saga, FaultPlan(), runtime="process")
    finally:
        stop_services()  # the next test gets services that run


def test_stopping_the_services_stops_their_processes() -> None:
    run_plan(order_saga, runtime="process")
    pids = [_placements.get(service, "process").process.pid for service in order_saga.participants]  # type: ignore[union-attr]
    stop_services()
    assert all(_gone(pid) for pid in pids)


def test_services_stop_when_the_python_process_exits() -> None:
    code = textwrap.dedent(
        """
        from saga_verify import run_plan
        from saga_verify._runtimes import _placements
        from saga_verify.reference import order_saga
        run_plan(order_saga, runtime="process")
        print(*(_placements.get(s, "process").process.pid for s in order_saga.participants))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 4
    assert all(_gone(pid) for pid in pids)


@pytest.mark.slow
def test_demo_over_processes_matches_simulation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_demo_matches_simulation("process", capsys, tmp_path)


def test_a_service_that_cannot_start_stops_the_ones_started_for_the_same_search() -> None:
    shop = str(ROOT / "fixtures" / "shop")
    good = Service("stock", routes={"reserve": "POST /reservations", "release": "POST /releases"}, app="shop.stock:create_app", env={"PYTHONPATH": shop})
    bad = Service("payment", routes={"charge": "POST /charges"}, command=[sys.executable, "-c", "raise SystemExit(4)"])

    def run(services: Any, order: Any) -> str:
        return "completed"

    saga = Saga("two", steps=[Step("stock", "reserve", "release"), Step("payment", "charge")], participants=System(good, bad), run=run)
    with pytest.raises(ServiceSetupError, match=r"service 'payment' .* exited with status 4"):
        run_plan(saga, runtime="process")
    assert not _placements._placed  # the stock service started first was stopped with it


def test_an_app_factory_that_raises_in_its_process_says_so() -> None:
    service = _stock(app="saga_verify.reference.services:create_app")  # it wants the service's name
    with pytest.raises(ServiceSetupError, match=r"exited with status 2 .*\nsaga_verify.systems: error: the app factory raised TypeError: create_app\(\) missing 1 required positional argument: 'service'"):
        run_plan(_saga(service), runtime="process")


@pytest.mark.slow
def test_plans_that_crash_the_durable_coordinator_replay_as_in_simulation() -> None:
    assert_durable_plans_replay_as_in_simulation("process")
