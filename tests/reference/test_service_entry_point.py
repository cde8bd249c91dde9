"""The reference services' entry point (``python -m saga_verify.reference.services``): what it says
when it is called wrongly, the supervisor that brings a killed service back from its store, and
the service that stops once the parent it names is gone."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from saga_verify.reference.services.__main__ import main as service_main

ROOT = Path(__file__).resolve().parents[2]



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




@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfds (Linux) to wait for a process that is not a child")
def test_a_service_stops_once_the_parent_it_names_is_gone() -> None:
    # The service's parent (here a stand-in that starts it, says its pid and waits) is killed
    # without the chance to stop it: the service stops on its own.
    start = (
        "import os, subprocess, sys\n"
        "service = subprocess.Popen([sys.executable, '-m', 'saga_verify.reference.services', '--service', 'payment',"
        " '--parent-pid', str(os.getpid())], stdout=subprocess.PIPE, text=True)\n"
        "print(service.pid, service.stdout.readline().strip(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen([sys.executable, "-c", start], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        pid, said = parent.stdout.readline().strip().split(" ", 1)
        assert said.startswith("listening on http://"), said
        handle = os.pidfd_open(int(pid))
        try:
            assert httpx.get(f"{said.removeprefix('listening on ')}/health", timeout=10).status_code == 200
            parent.kill()
            parent.wait()
            ended, _, _ = select.select([handle], [], [], 60)
            assert ended == [handle], "the service went on serving after its parent was gone"
        finally:
            os.close(handle)
            parent.kill()
