"""The ``container`` runtime: each reference service runs in a container (testcontainers, on a
private network, published on 127.0.0.1), reached over real HTTP through the harness's fault
transport, from the image `saga_verify.containers.ensure_service_image` builds without a
registry.

One container serves one (service, participant class) pair; it is started on first use, reused
by every execution and variant that needs that pair, and removed with its session (explicitly,
at interpreter exit, or by label after a crash). Every service keeps a SQLite store in its
container (``--store``), so a participant that is killed comes back with what it saved.

How an execution in containers matches one in simulation:

- **Fresh participants, ledgers and their order** are as in the ``process`` runtime: every
  request names its execution, and the first request of a new one puts a new participant
  behind the service, with a new store; answers carry the ledger rows the request recorded,
  stamped with the delivery the harness's headers name. The store also keeps which execution
  its participant serves, so a service restarted in the middle of one goes on with it.
- **Refusals** go to ``POST /_inspect/refuse-next``, within the execution.
- **Crashes are real.** Each service runs under a supervisor in its container (``--supervise``).
  The crash fault's restart hook kills the service's process (SIGKILL, ``POST /_inspect/crash``)
  and the supervisor forks a new one, which restores its participant from its store: tens of
  milliseconds, where restarting the container takes about a second. The supervisor keeps the
  listening socket, so calls made meanwhile wait in its backlog instead of being refused.
- **Pauses are the world's.** Here the harness makes every call, so a ``pause`` holds the calls
  to the frozen participant in the simulated network and sends them at the thaw, as in every
  runtime. A real ``docker pause`` is what `saga_verify.proxy.PlanAtProxies` plays, for a saga
  running in a container of its own.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import httpx

from ..errors import OptionError
from ._process import RemoteControl, ServiceLostError, SharedServices, remote_reference_saga

__all__ = ["ContainerServices", "ReferenceContainer", "reference_saga", "shared_containers"]

_NODELAY: Any = [(6, 1, 1)]  # (IPPROTO_TCP, TCP_NODELAY, 1): loopback HTTP stalls on Nagle otherwise


class ReferenceContainer:
    """One reference service in a container, as the runtime's executions use it (a
    `saga_verify._runtimes._process.RemoteService`)."""

    def __init__(self, container: Any, service: str, participant: str | None) -> None:
        #: The `saga_verify.containers.ServiceContainer`.
        self.container = container
        self.service = service
        self.participant = participant
        #: How many executions have used the service: the number the next one's requests carry.
        self.generation = 0
        self._transport = _ContainerTransport(self)

    @property
    def label(self) -> str:
        what = f" ({self.participant})" if self.participant else ""
        return f"{self.service} container{what}"

    @property
    def url(self) -> str:
        return str(self.container.url)

    @property
    def transport(self) -> httpx.BaseTransport:
        return self._transport

    def call(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """One request to an inspection endpoint (no faults, no trace)."""
        request = httpx.Request(method, f"{self.url}{path}", headers=headers)
        response = self._transport.handle_request(request)
        if response.status_code >= 300:
            raise ServiceLostError(
                f"the {self.label} at {self.url} answered {method} {path} with {response.status_code}: {response.text[:300]}"
            )
        return response

    def ledger_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call("GET", "/_inspect/ledger").json()
        return rows

    def begin(self) -> int:
        """Number a new execution (no request: its first request starts it with a new participant)."""
        self.generation += 1
        return self.generation

    def lost(self, request: httpx.Request, exc: Exception) -> ServiceLostError:
        try:
            tail = self.container.logs_tail(10)
        except Exception:
            tail = ""
        return ServiceLostError(
            f"{request.method} {request.url.path} to the {self.label} at {self.url} failed for real "
            f"({type(exc).__name__}: {exc})" + (f"; the container's output ends with:\n{tail}" if tail else "")
        )

    def close(self) -> None:
        self._transport.close()


class _ContainerTransport(httpx.BaseTransport):
    """Real HTTP to the container at the port the engine publishes it on now (a restart may
    move it). A request that fails for real becomes `ServiceLostError`."""

    def __init__(self, service: ReferenceContainer) -> None:
        self._service = service
        self._inner = httpx.HTTPTransport(socket_options=_NODELAY)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        service = self._service
        request.url = request.url.copy_with(host="127.0.0.1", port=service.container.host_port)
        try:
            response = self._inner.handle_request(request)
            response.read()
        except httpx.TransportError as exc:
            raise service.lost(request, exc) from exc
        return response

    def close(self) -> None:
        self._inner.close()


class ContainerControl(RemoteControl):
    """What the reference steps' refuse and restart hooks reach as ``participant.state``: the
    refusal as in the ``process`` runtime; the restart is real."""

    def __init__(self, service: ReferenceContainer, transport: httpx.BaseTransport) -> None:
        super().__init__(service, transport)
        self._container = service.container

    def restart(self) -> None:
        """The crash fault: kill the service's process (SIGKILL) in its container, and wait until
        the container's supervisor has started it again from its store."""
        try:
            self._inspect("/_inspect/crash")
        except (httpx.TransportError, ServiceLostError):
            pass  # it died before it could answer, as a killed process does; wait_ready says if it is back
        else:
            raise ServiceLostError(f"the {self._container.name} service answered POST /_inspect/crash instead of dying")
        self._container.wait_ready()


