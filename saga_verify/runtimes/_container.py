"""The ``container`` runtime: each reference service runs in a container (testcontainers, on a
private network, published on 127.0.0.1), reached over real HTTP through the harness's fault
transport, from the image `saga_verify.containers.ensure_service_image` builds without a
registry.

One container serves one (service, participant class) pair; it is started on first use, reused
by every execution and variant that needs that pair, and removed with its session (explicitly,
at interpreter exit, or by label after a crash). Every service keeps a SQLite store in its
container (``--store``), so a participant that is killed comes back with what it saved.

How an execution in containers matches one in simulation:

- **Fresh participants.** Reading an execution's ledger (the `World` does it once, at the end)
  is one ``POST /_inspect/reset``: it answers the ledger rows and puts a new participant, with a
  new store, behind the service for the next execution. A service an execution never reached
  needs no reset. (The per-request execution numbers of the ``process`` runtime are not used: a
  restarted service would take its first request for a new execution.)
- **Ledgers and their order** are as in the ``process`` runtime: rows are stamped with the
  delivery the harness's headers name, and ``seq = delivery * ROW_SPAN + position``.
- **Refusals** go to ``POST /_inspect/refuse-next``.
- **Crashes are real.** The crash fault's restart hook kills the container's process (SIGKILL)
  and starts the container again; the service restores its participant from its store. The
  engine may publish it at another port: the transport reads the port again for every request.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from .._errors import OptionError
from ..world import LedgerRow
from ._process import ROW_SPAN, ServiceLostError

__all__ = ["ContainerServices", "ReferenceContainer", "reference_saga", "shared_containers"]

_NODELAY: Any = [(6, 1, 1)]  # (IPPROTO_TCP, TCP_NODELAY, 1): loopback HTTP stalls on Nagle otherwise


class ReferenceContainer:
    """One reference service in a container, as the runtime's executions use it."""

    def __init__(self, container: Any, service: str, participant: str | None) -> None:
        #: The `saga_verify.containers.ServiceContainer`.
        self.container = container
        self.service = service
        self.participant = participant
        self.fresh = True
        self.generation = 0
        self.transport = _ContainerTransport(self)

    @property
    def label(self) -> str:
        what = f" ({self.participant})" if self.participant else ""
        return f"{self.service} container{what}"

    @property
    def url(self) -> str:
        return str(self.container.url)

    def call(self, method: str, path: str) -> httpx.Response:
        """One request to an inspection endpoint (no faults, no trace)."""
        request = httpx.Request(method, f"{self.url}{path}")
        response = self.transport.handle_request(request)
        response.read()
        if response.status_code >= 300:
            raise ServiceLostError(
                f"the {self.label} at {self.url} answered {method} {path} with {response.status_code}: {response.text[:300]}"
            )
        return response

    def reset(self) -> list[dict[str, Any]]:
        """A new participant (and store) behind the service, unless the one there is new; the
        ledger rows of the one replaced."""
        if self.fresh:
            return []
        rows: list[dict[str, Any]] = self.call("POST", "/_inspect/reset").json()
        self.fresh = True
        return rows

    def begin(self) -> int:
        self.reset()
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


class _ContainerTransport(httpx.BaseTransport):
    """Real HTTP to the container at the port the engine publishes it on now (a restart may
    move it). A request that fails for real becomes `ServiceLostError`."""

    def __init__(self, service: ReferenceContainer) -> None:
        self._service = service
        self._inner = httpx.HTTPTransport(socket_options=_NODELAY)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        service = self._service
        service.fresh = False
        request.url = request.url.copy_with(host="127.0.0.1", port=service.container.host_port)
        try:
            response = self._inner.handle_request(request)
            response.read()
        except httpx.TransportError as exc:
            raise service.lost(request, exc) from exc
        return response

    def close(self) -> None:
        self._inner.close()


class ContainerControl:
    """What the reference steps' refuse and restart hooks reach as ``participant.state``."""

    def __init__(self, service: ReferenceContainer) -> None:
        self._service = service

    def refuse_next(self) -> None:
        self._service.call("POST", "/_inspect/refuse-next")

    def restart(self) -> None:
        """Kill the container's process and start it again (the crash fault)."""
        self._service.container.restart()


class ContainerLedger:
    """One execution's ledger of a participant in a container: read once, when the run is over,
    by the reset that readies the service for the next execution."""

    def __init__(self, service: ReferenceContainer, name: str, generation: int) -> None:
        self._service = service
        self.name = name
        self.generation = generation
        self._rows: tuple[LedgerRow, ...] | None = None

    @property
    def rows(self) -> list[LedgerRow]:
        return list(self)

    def __iter__(self) -> Iterator[LedgerRow]:
        if self._rows is None:
            if self._service.generation != self.generation:
                raise ServiceLostError(f"the ledger of {self.name} was read after another execution used the {self._service.label}")
            self._rows = tuple(self._row(row) for row in self._service.reset())
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
                    command = ["--service", service, "--host", "0.0.0.0", "--port", "8000", "--inspect"]
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
            service.transport.close()
        self._services.clear()
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive or os.getpid() != self._owner


_shared: ContainerServices | None = None
_shared_lock = threading.Lock()


def shared_containers() -> ContainerServices:
    """The containers the ``container`` runtime's reference sagas use: started lazily, once per
    Python process, and removed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.closed:
            from ..containers import engine_problem

            problem = engine_problem()
            if problem is not None:
                raise OptionError(f"runtime 'container' needs a Docker engine: {problem}")
            _shared = ContainerServices()
        return _shared


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def reference_saga(variant: Any, home: str | None = None, containers: ContainerServices | None = None) -> Any:
    """The reference ``variant`` with every participant a container (started on the first
    execution; `shared_containers` unless ``containers`` is given). Every execution gets fresh
    participants, as in simulation."""
    from ..reference import Inventory, Notification, Shipping
    from ..reference.services import SERVICES
    from ..world import HttpParticipant
    from ._asgi import http_reference_saga

    classes = {"inventory": Inventory, "payment": variant.payment_class, "shipping": Shipping, "notification": Notification}
    wanted: dict[str, str | None] = {
        name: None if cls is SERVICES[name].participant else _class_path(cls) for name, cls in classes.items()
    }
    routes = {name: SERVICES[name].routes for name in classes}

    def participants() -> dict[str, object]:
        running = (containers or shared_containers()).serve(wanted)
        made: dict[str, object] = {}
        for name, service in running.items():
            generation = service.begin()
            made[name] = HttpParticipant(
                service.transport,
                routes[name],
                base_url=f"http://{name}",
                ledger=ContainerLedger(service, name, generation),
                state=ContainerControl(service),
            )
        return made

    return http_reference_saga(variant, participants, home)
