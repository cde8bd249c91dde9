"""Several actors in one execution: saga instances, a redelivered start command, a second
coordinator taking over, moving one at a time as the plan says.

A saga declares the actors besides its own instance with ``Saga(actors=(Actor(...), ...))``. The
world runs them one at a time, handing the turn over only at delivery points, so what happens is
decided by the plan alone:

- by default each actor runs to its end, then the next (in declared order, the saga's own
  instance first) begins;
- a ``switch`` fault at a delivery point (``inventory.reserve#1``) stops the actor making that
  call just before it goes out and hands the turn to the next unfinished actor (in declared
  order, round the end); the call goes out when the turn comes back to it. An actor that ends
  hands the turn on the same way. A switch with no other unfinished actor changes nothing.

Attempts count per operation over all actors (``inventory.reserve#2`` is the second reserve any
actor made), so every interleaving is a plain plan: it is swept, searched, shrunk, saved and
replayed as faults are. An actor with ``start`` later than the clock when its first turn comes
begins at ``start`` (a takeover after a lease expired): virtual time is shared, so the actor
that was stopped sees that time passed too.

A plain-Python saga's actors are threads of which exactly one runs at a time (each waits for its
turn on an event of its own); an ``async def`` saga's actors are tasks on the execution's event
loop that wait for their turn on a future. Each actor's correlation id ties its deliveries and
ledger rows to its saga instance. Invariants read each actor's end through
`Execution.actors` (`ActorRun`) and each instance's status through `Execution.status_of`; the
built-in invariants judge each instance by its own status. Declaring them::

    Saga("two orders", steps, participants, run, input=order_1,
         actors=(Actor("o-2", input=order_2),                  # another order for the same stock
                 Actor("o-1 again", input=order_1),            # the start command delivered twice
                 Actor("takeover", input=order_1, run=recover, start=31.0)))  # after the lease

The saga's own instance is the first actor, named by its correlation id; ``Execution.status``,
``result`` and ``error`` stay its own, so a saga without other actors runs, traces and is
searched exactly as before (the world never builds a `Cast` for it).

Not yet: the watchdog stops the harness's waiting thread, not an actor's thread stuck outside
the harness (that thread is left behind, as a daemon).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._saga import Actor, Saga
from ..errors import SagaDefinitionError, SagaVerifyError
from . import _coordinator

#: The world (`_world.World`), named loosely: this module sits below the module that defines it.
World = Any

#: Which actor (by position: 0 is the saga's own instance) runs in this thread or task.
ACTOR: contextvars.ContextVar[int] = contextvars.ContextVar("saga_verify_actor", default=0)


@dataclass(frozen=True)
class ActorRun:
    """How one actor of an execution ended: what invariants across instances read."""

    name: str
    """The actor's name (the saga's own instance is named by its correlation id)."""
    correlation_id: str
    """The saga instance the actor works on."""
    status: str
    """``completed``, ``compensated``, ``failed``; ``halted``, ``crashed`` or what it returned."""
    result: Any
    """What it returned (None if it raised or was stopped)."""
    error: BaseException | None
    """What it raised, if it raised."""


def cast_of(saga: Saga) -> tuple[Actor, ...]:
    """Every actor of an execution of ``saga``: its own instance first, then those it declares."""
    own = Actor(saga.instance_id, input=saga.input, correlation_id=saga.instance_id)
    return (own, *saga.actors)


class Cast:
    """The actors of one execution, whose turn it is, and how each ended."""

    def __init__(self, world: World) -> None:
        self.world = world
        saga = world.saga
        self.actors = cast_of(saga)
        self.correlations = tuple(a.instance_id(saga) for a in self.actors)
        self.turn = 0
        self.started = [False] * len(self.actors)
        self.ended = [False] * len(self.actors)
        self.runs: list[ActorRun | None] = [None] * len(self.actors)
        self._events = [threading.Event() for _ in self.actors]
        #: A question from an actor's thread to the deciding thread (`_ask`), and its answer.
        self._question: tuple[Any, int] | None = None
        self._answer: tuple[Any, BaseException | None] = (None, None)
        self._asked = threading.Event()
        self._answered = threading.Event()
        self._futures: list[asyncio.Future[None] | None] = [None] * len(self.actors)

    # -- whose turn ------------------------------------------------------------------------
    def _next(self, after: int) -> int | None:
        count = len(self.actors)
        for step in range(1, count + 1):
            i = (after + step) % count
            if not self.ended[i] and i != after:
                return i
        return None

    def _give(self, to: int) -> None:
        """Make it ``to``'s turn (and the world's deliveries and ledger rows its instance's)."""
        self.turn = to
        world = self.world
        world._correlation = self.correlations[to]
        if not self.started[to]:
            self.started[to] = True
            begins = self.actors[to].start
            if begins > world.clock._now:
                world.clock._now = float(begins)
            if to:
                world.note(world.clock._now, "actor", f"{self.actors[to].name} begins")
        future = self._futures[to]
        if future is not None:
            if not future.done():
                future.set_result(None)
        else:
            self._events[to].set()

    def switch(self, point: str) -> Callable[[], Any] | None:
        """At a ``switch`` fault: the thunk that hands the turn over and waits for it to come
        back (a plain wait, or an awaitable for an async saga); None when no other actor can move."""
        me = ACTOR.get()
        to = self._next(me)
        if to is None:
            return None
        world = self.world
        world.note(world.clock._now, "switch", f"{self.actors[me].name} stops before {point}; {self.actors[to].name} moves")
        if world.async_mode:
            return lambda: self._aswitch(me, to)
        return lambda: self._switch(me, to)

    def _switch(self, me: int, to: int) -> None:
        event = self._events[me]
        event.clear()
        self._give(to)
        event.wait()
        self.world._correlation = self.correlations[me]

    async def _aswitch(self, me: int, to: int) -> None:
        future = asyncio.get_running_loop().create_future()
        self._futures[me] = future
        self._give(to)
        await future
        self.world._correlation = self.correlations[me]

    def _end(self, me: int, run: ActorRun) -> None:
        self.runs[me] = run
        self.ended[me] = True
        self.world.note(self.world.clock._now, "actor", f"{run.name} ends: {run.status}")
        to = self._next(me)
        if to is None:
            if not self.world.async_mode:
                self._asked.set()  # no question: the deciding thread's wait is over
        else:
            self._give(to)

    # -- one actor ---------------------------------------------------------------------------
    def _entry(self, me: int) -> Callable[[Any, Any], Any]:
        actor = self.actors[me]
        return actor.run if actor.run is not None else self.world.saga.run

    def _ended(self, me: int, result: Any, error: BaseException | None, stopped: str | None) -> ActorRun:
        world = self.world
        if world.halted is not None:
            stopped = "halted"  # what it did after the harness stopped the execution is the stop's doing
        if stopped is not None:
            status, result, error = stopped, None, None
        elif error is not None:
            status = "crashed"
        else:
            value = world.saga.outcome(result)
            status = value if isinstance(value, str) else repr(value)
        return ActorRun(self.actors[me].name, self.correlations[me], status, result, error)

    def _body(self, me: int) -> None:
        """One actor's thread (plain-Python sagas)."""
        ACTOR.set(me)
        self._events[me].wait()
        world = self.world
        result: Any = None
        error: BaseException | None = None
        stopped: str | None = None
        try:
            entry, given = self._entry(me), self.actors[me].input
            if world.saga.durable is not None:
                # Each actor is a coordinator of its own: a crash kills it alone, and a fresh one
                # of its own recovers (in this thread, before the turn passes on).
                result = _coordinator.coordinate_actor(world, entry, lambda run, services: run(services, given), me)
            else:
                result = entry(world.services, given)
            if inspect.isawaitable(result):
                raise world.fail(SagaDefinitionError(f"saga {world.saga.name!r}: actor {self.actors[me].name!r} returned an awaitable; declare its run with 'async def'"))
        except SagaVerifyError as exc:
            world.fail(exc)
            stopped = "halted"
        except Exception as exc:
            error = exc
        except BaseException:
            # The harness stopped it (a budget spent, the watchdog): ended, never raised out of
            # the thread, where nobody would read it.
            stopped = "halted"
        finally:
            self._end(me, self._ended(me, result, error, stopped))

    async def _abody(self, me: int) -> None:
        """One actor's task (``async def`` sagas)."""
        ACTOR.set(me)
        world = self.world
        await self._futures[me]  # type: ignore[misc]  # set by `_arun` before any task runs
        result: Any = None
        error: BaseException | None = None
        stopped: str | None = None
        try:
            result = await self._entry(me)(world.services, self.actors[me].input)
        except SagaVerifyError as exc:
            world.fail(exc)
            stopped = "halted"
        except Exception as exc:
            error = exc
        except BaseException:
            # The harness stops the loop: this actor ends here, and nobody's turn comes after it.
            self.runs[me] = self._ended(me, None, None, "halted")
            self.ended[me] = True
            raise
        self._end(me, self._ended(me, result, error, stopped))

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> Any:
        """Run every actor to its end; return what the saga's own instance returned."""
        world = self.world
        world.async_mode = world.saga.is_async
        if world.async_mode:
            world._loop_run(self._arun())
        else:
            context = contextvars.copy_context()
            threads = [
                threading.Thread(target=context.copy().run, args=(self._body, i), name=f"saga-verify actor {a.name}", daemon=True)
                for i, a in enumerate(self.actors)
            ]
            chooser = world._chooser
            # A chooser bound to this thread (a search drawing from Hypothesis) decides here, asked
            # by the actors' threads; any other (a plan's) decides in the actor's own thread.
            bound = getattr(chooser, "thread_bound", False)
            if bound:
                world._chooser = self._ask
            try:
                for thread in threads:
                    thread.start()
                self._give(0)
                if bound:
                    self._decide_until_all_ended(chooser)
                else:
                    self._asked.wait()  # set when every actor has ended
                for thread in threads:
                    thread.join()
            finally:
                world._chooser = chooser
        world._correlation = self.correlations[0]
        first = self.runs[0]
        if first is not None and first.error is not None:
            raise first.error  # the saga's own instance raised: the world judges it as it would alone
        return None if first is None else first.result

    # -- decisions, in the thread that runs the execution ----------------------------------------
    # A search's chooser may only work in the thread it was made in (Hypothesis draws from a
    # thread-local context): the actors' threads ask this thread, which decides.
    def _ask(self, point: Any, attempt: int) -> Any:
        self._question = (point, attempt)
        self._asked.set()
        self._answered.wait()
        self._answered.clear()
        fault, error = self._answer
        if error is not None:
            raise error
        return fault

    def _decide_until_all_ended(self, chooser: Callable[[Any, int], Any]) -> None:
        while True:
            self._asked.wait()
            self._asked.clear()
            question = self._question
            if question is None:
                return  # every actor ended
            self._question = None
            try:
                self._answer = (chooser(*question), None)
            except BaseException as exc:
                self._answer = (None, exc)
            self._answered.set()

    def outcomes(self) -> tuple[ActorRun, ...]:
        """How each actor ended; one the harness stopped before it began counts as halted."""
        return tuple(
            run if run is not None else ActorRun(actor.name, self.correlations[i], "halted", None, None)
            for i, (actor, run) in enumerate(zip(self.actors, self.runs, strict=True))
        )

    async def _arun(self) -> None:
        loop = asyncio.get_running_loop()
        self._futures = [loop.create_future() for _ in self.actors]
        tasks = [loop.create_task(self._abody(i)) for i in range(len(self.actors))]
        self._give(0)
        for task in tasks:
            await task
