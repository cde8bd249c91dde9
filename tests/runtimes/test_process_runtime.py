"""The process runtime: each reference service a uvicorn process on 127.0.0.1, the same fault plans
and invariants through the same fault transport over real loopback HTTP. It must reach the
verdicts and minimal plans the simulation does, and leave no process behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest

from saga_verify import FaultPlan, HttpParticipant, Saga, Step, explore, load_saga, replay
from saga_verify._cli import main
from saga_verify._runtimes import RUNTIMES, reference_variants
from saga_verify._runtimes._process import (
    RemoteLedger,
    ServiceLostError,
    ServiceProcess,
    ServiceProcesses,
    ServiceStartError,
    _Connection,
    shared_processes,
)
from saga_verify._world import World, plan_chooser
from saga_verify._world._http import CORRELATION_HEADER, DELIVERY_HEADER, EXECUTION_HEADER, ROWS_HEADER, TIME_HEADER
from saga_verify.reference.services import SERVICES
from saga_verify.reference.services.__main__ import main as service_main

NO_DB = hypothesis.settings(database=None)
ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _variant(name: str, runtime: str):  # type: ignore[no-untyped-def]
    return next(v for v in reference_variants(runtime) if v.name == name)


@pytest.fixture(scope="module", autouse=True)
def _no_process_left() -> Iterator[None]:
    """Every test here may start services in the shared processes; when the module is done they
    are stopped, and not one of them may still exist."""
    yield
    session = shared_processes()
    pids = [p.pid for p in session.processes if p.pid is not None]
    session.close()
    assert [pid for pid in pids if not _gone(pid)] == []


def test_the_runtime_is_registered() -> None:
    assert RUNTIMES == ("sim", "asgi", "process", "container")
    saga = _variant("order", "process").saga
    assert saga.ref == "saga_verify._runtimes.process_reference:order"


def test_services_start_on_free_ports_and_answer_health() -> None:
    replay(_variant("order", "process").saga, FaultPlan())  # starts them on first use
    processes = [p for p in shared_processes().processes if p.participant is None]  # the correct ones
    assert sorted(p.service for p in processes) == ["inventory", "notification", "payment", "shipping"]
    assert len({p.port for p in processes}) == 4
    for process in processes:
        assert process.running()
        reply = httpx.get(f"{process.url}/health", timeout=5)
        assert (reply.status_code, reply.json()) == (200, {"status": "ok", "service": process.service})


def test_correct_saga_holds_over_loopback_under_every_single_fault(tmp_path: Path) -> None:
    result = explore(_variant("order", "process").saga, settings=NO_DB, report_dir=tmp_path, sweep_faults=1, max_examples=0)
    assert result.ok
    assert result.sweep_executions > 30


@pytest.mark.parametrize("name", ["charge_without_key", "non_idempotent_refund", "refund_forgets_charge"])
def test_processes_find_the_same_minimal_plan_as_simulation(name: str, tmp_path: Path) -> None:
    found = {}
    for runtime in ("sim", "process"):
        result = explore(_variant(name, runtime).saga, settings=NO_DB, report_dir=tmp_path / runtime, max_examples=0)
        (failure, *_) = result.failures
        found[runtime] = (failure.plan.faults, failure.invariants, failure.examples)
    assert found["process"] == found["sim"]


def test_broken_participants_run_in_their_own_process() -> None:
    replay(_variant("non_idempotent_refund", "process").saga, FaultPlan())
    payments = [p for p in shared_processes().processes if p.service == "payment"]
    assert "saga_verify.reference._broken:NonIdempotentRefund" in {p.participant for p in payments}
    assert len({p.pid for p in payments}) == len(payments)


def test_trace_records_keys_and_statuses_over_loopback() -> None:
    plan = FaultPlan.loads('{"faults": [{"kind": "lose-reply", "at": "payment.charge#1"}]}')
    execution, violations = replay(_variant("order", "process").saga, plan)
    assert violations == []
    assert execution.status == "completed"
    lost, retry = execution.trace[1], execution.trace[2]
    assert (lost.point, lost.outcome, retry.point) == ("payment.charge#1", "reply-lost", "payment.charge#2")
    assert lost.key == retry.key == "order-1:charge"
    assert lost.request == {"method": "POST", "path": "/charges", "json": {"order_id": "order-1", "amount": 100}}
    assert lost.reply["status"] == retry.reply["status"] == 201
    assert retry.reply["json"] == lost.reply["json"]  # the service deduplicated by key
    (charge,) = execution.rows("payment", "charge")
    assert (charge.delivery, charge.time, charge.correlation_id) == (lost.seq, lost.time, "order-1")


@pytest.mark.parametrize(
    "plan",
    [
        '{"faults": [{"kind": "refuse", "at": "shipping.create#1"}]}',
        '{"faults": [{"kind": "duplicate", "lag": 30, "at": "payment.charge#1"}, {"kind": "outage", "at": "shipping.create#1"}]}',
        '{"faults": [{"kind": "pause", "seconds": 30, "at": "payment.charge#1"}]}',
    ],
)
def test_rows_come_back_as_in_simulation(plan: str) -> None:
    """Rows of all services, in the order the invariants read them: the same effects, times,
    causes and order as in simulation (only ``seq`` is numbered differently)."""
    rows = {}
    for runtime in ("sim", "process"):
        execution, _ = replay(_variant("order", runtime).saga, FaultPlan.loads(plan))
        rows[runtime] = [(r.participant, r.action, r.amount, r.ref, r.time, r.delivery, r.correlation_id) for r in execution.rows()]
        assert [r.seq for r in execution.rows()] == sorted(r.seq for r in execution.rows())
    assert rows["process"] == rows["sim"]
    assert len(rows["sim"]) >= 4


def test_each_execution_starts_from_fresh_services() -> None:
    saga = _variant("order", "process").saga
    first, _ = replay(saga, FaultPlan())
    second, _ = replay(saga, FaultPlan())
    assert [r.ref for r in first.rows()] == [r.ref for r in second.rows()] == ["res-1", "ch-1", "sh-1", "msg-1"]
    # The first execution's ledger is what it was when its run ended.
    assert [r.ref for r in first.participants["payment"].ledger] == ["ch-1"]  # type: ignore[attr-defined]


def test_a_ledger_read_after_another_execution_is_refused() -> None:
    saga = _variant("order", "process").saga
    abandoned = World(saga, plan_chooser(FaultPlan()))  # built, never run
    replay(saga, FaultPlan())
    with pytest.raises(ServiceLostError, match="the ledger of payment was read after another execution used the payment service"):
        list(abandoned.participants["payment"].ledger)  # type: ignore[attr-defined]


def test_an_execution_costs_its_deliveries_and_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """No request starts an execution or collects its rows: each request names its execution,
    and the rows come back with the answers."""
    saga = _variant("order", "process").saga
    replay(saga, FaultPlan())  # the services are up, and each has served an execution
    sent: list[tuple[int, str, str | None]] = []
    handle = _Connection.handle_request

    def recording(self: _Connection, request: httpx.Request) -> httpx.Response:
        sent.append((request.url.port or 0, request.url.path, request.headers.get(EXECUTION_HEADER)))
        return handle(self, request)

    monkeypatch.setattr(_Connection, "handle_request", recording)
    execution, _ = replay(saga, FaultPlan.loads('{"faults": [{"kind": "refuse", "at": "payment.charge#1"}]}'))
    assert [path for _, path, _ in sent] == ["/reservations", "/_inspect/refuse-next", "/charges", "/releases"]
    numbers = {p.port: str(p.generation) for p in shared_processes().processes}
    assert [number for _, _, number in sent] == [numbers[port] for port, _, _ in sent]
    assert [(r.participant, r.action, r.delivery) for r in execution.rows()] == [("inventory", "reserve", 0), ("inventory", "release", 2)]


def test_refuse_reaches_the_service_as_its_own_refusal() -> None:
    plan = FaultPlan.loads('{"faults": [{"kind": "refuse", "at": "payment.charge#1"}]}')
    execution, violations = replay(_variant("order", "process").saga, plan)
    assert violations == []
    assert execution.status == "compensated"
    assert execution.trace[1].reply == {"status": 402, "json": {"status": "refused", "reason": "card_declined"}}


def test_plan_files_replay_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = explore(_variant("charge_without_key", "process").saga, settings=NO_DB, report_dir=tmp_path, max_examples=0)
    (failure,) = result.failures
    assert failure.plan_path is not None
    stored = json.loads(failure.plan_path.read_text())
    assert stored["saga"] == "saga_verify._runtimes.process_reference:charge_without_key"
    assert load_saga(stored["saga"]).name == "charge_without_key"
    assert main(["replay", str(failure.plan_path)]) == 1
    out = capsys.readouterr().out
    assert "path=/charges" in out
    assert "REPLY LOST" in out


def test_unknown_process_saga_name_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="no 'nope'"):
        load_saga("saga_verify._runtimes.process_reference:nope")


# --- starting, failing and stopping --------------------------------------------------------------


def test_a_participant_that_cannot_be_loaded_is_a_clear_error_and_leaves_nothing() -> None:
    with ServiceProcesses() as session:
        started = time.monotonic()
        with pytest.raises(ServiceStartError) as caught:
            session.serve({"payment": "no_such_module:Payment"})
        assert time.monotonic() - started < 8
        assert session.processes == ()
    message = str(caught.value)
    assert "the payment service (no_such_module:Payment) (port a free port) exited with status 2" in message
    assert "module 'no_such_module' does not import (ModuleNotFoundError" in message
    service = caught.value.service
    assert service is not None
    assert service.pid is not None
    assert _gone(service.pid)


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as taken, ServiceProcesses() as session:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceStartError, match=rf"payment service \(port {port}\) exited with status 2") as caught:
            session.start("payment", port=port)
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in str(caught.value)
        assert session.processes == ()


def test_a_service_that_never_answers_is_stopped_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A process that never says it listens stands for a service that hangs while starting.
    monkeypatch.setattr(ServiceProcess, "command", lambda self: [sys.executable, "-c", "import time; time.sleep(60)"])
    with ServiceProcesses(ready_timeout=0.5) as session:
        with pytest.raises(ServiceStartError, match=r"inventory service \(port a free port\) did not start listening within 0.5 s") as caught:
            session.serve({"inventory": None})
        service = caught.value.service
        assert service is not None
        assert service.pid is not None
        assert _gone(service.pid)


def test_a_service_lost_mid_run_ends_the_search_naming_it() -> None:
    with ServiceProcesses() as session:
        (inventory,) = session.serve({"inventory": None}).values()

        def run(services: Any, order: Any) -> str:
            services.inventory.post("/reservations", json=order, headers={"Idempotency-Key": "k"})
            return "completed"

        saga = Saga(
            "lost",
            steps=[Step("inventory", "reserve", compensation="release")],
            participants=lambda: {
                "inventory": HttpParticipant(inventory.transport, SERVICES["inventory"].routes, base_url=inventory.url)
            },
            run=run,
            input={"order_id": "o-1", "sku": "sku-1", "qty": 1},
        )
        assert replay(saga, FaultPlan())[0].status == "completed"
        assert inventory.process is not None
        inventory.process.kill()
        inventory.process.wait()
        lost = r"POST /reservations to the inventory service at http://127.0.0.1:\d+ failed for real .*the process is gone"
        with pytest.raises(ServiceLostError, match=lost):
            replay(saga, FaultPlan())


def test_services_stop_when_the_python_process_exits() -> None:
    code = textwrap.dedent(
        """
        from saga_verify._runtimes._process import shared_processes
        service = shared_processes().serve({"payment": None})["payment"]
        print(service.pid)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    (pid,) = (int(p) for p in done.stdout.split())
    assert _gone(pid)


