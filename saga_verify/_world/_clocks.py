"""Library clocks on virtual time: while an execution runs, the clocks that a saga's code and the
libraries it uses read follow the execution's virtual clock, so their sleeps cost nothing and what
they read is the same on every run of a plan.

- ``time.time``, ``time.time_ns``, ``datetime.now``/``utcnow``/``today``, ``date.today``,
  ``time.localtime``/``gmtime``/``strftime`` and ``uuid1``: through time-machine, which patches
  them where they are implemented, so names bound by ``from time import time`` follow too. Its
  innermost traveller is asked for the time at every read; ours answers with the virtual clock of
  the execution running in the calling context, and with the real time everywhere else.
- ``time.sleep``, ``time.monotonic`` and ``time.monotonic_ns``, which time-machine leaves alone:
  every module outside the standard library and the harness gets a ``time`` (and any of these
  names it bound by ``from time import ...``) whose clocks follow the execution. The standard
  library keeps the real ones, because its own waits (threading, queue, selectors, event loops)
  really wait and must measure real time.
- ``asyncio.sleep`` and every timer of an ``async def`` saga: its event loop (`WorldLoop`) keeps
  time on the virtual clock.

Every replacement looks up the execution in a context variable, so another thread, code outside an
execution and a saga declared with ``virtual_time=False`` see real clocks. The switch is engaged
for a search (or the first execution outside one) and disengaged when the search ends; the module
replacements stay, and outside executions they are the real functions.
"""

from __future__ import annotations

import math
import sys
import threading
import time as _time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import SagaVerifyError
from ._current import CURRENT

#: The virtual wall clock when an execution starts: 2025-01-01T00:00:00Z.
EPOCH = 1_735_689_600
_EPOCH_NS = EPOCH * 1_000_000_000
#: ``time.monotonic()`` when an execution starts. Any fixed value would do; real monotonic clocks
#: start far from zero, and code that takes 0 to mean "never" keeps working.
MONOTONIC_START = 100_000.0

_real_sleep = _time.sleep
_real_monotonic = _time.monotonic
_real_monotonic_ns = _time.monotonic_ns

#: Top-level packages whose clocks stay real: the harness itself and the test runner around it.
#: (The standard library is left alone as a whole: see the module docstring.)
HARNESS_PACKAGES = frozenset(
    {
        "saga_verify",
        "hypothesis",
        "_hypothesis_pytestplugin",
        "_hypothesis_globals",
        "_hypothesis_ftz_detector",
        "pytest",
        "_pytest",
        "pluggy",
        "xdist",
        "execnet",
        "time_machine",
        "_time_machine",
    }
)


def _virtual_clock() -> Any:
    """The virtual clock of the execution running in this context, if its saga wants library
    clocks on it; None otherwise."""
    world = CURRENT.get()
    if world is None or not world.virtual_time:
        return None
    return world.clock


def sleep(seconds: float) -> None:
    """``time.sleep`` for code outside the standard library: virtual inside an execution."""
    clock = _virtual_clock()
    if clock is None:
        _real_sleep(seconds)
        return
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"'{type(seconds).__name__}' object cannot be interpreted as an integer or float")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("sleep length must be non-negative")
    clock.advance(float(seconds))


def monotonic() -> float:
    """``time.monotonic`` for code outside the standard library: virtual inside an execution."""
    clock = _virtual_clock()
    if clock is None:
        return _real_monotonic()
    return MONOTONIC_START + float(clock._now)


def monotonic_ns() -> int:
    """``time.monotonic_ns`` for code outside the standard library: virtual inside an execution."""
    clock = _virtual_clock()
    if clock is None:
        return _real_monotonic_ns()
    return round((MONOTONIC_START + float(clock._now)) * 1e9)


