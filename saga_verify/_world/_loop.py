"""The event loop an ``async def`` saga runs on: its time is the execution's virtual clock, and it
is where the harness stops an execution from outside the saga's code.

When nothing is ready to run and nothing outside the loop can wake it (no socket of its own, no
thread the saga started, no executor call in flight), waiting would be forever, or until the next
timer: with virtual time the loop moves the clock to that timer at once; with no timer it stops
the execution, because every task of the saga waits for something that can never happen (a future
nobody will resolve, say, after the task that would have resolved it died). Each time it is about
to wait it also checks whether the execution was stopped (a budget, the watchdog), and if so
raises `LoopStopped` from the selector, where no saga code is on the stack to swallow it.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ._clocks import MONOTONIC_START

#: Longest real wait for outside work (a socket, a thread) before the loop looks again.
REAL_SLICE = 0.05


class LoopStopped(BaseException):
    """Raised by the loop's selector to stop it from outside the saga's code."""


class _Selector(selectors.DefaultSelector):
    """The loop's selector: waits for real only for outside work, moves virtual time otherwise."""

    loop: WorldLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        world = self.loop.world
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if world.stuck is not None or world.halted is not None or world.dead is not None:
            raise LoopStopped
        if ready or timeout == 0:
            return ready
        if self.loop.outside_work():
            # Virtual time stands still while the outside works: a reply over real I/O takes no
            # virtual time, and no timer of the saga fires early for it.
            slice_ = REAL_SLICE if timeout is None or world.virtual_time else timeout
            return list(super().select(slice_ if timeout is None else min(timeout, slice_)))
        if timeout is None:
            world.halt(
                "stopped waiting: every task of the saga waits for something that can never happen "
                "(nothing is scheduled, and no I/O or thread is in flight)"
            )
            raise LoopStopped
        if not world.virtual_time:
            return list(super().select(timeout))
        world.clock.advance(timeout)
        if world.halted is not None:
            raise LoopStopped
        return []


def _quiet_about_stops(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A task that ended with one of the harness's stops (a BaseException that is no Exception:
    the coordinator died, the run was halted) ended as the harness meant: nothing to report."""
    error = context.get("exception")
    if isinstance(error, BaseException) and not isinstance(error, Exception):
        return
    loop.default_exception_handler(context)


class WorldLoop(asyncio.SelectorEventLoop):
    """An event loop for one execution (see the module docstring)."""

    def __init__(self, world: Any) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self.world = world
        self._threads_at_start = threading.active_count()
        self._in_executor: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()
        self.set_exception_handler(_quiet_about_stops)

    def time(self) -> float:
        world = self.world
        if world.virtual_time:
            return MONOTONIC_START + float(world.clock._now)
        return super().time()

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:  # type: ignore[override]
        future = super().run_in_executor(executor, func, *args)
        self._in_executor.add(future)
        return future

    def outside_work(self) -> bool:
        """Whether something outside the loop may still wake it: a socket besides its own wake-up
        pipe, an executor call in flight, or a thread started since the execution began."""
        selector = self._selector  # type: ignore[attr-defined]
        if len(selector.get_map()) > 1:
            return True
        if any(not f.done() for f in self._in_executor):
            return True
        return threading.active_count() > self._threads_at_start

    def abandon(self) -> None:
        """After a stop: close what the saga left pending, quietly (its ``finally`` blocks run
        now, against a stopped execution), so nothing complains about it later."""
        for task in asyncio.all_tasks(self):
            task._log_destroy_pending = False  # type: ignore[attr-defined]  # abandoned on purpose
            coro = task.get_coro()
            try:
                coro.close()
            except BaseException:
                pass  # whatever the saga's cleanup raised: the execution is over