class ContainerServices:
    """The runtime's containers: one per (service, participant class), started on first use in
    one `saga_verify.containers.ContainerSession`, removed by `close` (or at exit)."""

    def __init__(self) -> None:
        from ..containers import ensure_service_image
        from ..containers._services import ContainerSession

        self.image = ensure_service_image()
        self.session = ContainerSession()
        self._services: dict[tuple[str, str | None], ReferenceContainer] = {}
        self._lock = threading.Lock()
        self._owner = os.getpid()
        self._finalizer = weakref.finalize(self, self.session.close)

    def serve(self, wanted: Mapping[str, str | None]) -> dict[str, ReferenceContainer]:
        """A running container for each ``service -> participant class`` (``module:Class`` or None)."""
        with self._lock:
            found: dict[str, ReferenceContainer] = {}
            for service, participant in wanted.items():
                key = (service, participant)
                running = self._services.get(key)
                if running is None:
                    name = service if participant is None else f"{service}-{participant.rsplit(':', 1)[1].lower()}"
                    # Supervised: a crash kills the service's process and its supervisor starts
                    # another from the store at once, where restarting the container takes a second.
                    command = ["--service", service, "--host", "0.0.0.0", "--port", "8000", "--inspect", "--supervise"]
                    # A killed service loses nothing its store saved; no fsync per request.
                    command += ["--store", f"/data/{service}.sqlite", "--store-sync", "normal"]
                    if participant is not None:
                        command += ["--participant", participant]
                    container = self.session.start(name, self.image.tag, command)
                    running = ReferenceContainer(container, service, participant)
                    self._services[key] = running
                found[service] = running
            return found

    def close(self) -> None:
        for service in self._services.values():
            service.close()
        self._services.clear()
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive or os.getpid() != self._owner


def _start_containers() -> ContainerServices:
    from ..containers import engine_problem

    problem = engine_problem()
    if problem is not None:
        raise OptionError(f"runtime 'container' needs a Docker engine: {problem}")
    return ContainerServices()


_shared = SharedServices(_start_containers)


def shared_containers() -> ContainerServices:
    """The containers the ``container`` runtime's reference sagas use: started lazily, once per
    Python process, and removed at exit."""
    return _shared.get()


def reference_saga(variant: Any, home: str | None = None, containers: ContainerServices | None = None) -> Any:
    """The reference ``variant`` with every participant a container (started on the first
    execution; `shared_containers` unless ``containers`` is given). Every execution gets fresh
    participants, as in simulation."""
    return remote_reference_saga(
        variant, home, lambda wanted: (containers or shared_containers()).serve(wanted), ContainerControl
    )
