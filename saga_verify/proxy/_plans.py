"""A fault plan played at the fault proxies: the black-box mode.

The simulated world and the runtimes built on it run the saga in the test process, so a plan
decides every call the saga makes. A saga that runs inside a service of its own (the order
service in its container) cannot be driven that way: its calls leave it on the wire. Here the
proxies in front of its participants decide instead. Each proxy numbers the calls of each
operation (``payment.charge#1``, ``#2``, ...) from the moment the plan is installed, maps the
request to its operation by method and path (`routes_from_openapi` reads them from the
participant's OpenAPI document, the operationIds naming the operations), and plays the plan's
fault there, in real time:

========== ================================================================================
fail       `DropRequest`: not delivered, the connection ends
timeout    `Stall`: not delivered, the caller waits out its own timeout
lose-reply `DropResponse`: applied, the connection ends without a reply
crash      `DropResponse` whose ``then`` restarts the participant (killed after applying)
outage     `DropRequest` for this attempt and every later one of the operation
refuse     the participant's ``refuse`` hook, then `Pass`
duplicate  `Duplicate` with its lag scaled to real seconds
delay      `Delay` with its seconds scaled
pause      the participant's ``pause`` hook, then `Pass`; ``unpause`` once its seconds (scaled)
           have passed. Calls arriving meanwhile pass into the frozen participant, whatever
           else the plan says about them, as in the simulation
coordinator-crash-before
           `Stall`, and the ``coordinator`` hook kills the service running the saga and starts
           it again: the request never reaches the participant, and the saga's own service
           recovers from its store
coordinator-crash-after
           `DropResponse` whose ``then`` is the ``coordinator`` hook: applied, and the service
           running the saga is killed before the reply reaches it, then started again
========== ================================================================================

A ``drop`` (an event the participant sends) and a ``switch`` (between actors of one execution)
have no request at the proxies to play them on: a plan holding one is refused up front.

Virtual seconds become real ones by ``scale``: the real call timeout of the saga under test
over its ``call_timeout``, so a "late" fault (thirty call timeouts) lands after the saga has
moved on here as it does in simulation. The outcome is real-time, so it is not byte-for-byte
repeatable the way a simulated execution is; judge it by the services' own state (their
ledgers or events), not by a trace.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._world import plan_chooser
from ..errors import OptionError, PlanError
from ..faults._kinds import (
    COORDINATOR_CRASHES,
    CoordinatorCrashAfter,
    Crash,
    Delay,
    DeliveryPoint,
    Duplicate,
    Fault,
    Pause,
    Refuse,
)
from ..faults._plan import FaultPlan
from . import _actions as proxy_actions
from ._actions import Decide, DropRequest, DropResponse, Pass, ProxiedRequest, ProxyAction, Stall
from ._proxy import FaultProxy

__all__ = ["AppliedFault", "PlanAtProxies", "ProxiedService", "routes_from_openapi"]

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class ProxiedService(Protocol):
    """A participant behind its fault proxy (a `saga_verify.containers.ContainerParticipant` is
    one). ``restart``, ``pause`` and ``unpause`` are needed only by plans that crash or pause it."""

    @property
    def proxy(self) -> FaultProxy: ...


@dataclass(frozen=True)
class AppliedFault:
    """A fault of the plan as a proxy played it."""

    fault: Fault
    """The plan's fault (for an outage, the fault itself at each attempt it failed)."""
    attempt: int
    """The attempt it hit: the fault's own, or a later one for an outage."""
    seq: int
    """The request's number on its proxy (see `ProxyRecord.seq`)."""
    action: str
    """What the proxy did, as text (``"drop-response"``, ``"pause then pass"``)."""


Routes = Mapping[str, Mapping[tuple[str, str], str]]
#: Longest a call waits for a crashed participant to be back, in seconds.
_RESTART_WAIT = 120.0


def routes_from_openapi(document: Mapping[str, Any] | str | Path) -> dict[tuple[str, str], str]:
    """``{(METHOD, path template): operationId}`` of an OpenAPI document (a mapping, or the path
    of a YAML or JSON file). Paths may hold templates (``/orders/{order_id}``)."""
    if not isinstance(document, Mapping):
        path = Path(document)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise OptionError(f"cannot read the OpenAPI document {str(path)!r}: {exc}") from None
        loaded = _load_document(text, str(path))
        if not isinstance(loaded, Mapping):
            raise OptionError(f"{str(path)!r} is not an OpenAPI document (no mapping at its top)")
        document = loaded
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        raise OptionError("the OpenAPI document has no 'paths' mapping")
    routes: dict[tuple[str, str], str] = {}
    for path_text, item in paths.items():
        if not isinstance(item, Mapping):
            continue
        for method in _METHODS:
            operation = item.get(method)
            if isinstance(operation, Mapping) and isinstance(operation.get("operationId"), str):
                routes[(method.upper(), str(path_text))] = operation["operationId"]
    if not routes:
        raise OptionError("the OpenAPI document names no operation (no operationId under 'paths')")
    return routes


