"""The ``process`` runtime: each service is a command serving HTTP on a loopback port the harness
picks, started on first use, shared by every execution, and stopped when its owner closes (at
interpreter exit at the latest).

A command is a list of arguments in which ``{host}``, ``{port}`` and ``{parent_pid}`` are filled
in. The service is ready when ``GET ready`` answers with any status below 500; a command that
exits first, or does not answer in time, is an error that names the service, its port and the end
of what it wrote to standard error, and nothing it started is left running."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

from .._system import Service
from ..systems._remote import ServiceLostError, ServiceSetupError

#: How long a service may take to answer its ready check after it was started.
READY_TIMEOUT = 60.0
#: How long a service may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0
#: Loopback HTTP stalls on Nagle and delayed ACKs without it.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the service binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """One command serving one service on 127.0.0.1."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        ready: str = "/_saga-verify/ready",
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.name = name
        self.template = tuple(command)
        self.ready = ready
        self.env = dict(env or {})
        self.host = host
        self.port = port or free_port(host)
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def command(self) -> list[str]:
        fill = {"host": self.host, "port": str(self.port), "parent_pid": str(os.getpid())}
        try:
            return [part.format(**fill) for part in self.template]
        except (KeyError, IndexError, ValueError) as exc:
            raise ServiceSetupError(
                f"service {self.name!r}: its command {list(self.template)} names {exc} to fill in; "
                "it may name {host}, {port} and {parent_pid} (write {{ and }} for braces)"
            ) from None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stderr_tail(self, lines: int = 20) -> str:
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        self._stderr.seek(0, os.SEEK_END)
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def start(self) -> ServiceProcess:
        """Run the command and wait until the service answers its ready check."""
        command = self.command()
        env = {**os.environ, **self.env}
        # The service imports this very copy of saga_verify, installed or not, and modules from
        # the folder the harness runs in, as the harness itself does.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), _PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        if self._stderr is None or self._stderr.closed:
            self._stderr = tempfile.TemporaryFile(prefix=f"saga-verify-{self.name}-")  # noqa: SIM115  (closed by stop)
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr, env=env)
        except OSError as exc:
            raise ServiceSetupError(f"service {self.name!r}: its command {command} could not be started: {exc}") from None
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        problem = "no answer"
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise self._fail(f"exited with status {code} before it answered GET {self.ready}")
            try:
                response = httpx.get(f"{self.url}{self.ready}", timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                if response.status_code < 500:
                    return
                problem = f"it answered {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise self._fail(f"did not answer GET {self.ready} within {self.ready_timeout:g} s ({problem})")
            time.sleep(0.02)

    def _fail(self, what: str) -> ServiceSetupError:
        tail = self.stderr_tail()
        return ServiceSetupError(
            f"service {self.name!r} (port {self.port}, command {self.command()}) {what}"
            + (f"; its output ends with:\n{tail}" if tail else "; it wrote nothing")
        )

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is saved beyond what the service wrote already."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        """Kill it, run the command again on the same port, wait until it answers."""
        self.kill()
        self.start()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()

    def reap(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._stderr is not None and not self._stderr.closed:
            self._stderr.close()

    def stop(self) -> None:
        """Terminate, wait, kill if it does not stop. Idempotent."""
        self.terminate()
        self.reap()

    def __repr__(self) -> str:
        return f"<ServiceProcess {self.name}: {self.url}, pid {self.pid}>"


def default_command(service: Service) -> list[str] | None:
    """What serves ``Service(app="module:factory")`` when it names no command."""
    if service.command is not None:
        return list(service.command)
    if isinstance(service.app, str):
        return [sys.executable, "-m", "saga_verify.systems", service.app, "--host", "{host}", "--port", "{port}"]
    return None


class ProcessService:
    """A declared service placed on the ``process`` runtime (a `PlacedService`)."""

    runtime = "process"

    def __init__(self, service: Service) -> None:
        command = default_command(service)
        if command is None:
            raise ServiceSetupError(
                f"service {service.name!r} cannot run as a process: give it a command (with {{port}}), "
                "or its app as 'module:factory'"
            )
        self.service = service
        self.process = ServiceProcess(service.name, command, ready=service.ready, env=service.env)
        self._executions = 0
        self._lock = threading.Lock()
        self._sync: httpx.HTTPTransport | None = None
        self.process.start()
        self._finalizer = weakref.finalize(self, _stop, self.process, os.getpid())

    @property
    def url(self) -> str:
        return self.process.url

    def transport(self) -> httpx.BaseTransport:
        if self._sync is None:
            self._sync = httpx.HTTPTransport(socket_options=NODELAY)
        return self._sync

    def async_transport(self) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport(socket_options=NODELAY)

    def begin(self) -> int:
        with self._lock:
            self._executions += 1
            return self._executions

    def restart(self) -> None:
        if self._sync is not None:
            self._sync.close()  # its connections were to the process that is killed now
            self._sync = None
        self.process.restart()

    def wait_ready(self) -> None:
        self.process.wait_ready()

    def lost(self, request: httpx.Request, exc: BaseException) -> ServiceLostError:
        state = "running" if self.process.running() else "gone"
        tail = self.process.stderr_tail(10)
        return ServiceLostError(
            f"{request.method} {request.url.path} to the {self.service.name} service at {self.url} failed for real "
            f"({type(exc).__name__}: {exc}); the process is {state}" + (f"; its output ends with:\n{tail}" if tail else "")
        )

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
        self._finalizer()


def _stop(process: ServiceProcess, owner: int) -> None:
    if os.getpid() == owner:  # a forked child does not own its parent's processes
        process.stop()
