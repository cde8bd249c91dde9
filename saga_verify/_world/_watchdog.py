"""The last resort against an execution that never returns: one thread per process that stops an
execution still running after its saga's real-time limit (``max_real_seconds``), from outside.

Everything the harness owns ends an execution deterministically (call and virtual-time budgets, an
event loop with nothing left to run); this is for what it does not own: a saga blocked on a lock,
a thread, real I/O or a busy loop. In order, gentlest first, it wakes the execution's event loop
(which then stops), raises `Stuck` in the thread, and, for the main thread blocked in a system
call, sends it a signal: a real-time signal of its own whose handler raises `Stuck` (installed
when the watchdog starts in the main thread), or else SIGINT when Python's own handler is
installed, as Ctrl-C would. The execution notes where it was stuck, and the search fails with
`SagaStuckError` instead of judging it.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

#: Seconds between two looks at the running executions.
POLL = 0.1
#: Frames of the stuck thread shown in the error, innermost last.
STACK_FRAMES = 8


class Stuck(BaseException):
    """Raised into a thread whose execution is past its real-time limit; a BaseException, so that
    saga code catching Exception does not swallow it."""


_raise_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(("PyThreadState_SetAsyncExc", ctypes.pythonapi))
_clear_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(("PyThreadState_SetAsyncExc", ctypes.pythonapi))


#: The execution running in each thread (its `World`), by thread id. A `World` adds itself when
#: it starts running and takes itself out when it ends (inline, in `World.run`).
ACTIVE: dict[int, Any] = {}
#: The watchdog thread, once one runs in this process.
THREAD: threading.Thread | None = None
_lock = threading.Lock()
#: The signal that wakes the main thread blocked in a system call, once its handler is installed.
#: A signal of the watchdog's own: SIGINT is ignored in many places executions run (a background
#: job of a shell, some CI runners), and a blocked lock wakes only for a signal with a handler.
WAKE: int | None = None
#: Sent again after this many interruptions while the execution still runs: a signal that landed
#: just before the thread blocked is lost.
WAKE_EVERY = 10


def start() -> None:
    """Start the watchdog thread of this process, if none runs yet."""
    global THREAD
    with _lock:
        if THREAD is None:
            _install_wake()
            thread = threading.Thread(target=_watch, name="saga-verify watchdog", daemon=True)
            thread.start()
            THREAD = thread


def take_back(ident: int) -> None:
    """An execution the watchdog stopped left its thread: an interrupt still on its way there is
    taken back. The watchdog marks an execution stuck before it looks whether it still runs, and
    raises in its thread only if it does, both under the lock; seen unmarked after it left, nothing
    is on its way."""
    with _lock:
        _clear_in(ident, None)


def _install_wake() -> None:
    global WAKE
    wake = getattr(signal, "SIGRTMIN", None)
    if WAKE is not None or wake is None or threading.current_thread() is not threading.main_thread():
        return
    wake += 3  # clear of the first few, which C libraries and runtimes take for themselves
    try:
        if signal.getsignal(wake) not in (signal.SIG_DFL, None):
            return  # the process uses it already
        signal.signal(wake, _wake)
    except (OSError, ValueError):  # pragma: no cover - a platform that refuses it
        return
    WAKE = wake


def _wake(signum: int, frame: Any) -> None:
    # Sent only to a stuck execution, but it may land just after that execution ended: then it
    # does nothing.
    world = ACTIVE.get(threading.get_ident())
    if world is not None and world.stuck is not None:
        raise Stuck


def _forget_after_fork() -> None:
    global THREAD, _lock
    ACTIVE.clear()
    THREAD = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _watch() -> None:
    first_seen: dict[int, tuple[Any, float, int]] = {}
    while True:
        time.sleep(POLL)
        now = time.monotonic()
        with _lock:
            running = list(ACTIVE.items())
        for ident, world in running:
            seen = first_seen.get(ident)
            if seen is None or seen[0] is not world:
                first_seen[ident] = (world, now, 0)
            elif now - seen[1] >= world.saga.max_real_seconds:
                _interrupt(ident, world, seen[2])
                first_seen[ident] = (world, seen[1], seen[2] + 1)
        for ident in [i for i in first_seen if i not in dict(running)]:
            del first_seen[ident]


def _interrupt(ident: int, world: Any, attempt: int) -> None:
    with _lock:
        if world.stuck is None:
            world.stuck = _where(ident, world)  # first: see `take_back`
        if id(ACTIVE.get(ident)) != id(world):
            return  # it returned meanwhile
        loop = world.loop
        if loop is not None and attempt == 0 and not loop.is_closed():
            # An event loop waiting in select wakes up and finds the execution stopped.
            loop.call_soon_threadsafe(_nothing)
            return
        _raise_in(ident, Stuck)
        if attempt >= 2 and ident == threading.main_thread().ident:
            # Blocked in a system call (a lock, a socket): only a signal wakes the main thread.
            if WAKE is not None:
                if attempt % WAKE_EVERY == 2:
                    signal.pthread_kill(ident, WAKE)
            elif attempt == 2 and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                # Once only: a Ctrl-C that landed after the execution ended would stop the search.
                signal.pthread_kill(ident, signal.SIGINT)
        if attempt == 20:
            print(
                f"saga-verify: saga {world.saga.name!r} swallows every interruption and cannot be stopped; "
                f"it is stuck at:\n{world.stuck}",
                file=sys.stderr,
            )


def _nothing() -> None:
    return None


def _where(ident: int, world: Any) -> str:
    """Where the execution is stuck: for an async saga, where each of its tasks waits (the thread
    itself only waits in its event loop); else where its thread is."""
    loop = world.loop
    if loop is not None:
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        except RuntimeError:  # the loop changed its tasks meanwhile; the thread's stack will do
            tasks = []
        waits = [_awaiting(task) for task in tasks]
        if any(waits):
            return "\n".join(w for w in waits if w)
    frame = sys._current_frames().get(ident)
    stack = traceback.format_stack(frame)[-STACK_FRAMES:] if frame is not None else []
    return "".join(stack).rstrip() or "(no Python frame)"


def _awaiting(task: asyncio.Task[Any]) -> str:
    """The frames of a suspended task, outermost first, down the chain of what each awaits."""
    frames: list[tuple[Any, int]] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(frames) < STACK_FRAMES:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append((frame, frame.f_lineno))
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "".join(traceback.StackSummary.extract(frames).format()).rstrip()
