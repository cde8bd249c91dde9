"""The virtual clock: time in a simulated world only moves when the harness moves it."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import SagaDefinitionError


class VirtualClock:
    """Seconds since the execution began. ``sleep`` advances time at once: nothing really waits."""

    __slots__ = ("_now", "_on_advance", "_on_error")

    def __init__(
        self,
        on_advance: Callable[[float], None] | None = None,
        on_error: Callable[[BaseException], BaseException] | None = None,
    ) -> None:
        self._now = 0.0
        self._on_advance = on_advance
        #: Hands an error in how the saga uses the clock to its world, which reports it even if
        #: the saga's code swallows it.
        self._on_error = on_error

    def now(self) -> float:
        """Virtual seconds elapsed."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Back off for ``seconds`` of virtual time."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            error = SagaDefinitionError(f"clock.sleep() takes a finite number of seconds >= 0, got {seconds!r}")
            raise error if self._on_error is None else self._on_error(error)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` (already checked) of virtual time pass: a sleep, or an event loop
        moving on to its next timer."""
        self._now += seconds
        if self._on_advance is not None:
            self._on_advance(self._now)

    async def asleep(self, seconds: float) -> None:
        """``sleep`` for ``async`` sagas."""
        self.sleep(seconds)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:.3f})"
