"""The trace: the ordered record of every delivery in one execution, with correlation ids."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

#: What became of one delivery.
OUTCOMES = {
    "ok": "delivered; the caller got the reply",
    "failed": "not delivered; the caller got a connection error",
    "timed-out": "not delivered; the caller timed out",
    "reply-lost": "applied; the reply was lost and the caller timed out",
    "crashed": "applied; the participant died before replying and restarted; the caller saw a reset",
    "frozen": "reached a frozen participant; the caller timed out, the request lands when it thaws",
    "held": "held in the network; the caller timed out, the request lands later",
    "late": "a held request landed",
    "copy": "a duplicate copy landed",
    "raised": "the participant raised while handling it",
    "event": "an event a participant sent (a webhook, an approval) reached the saga",
    "dropped": "an event a participant sent was lost on its way; the saga never received it",
    "unsent": "the coordinator died before sending it; a fresh coordinator recovers from the saga's store",
    "unread": "applied; the coordinator died before reading the reply; a fresh coordinator recovers from the saga's store",
}


class TraceEntry(NamedTuple):
    """One delivery (or one copy of it) as it happened."""

    seq: int
    """Position in the trace, from 0."""
    time: float
    """Virtual seconds when it was delivered or decided."""
    participant: str
    operation: str
    attempt: int
    """Which call of this operation it was (1 = first)."""
    correlation_id: str
    """The saga instance it belongs to."""
    key: str | None
    """The idempotency key it carried, if any."""
    request: Any
    """The call's arguments (plain calls) or a summary of the HTTP request."""
    outcome: str
    """One of `OUTCOMES`."""
    reply: Any
    """What the participant answered (even if the caller never saw it)."""
    fault: str | None
    """The fault decided here, if any (``"lose-reply"``)."""

    @property
    def point(self) -> str:
        return f"{self.participant}.{self.operation}#{self.attempt}"

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": round(self.time, 6),
            "point": self.point,
            "correlation_id": self.correlation_id,
            "key": self.key,
            "request": _plain(self.request),
            "outcome": self.outcome,
            "reply": _plain(self.reply),
            "fault": self.fault,
        }


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _plain(value: Any) -> Any:
    """A JSON-safe, process-independent form of a request or reply."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    # Object addresses differ between runs; they must not make equal executions look different.
    return _ADDRESS.sub("", repr(value))


def trace_to_json(trace: Iterable[TraceEntry]) -> str:
    """The canonical text of a trace: equal executions give equal text, byte for byte."""
    return json.dumps([e.to_json() for e in trace], sort_keys=True, separators=(",", ":"))
