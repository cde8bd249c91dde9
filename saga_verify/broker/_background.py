"""Coroutines started on an event loop that runs in a thread of its own (the NATS clients' loop),
from the execution's thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def start_on(loop: asyncio.AbstractEventLoop, make: Callable[[], Coroutine[Any, Any, T]]) -> concurrent.futures.Future[T]:
    """Start ``make()`` as a task on ``loop``; its result, exception or cancellation as a future.

    The task starts in an empty context, unlike with `asyncio.run_coroutine_threadsafe`: an
    execution's context (its virtual clocks) must not follow into the loop's tasks."""
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        task = loop.create_task(make())

        def settle(finished: asyncio.Task[T]) -> None:
            if finished.cancelled():
                done.cancel()
            elif finished.exception() is not None:
                done.set_exception(finished.exception())
            else:
                done.set_result(finished.result())

        task.add_done_callback(settle)

    loop.call_soon_threadsafe(start, context=contextvars.Context())
    return done
