"""Runtimes: where a system's services live. ``sim`` (their Python models), ``asgi`` (their apps in
this process, through httpx), ``process`` (each a command serving HTTP on 127.0.0.1), ``container``
(each in a container; needs a Docker engine). `place` gives the saga whose participants are built,
every execution, from the services placed on the runtime asked for; the same declaration serves
every runtime.

A service is placed once per Python process and runtime, on first use, and shared by every
execution and saga that uses it; `stop_services` stops them (at interpreter exit at the latest)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .._saga import Saga
from .._system import Service, System
from ..errors import OptionError

RUNTIMES = ("sim", "asgi", "process", "container")

__all__ = ["RUNTIMES", "check_runtime", "place", "stop_services"]


def check_runtime(runtime: object) -> str:
    if runtime not in RUNTIMES:
        raise OptionError(f"runtime {runtime!r} does not exist; choose from: {', '.join(RUNTIMES)}")
    return str(runtime)


class _Placements:
    """The services placed in this Python process, by (service, runtime)."""

    def __init__(self) -> None:
        self._placed: dict[tuple[int, str], tuple[Service, Any]] = {}
        self._lock = threading.Lock()
        self._containers: Any = None

    def get(self, service: Service, runtime: str) -> Any:
        key = (id(service), runtime)
        with self._lock:
            found = self._placed.get(key)
            if found is None:
                found = (service, self._make(service, runtime))  # the service is kept: its id stays its own
                self._placed[key] = found
            return found[1]

    def _make(self, service: Service, runtime: str) -> Any:
        if runtime == "asgi":
            from ._inprocess import InProcessService

            return InProcessService(service)
        if runtime == "process":
            from ._process import ProcessService

            return ProcessService(service)
        from ._container import ContainerService, ContainerSessionHolder

        if self._containers is None:
            self._containers = ContainerSessionHolder()
        return ContainerService(service, self._containers.get())

    def stop(self) -> None:
        with self._lock:
            placed = [p for _, p in self._placed.values()]
            self._placed.clear()
            containers, self._containers = self._containers, None
        for service in placed:
            service.close()
        if containers is not None:
            containers.close()


_placements = _Placements()


def stop_services() -> None:
    """Stop every service this process placed on a runtime (processes, containers, apps)."""
    _placements.stop()


def place(saga: Saga, runtime: str) -> Saga:
    """``saga`` with its participants on ``runtime``: for a saga whose participants are a
    `System`, the saga that builds them there every execution; a saga of plain participants runs
    on ``sim`` only."""
    if not isinstance(saga, Saga):
        raise OptionError(f"expected a saga_verify.Saga, got {type(saga).__name__}")
    runtime = check_runtime(runtime)
    system = saga.participants
    if not isinstance(system, System):
        if runtime == "sim":
            return saga
        raise OptionError(
            f"saga {saga.name!r} builds its participants itself, so it runs on sim only; to run it on "
            f"{runtime!r}, declare its services with saga_verify.System and give that as participants"
        )
    _check_can_run(saga, system, runtime)
    return replace(saga, participants=_participants(saga, system, runtime))


def _check_can_run(saga: Saga, system: System, runtime: str) -> None:
    for name in saga.participant_names:
        service = system[name]
        if runtime not in service.runtimes:
            raise OptionError(
                f"saga {saga.name!r}: service {name!r} cannot run on {runtime!r}; it is declared for "
                f"{', '.join(service.runtimes)} (give it {_WHAT_RUNS[runtime]})"
            )
    if runtime == "container":
        from ..containers import engine_problem

        problem = engine_problem()
        if problem is not None:
            raise OptionError(f"runtime 'container' needs a Docker engine: {problem}")


_WHAT_RUNS = {
    "sim": "a model or an app",
    "asgi": "an app factory",
    "process": "a command, or its app as 'module:factory'",
    "container": "an image or a dockerfile",
}


def _participants(saga: Saga, system: System, runtime: str) -> Callable[[], dict[str, object]]:
    from ..systems._remote import ExecutionLink, ServiceSetupError

    asynchronous = saga.is_async
    # Looked up once per placed saga, not per execution: under ``sim`` a service with a model is
    # a fresh model object every execution, and that is all an execution needs of it.
    services = tuple(
        (name, service, service.model if runtime == "sim" else None)
        for name, service in ((name, system[name]) for name in saga.participant_names)
    )

    def build() -> dict[str, object]:
        made: dict[str, object] = {}
        for name, service, model in services:
            if model is not None:
                made[name] = model()
                continue
            try:
                placed = _placements.get(service, "asgi" if runtime == "sim" else runtime)
            except ServiceSetupError:
                # The search ends here: whatever it started for it is stopped, not left running.
                stop_services()
                raise
            made[name] = ExecutionLink(placed, name, asynchronous).handle()
        return made

    return build
