"""Coordinator crash and recovery: the fault that kills the process running the saga at a
delivery point, and the fresh coordinator that recovers from the saga's durable store.

The world keeps one coordinator at a time (among several plain-Python actors, one per actor: a
crash kills the coordinator of the actor making the call, and a fresh one of its own recovers in
its thread before the turn passes on; the others keep theirs). When a coordinator crash fault fires, the dead
coordinator's code gets `CoordinatorDied` and every call or sleep it still tries gets it again, so
nothing it does after its death reaches a participant; whatever it returns is ignored. The
harness then reopens the store (what the dead process held in memory is gone, what it committed
stays), gives a fresh coordinator fresh services over the same participants and network, and
runs the saga's ``recover`` (or ``run`` again). Each crash of a plan may hit any coordinator,
the recovering ones included.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from .._saga import Durable
from ..errors import RecoveryError, SagaVerifyError
from ..faults._kinds import COORDINATOR_CRASHES, CoordinatorCrashBefore, Fault

#: The world (`_world.World`) and its endpoints, named loosely: this module sits below the
#: module that defines them, which calls into it.
World = Any
Endpoint = Any
Thunk = Callable[[], Any]

#: The kinds this module delivers.
KINDS = frozenset(cls.kind for cls in COORDINATOR_CRASHES)

#: Outcomes of the call at which the coordinator died.
UNSENT = "unsent"
UNREAD = "unread"
CRASH_OUTCOMES = frozenset({UNSENT, UNREAD})


class CoordinatorDied(BaseException):
    """Stops the code of a coordinator that a coordinator crash killed. A BaseException, raised
    again at every call and sleep the dead coordinator still tries, so that a saga catching
    ``BaseException`` cannot go on as if it were alive."""


class StoreSeam:
    """What one coordinator sees as ``services.store``: the saga's store, through the harness.
    Once that coordinator is dead, touching it raises `CoordinatorDied`: a dead process writes
    nothing, not even from a ``finally`` block of the saga's code. Among several actors each has
    coordinators of its own: one actor's crash leaves the others' alive."""

    __slots__ = ("_actor", "_incarnation", "_world")

    def __init__(self, world: World, actor: int) -> None:
        self._world = world
        self._actor = actor
        self._incarnation = world.incarnations.get(actor, 0)

    def _alive(self) -> None:
        world = self._world
        # While a coordinator is dead its actor keeps the turn until the fresh one takes over:
        # nobody else runs then.
        if world.dead is not None or world.incarnations.get(self._actor, 0) != self._incarnation:
            raise CoordinatorDied(world.dead or "an earlier coordinator")

    def __getattr__(self, name: str) -> Any:
        self._alive()
        # The store as it is now: reopened after another actor's crash, it is the same database.
        value = getattr(self._world.store, name)
        if not callable(value):
            return value
        alive = self._alive

        def guarded(*args: Any, **kwargs: Any) -> Any:
            alive()  # checked at the call too: the method may have been looked up before the crash
            return value(*args, **kwargs)

        return guarded

    def __repr__(self) -> str:
        return f"<store {self._world.store!r} of coordinator {self._incarnation} of actor {self._actor}>"


def open_store(world: World, durable: Durable) -> Any:
    """Open the saga's store for one execution: an error in it is the harness's, named."""
    try:
        return durable.store()
    except SagaVerifyError:
        raise
    except Exception as exc:
        raise RecoveryError(f"saga {world.saga.name!r}: its durable store did not open: {type(exc).__name__}: {exc}") from exc


def crash(world: World, ep: Endpoint, attempt: int, fault: Fault, thunk: Thunk, key: str | None, request: Any) -> Generator[Thunk, Any, Any]:
    """Deliver a coordinator crash: the request never goes out, or it is applied and its reply
    never read; then the coordinator is dead."""
    label = fault.label
    if isinstance(fault, CoordinatorCrashBefore):
        world._record(ep, attempt, key, request, UNSENT, None, label)
    else:
        try:
            yield from world._apply(ep, attempt, key, request, thunk, UNREAD, label)
        except Exception:
            pass  # whatever the participant answered, nobody is left to read it
    world.dead = f"{ep.participant}.{ep.operation}#{attempt}"
    world.died_at = world.clock._now
    raise CoordinatorDied(world.dead)


def coordinate(world: World) -> Any:
    """Run the saga, then, after each crash, recovery on a fresh coordinator; return what the
    last coordinator returned."""
    return coordinate_actor(world, world.saga.run, lambda entry, services: world.run_entry(entry), 0)


def coordinate_actor(world: World, entry: Callable[[Any, Any], Any], call: Callable[[Callable[[Any, Any], Any], Any], Any], actor: int) -> Any:
    """Run one actor's ``entry`` with ``call(entry, services)``, then, after each crash of its
    coordinator, recovery on a fresh one of its own; return what its last coordinator returned."""
    saga = world.saga
    durable = saga.durable
    assert durable is not None
    services = world.services if actor == 0 else world.fresh_services(actor)
    recovered = False
    while True:
        try:
            result = call(entry, services)
        except CoordinatorDied:
            result = None
        except SagaVerifyError:
            raise
        except Exception as exc:
            if world.dead is None and not recovered:
                raise
            if world.dead is None:
                # The recovering coordinator raised: never taken for a fresh start.
                raise RecoveryError(
                    f"saga {saga.name!r}: {_entry_name(durable)} raised {type(exc).__name__}: {exc} while recovering "
                    f"after the coordinator crash at {world.crashes[-1]}"
                ) from exc
        if world.dead is None:
            return result
        # Dead: whatever its code did after the crash (caught it, returned) counts for nothing.
        world.crashes.append(world.dead)
        restart(world, durable, actor)
        services = world.services if actor == 0 else world.fresh_services(actor)
        recovered = True
        entry = durable.recover or saga.run


def restart(world: World, durable: Durable, actor: int = 0) -> None:
    """Bring the store back and give a fresh coordinator fresh services."""
    reopen = durable.reopen
    if reopen is not None:
        try:
            world.store = reopen(world.store)
        except SagaVerifyError as exc:
            raise world.fail(exc) from None
        except Exception as exc:
            raise world.fail(
                RecoveryError(
                    f"saga {world.saga.name!r}: its durable store did not reopen after the coordinator crash at "
                    f"{world.dead}: {type(exc).__name__}: {exc}"
                )
            ) from exc
    world.dead = None
    world.recoveries += 1
    world.incarnations[actor] = world.incarnations.get(actor, 0) + 1
    if actor == 0:
        world.services = world.fresh_services()


def still_owned(world: World, instances: tuple[str, ...]) -> frozenset[str]:
    """The saga instances the saga's ``owned`` says are still owned, once every coordinator ended."""
    durable = world.saga.durable
    if durable is None or durable.owned is None or world.store is None:
        return frozenset()
    found = set()
    for instance in dict.fromkeys(instances):
        try:
            if durable.owned(world.store, instance, world.clock._now):
                found.add(instance)
        except SagaVerifyError as exc:
            world.fail(exc)
        except Exception as exc:
            world.fail(RecoveryError(f"saga {world.saga.name!r}: its owned= raised {type(exc).__name__}: {exc} for instance {instance!r}"))
    return frozenset(found)


def close_store(world: World) -> None:
    durable = world.saga.durable
    if durable is not None and durable.close is not None and world.store is not None:
        try:
            durable.close(world.store)
        except Exception as exc:
            world.fail(RecoveryError(f"saga {world.saga.name!r}: its durable store did not close: {type(exc).__name__}: {exc}"))


def _entry_name(durable: Durable) -> str:
    return "recover" if durable.recover is not None else "run (run again to recover)"
