"""The virtual clock: time in a simulated world only moves when the harness moves it."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..errors import SagaDefinitionError


class VirtualClock:
    """Seconds since the execution began. ``sleep`` advances time at once: nothing really waits."""

    __slots__ = ("_now", "_on_advance")

    def __init__(self, on_advance: Callable[[float], None] | None = None) -> None:
        self._now = 0.0
        self._on_advance = on_advance

    def now(self) -> float:
        """Virtual seconds elapsed."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Back off for ``seconds`` of virtual time."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            raise SagaDefinitionError(f"clock.sleep() takes a finite number of seconds >= 0, got {seconds!r}")
        self._now += seconds
        if self._on_advance is not None:
            self._on_advance(self._now)

    async def asleep(self, seconds: float) -> None:
        """``sleep`` for ``async`` sagas."""
        self.sleep(seconds)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:.3f})"
