"""A team's own NATS services, verified unchanged: each service is plain async Python holding a
nats-py client; it connects through a proxy the harness owns (`_wire`), so every publish by it and
every JetStream delivery to it is a delivery point of the plan (``stock.publish#1``,
``payment.charge#2``), and the services' state is judged once the server is quiet.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from .._saga import Saga, Step
from .._world._current import CURRENT
from ..errors import SagaDefinitionError, SagaVerifyError
from ._background import start_on
from ._errors import BrokerError, BrokerUnavailableError
from ._wire import Hub, Intercepted, ServiceProxy, nak

T = TypeVar("T")

#: The operation through which each service publishes: ``stock.publish#1``.
PUBLISH = "publish"
_NAME_RE = re.compile(r"^[A-Za-z_][\w-]*$")


@dataclass(frozen=True, eq=False)
class NatsServices:
    """Services written with the NATS client (nats-py), run against a real server with the plan's
    faults on the wire between each of them and the server.

    Each service is an object with ``async start(url)``: it connects with ``nats.connect(url)``
    (the address of its own proxy, never the server's), creates its subscriptions and returns;
    ``async stop()``, if it has one, closes its client. ``begin(services)`` (async) begins the
    saga, e.g. the order service publishing ``order.placed``. ``consumers`` names, per service,
    the durable JetStream consumers it reads from: each delivery from one is a delivery point
    ``<service>.<consumer>#n``; each publish by a service is ``<service>.publish#n``.

    The server is the harness's own (`open_nats_server`): before each execution every stream on
    it is deleted and ``setup(js)`` (async) creates what the services expect (their streams).
    ``saga`` is the `Saga` that `run_plan`, `replay`, `explore` and `verify` take; invariants
    read each service as ``execution.participants[name]`` (its attributes are the service's)."""

    name: str
    """Shown in reports."""
    url: str
    """The NATS server (with JetStream) that the services' proxies connect to."""
    services: Callable[[], Mapping[str, object]]
    """Builds fresh services for one execution: name -> object with ``async start(url)``."""
    consumers: Mapping[str, Sequence[str]]
    """Per service, the durable consumer names whose deliveries the plan may disturb."""
    begin: Callable[[Mapping[str, object]], Awaitable[Any]]
    """Begins the saga instance: ``await begin(services)``."""
    setup: Callable[[Any], Awaitable[Any]] | None = None
    """``await setup(js)`` with a JetStream context of the harness's own connection, before the
    services start: create the streams (and consumers) the services expect."""
    outcome: Callable[[Mapping[str, object]], object] | None = None
    """How the saga stands, read from the services once the broker is quiet; None: ``completed``."""
    invariants: Sequence[Any] | None = None
    """What must hold of the services' state at quiescence."""
    connect_within: float = 10.0
    """Real seconds a service's ``start``, ``stop`` and the server's set-up may take."""
    answer_within: float = 10.0
    """Real seconds a service may take to answer a delivery (ack, nak, term) before it is an
    error: a callback that raises is reported by nats-py only to the client's ``error_cb``, and
    its message would otherwise come back for ever."""
    settle_within: float = 120.0
    """Real seconds an execution may take to become quiet."""
    max_deliveries: int = 400
    """An execution with more frames at delivery points than this has not terminated."""
    correlation_id: str | None = None
    """The saga instance, in reports; defaults to the name."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SagaDefinitionError(f"NatsServices name must be non-empty text, got {self.name!r}")
        if not isinstance(self.url, str) or not self.url.startswith("nats://"):
            raise SagaDefinitionError(f"NatsServices {self.name!r}: url must read nats://host:port, got {self.url!r}")
        if not callable(self.services) or not callable(self.begin):
            raise SagaDefinitionError(f"NatsServices {self.name!r}: services= and begin= must be callable")
        for label, hook in (("setup", self.setup), ("outcome", self.outcome)):
            if hook is not None and not callable(hook):
                raise SagaDefinitionError(f"NatsServices {self.name!r}: {label}= must be callable or None")
        if not isinstance(self.consumers, Mapping) or not self.consumers:
            raise SagaDefinitionError(f"NatsServices {self.name!r}: consumers= maps each service to its durable consumers' names")
        frozen: dict[str, tuple[str, ...]] = {}
        for service, names in self.consumers.items():
            if isinstance(names, str) or not isinstance(names, Sequence):
                raise SagaDefinitionError(f"NatsServices {self.name!r}: consumers[{service!r}] must be a list of names, got {names!r}")
            for value in (service, *names):
                if not isinstance(value, str) or not _NAME_RE.match(value) or value == PUBLISH:
                    raise SagaDefinitionError(
                        f"NatsServices {self.name!r}: {value!r} is not a service or consumer name here (a plain name like "
                        f"'stock' or 'reserve', not {PUBLISH!r})"
                    )
            frozen[service] = tuple(names)
        object.__setattr__(self, "consumers", frozen)
        for option, seconds in (("connect_within", self.connect_within), ("answer_within", self.answer_within), ("settle_within", self.settle_within)):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
                raise SagaDefinitionError(f"NatsServices {self.name!r}: {option} must be a positive number of seconds, got {seconds!r}")

    @cached_property
    def saga(self) -> Saga:
        """One step per service's publish and per consumer, each a delivery point."""
        steps = []
        for service, names in self.consumers.items():
            steps.append(Step(service, PUBLISH, depends_on=()))
            steps += [Step(service, consumer, depends_on=()) for consumer in names]
        consumers = self.consumers
        assert isinstance(consumers, dict)
        return Saga(
            name=self.name,
            steps=steps,
            participants=lambda: {service: Port(service, names) for service, names in consumers.items()},
            run=_Execution.runner(self),
            correlation_id=self.correlation_id,
            invariants=self.invariants,
            max_deliveries=self.max_deliveries,
            # The services run on real time against a real server: no virtual library clocks.
            virtual_time=False,
            real_time=True,
            max_real_seconds=self.settle_within + 4 * self.connect_within + 30,
        )


class Port:
    """A service as the world sees it: its publish and its consumers are operations whose calls
    send a frame on (the plan decides how often); every other attribute is the service's own."""

    def __init__(self, service: str, consumers: Sequence[str]) -> None:
        self._service_name = service
        self._service: object | None = None
        self.publish = self._forward
        for consumer in consumers:
            setattr(self, consumer, self._forward)

    def _forward(self, item: Intercepted) -> str:
        if item.deciding:
            item.forwarded += 1  # the driver sends it once it knows whether its answer is lost
        else:
            item.forward()  # a copy the network held lands now
        return "sent on"

    def __getattr__(self, name: str) -> Any:
        service = self.__dict__.get("_service")
        if service is None or name.startswith("_") or name == "ledger":
            raise AttributeError(name)
        return getattr(service, name)

    def __repr__(self) -> str:
        return f"<{self._service_name} on NATS>"


class _Execution:
    """One execution: a fresh event loop in a thread of its own for the services, their proxies
    and the harness's connection; the execution's thread decides each intercepted frame."""

    @staticmethod
    def runner(definition: NatsServices) -> Callable[[Any, Any], Any]:
        def run(services: Any, input: Any) -> Any:
            return _Execution(definition, services).run()

        return run

    def __init__(self, definition: NatsServices, services: Any) -> None:
        self.definition = definition
        self.services = services
        self.world = CURRENT.get()
        host, _, port = definition.url.removeprefix("nats://").rpartition(":")
        self.upstream = (host or "127.0.0.1", int(port))
        self.hub = Hub({s: frozenset(c) for s, c in definition.consumers.items()})
        self.proxies: dict[str, ServiceProxy] = {}
        self.objects: dict[str, object] = {}
        self.admin: Any = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"saga-verify-nats-{definition.name}", daemon=True)

    # -- running coroutines on the services' loop ------------------------------------------------
    def submit(self, make: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
        """Start a coroutine on the loop, in an empty context (the execution's stays out of it)."""
        return start_on(self.loop, make)

    def wait(self, future: concurrent.futures.Future[T], within: float, what: str) -> T:
        """Wait for ``future``, deciding the frames that arrive meanwhile (what it waits for may
        publish or be delivered to); a `BrokerError` naming ``what`` after ``within`` seconds."""
        deadline = time.monotonic() + within
        while not future.done():
            self.serve(0.01)
            if time.monotonic() >= deadline and not future.done():
                future.cancel()
                raise BrokerError(f"NatsServices {self.definition.name!r}: {what} did not finish within {within:g} s")
        return future.result()

    # -- the execution ---------------------------------------------------------------------------
    def run(self) -> object:
        definition = self.definition
        self.thread.start()
        try:
            self.wait(self.submit(self._prepare), definition.connect_within * 3, f"connecting to the server at {definition.url} and its setup")
            built = definition.services()
            if not isinstance(built, Mapping) or set(built) != set(definition.consumers):
                raise SagaDefinitionError(
                    f"NatsServices {definition.name!r}: services() must return one object per service named in consumers= "
                    f"({', '.join(sorted(definition.consumers))}), got {sorted(built) if isinstance(built, Mapping) else built!r}"
                )
            self.objects = dict(built)
            for name, obj in self.objects.items():
                port = self.world.participants[name] if self.world is not None else None
                if isinstance(port, Port):
                    port._service = obj
                self._start(name, obj)
            begun = self.submit(lambda: _awaited(definition.begin(self.objects), "begin"))
            self.settle(begun)
            if isinstance(begun.exception(), SagaVerifyError):
                raise begun.exception()  # type: ignore[misc]  # a definition error: not the saga's doing
            if begun.exception() is not None and self.world is not None:
                exc = begun.exception()
                # The client that began the saga saw an error and gave up; what was done stays done.
                self.world.note(self.world.clock._now, "start-failed", f"begin failed: {type(exc).__name__}: {exc}")
            return definition.outcome(self.objects) if definition.outcome is not None else "completed"
        finally:
            self._close()

    def _start(self, name: str, obj: object) -> None:
        start = getattr(obj, "start", None)
        if not callable(start):
            raise SagaDefinitionError(f"NatsServices {self.definition.name!r}: service {name!r} has no start(url) method")
        proxy = self.proxies[name]
        try:
            self.wait(self.submit(lambda: _awaited(start(proxy.url), f"{name}.start")), self.definition.connect_within, f"service {name!r}'s start({proxy.url!r})")
        except SagaVerifyError:
            raise
        except Exception as exc:
            raise BrokerError(f"NatsServices {self.definition.name!r}: service {name!r}'s start({proxy.url!r}) raised {type(exc).__name__}: {exc}") from exc
        if not proxy.connections:
            raise BrokerError(
                f"NatsServices {self.definition.name!r}: service {name!r} did not connect through {proxy.url}, the address its "
                "start(url) was given: it never connected, or connected elsewhere (the server's own address?), so the plan "
                "cannot reach its messages"
            )

    async def _prepare(self) -> None:
        nats = _client()
        try:
            self.admin = await nats.connect(self.definition.url, connect_timeout=self.definition.connect_within, allow_reconnect=False, max_reconnect_attempts=1)
        except Exception as exc:
            raise BrokerError(f"cannot reach the NATS server at {self.definition.url}: {type(exc).__name__}: {exc}") from exc
        js = self.admin.jetstream()
        for info in await js.streams_info():
            await js.delete_stream(info.config.name)  # the server is the harness's: each execution starts empty
        if self.definition.setup is not None:
            try:
                await self.definition.setup(js)
            except Exception as exc:
                raise BrokerError(f"NatsServices {self.definition.name!r}: setup(js) raised {type(exc).__name__}: {exc}") from exc
        for service in self.definition.consumers:
            proxy = ServiceProxy(service, self.upstream, self.hub)
            await proxy.start()
            self.proxies[service] = proxy

    # -- deciding frames -------------------------------------------------------------------------
    def serve(self, timeout: float) -> bool:
        """Decide the next intercepted frame, if one arrives within ``timeout``; True if one did."""
        try:
            item = self.hub.waiting.get(timeout=timeout)
        except Exception:
            return False
        self.decide(item)
        return True

    def decide(self, item: Intercepted) -> None:
        hub = self.hub
        item.deciding = True
        lost = False
        try:
            getattr(getattr(self.services, item.service), item.operation)(item)
        except (TimeoutError, ConnectionError):
            lost = True  # the plan lost it, held it, or lost its answer
        except BaseException:
            item.release()
            raise
        finally:
            item.deciding = False
        copies, item.forwarded = item.forwarded, 0
        if item.kind == "publish":
            if lost and copies and item.reply is not None:
                with hub.lock:
                    hub.lost_replies.add(item.reply)  # stored by the broker; the publisher never hears so
        else:
            assert item.reply is not None
            if copies:
                with hub.lock:
                    if lost:
                        hub.lost_acks.add(item.reply)
                    hub.unanswered[item.reply] = (f"{item.service}.{item.operation}", item.subject, time.monotonic())
            else:
                # Never reached the consumer: the broker delivers it again (as after its ack wait).
                item.connection.to_server(nak(item.reply))
        for _ in range(copies):
            item.forward()
        item.release()

    def settle(self, begun: concurrent.futures.Future[Any]) -> None:
        """Decide frames until the saga's start finished and the broker is quiet (nothing pending,
        nothing unacknowledged, on two looks with nothing crossing the wire in between). What the
        plan held lands once the broker is quiet otherwise: after what follows it."""
        definition = self.definition
        world = self.world
        deadline = time.monotonic() + definition.settle_within
        quiet_since: int | None = None
        while True:
            if self.serve(0.01):
                quiet_since = None
                continue
            self._refused()
            if self._unanswered() or (world is not None and world.halted is not None):
                return
            moved = self.hub.moved
            why = self.wait(self.submit(self._busy), definition.connect_within, "asking the server what is pending")
            quiet = why is None and self.hub.waiting.empty() and moved == self.hub.moved
            if quiet and world is not None and world.pending:
                world.clock._now = max(world.clock._now, world.pending[0][0])
                world.drive(world.flush_due())
                quiet_since = None
                continue
            if quiet and begun.done():
                if quiet_since == moved:
                    return
                quiet_since = moved
                continue
            quiet_since = None
            if time.monotonic() >= deadline:
                what = why or ("the saga's begin is still running" if not begun.done() else "frames still cross the wire")
                raise BrokerError(f"NatsServices {definition.name!r} did not settle within {definition.settle_within:g} s: {what}")
            time.sleep(0.005)  # between looks at the server: what is in flight lands

    async def _busy(self) -> str | None:
        """What the server still has to deliver or hear back about, or None when it is quiet."""
        js = self.admin.jetstream()
        for stream in await js.streams_info():
            for consumer in await js.consumers_info(stream.config.name):
                if consumer.num_pending or consumer.num_ack_pending:
                    return (
                        f"consumer {consumer.name!r} of stream {stream.config.name!r} has {consumer.num_pending or 0} message(s) "
                        f"pending and {consumer.num_ack_pending or 0} unacknowledged"
                    )
        if self.hub.unanswered:
            point, subject, _ = next(iter(self.hub.unanswered.values()))
            return f"{point} has not answered its delivery of {subject!r}"
        return None

    def _refused(self) -> None:
        if self.hub.refused:
            raise BrokerError(f"NatsServices {self.definition.name!r}: {self.hub.refused[0]}")

    def _unanswered(self) -> bool:
        """Whether a delivery went unanswered too long. Without faults that is the service's
        doing (a `BrokerError`); under the plan's faults it may be their effect (a publisher that
        gives up under an outage and raises), so the execution is stopped there (halted)."""
        now = time.monotonic()
        with self.hub.lock:
            late = [entry for entry in self.hub.unanswered.values() if now - entry[2] > self.definition.answer_within]
        if not late:
            return False
        point, subject, _ = late[0]
        service = point.split(".", 1)[0]
        what = (
            f"{point} was delivered {subject!r} and service {service!r} neither acknowledged nor refused it within "
            f"{self.definition.answer_within:g} s"
        )
        world = self.world
        if world is not None and world.injected:
            world.note(world.clock._now, "stuck", f"{what}: stopped")
            world.halt(what)
            return True
        raise BrokerError(
            f"NatsServices {self.definition.name!r}: {what} (with no fault injected): its callback raised (nats-py tells "
            "only the client's error_cb) or hangs"
        )

    # -- the end -----------------------------------------------------------------------------------
    def _close(self) -> None:
        if not self.thread.is_alive():
            return
        stop = self.submit(self._stop_all)
        try:
            # Frames still in flight while the services stop are let through as they are.
            deadline = time.monotonic() + self.definition.connect_within * 2
            while not stop.done() and time.monotonic() < deadline:
                try:
                    item = self.hub.waiting.get(timeout=0.01)
                except Exception:
                    continue
                item.forward()
                item.release()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            if not self.thread.is_alive():
                self.loop.close()

    async def _stop_all(self) -> None:
        for obj in self.objects.values():
            stop = getattr(obj, "stop", None)
            if callable(stop):
                try:
                    await asyncio.wait_for(_awaited(stop(), "stop"), self.definition.connect_within)
                except Exception:
                    pass  # a service that cannot stop cleanly is closed with its proxy below
        for proxy in self.proxies.values():
            await proxy.close()
        if self.admin is not None:
            try:
                await self.admin.close()
            except Exception:
                pass  # a server already gone has nothing left to close
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


async def _awaited(value: Any, what: str) -> Any:
    if not inspect.isawaitable(value):
        raise SagaDefinitionError(f"{what} must be 'async def' (it runs on the services' event loop), it returned {value!r}")
    return await value


def _client() -> Any:
    """nats-py, imported when an execution first needs it: importing saga_verify never loads it."""
    try:
        import nats
    except ImportError as exc:
        raise BrokerUnavailableError("the NATS client is not installed: pip install 'saga-verify[broker]' (nats-py)") from exc
    return nats
