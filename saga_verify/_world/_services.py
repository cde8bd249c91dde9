"""What a saga sees of the world: ``services.<participant>`` and its operations (endpoints, each
with its call counter), the services object with the clock, ``retry`` and ``wait_for``, and the
`Transport` protocol, the harness's side of the transport seam that every call goes through."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from functools import partial
from typing import Any, Protocol

from .._saga import Saga, Step
from ..errors import SagaDefinitionError
from ..faults._kinds import Fault
from . import _retry
from ._clock import VirtualClock
from ._events import Events

Thunk = Callable[[], Any]
ErrorFactory = Callable[[str, str], BaseException]


class Transport(Protocol):
    """What an endpoint needs of its world (`saga_verify._world.World`): which fault a call meets,
    and the delivery of the call, run by a sync or an async driver."""

    saga: Saga
    events: Events | None
    pending: list[Any]

    def fail(self, error: BaseException) -> BaseException: ...

    def decide(self, ep: Endpoint) -> tuple[int, Fault | None]: ...

    def apply_now(
        self, ep: Endpoint, attempt: int, key: str | None, request: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...

    def deliver(self, ep: Endpoint, thunk: Thunk, key: str | None, request: Any) -> Generator[Thunk, Any, Any]: ...

    def deliver_decided(
        self, ep: Endpoint, attempt: int, fault: Fault | None, thunk: Thunk, key: str | None, request: Any
    ) -> Generator[Thunk, Any, Any]: ...

    def drive(self, gen: Generator[Thunk, Any, Any]) -> Any: ...

    async def adrive(self, gen: Generator[Thunk, Any, Any]) -> Any: ...


def _same(value: Any) -> Any:
    return value


def plain_errors(kind: str, message: str) -> BaseException:
    """The errors a plain-Python caller sees: builtins, so the saga needs nothing of ours."""
    if kind == "timeout":
        return TimeoutError(message)
    if kind == "reset":
        return ConnectionResetError(message)
    return ConnectionRefusedError(message)


class Endpoint:
    """One (participant, operation) of one world, with its call counter."""

    __slots__ = ("calls", "fn", "is_async", "operation", "participant", "slot", "step", "timeout", "world")

    #: Builds the error the caller sees for an injected failure.
    errors: ErrorFactory = staticmethod(plain_errors)
    #: Turns a participant's reply into what the trace records.
    summarize: Callable[[Any], Any] = staticmethod(_same)

    def __init__(self, world: Transport, step: Step, operation: str, slot: int, fn: Callable[..., Any] | None, is_async: bool = False) -> None:
        self.world = world
        self.participant = step.participant
        self.operation = operation
        self.step = step
        #: Index of this operation in the saga's sorted operations (for searches).
        self.slot = slot
        self.calls = 0
        self.fn = fn
        #: Whether the participant's method is ``async def`` (the caller then awaits the call).
        self.is_async = is_async
        #: Virtual seconds the caller waits for a reply: the step's ``timeout=``, or the saga's.
        self.timeout = step.timeout if step.timeout is not None else world.saga.call_timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.fn
        world = self.world
        if fn is None:
            raise world.fail(SagaDefinitionError(f"{self.participant}.{self.operation} is an HTTP endpoint; call it through its client"))
        if self.is_async:
            return self._call_async(args, kwargs)
        request: Any = kwargs if not args else {"args": list(args), **kwargs}
        key = kwargs.get("idempotency_key")
        attempt, fault = world.decide(self)
        if fault is None and not world.pending:
            return world.apply_now(self, attempt, key, request, fn, args, kwargs)
        thunk = partial(fn, *args, **kwargs)
        return world.drive(world.deliver_decided(self, attempt, fault, thunk, key, request))

    async def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A call of an ``async def`` participant method: the caller awaits it, and other tasks of
        the saga run while the participant awaits."""
        assert self.fn is not None
        world = self.world
        request: Any = kwargs if not args else {"args": list(args), **kwargs}
        thunk = partial(self.fn, *args, **kwargs)
        return await world.adrive(world.deliver(self, thunk, kwargs.get("idempotency_key"), request))

    def __repr__(self) -> str:
        return f"<endpoint {self.participant}.{self.operation}>"