class _VirtualTimeModule(types.ModuleType):
    """The ``time`` module as code outside the standard library sees it: ``sleep`` and the
    monotonic clocks follow the execution; everything else is the real module's."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


VIRTUAL_TIME_MODULE = _VirtualTimeModule("time", _time.__doc__)
VIRTUAL_TIME_MODULE.sleep = sleep  # type: ignore[attr-defined]
VIRTUAL_TIME_MODULE.monotonic = monotonic  # type: ignore[attr-defined]
VIRTUAL_TIME_MODULE.monotonic_ns = monotonic_ns  # type: ignore[attr-defined]

_REPLACEMENTS: dict[int, Any] = {
    id(_time): VIRTUAL_TIME_MODULE,
    id(_real_sleep): sleep,
    id(_real_monotonic): monotonic,
    id(_real_monotonic_ns): monotonic_ns,
}
_ORIGINALS = (_time, _real_sleep, _real_monotonic, _real_monotonic_ns)


class _Switch:
    """What is engaged in this process (one per process; guarded by ``lock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.travel: Any = None
        self.sessions = 0
        #: How many modules were loaded at the last scan: a new import means a new scan.
        self.modules_seen = 0
        self.scanned: set[str] = set()


#: What is engaged in this process.
SWITCH = _Switch()
_switch = SWITCH


def _wall_time_ns() -> int:
    clock = _virtual_clock()
    if clock is None:
        import time_machine

        real: int = time_machine.escape_hatch.time.time_ns()
        return real
    return _EPOCH_NS + round(float(clock._now) * 1e9)


def engage() -> None:
    """Put the clocks on the switch; cheap when it is engaged and no module was imported since."""
    if _switch.travel is not None and len(sys.modules) == _switch.modules_seen:
        return
    with _switch.lock:
        if _switch.travel is None:
            _switch.travel = _start_wall_clock()
        if len(sys.modules) != _switch.modules_seen:
            _scan_modules()


def _start_wall_clock() -> Any:
    import time_machine

    travel = time_machine.travel(EPOCH, tick=False)
    try:
        traveller = travel.start()
    except RuntimeError as exc:  # freezegun is active
        raise SagaVerifyError(
            f"saga-verify cannot put library clocks on virtual time: {exc}. Stop the other clock "
            "library first, or declare the saga with virtual_time=False"
        ) from None
    # time-machine's patched clocks ask the innermost traveller for the time at every read.
    traveller.time_ns = _wall_time_ns  # type: ignore[method-assign]
    return travel


def _scan_modules() -> None:
    """Give every newly loaded module outside the standard library and the harness the virtual
    ``time`` and clocks (in place of the real ones it holds)."""
    modules = sys.modules.copy()
    _switch.modules_seen = len(modules)
    # Only the modules loaded since the last scan, found by a set difference (in C): a process of
    # a test run holds thousands of modules, and one lazy import must not cost a walk of them all.
    fresh = modules.keys() - _switch.scanned
    _switch.scanned.update(fresh)
    stdlib = sys.stdlib_module_names
    for name in fresh:
        module = modules[name]
        top = name.partition(".")[0]
        if top in stdlib or top in HARNESS_PACKAGES or module is None:
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            # Keyed by the originals' ids, which no other object can hold while they live (they
            # live as long as this module, in _ORIGINALS).
            replacement = _REPLACEMENTS.get(id(value))
            if replacement is not None:
                namespace[key] = replacement


def disengage() -> None:
    """Give time-machine's clocks back (the module replacements stay: outside an execution they
    are the real clocks)."""
    with _switch.lock:
        travel, _switch.travel = _switch.travel, None
        if travel is not None:
            travel.stop()


@contextmanager
def clock_session() -> Iterator[None]:
    """Around a search or a replay: executions engage the switch; the outermost session
    disengages it when it ends."""
    with _switch.lock:
        _switch.sessions += 1
    try:
        yield
    finally:
        with _switch.lock:
            _switch.sessions -= 1
            last = _switch.sessions == 0
        if last:
            disengage()
