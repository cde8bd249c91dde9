"""Declaring a system once: its services, where each can run (a Python model, an ASGI app, a command,
a container image) and how its effects are observed. The runtimes place the same declaration in
this process, in processes or in containers; a saga names it as its ``participants``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import SagaDefinitionError

_NAME_RE = re.compile(r"^[A-Za-z_][\w-]*$")
_ROUTE_RE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S*)$")
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class EventFeed:
    """Effects read from the service's event feed: after each delivery to the service the harness
    reads the events published since the last read (``GET path?after=N``, N events seen so far)
    and records one ledger row for each event whose type ``actions`` maps to an operation.
    Events are in the canonical envelope (``type``, ``correlation_id``, ``data``, ...); the feed
    answers a JSON list of them, or an object whose ``events`` holds the list."""

    actions: Mapping[str, str]
    """Event type -> the operation whose effect it is (``{"payment.charged": "charge"}``)."""
    path: str = "/events"
    amount: str | None = "amount"
    """The field of ``data`` that holds the effect's size (missing or None: 1)."""
    ref: str | None = None
    """The field of ``data`` that names what the effect created or undid."""

    def __post_init__(self) -> None:
        if not isinstance(self.actions, Mapping) or not self.actions:
            raise SagaDefinitionError(f"EventFeed actions must map event types to operations, got {self.actions!r}")
        for event_type, operation in self.actions.items():
            if not isinstance(event_type, str) or not isinstance(operation, str) or not _NAME_RE.match(operation):
                raise SagaDefinitionError(f"EventFeed actions: {event_type!r} -> {operation!r} is not event type -> operation name")
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise SagaDefinitionError(f"EventFeed path must start with '/', got {self.path!r}")
        object.__setattr__(self, "actions", dict(self.actions))


@dataclass(frozen=True)
class StoreReader:
    """Effects read from the service's own store: after each delivery to the service the harness
    calls ``read(handle)``, which returns every effect so far, oldest first, as mappings with
    ``action`` and optionally ``amount``, ``ref`` and ``correlation_id``; the ones beyond those
    already seen took effect in that delivery. (``handle`` is the service's
    `saga_verify.systems.ServiceHandle`: its ``url``, or the model under ``sim``.)"""

    read: Callable[[Any], Iterable[Mapping[str, Any]]]

    def __post_init__(self) -> None:
        if not callable(self.read):
            raise SagaDefinitionError(f"StoreReader takes a callable read(handle) -> effects, got {self.read!r}")


#: How a service's effects reach the invariants: ``"middleware"`` (the service mounts
#: `saga_verify.systems.EffectsMiddleware` in its test build and reports them with
#: ``saga_verify.systems.record_effect`` or a `saga_verify.Ledger`), its event feed, or its store.
Effects = str | EventFeed | StoreReader


