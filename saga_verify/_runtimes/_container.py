"""The ``container`` runtime: each service runs from its image (or one built from its Dockerfile)
in a container on the session's private network, published on 127.0.0.1, shared by every
execution, and removed with the session (at interpreter exit at the latest, or by its label after
a crash). A crash restarts the container."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import httpx

from .._system import Service
from ..systems._remote import ServiceLostError, ServiceSetupError
from ._process import NODELAY


class ContainerService:
    """A declared service placed on the ``container`` runtime (a `PlacedService`)."""

    runtime = "container"

    def __init__(self, service: Service, session: Any) -> None:
        from ..containers import ContainerStartError

        self.service = service
        try:
            if callable(service.image):
                image = service.image()  # built, or found, on first use
            elif service.image is not None:
                image = service.image
            elif service.dockerfile is not None:
                args = {name: value() if callable(value) else value for name, value in service.build_args.items()}
                image = session.build(service.dockerfile, build_args=args)
            else:
                raise ServiceSetupError(f"service {service.name!r} cannot run in a container: give it an image or a dockerfile")
            self.container = session.start(
                _unique(session, service.name), image, list(service.container_command or ()), port=service.port, env=service.env, ready_path=service.ready
            )
        except ContainerStartError as exc:
            raise ServiceSetupError(f"service {service.name!r}: {exc}") from exc
        self._executions = 0
        self._lock = threading.Lock()
        self._sync: httpx.HTTPTransport | None = None

    @property
    def url(self) -> str:
        return str(self.container.url)

    def transport(self) -> httpx.BaseTransport:
        if self._sync is None:
            self._sync = _Published(self)
        return self._sync

    def async_transport(self) -> httpx.AsyncBaseTransport:
        return _AsyncPublished(self)

    def begin(self) -> int:
        with self._lock:
            self._executions += 1
            return self._executions

    def restart(self) -> None:
        self.container.restart()

    def wait_ready(self) -> None:
        self.container.wait_ready()

    def lost(self, request: httpx.Request, exc: BaseException) -> ServiceLostError:
        try:
            tail = self.container.logs_tail(10)
        except Exception:
            tail = ""  # the container is gone too: the request's own error says enough
        return ServiceLostError(
            f"{request.method} {request.url.path} to the {self.service.name} container at {self.url} failed for real "
            f"({type(exc).__name__}: {exc})" + (f"; its output ends with:\n{tail}" if tail else "")
        )

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()


class _Published(httpx.HTTPTransport):
    """Real HTTP to the port the engine publishes the container on now (a restart may move it)."""

    def __init__(self, placed: ContainerService) -> None:
        super().__init__(socket_options=NODELAY)
        self._placed = placed

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self._placed.container.host, port=self._placed.container.host_port)
        return super().handle_request(request)


class _AsyncPublished(httpx.AsyncHTTPTransport):
    def __init__(self, placed: ContainerService) -> None:
        super().__init__(socket_options=NODELAY)
        self._placed = placed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self._placed.container.host, port=self._placed.container.host_port)
        return await super().handle_async_request(request)


class ContainerSessionHolder:
    """The one container session of this Python process's placed services, made on first use."""

    def __init__(self) -> None:
        self._session: Any = None
        self._owner = os.getpid()
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._session is None or getattr(self._session, "closed", False) or os.getpid() != self._owner:
                from ..containers import ContainerSession

                self._session = ContainerSession()
                self._owner = os.getpid()
                weakref.finalize(self, self._session.close)
            return self._session

    def close(self) -> None:
        with self._lock:
            if self._session is not None and os.getpid() == self._owner:
                self._session.close()
            self._session = None


def _unique(session: Any, name: str) -> str:
    """A container name the session does not use yet (two sagas may place two services of one
    name, a correct payment and a broken one)."""
    taken = set(session.services)
    if name not in taken:
        return name
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"