def _load_document(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise OptionError(f"{name!r} is not JSON, and reading YAML needs PyYAML (pip install pyyaml)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OptionError(f"cannot read the OpenAPI document {name!r}: {exc}") from None


def _hook(service: ProxiedService, name: str) -> Callable[[], object]:
    """The service's ``restart``, ``pause`` or ``unpause`` (checked to be there when the plan was)."""
    hook: Callable[[], object] = getattr(service, name)
    return hook


def _route_matcher(routes: Mapping[tuple[str, str], str]) -> Callable[[str, str], str | None]:
    exact: dict[tuple[str, str], str] = {}
    templated: list[tuple[str, re.Pattern[str], str]] = []
    for (method, path), operation in routes.items():
        if "{" in path:
            pattern = re.compile("^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(path)) + "$")
            templated.append((method.upper(), pattern, operation))
        else:
            exact[(method.upper(), path)] = operation

    def match(method: str, target: str) -> str | None:
        path = target.split("?", 1)[0]
        found = exact.get((method, path))
        if found is None:
            found = next((op for m, pattern, op in templated if m == method and pattern.match(path)), None)
        return found

    return match


class PlanAtProxies:
    """Play ``plan`` at the proxies of ``services`` (participant name -> a `ProxiedService`).

    ``routes`` says, per participant, which operation each request is: ``{(method, path):
    operation}`` (see `routes_from_openapi`). ``scale`` turns the plan's virtual seconds into real
    ones. ``refuse`` gives, per participant, a function that makes it refuse its next request
    (only plans with ``refuse`` need it). ``coordinator`` kills the service that runs the saga
    and starts it again (only plans that crash the coordinator need it; it blocks until the
    service is back). Use it as a context manager: it installs its decisions
    on entry and, on exit, puts the proxies' previous decisions back, thaws what it paused and
    cancels pending thaws. Everything the plan needs is checked on construction, with a
    `PlanError` naming what is missing."""

    def __init__(
        self,
        plan: FaultPlan,
        services: Mapping[str, ProxiedService],
        routes: Routes,
        *,
        scale: float = 1.0,
        refuse: Mapping[str, Callable[[], object]] | None = None,
        coordinator: Callable[[], object] | None = None,
    ) -> None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0 or scale == float("inf"):
            raise OptionError(f"scale must be a positive number of real seconds per virtual second, got {scale!r}")
        self.plan = plan
        self.scale = float(scale)
        self._services = dict(services)
        self._refuse = dict(refuse or {})
        self._coordinator = coordinator
        self._restarting = threading.Lock()
        self._match = {name: _route_matcher(r) for name, r in routes.items()}
        self._check(routes)
        self._choose = plan_chooser(plan)  # as the simulated world decides
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str], int] = {}
        self._frozen: set[str] = set()
        self._restarted: dict[str, threading.Event] = {}
        #: Pending thaws, and coordinator restarts under way: what `settle` waits for.
        self._timers: list[threading.Thread] = []
        self._errors: list[str] = []
        self._previous: dict[str, Decide] = {}
        self.applied: list[AppliedFault] = []
        """The faults played so far, in the order the proxies played them."""

    def _check(self, routes: Routes) -> None:
        for fault in self.plan.faults:
            name, operation = fault.at.participant, fault.at.operation
            where = str(fault)
            if fault.kind in ("drop", "switch"):
                what = "an event a participant sends" if fault.kind == "drop" else "a hand-over between actors of one execution"
                raise PlanError(f"{where}: a {fault.kind} is {what}, not a request: the proxies cannot play it")
            if isinstance(fault, COORDINATOR_CRASHES) and self._coordinator is None:
                raise PlanError(f"{where}: give coordinator=<function that kills the saga's service and starts it again>")
            if name not in self._services:
                known = ", ".join(sorted(self._services)) or "none"
                raise PlanError(f"{where}: no proxied service is called {name!r} (the services: {known})")
            if operation not in set(routes.get(name, {}).values()):
                raise PlanError(f"{where}: the routes of {name!r} name no operation {operation!r}")
            service = self._services[name]
            needs = {Crash: ("restart",), Pause: ("pause", "unpause")}.get(type(fault), ())
            missing = [hook for hook in needs if not callable(getattr(service, hook, None))]
            if missing:
                raise PlanError(f"{where}: {name!r} cannot {' or '.join(missing)} (it has no {missing[0]}())")
            if isinstance(fault, Refuse) and name not in self._refuse:
                raise PlanError(f"{where}: give refuse={{{name!r}: <function that makes it refuse>}}")

    # -- installing ------------------------------------------------------------------------------
    def __enter__(self) -> PlanAtProxies:
        for name, service in self._services.items():
            self._previous[name] = service.proxy.decide
            service.proxy.decide = self._decide_for(name)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Put the previous decisions back, cancel pending thaws and thaw what is still frozen."""
        for name, decide in self._previous.items():
            self._services[name].proxy.decide = decide
        self._previous.clear()
        with self._lock:
            timers, self._timers = self._timers, []
            frozen, self._frozen = set(self._frozen), set()
        for timer in timers:
            if isinstance(timer, threading.Timer):
                timer.cancel()  # a thaw not yet due; a coordinator restart under way runs on
        for name in sorted(frozen):
            _hook(self._services[name], "unpause")()

    def settle(self, timeout: float) -> bool:
        """Wait until every pause has thawed and nothing is in flight in any proxy (held requests
        landed, late copies sent); False if that takes longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                timers = list(self._timers)
            for timer in timers:
                timer.join(max(0.0, deadline - time.monotonic()))
                if timer.is_alive():
                    return False
            if not all(s.proxy.settle(max(0.0, deadline - time.monotonic())) for s in self._services.values()):
                return False
            with self._lock:
                if len(self._timers) == len(timers):
                    return True
            # A request that landed meanwhile started a thaw or a restart: wait for that too.

    @property
    def errors(self) -> list[str]:
        """What went wrong playing the plan (a thaw that failed); empty when all went to plan."""
        with self._lock:
            return list(self._errors)

    def missed(self) -> list[Fault]:
        """The plan's faults no request reached (the saga never made that call)."""
        hit = {a.fault for a in self.applied}
        return [f for f in self.plan.faults if f not in hit]

    # -- deciding --------------------------------------------------------------------------------
    def _decide_for(self, name: str) -> Decide:
        match = self._match.get(name)

        def decide(request: ProxiedRequest) -> ProxyAction:
            operation = match(request.method, request.path) if match is not None else None
            if operation is None:
                return Pass()  # not a saga operation (health checks, inspection)
            restarted = self._restarted.get(name)
            if restarted is not None and not restarted.is_set():
                # A crash is applied, then the participant is back (in simulation, at once): a
                # call that arrives while it restarts waits for it here, holding up this proxy
                # only, rather than meeting the dead one (which the proxy would answer 502).
                restarted.wait(_RESTART_WAIT)
            with self._lock:
                attempt = self._calls.get((name, operation), 0) + 1
                self._calls[(name, operation)] = attempt
                if name in self._frozen:
                    return Pass()  # into the frozen participant: it waits there
                fault = self._choose(DeliveryPoint(name, operation), attempt)
                if fault is None:
                    return Pass()
                action, text = self._action(name, fault)
                self.applied.append(AppliedFault(fault, attempt, request.seq, text))
            return action

        return decide

    def _action(self, name: str, fault: Fault) -> tuple[ProxyAction, str]:
        """The proxy action that plays ``fault`` (called under the lock)."""
        service = self._services[name]
        kind = fault.kind
        if kind in ("fail", "outage"):
            return DropRequest(), "drop-request"
        if kind == "timeout":
            return Stall(), "stall"
        if kind == "lose-reply":
            return DropResponse(), "drop-response"
        if kind == "crash":
            restarted = self._restarted[name] = threading.Event()

            def restart() -> None:
                try:
                    _hook(service, "restart")()
                finally:
                    restarted.set()

            return DropResponse(then=restart), "drop-response then restart"
        if isinstance(fault, COORDINATOR_CRASHES):
            if isinstance(fault, CoordinatorCrashAfter):
                return DropResponse(then=self._restart_coordinator), "drop-response then restart the coordinator"
            # The request is held, never sent on, while the saga's service dies and comes back.
            restarting = threading.Thread(target=self._restart_coordinator, name="coordinator-restart", daemon=True)
            self._timers.append(restarting)
            restarting.start()
            return Stall(), "stall then restart the coordinator"
        if kind == "refuse":
            self._refuse[name]()
            return Pass(), "refuse then pass"
        if isinstance(fault, Duplicate):
            action: ProxyAction = proxy_actions.Duplicate(lag=fault.lag * self.scale)
            return action, str(action)
        if isinstance(fault, Delay):
            action = proxy_actions.Delay(fault.seconds * self.scale)
            return action, str(action)
        if isinstance(fault, Pause):
            _hook(service, "pause")()
            self._frozen.add(name)
            timer = threading.Timer(fault.seconds * self.scale, self._thaw, (name,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
            return Pass(), "pause then pass"
        raise PlanError(f"{fault}: no proxy action plays a {kind!r} fault")  # pragma: no cover

    def _restart_coordinator(self) -> None:
        # One restart at a time: the coordinator that comes back recovers at once, and may reach
        # the plan's next crash before the restart that started it has seen it ready.
        with self._restarting:
            try:
                assert self._coordinator is not None  # checked with the plan
                self._coordinator()
            except Exception as exc:  # reported through errors: a thread has no one to raise to
                with self._lock:
                    self._errors.append(f"could not restart the coordinator: {exc}")

    def _thaw(self, name: str) -> None:
        with self._lock:
            if name not in self._frozen:
                return
            self._frozen.discard(name)
        try:
            _hook(self._services[name], "unpause")()
        except Exception as exc:  # reported through errors: a timer thread has no one to raise to
            with self._lock:
                self._errors.append(f"could not thaw {name}: {exc}")
