"""Progress of a search on a terminal: one line with the saga, the phase, the plans tried and the
failures so far, redrawn when the phase changes or a failure is found and otherwise at most ten
times a second; nothing at all when the output is not a terminal."""

from __future__ import annotations

import shutil
import time
from typing import TextIO


class TerminalProgress:
    """Call it as the search's ``progress``; ``start`` names the saga, ``finish`` clears the line."""

    def __init__(self, stream: TextIO, *, interval: float = 0.1) -> None:
        self._stream = stream
        self._interval = interval
        self._next = 0.0
        self._label = ""
        self._shown = False
        self._last: tuple[str, int] = ("", 0)

    @classmethod
    def on(cls, stream: TextIO) -> TerminalProgress | None:
        """A display on ``stream`` if it is a terminal, else None (pipes and files get nothing)."""
        isatty = getattr(stream, "isatty", None)
        try:
            return cls(stream) if isatty is not None and isatty() else None
        except ValueError:  # a closed stream
            return None

    def start(self, label: str) -> None:
        self._label = label
        self._next = 0.0
        self._last = ("", 0)
        self("preflight", 0, 0)

    def __call__(self, phase: str, executions: int, failures: int) -> None:
        now = time.monotonic()
        # A new phase or a new failure shows at once; counting shows at most every interval.
        if now < self._next and (phase, failures) == self._last:
            return
        self._next = now + self._interval
        self._last = (phase, failures)
        text = f"{self._label}: {phase}, {executions} plans tried, {failures} failure{'s' if failures != 1 else ''} so far"
        width = shutil.get_terminal_size((80, 24)).columns - 1
        # \r to the start of the line, \x1b[K clears what a longer line left there.
        self._stream.write("\r" + text[:width] + "\x1b[K")
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False
