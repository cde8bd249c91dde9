"""The ``process`` runtime: each reference service is a uvicorn process on 127.0.0.1, reached over
real loopback HTTP through the harness's fault transport.

One process serves one (service, participant class) pair; it is started on first use, reused by
every execution and variant that needs that pair, and stopped when its `ServiceProcesses` closes:
explicitly, when it is garbage-collected, or at interpreter exit (a `weakref.finalize`, which
runs from `atexit`). A service also stops by itself when the process that started it is gone.

How an execution over processes matches one in simulation:

- **Fresh participants.** Each execution starts from new participants, as in sim. Executions are
  numbered per service (`ServiceProcess.begin`), and every request of one names its number
  (`saga_verify._world._http.EXECUTION_HEADER`); a service whose last request named another
  number first puts a new participant of the same class behind itself. So an execution starts
  with its first request to a service, and a service it never reaches costs it nothing.
- **Ledgers.** The fault transport tells the service, in request headers, which trace entry each
  delivery is, the saga instance and the virtual time (`saga_verify._world._http.DELIVERY_HEADER`
  and friends); the service stamps the rows it records while handling that request with them,
  and answers them in a response header (``ROWS_HEADER``). The execution's `RemoteLedger`
  collects them as the answers come in, so an execution costs its deliveries and nothing more.
  Should an answer come without them (an error the app raised), the ledger is read once with
  ``GET /_inspect/ledger`` when the run is over.
- **Order of effects.** Invariants compare ``LedgerRow.seq`` across participants. A service only
  knows its own rows, but each row carries the delivery (trace entry) that caused it, and
  deliveries are made one at a time in trace order; a delivery reaches one service only. So the
  order of effects across services is the order of (delivery, position in that service's
  ledger), and `RemoteLedger` folds that pair into one number:
  ``seq = delivery * ROW_SPAN + position``. That keeps `World` unaware of where rows come from
  (it sorts by ``seq`` as always), and it orders rows exactly as sim numbers them.
- **Refusals.** The reference steps' refuse hook calls ``participant.state.refuse_next()``; here
  ``state`` is a `RemoteControl` that sends ``POST /_inspect/refuse-next``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

import h11
import httpx

from .._world import LedgerRow
from .._world._http import EXECUTION_ERROR_HEADER, EXECUTION_HEADER, ROWS_HEADER
from ..errors import SagaVerifyError

__all__ = [
    "ROW_SPAN",
    "RemoteControl",
    "RemoteLedger",
    "RemoteService",
    "ServiceLostError",
    "ServiceProcess",
    "ServiceProcesses",
    "ServiceStartError",
    "reference_saga",
    "shared_processes",
]

#: How long a service may take to answer ``GET /health`` after it was started.
READY_TIMEOUT = 10.0
#: How long a service may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 5.0
#: Rows one delivery can cause in one service, at most, for `RemoteLedger`'s ``seq``.
ROW_SPAN = 1 << 32

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class ServiceStartError(SagaVerifyError, RuntimeError):
    """A service process exited or did not answer ``GET /health`` in time; the message names the
    service, its port and the end of what it wrote to standard error."""

    def __init__(self, message: str, service: ServiceProcess | None = None) -> None:
        super().__init__(message)
        #: The process that failed to start (stopped by now), if there was one.
        self.service = service


class ServiceLostError(BaseException):
    """A request to a running service failed for real (the process died, the connection broke):
    not a fault any plan injected, so no verdict can be trusted. A BaseException, like the
    harness's own budget stop, so neither the saga's ``except Exception`` nor the world's handling
    of lost replies can mistake it for a network fault; it ends the search."""


class _Connection(httpx.BaseTransport):
    """HTTP/1.1 to one service over one keep-alive TCP connection, spoken with h11.

    Every request of the harness waits for its answer before the next one leaves, so what a
    request costs is its round trip; this keeps that short. The request's head and body leave in
    one write (TCP_NODELAY, so nothing waits for an acknowledgement), and the service wakes up
    once per request, not once for the head and again for the body. Requests go one at a time (a
    lock). A connection the service closed while idle is opened again before the next request;
    a request that fails is never sent again (it may have taken effect), it raises the
    ``httpx.TransportError`` that says how it failed, and the connection is dropped. Timeouts are
    the request's (``extensions["timeout"]``, as httpx sets them)."""

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._sock: socket.socket | None = None
        self._h11: h11.Connection | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        body = request.read()
        with self._lock:
            try:
                return self._exchange(request, body, timeouts)
            except BaseException:
                self._drop()
                raise

    def _exchange(self, request: httpx.Request, body: bytes, timeouts: Mapping[str, float | None]) -> httpx.Response:
        sock, conn = self._sock, self._h11
        if sock is None or conn is None or _readable(sock):  # never used, or closed by the service
            self._drop()
            sock, conn = self._connect(request, timeouts.get("connect"))
        try:
            data = conn.send(h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)) or b""
            if body:
                data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        try:
            sock.settimeout(timeouts.get("write"))
            sock.sendall(data)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(f"timed out sending to {self._where}", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(f"{exc} (sending to {self._where})", request=request) from exc
        sock.settimeout(timeouts.get("read"))
        response: h11.Response | None = None
        content: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(f"{exc} (from {self._where})", request=request) from exc
            if event is h11.NEED_DATA:
                try:
                    conn.receive_data(sock.recv(65536))  # b"" (the service closed it): h11 says what that ends
                except TimeoutError as exc:
                    raise httpx.ReadTimeout(f"no answer from {self._where} in time", request=request) from exc
                except OSError as exc:
                    raise httpx.ReadError(f"{exc} (reading from {self._where})", request=request) from exc
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                content.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise httpx.RemoteProtocolError(f"{self._where} closed the connection without an answer", request=request)
            # an h11.InformationalResponse (1xx): the answer follows
        assert response is not None  # h11 gives the response before its body and its end
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE and response.status_code < 500:
            conn.start_next_cycle()
        else:
            # One side said it closes the connection after this exchange; or the service failed,
            # and may close it without saying so (uvicorn does when the app raised after its
            # answer began), which the next request must not race.
            self._drop()
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw_items(),
            content=b"".join(content),
            request=request,
            extensions={"http_version": b"HTTP/" + response.http_version, "reason_phrase": response.reason},
        )

    @property
    def _where(self) -> str:
        host, port = self._address
        return f"{host}:{port}"

    def _connect(self, request: httpx.Request, timeout: float | None) -> tuple[socket.socket, h11.Connection]:
        try:
            sock = socket.create_connection(self._address, timeout=timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"timed out connecting to {self._where}", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{exc} (connecting to {self._where})", request=request) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._h11 = sock, h11.Connection(h11.CLIENT)
        return self._sock, self._h11

    def _drop(self) -> None:
        sock, self._sock, self._h11 = self._sock, None, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: only the end the service closed, or
    bytes nobody asked for; either way it is not fit for the next request."""
    if hasattr(select, "poll"):  # no limit on the descriptor's number, unlike select()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)


class ServiceProcess:
    """One uvicorn process serving one reference service (``python -m
    saga_verify.reference.services``), with inspection endpoints on."""

    def __init__(self, service: str, participant: str | None = None, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.service = service
        #: The participant class as ``module:Class`` (None: the service's correct one).
        self.participant = participant
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._transport: _Connection | None = None
        self._control: _ServiceTransport | None = None
        self._started = 0.0
        #: How many executions have used the service: the number of the latest, which its
        #: requests name (`begin`).
        self.generation = 0

    # -- what others read ------------------------------------------------------------------------
    @property
    def label(self) -> str:
        what = f" ({self.participant})" if self.participant else ""
        return f"{self.service} service{what}"

    @property
    def url(self) -> str:
        if self.port is None:
            raise ServiceStartError(f"the {self.label} is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def transport(self) -> _ServiceTransport:
        """The transport requests to this service go through (keep-alive, TCP_NODELAY)."""
        if self._control is None:
            raise ServiceStartError(f"the {self.label} is not running")
        return self._control

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None and self._control is not None

    def stderr_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the process wrote to standard error."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace")
        self._stderr.seek(0, os.SEEK_END)
        return "\n".join(text.rstrip().splitlines()[-lines:])

    # -- start and stop --------------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "saga_verify.reference.services", "--service", self.service]
        if self.participant:
            cmd += ["--participant", self.participant]
        return [*cmd, "--host", self.host, "--port", str(self.requested_port), "--inspect", "--parent-pid", str(os.getpid())]

    def launch(self) -> None:
        """Start the process (without waiting for it: see `wait_ready`)."""
        if self.process is not None:
            raise ServiceStartError(f"the {self.label} was started already")
        env = dict(os.environ)
        # The service imports this very copy of saga_verify, installed or not; the current
        # directory (where a participant class given by module path may live) comes first.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), _PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        # Closed by `reap`: it lives as long as the process.
        self._stderr = tempfile.TemporaryFile(prefix=f"saga-verify-{self.service}-")  # noqa: SIM115
        self._started = time.monotonic()
        try:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, env=env
            )
        except OSError as exc:
            self._stderr.close()
            raise ServiceStartError(f"the {self.label} could not be started: {exc}", self) from exc

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the service answers ``GET /health``; stop it and raise `ServiceStartError`
        if it exits first or ``timeout`` seconds after its start pass."""
        deadline = self._started + timeout
        try:
            self._read_port(deadline, timeout)
            assert self.port is not None
            self._transport = _Connection(self.host, self.port)
            self._control = _ServiceTransport(self._transport, self)
            self._check_health(deadline, timeout)
        except BaseException:
            self.stop()
            raise

    def start(self, timeout: float = READY_TIMEOUT) -> ServiceProcess:
        self.launch()
        self.wait_ready(timeout)
        return self

    def _fail(self, what: str) -> ServiceStartError:
        port = self.port if self.port is not None else (self.requested_port or "a free port")
        tail = self.stderr_tail()
        return ServiceStartError(
            f"the {self.label} (port {port}) {what}"
            + (f"; its standard error ends with:\n{tail}" if tail else "; it wrote nothing to standard error"),
            self,
        )

    def _read_port(self, deadline: float, timeout: float) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        out = self.process.stdout
        seen = b""
        while b"\n" not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"did not start listening within {timeout:g} s")
            ready, _, _ = select.select([out], [], [], min(left, 0.05))
            if ready:
                chunk = os.read(out.fileno(), 4096)
                if not chunk:  # it exited (or closed its output) before it listened
                    break
                seen += chunk
            elif self.process.poll() is not None:
                break
        out.close()
        line = seen.decode("utf-8", "replace").strip()
        if not line.startswith("listening on "):
            code = self.process.wait(timeout=STOP_TIMEOUT)
            raise self._fail(f"exited with status {code} before it listened")
        self.port = int(line.rsplit(":", 1)[1])

    def _check_health(self, deadline: float, timeout: float) -> None:
        assert self.process is not None
        assert self._transport is not None
        problem = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._fail(f"did not answer GET /health within {timeout:g} s ({problem})")
            if self.process.poll() is not None:
                raise self._fail(f"exited with status {self.process.returncode} before it answered GET /health")
            request = httpx.Request("GET", f"{self.url}/health", extensions={"timeout": httpx.Timeout(left).as_dict()})
            try:
                response = self._transport.handle_request(request)
                response.read()
                response.close()
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                time.sleep(0.02)
                continue
            if response.status_code == 200 and response.json().get("service") == self.service:
                return
            problem = f"it answered {response.status_code} {response.text[:200]!r}"
            time.sleep(0.02)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate, wait, kill if it does not stop; close what this side holds. Idempotent."""
        self.terminate()
        self.reap(timeout)

    def terminate(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
            self._control = None
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()

    def reap(self, timeout: float = STOP_TIMEOUT) -> None:
        process = self.process
        if process is not None:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None and not process.stdout.closed:
                process.stdout.close()
        if self._stderr is not None and not self._stderr.closed:
            self._stderr.close()

    # -- the inspection endpoints ----------------------------------------------------------------
    def call(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """One request to an inspection endpoint (not a delivery: no faults, no trace)."""
        if self._transport is None:
            raise ServiceLostError(f"the {self.label} is not running")
        request = httpx.Request(method, f"{self.url}{path}", headers=headers)
        try:
            response = self._transport.handle_request(request)
            response.read()
        except httpx.TransportError as exc:
            raise self.lost(request, exc) from exc
        if response.status_code >= 300:
            raise ServiceLostError(
                f"the {self.label} at {self.url} answered {method} {path} with {response.status_code}: {response.text[:300]}"
            )
        return response

    def lost(self, request: httpx.Request, exc: Exception) -> ServiceLostError:
        state = "running" if self.process is not None and self.process.poll() is None else "gone"
        tail = self.stderr_tail(10)
        return ServiceLostError(
            f"{request.method} {request.url.path} to the {self.label} at {self.url} failed for real "
            f"({type(exc).__name__}: {exc}); the process is {state}"
            + (f"; its standard error ends with:\n{tail}" if tail else "")
        )

    def reset(self) -> list[dict[str, Any]]:
        """Put a new participant of the same class behind the service now; the ledger rows of
        the one replaced, as the service serves them."""
        rows: list[dict[str, Any]] = self.call("POST", "/_inspect/reset").json()
        return rows

    def begin(self) -> int:
        """Number a new execution (no request: its first request to the service starts it with
        a new participant); the execution's number."""
        self.generation += 1
        return self.generation

    def ledger_rows(self) -> list[dict[str, Any]]:
        """The rows of the participant now behind the service (it stays there)."""
        rows: list[dict[str, Any]] = self.call("GET", "/_inspect/ledger").json()
        return rows

    def refuse_next(self) -> None:
        self.call("POST", "/_inspect/refuse-next")

    def __repr__(self) -> str:
        where = f"{self.url}, pid {self.pid}" if self.port is not None else "not running"
        return f"<ServiceProcess {self.label}: {where}>"


