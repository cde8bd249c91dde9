"""A stand-in for a saga library that keeps time its own way: it sleeps and reads clocks through
the ``time`` module and through names it bound with ``from ... import``, as libraries on PyPI do."""

from __future__ import annotations

import datetime
import time
from datetime import datetime as DateTime
from time import monotonic, sleep
from time import time as now


def backoff(attempt: int) -> None:
    sleep(2.0 * attempt)


def pause(seconds: float) -> None:
    time.sleep(seconds)


def deadline(seconds: float) -> float:
    return monotonic() + seconds


def expired(at: float) -> bool:
    return time.monotonic() >= at


def readings() -> dict[str, object]:
    """Every clock the library reads, at once."""
    return {
        "time": time.time(),
        "now": now(),
        "time_ns": time.time_ns(),
        "monotonic": monotonic(),
        "monotonic_ns": time.monotonic_ns(),
        "utc": DateTime.now(datetime.UTC),
        "local": datetime.datetime.now(),
        "today": datetime.date.today(),
    }