def _stopped(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (its parent was killed): not running either way."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc to see whether the killed harness's services are gone")
def test_services_stop_by_themselves_when_their_python_process_is_killed() -> None:
    code = textwrap.dedent(
        """
        import os, signal
        from saga_verify._runtimes._process import shared_processes
        service = shared_processes().serve({"payment": None})["payment"]
        print(service.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no chance to stop anything
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == -9, done.stderr
    pid = int(done.stdout)
    deadline = time.monotonic() + 5
    while not _stopped(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _stopped(pid)


# --- one execution's requests, and the connection they go over -------------------------------------

_ODD_PAYMENTS = textwrap.dedent(
    """
    from saga_verify.reference import Payment

    class ChargeThenFail(Payment):
        def charge(self, **fields):
            super().charge(**fields)
            raise RuntimeError("failed after the charge took effect")

    class BuiltOnce(Payment):
        built = 0

        def __init__(self):
            type(self).built += 1
            if type(self).built > 1:
                raise TypeError("built once already")
            super().__init__()
    """
)


def _delivery(number: int) -> dict[str, str]:
    return {DELIVERY_HEADER: str(number), CORRELATION_HEADER: "o-1", TIME_HEADER: repr(0.5 + number)}


@pytest.fixture
def odd_payments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceProcesses]:
    """Service processes that can serve the participant classes of module ``odd_payments``."""
    (tmp_path / "odd_payments.py").write_text(_ODD_PAYMENTS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with ServiceProcesses() as session:
        yield session


def test_rows_an_answer_could_not_carry_are_read_from_the_ledger(odd_payments: ServiceProcesses) -> None:
    payment = odd_payments.serve({"payment": "odd_payments:ChargeThenFail"})["payment"]
    ledger = RemoteLedger(payment, "payment", payment.begin())
    with httpx.Client(transport=ledger.transport, base_url=payment.url) as client:
        for number in (0, 1):
            reply = client.post("/charges", json={"order_id": "o-1", "amount": 7}, headers={"Idempotency-Key": f"k{number}", **_delivery(number)})
            assert reply.status_code == 500  # the app's error, past the middleware that adds the rows
            assert ROWS_HEADER not in reply.headers
    assert [(r.action, r.ref, r.delivery, r.time) for r in ledger] == [("charge", "ch-1", 0, 0.5), ("charge", "ch-2", 1, 1.5)]


def test_a_service_that_cannot_start_an_execution_ends_the_search_naming_it(odd_payments: ServiceProcesses) -> None:
    payment = odd_payments.serve({"payment": "odd_payments:BuiltOnce"})["payment"]
    ledger = RemoteLedger(payment, "payment", payment.begin())
    with httpx.Client(transport=ledger.transport, base_url=payment.url) as client, pytest.raises(ServiceLostError) as caught:
        client.post("/charges", json={"order_id": "o-1", "amount": 7}, headers=_delivery(0))
    assert "POST /charges to the payment service (odd_payments:BuiltOnce)" in str(caught.value)
    assert "cannot start execution 1: a BuiltOnce cannot be built without arguments: built once already" in str(caught.value)


def test_a_request_of_an_earlier_execution_is_refused() -> None:
    saga = _variant("order", "process").saga
    abandoned = World(saga, plan_chooser(FaultPlan()))  # built, never run
    replay(saga, FaultPlan())
    with pytest.raises(ServiceLostError, match="a request of an execution was sent to payment after another execution used the payment service"):
        abandoned.participants["payment"].transport.handle_request(httpx.Request("POST", "http://payment/charges"))  # type: ignore[attr-defined]


def _serve_once(answer: bytes) -> tuple[socket.socket, int]:
    """A listening socket whose first connection gets ``answer`` once the request has arrived
    (or nothing at all, for an empty ``answer``), then stays open until the socket is closed."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            if answer:
                conn.sendall(answer)
            conn.recv(1)  # until the client goes away

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_the_connection_reads_a_chunked_answer_in_pieces() -> None:
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    server, port = _serve_once(answer)
    connection = _Connection("127.0.0.1", port)
    with server:
        reply = connection.handle_request(httpx.Request("POST", f"http://127.0.0.1:{port}/x", content=b"body"))
        connection.close()
    assert (reply.status_code, reply.content, reply.headers["x-a"]) == (200, b"abcde", "1")


def test_the_connection_gives_up_waiting_as_the_request_says() -> None:
    server, port = _serve_once(b"")  # takes the request, never answers
    connection = _Connection("127.0.0.1", port)
    request = httpx.Request("GET", f"http://127.0.0.1:{port}/", extensions={"timeout": httpx.Timeout(0.2).as_dict()})
    with server, pytest.raises(httpx.ReadTimeout):
        connection.handle_request(request)


def test_the_connection_is_opened_again_after_the_service_closed_it() -> None:
    with ServiceProcesses() as session:
        payment = session.start("payment")
        closing = httpx.Request("GET", f"{payment.url}/health", headers={"Connection": "close"})
        assert payment.transport.handle_request(closing).status_code == 200
        assert payment.transport.handle_request(httpx.Request("GET", f"{payment.url}/health")).status_code == 200


# --- the service entry point -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--participant", "nope"], "--participant 'nope': write it as module:Class"),
        (["--participant", "saga_verify.reference:Nope"], "module 'saga_verify.reference' has no 'Nope'"),
        (["--participant", "saga_verify.reference:ORDER"], "is a dict, not a class"),
        (["--participant", "saga_verify.reference:Inventory"], "a Inventory cannot serve payment: it has no charge, refund"),
    ],
)
def test_the_entry_point_says_what_is_wrong(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert service_main(["--service", "payment", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_entry_point_refuses_an_unknown_service_and_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        service_main(["--service", "billing"])
    assert "invalid choice: 'billing'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        service_main(["--service", "payment", "--port", "70000"])
    assert "70000 is not a port number" in capsys.readouterr().err


def _supervised(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "saga_verify.reference.services", "--service", "payment", "--supervise", *argv],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the supervisor's child")
def test_a_supervised_service_killed_comes_back_from_its_store(tmp_path: Path) -> None:
    with _supervised("--inspect", "--store", str(tmp_path / "payment.sqlite")) as service:
        try:
            assert service.stdout is not None
            url = service.stdout.readline().split()[-1]
            charge = {"json": {"order_id": "o-1", "amount": 100}, "headers": {"Idempotency-Key": "o-1:charge"}}
            assert httpx.post(f"{url}/charges", **charge).status_code == 201
            (child,) = _children(service.pid)
            with pytest.raises(httpx.RemoteProtocolError):
                httpx.post(f"{url}/_inspect/crash")  # killed before it answers
            # The supervisor kept the socket: the next call waits for the new process, which
            # knows the key from its store.
            replay = httpx.post(f"{url}/charges", **charge)
            assert (replay.status_code, replay.headers.get("Idempotency-Replayed")) == (201, "true")
            (again,) = _children(service.pid)
            assert again != child
            service.terminate()  # SIGTERM: passed on to the service, and both end
            _, err = service.communicate(timeout=30)
        finally:
            service.kill()
    assert not Path(f"/proc/{again}").exists()  # the service went with its supervisor
    assert "payment service: killed; starting it again from its store" in err


def test_a_supervised_service_that_cannot_be_built_exits_2_at_once() -> None:
    # The participant is a class, but not one that serves payment: only the child finds out.
    with _supervised("--participant", "saga_verify.reference:Inventory") as service:
        _, err = service.communicate(timeout=60)
    assert service.returncode == 2
    assert "a Inventory cannot serve payment" in err
    assert "starting it again" not in err


@pytest.mark.slow
def test_demo_over_processes_matches_simulation(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = {}
    for runtime in ("sim", "process"):
        assert main(["demo", "--json", "--runtime", runtime, "--report-dir", str(tmp_path / runtime)]) == 0
        rows[runtime] = json.loads(capsys.readouterr().out)
    assert all(r["runtime"] == "process" for r in rows["process"])
    shape = [(r["saga"], r["verdict"], r["violated"], r["plan"] and r["plan"]["faults"]) for r in rows["sim"]]
    assert shape == [(r["saga"], r["verdict"], r["violated"], r["plan"] and r["plan"]["faults"]) for r in rows["process"]]