class RemoteService(Protocol):
    """What an execution's ledger, transport and control need of a running service (a
    `ServiceProcess`, or a service in a container)."""

    generation: int

    @property
    def label(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def transport(self) -> httpx.BaseTransport: ...

    def call(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response: ...

    def ledger_rows(self) -> list[dict[str, Any]]: ...


class _ServiceTransport(httpx.BaseTransport):
    """The real HTTP transport to one service. A request that fails for real is not a fault the
    plan injected: it becomes `ServiceLostError`, naming the service and its stderr tail."""

    def __init__(self, inner: _Connection, service: ServiceProcess) -> None:
        self._inner = inner
        self._service = service

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self._inner.handle_request(request)
        except httpx.TransportError as exc:
            raise self._service.lost(request, exc) from exc

    def close(self) -> None:
        self._inner.close()


class _ExecutionTransport(httpx.BaseTransport):
    """The transport of one execution's requests to one service: each names the execution (so
    the service serves it with that execution's participant), and the ledger rows each answer
    carries go to the execution's `RemoteLedger`."""

    def __init__(self, service: RemoteService, ledger: RemoteLedger) -> None:
        self._service = service
        self._inner = service.transport
        self._ledger = ledger
        self._execution = str(ledger.generation)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        service = self._service
        self._ledger.check_current(f"a request of an execution was sent to {self._ledger.name}")
        request.headers[EXECUTION_HEADER] = self._execution
        response = self._inner.handle_request(request)
        headers = response.headers
        rows = headers.get(ROWS_HEADER)
        if rows is not None:
            self._ledger.collect(rows)
            return response
        error = headers.get(EXECUTION_ERROR_HEADER)
        if error is not None:
            response.close()
            raise ServiceLostError(f"{request.method} {request.url.path} to the {service.label} at {service.url}: {error}")
        self._ledger.collect(None)
        return response

    def close(self) -> None:
        pass  # the connection is the service's, for every execution


class RemoteControl:
    """What the reference steps' refuse and restart hooks reach as ``participant.state`` over the
    network: the service's inspection endpoints, within one execution when a transport of one is
    given."""

    def __init__(self, service: RemoteService, transport: httpx.BaseTransport | None = None) -> None:
        self._service = service
        #: Where the requests go (one execution's transport; None: to the service as it is).
        self._transport = transport

    def refuse_next(self) -> None:
        self._inspect("/_inspect/refuse-next")

    def restart(self) -> None:
        self._inspect("/_inspect/restart")

    def _inspect(self, path: str) -> None:
        service = self._service
        if self._transport is None:
            service.call("POST", path)
            return
        request = httpx.Request("POST", f"{service.url}{path}")
        response = self._transport.handle_request(request)
        response.read()
        if response.status_code >= 300:
            raise ServiceLostError(
                f"the {service.label} at {service.url} answered POST {path} with {response.status_code}: {response.text[:300]}"
            )


class RemoteLedger:
    """The ledger of one execution's participant behind a service process. The execution's
    requests go through its `transport`, which hands it the rows each answer carries; when it is
    iterated (the `World` does this once, when the run is over) it keeps those as its rows, and
    later iterations give the same rows. Should an answer have come without its rows, the first
    iteration reads the service's whole ledger instead (``GET /_inspect/ledger``).

    Each row's ``seq`` is ``delivery * ROW_SPAN + its position in the service's ledger``:
    deliveries happen one at a time in trace order and each reaches one service, so sorting the
    rows of all services by that number orders them as they took effect, as sim numbers them
    (see the module's docstring). Its ``time`` is the virtual time the delivery carried."""

    def __init__(self, service: RemoteService, name: str, generation: int) -> None:
        self._service = service
        self.name = name
        self.generation = generation
        self._rows: tuple[LedgerRow, ...] | None = None
        self._collected: list[dict[str, Any]] = []
        self._complete = True
        #: The transport this execution's requests to the service go through.
        self.transport = _ExecutionTransport(service, self)

    @property
    def rows(self) -> list[LedgerRow]:
        return list(self)

    def check_current(self, what: str) -> None:
        """Raise `ServiceLostError` (``what`` happened after ...) unless this execution is the
        service's latest."""
        service = self._service
        if service.generation != self.generation:
            raise ServiceLostError(f"{what} after another execution used the {service.label}")

    def collect(self, header: str | None) -> None:
        """Take the rows an answer carried (``header``; None: it carried none)."""
        if header is None:
            self._complete = False
            return
        try:
            rows = json.loads(header)
        except ValueError as exc:
            raise ServiceLostError(f"the {self._service.label} answered rows that are not JSON: {header[:300]!r}") from exc
        self._collected.extend(rows)

    def __iter__(self) -> Iterator[LedgerRow]:
        if self._rows is None:
            self.check_current(f"the ledger of {self.name} was read")
            rows = self._collected if self._complete else self._service.ledger_rows()
            self._rows = tuple(self._row(row) for row in rows)
            self._collected = []
        return iter(self._rows)

    def _row(self, row: Mapping[str, Any]) -> LedgerRow:
        delivery = int(row["delivery"])
        return LedgerRow(
            self.name,
            delivery * ROW_SPAN + int(row["seq"]),
            float(row["time"]),
            str(row["correlation_id"]),
            str(row["action"]),
            row["amount"],
            row["ref"],
            delivery,
        )

    def __repr__(self) -> str:
        return f"<RemoteLedger of the {self._service.label}>"


def _stop_all(services: dict[tuple[str, str | None], ServiceProcess], owner: int) -> None:
    if os.getpid() != owner:
        return  # a forked child: the processes belong to its parent
    # Terminate all first, then wait: they stop in parallel.
    running = list(services.values())
    services.clear()
    for service in running:
        service.terminate()
    for service in running:
        service.reap()


class ServiceProcesses:
    """Owns service processes: one per (service, participant class), started on first use and
    stopped by `close` (or ``with``), when this object is garbage-collected, or at interpreter
    exit, whichever comes first."""

    def __init__(self, ready_timeout: float = READY_TIMEOUT) -> None:
        self.ready_timeout = ready_timeout
        self._services: dict[tuple[str, str | None], ServiceProcess] = {}
        self._lock = threading.Lock()
        # The finalizer holds the dict, not self; it also runs at interpreter exit (atexit).
        self._owner = os.getpid()
        self._finalizer = weakref.finalize(self, _stop_all, self._services, self._owner)

    @property
    def processes(self) -> tuple[ServiceProcess, ...]:
        return tuple(self._services.values())

    def serve(self, wanted: Mapping[str, str | None]) -> dict[str, ServiceProcess]:
        """A running process for each ``service -> participant class`` (``module:Class`` or None);
        those not running yet start together."""
        with self._lock:
            if self.closed:
                raise ServiceStartError("these service processes were closed (or belong to the process this one was forked from)")
            found: dict[str, ServiceProcess] = {}
            starting: list[ServiceProcess] = []
            for service, participant in wanted.items():
                key = (service, participant)
                process = self._services.get(key)
                if process is None or not process.running():
                    if process is not None:
                        process.stop()
                    process = ServiceProcess(service, participant)
                    process.launch()
                    starting.append(process)
                    self._services[key] = process
                found[service] = process
            try:
                for process in starting:
                    process.wait_ready(self.ready_timeout)
            except BaseException:
                for process in starting:
                    process.terminate()
                for process in starting:
                    process.reap()
                    self._services.pop((process.service, process.participant), None)
                raise
            return found

    def start(self, service: str, participant: str | None = None, *, port: int = 0) -> ServiceProcess:
        """Start one more process, on ``port`` if given (not shared through `serve`; it stops
        with the others)."""
        process = ServiceProcess(service, participant, port=port)
        process.start(self.ready_timeout)
        with self._lock:
            self._services[(f"{service}#{id(process)}", participant)] = process
        return process

    def close(self) -> None:
        """Stop every process. Idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive or os.getpid() != self._owner

    def __enter__(self) -> ServiceProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Closable(Protocol):
    @property
    def closed(self) -> bool: ...


_S = TypeVar("_S", bound=_Closable)


class SharedServices(Generic[_S]):
    """The services a runtime's reference sagas share: made by ``make`` on first use, once per
    Python process, and made again once closed (or after a fork: a child does not own its
    parent's)."""

    def __init__(self, make: Callable[[], _S]) -> None:
        self._make = make
        self._current: _S | None = None
        self._lock = threading.Lock()

    def get(self) -> _S:
        with self._lock:
            if self._current is None or self._current.closed:
                self._current = self._make()
            return self._current


_shared = SharedServices(ServiceProcesses)


def shared_processes() -> ServiceProcesses:
    """The processes the ``process`` runtime's reference sagas use: started lazily, once per
    Python process, and stopped at exit."""
    return _shared.get()


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def reference_saga(variant: Any, home: str | None = None, processes: ServiceProcesses | None = None) -> Any:
    """The reference ``variant`` with every participant a service process on loopback (started on
    the first execution; `shared_processes` unless ``processes`` is given). Every execution gets
    fresh participants behind them, as in simulation. ``home`` is the module that holds the saga
    under the variant's name (so plan files can name it)."""
    return remote_reference_saga(variant, home, lambda wanted: (processes or shared_processes()).serve(wanted), RemoteControl)


def remote_reference_saga(
    variant: Any,
    home: str | None,
    serve: Callable[[Mapping[str, str | None]], Mapping[str, Any]],
    control: Callable[[Any, httpx.BaseTransport], object],
) -> Any:
    """The reference ``variant`` with every participant a running service: ``serve(wanted)``
    gives a `RemoteService` (with ``begin()``) for each ``service -> participant class``
    (``module:Class``, None for the correct one); ``control(service, transport)`` is what the
    steps' refuse and restart hooks reach."""
    from .._world import HttpParticipant
    from ..reference import Inventory, Notification, Shipping
    from ..reference.services import SERVICES
    from ._asgi import http_reference_saga

    classes = {"inventory": Inventory, "payment": variant.payment_class, "shipping": Shipping, "notification": Notification}
    wanted: dict[str, str | None] = {
        name: None if cls is SERVICES[name].participant else _class_path(cls) for name, cls in classes.items()
    }
    routes = {name: SERVICES[name].routes for name in classes}

    def participants() -> dict[str, object]:
        made: dict[str, object] = {}
        for name, service in serve(wanted).items():
            ledger = RemoteLedger(service, name, service.begin())  # no request: the first delivery starts it
            made[name] = HttpParticipant(
                ledger.transport,
                routes[name],
                base_url=service.url,
                ledger=ledger,
                state=control(service, ledger.transport),
            )
        return made

    return http_reference_saga(variant, participants, home)