class ClientEndpoint(Endpoint):
    """An endpoint reached through a client of the participant's own (httpx): its errors and
    replies are the client's."""

    __slots__ = ("errors", "summarize")


class ParticipantProxy:
    """What the saga sees as ``services.<participant>``: its declared operations, through the harness."""

    def __init__(self, name: str, endpoints: Mapping[str, Endpoint], world: Transport | None = None) -> None:
        self.__dict__.update(endpoints)
        self.__dict__["_name"] = name
        self.__dict__["_world"] = world

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # copy, pickle and friends probe for these
        declared = sorted(k for k in self.__dict__ if not k.startswith("_"))
        error = SagaDefinitionError(
            f"the saga called {self._name}.{name}, which no step declares; declared operations of "
            f"{self._name}: {', '.join(declared)}. Add it to a Step (as action or compensation)."
        )
        raise error if self._world is None else self._world.fail(error)


class Services:
    """The saga's view of the world: ``services.<participant>``, ``services.clock``, the saga's
    ``services.deadline``, and the means to wait on virtual time: ``services.retry`` (a step's
    operation retried within its budget, with back-off) and ``services.wait_for`` (an event, with
    a deadline)."""

    def __init__(self, proxies: Mapping[str, Any], clock: VirtualClock, world: Transport | None = None, store: Any = None) -> None:
        self.__dict__.update(proxies)
        self.clock = clock
        #: Virtual seconds from the start by which the saga must have settled, or None.
        self.deadline: float | None = world.saga.deadline if world is not None else None
        self.__dict__["_world"] = world
        if store is not None:
            #: The saga's durable store (``Saga(durable=...)``): what survives a coordinator crash.
            self.__dict__["store"] = store

    def retry(self, call: Any, /, *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)`` (an operation: ``services.payment.charge``), called again
        after each transport error within its step's ``retries=`` budget, waiting a bounded
        exponential back-off with jitter from the plan's seed (``backoff=``, ``max_backoff=``);
        a forward step stops retrying where the next wait would pass the saga's deadline. The
        last error is raised when it gives up; a reply, whatever it says, is returned."""
        return _retry.retry(self._world, call, args, kwargs)

    async def aretry(self, call: Any, /, *args: Any, **kwargs: Any) -> Any:
        """`retry` for an ``async def`` saga."""
        return await _retry.aretry(self._world, call, args, kwargs)

    def wait_for(self, event: str, timeout: float | None = None) -> Any:
        """The next arrival of ``event`` (``"payment.paid"``, declared in a Step's ``events=``)
        that the saga has not taken yet: its payload. Waits on virtual time at most ``timeout``
        seconds and raises ``TimeoutError`` after that; with no timeout it waits for ever (an
        execution in which nothing will ever send it is stopped, and does not terminate)."""
        world = self._world
        if world.events is None:
            raise world.fail(
                SagaDefinitionError(
                    f"the saga waits for event {event!r}, but saga {world.saga.name!r} declares no events; "
                    "name them in a Step's events= (e.g. Step('payment', 'charge', 'refund', events='paid'))"
                )
            )
        return world.events.wait_for(event, timeout)

    async def await_for(self, event: str, timeout: float | None = None) -> Any:
        """`wait_for` for an ``async def`` saga: its other tasks run while it waits."""
        world = self._world
        if world.events is None:
            self.wait_for(event, timeout)  # raises the same definition error
        return await world.events.await_for(event, timeout)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # copy, pickle and friends probe for these
        known = sorted(k for k in self.__dict__ if k not in ("clock", "deadline", "store", "_world"))
        error = SagaDefinitionError(f"the saga asked for services.{name}; this saga's participants are: {', '.join(known)}")
        raise error if self._world is None else self._world.fail(error)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)
