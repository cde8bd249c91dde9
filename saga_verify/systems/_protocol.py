"""The remote-effects protocol, both halves' shared words: the headers the harness sends with every
delivery and the ones a service's `EffectsMiddleware` answers with, and the JSON form of a row.

A delivery carries which trace entry it is, the saga instance and the virtual time (so the rows a
service records while handling it are stamped as a `World` stamps them in this process), and the
execution it belongs to; the first request of an execution to a service also says it is fresh,
so the service starts the execution from a clean state. The answer carries the rows the request
recorded, and a mark that the middleware saw it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

DELIVERY_HEADER = "Saga-Verify-Delivery"
CORRELATION_HEADER = "Saga-Verify-Correlation"
TIME_HEADER = "Saga-Verify-Time"
EXECUTION_HEADER = "Saga-Verify-Execution"
FRESH_HEADER = "Saga-Verify-Fresh"
ROWS_HEADER = "Saga-Verify-Rows"
#: On every answer that passed the middleware: its protocol version.
MIDDLEWARE_HEADER = "Saga-Verify-Effects"
PROTOCOL_VERSION = "1"

#: Paths the middleware answers itself.
READY_PATH = "/_saga-verify/ready"
EFFECTS_PATH = "/_saga-verify/effects"

#: Rows that would make a longer header are not sent in it: the harness asks `EFFECTS_PATH`.
MAX_ROWS_HEADER = 8192
#: Rows one delivery can cause in one service, at most: a remote row's place in the order of
#: effects is ``delivery * ROW_SPAN + its index among that delivery's rows``.
ROW_SPAN = 1 << 32


def encode_correlation(correlation: str) -> str:
    return quote(correlation, safe="")


def decode_correlation(text: str) -> str:
    return unquote(text)


def rows_json(rows: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(list(rows), ensure_ascii=True, separators=(",", ":"))
