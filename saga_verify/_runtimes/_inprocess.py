"""The ``asgi`` runtime (and ``sim`` for a service declared without a model): the service's ASGI
app in this process, reached through httpx as if over HTTP. The app is built once; an app that
does not mount `EffectsMiddleware` is wrapped in one built from its factory, so every execution
starts from a new app."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

import httpx

from .._system import Service
from .._world._asgi import SyncASGITransport
from ..systems._middleware import EffectsMiddleware
from ..systems._protocol import MIDDLEWARE_HEADER, READY_PATH
from ..systems._remote import ServiceLostError, ServiceSetupError


def load_factory(service: Service) -> Callable[[], Any]:
    """The service's app factory (imported when given as ``"module:factory"``)."""
    app = service.app
    if app is None:
        raise ServiceSetupError(f"service {service.name!r} has no app to run in this process: give it app=")
    if callable(app):
        return app
    module_name, _, attr = app.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ServiceSetupError(f"service {service.name!r}: app {app!r}: module {module_name!r} does not import ({type(exc).__name__}: {exc})") from None
    for part in attr.split("."):
        value = getattr(value, part, None)
        if value is None:
            raise ServiceSetupError(f"service {service.name!r}: app {app!r}: module {module_name!r} has no {attr!r}")
    if not callable(value):
        raise ServiceSetupError(f"service {service.name!r}: app {app!r} is a {type(value).__name__}, not an app factory")
    return value  # type: ignore[no-any-return]


class InProcessService:
    """A declared service's app in this process (a `PlacedService`)."""

    runtime = "asgi"

    def __init__(self, service: Service) -> None:
        self.service = service
        factory = load_factory(service)
        try:
            app = factory()
        except Exception as exc:
            raise ServiceSetupError(f"service {service.name!r}: its app factory raised {type(exc).__name__}: {exc}") from exc
        probe = SyncASGITransport(app)
        try:
            answer = probe.handle_request(httpx.Request("GET", f"http://{service.name}{READY_PATH}"))
        except Exception as exc:
            raise ServiceSetupError(f"service {service.name!r}: its app raised {type(exc).__name__} on GET {READY_PATH}: {exc}") from exc
        finally:
            probe.close()
        if answer.headers.get(MIDDLEWARE_HEADER) is not None:
            self.app: Any = app  # it mounts the middleware itself: its reset starts executions
            self._middleware: EffectsMiddleware | None = app if isinstance(app, EffectsMiddleware) else None
        else:
            first = [app]
            self._middleware = EffectsMiddleware(factory=lambda: first.pop() if first else factory())
            self.app = self._middleware
        self.url = f"http://{service.name}"
        self._sync = SyncASGITransport(self.app)
        self._executions = 0
        self._lock = threading.Lock()

    def transport(self) -> httpx.BaseTransport:
        return self._sync

    def async_transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def begin(self) -> int:
        with self._lock:
            self._executions += 1
            return self._executions

    def restart(self) -> None:
        if self._middleware is None:
            raise ServiceSetupError(
                f"service {self.service.name!r} mounts EffectsMiddleware around an app it keeps: in this process it "
                "cannot be killed and brought back; give the step a restart hook of its own"
            )
        self._middleware.restart()

    def wait_ready(self) -> None:
        pass  # an app in this process is ready as soon as it is built

    def lost(self, request: httpx.Request, exc: BaseException) -> ServiceLostError:
        return ServiceLostError(f"{request.method} {request.url.path} to the {self.service.name} app failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._sync.close()