@dataclass(frozen=True)
class Service:
    """One service of a system, declared once for every runtime.

    A service runs under ``sim`` from ``model`` (a plain Python participant: its operations are
    methods, its effects go to its ``ledger``), and under ``asgi`` from ``app`` (an ASGI app
    factory, in this process). Under ``process`` it runs ``command`` (or, for an ``app`` given as
    ``"module:factory"``, ``python -m saga_verify.systems module:factory``); under ``container``
    it runs ``image`` (or one built from ``dockerfile``). A service without a model runs its app
    under ``sim`` too."""

    name: str
    routes: Mapping[str, str] | None = None
    """Operation -> ``"METHOD /path"``; a path may hold ``{parameters}``."""
    model: Callable[[], object] | None = None
    """Builds a fresh plain-Python participant (``sim``)."""
    app: Callable[[], Any] | str | None = None
    """An ASGI app factory: a callable, or ``"module:factory"`` (``asgi``; ``process`` by default)."""
    command: Sequence[str] | None = None
    """Serves the service over HTTP; ``{port}`` and ``{host}`` are filled in (``process``)."""
    image: str | Callable[[], str] | None = None
    """A container image that serves the service on ``port`` (``container``); or a callable that
    builds or finds one and gives its tag, called when the service is first placed."""
    dockerfile: str | None = None
    """A Dockerfile the ``container`` runtime builds the image from (its folder is the context)."""
    build_args: Mapping[str, str | Callable[[], str]] = field(default_factory=dict)
    """Build arguments for ``dockerfile``; a callable value is called when the image is built."""
    container_command: Sequence[str] | None = None
    """The arguments the container's entry point gets (None: the image's own command)."""
    port: int = 8000
    """The port the service listens on inside its container."""
    ready: str = "/_saga-verify/ready"
    """A path that answers (any status below 500) once the service serves (``process``, ``container``)."""
    effects: Effects = "middleware"
    reset: Callable[[Any], None] | str | None = None
    """How a service shared by every execution starts one afresh when it does not mount the
    middleware: ``"METHOD /path"`` to send, or a callable given the `ServiceHandle`."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables for its process or container."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise SagaDefinitionError(f"Service name must be a plain name like 'payment', got {self.name!r}")
        where = f"service {self.name!r}"
        if self.routes is not None:
            if not isinstance(self.routes, Mapping):
                raise SagaDefinitionError(f"{where}: routes must map operations to 'METHOD /path', got {self.routes!r}")
            for operation, route in self.routes.items():
                if not isinstance(operation, str) or not _NAME_RE.match(operation):
                    raise SagaDefinitionError(f"{where}: route name {operation!r} is not an operation name")
                if not isinstance(route, str) or not _ROUTE_RE.match(route.strip()):
                    raise SagaDefinitionError(f"{where}: route for {operation!r} must look like 'POST /charges', got {route!r}")
            object.__setattr__(self, "routes", {op: r.strip() for op, r in self.routes.items()})
        if self.model is not None and not callable(self.model):
            raise SagaDefinitionError(f"{where}: model must build a participant (a class or a function), got {self.model!r}")
        if self.app is not None and not callable(self.app) and not (isinstance(self.app, str) and _FACTORY_RE.match(self.app)):
            raise SagaDefinitionError(f"{where}: app must be an ASGI app factory or 'module:factory', got {self.app!r}")
        if self.command is not None:
            if isinstance(self.command, str) or not all(isinstance(part, str) for part in self.command) or not self.command:
                raise SagaDefinitionError(f"{where}: command must be a list of arguments like ['uvicorn', 'shop:app', '--port', '{{port}}'], got {self.command!r}")
            object.__setattr__(self, "command", tuple(self.command))
        if self.image is not None and not callable(self.image) and (not isinstance(self.image, str) or not self.image.strip()):
            raise SagaDefinitionError(f"{where}: image must be an image name, or a callable that gives one, got {self.image!r}")
        if self.dockerfile is not None and (not isinstance(self.dockerfile, str) or not self.dockerfile.strip()):
            raise SagaDefinitionError(f"{where}: dockerfile must be a path, got {self.dockerfile!r}")
        if not isinstance(self.build_args, Mapping) or not all(
            isinstance(k, str) and (isinstance(v, str) or callable(v)) for k, v in self.build_args.items()
        ):
            raise SagaDefinitionError(f"{where}: build_args must map names to text (or to callables that give it)")
        object.__setattr__(self, "build_args", dict(self.build_args))
        if self.container_command is not None:
            if isinstance(self.container_command, str) or not all(isinstance(part, str) for part in self.container_command):
                raise SagaDefinitionError(f"{where}: container_command must be a list of arguments, got {self.container_command!r}")
            object.__setattr__(self, "container_command", tuple(self.container_command))
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise SagaDefinitionError(f"{where}: port must be a port number, got {self.port!r}")
        if not isinstance(self.ready, str) or not self.ready.startswith("/"):
            raise SagaDefinitionError(f"{where}: ready must be a path starting with '/', got {self.ready!r}")
        if not (self.effects == "middleware" or isinstance(self.effects, (EventFeed, StoreReader))):
            raise SagaDefinitionError(
                f"{where}: effects must be 'middleware', an EventFeed or a StoreReader, got {self.effects!r}"
            )
        if self.reset is not None and not callable(self.reset) and not (isinstance(self.reset, str) and _ROUTE_RE.match(self.reset.strip())):
            raise SagaDefinitionError(f"{where}: reset must be 'METHOD /path' or a callable, got {self.reset!r}")
        if not isinstance(self.env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise SagaDefinitionError(f"{where}: env must map names to text")
        object.__setattr__(self, "env", dict(self.env))
        if self.model is None and self.app is None and self.command is None and self.image is None and self.dockerfile is None:
            raise SagaDefinitionError(f"{where} says nowhere it can run: give it a model, an app, a command, an image or a dockerfile")
        if self.routes is None and (self.app is not None or self.command is not None or self.image is not None or self.dockerfile is not None):
            raise SagaDefinitionError(f"{where} is reached over HTTP, so it needs routes: operation -> 'METHOD /path'")

    @property
    def runtimes(self) -> tuple[str, ...]:
        """The runtimes this declaration can run on."""
        out = []
        if self.model is not None or self.app is not None:
            out.append("sim")
        if self.app is not None:
            out.append("asgi")
        if self.command is not None or isinstance(self.app, str):
            out.append("process")
        if self.image is not None or self.dockerfile is not None:
            out.append("container")
        return tuple(out)


class System:
    """The services a saga's participants are, each declared once: ``System(Service(...), ...)``.
    Give it to a `Saga` as ``participants``; ``explore(saga, runtime=...)`` (``--saga-runtime`` in
    pytest, ``--runtime`` on the command line) says where they run."""

    __slots__ = ("services",)

    def __init__(self, *services: Service) -> None:
        if not services:
            raise SagaDefinitionError("a System needs at least one Service")
        seen: set[str] = set()
        for service in services:
            if not isinstance(service, Service):
                raise SagaDefinitionError(f"System takes Service values, got {service!r}")
            if service.name in seen:
                raise SagaDefinitionError(f"System declares service {service.name!r} twice")
            seen.add(service.name)
        self.services: Mapping[str, Service] = {s.name: s for s in services}

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    def __iter__(self) -> Any:
        return iter(self.services.values())

    def __repr__(self) -> str:
        return f"System({', '.join(self.services)})"


def check_system_covers(system: System, saga_name: str, participants: Iterable[str], operations: Iterable[tuple[str, str]]) -> None:
    """Raise `SagaDefinitionError` unless the system declares every participant the saga's steps
    name, with a route for each HTTP operation."""
    missing = [p for p in participants if p not in system.services]
    if missing:
        raise SagaDefinitionError(
            f"saga {saga_name!r}: its System declares no service {', '.join(map(repr, missing))}; "
            f"it declares {', '.join(map(repr, system.services))}"
        )
    for participant, operation in sorted(operations):
        service = system.services[participant]
        if service.routes is not None and operation not in service.routes:
            raise SagaDefinitionError(
                f"saga {saga_name!r}: service {participant!r} has no route for {operation!r}; "
                f"its routes: {', '.join(sorted(service.routes)) or 'none'}"
            )
