"""The service's half of the remote-effects protocol: ASGI middleware a service mounts in its test
build, so that the harness can run every execution from a fresh state and read what took effect.

While it serves a request that carries the harness's headers, the effects the service records
(``record_effect``, or a `saga_verify.Ledger`'s ``record``) are stamped with that delivery and
answered in a response header. The first request of an execution starts it afresh: the app is
built again from its factory, or ``reset`` is called."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from .._world._ledger import EFFECTS_SCOPE, EffectsScope, LedgerRow
from ._protocol import (
    CORRELATION_HEADER,
    DELIVERY_HEADER,
    EFFECTS_PATH,
    EXECUTION_HEADER,
    FRESH_HEADER,
    MAX_ROWS_HEADER,
    MIDDLEWARE_HEADER,
    PROTOCOL_VERSION,
    READY_PATH,
    ROWS_HEADER,
    TIME_HEADER,
    decode_correlation,
    rows_json,
)

ASGIApp = Callable[..., Any]
#: The answer's header that says why an execution could not start (the reset failed).
EXECUTION_ERROR_HEADER = "Saga-Verify-Execution-Error"

_NAMES = {
    name.lower().encode(): key
    for name, key in (
        (DELIVERY_HEADER, "delivery"),
        (CORRELATION_HEADER, "correlation"),
        (TIME_HEADER, "time"),
        (EXECUTION_HEADER, "execution"),
        (FRESH_HEADER, "fresh"),
    )
}
_MARK = (MIDDLEWARE_HEADER.lower().encode(), PROTOCOL_VERSION.encode())


def row_json(row: LedgerRow) -> dict[str, Any]:
    """A recorded effect as the protocol carries it (``index``: its place among its request's rows)."""
    return {
        "action": row.action,
        "amount": row.amount,
        "ref": row.ref,
        "correlation_id": row.correlation_id,
        "delivery": row.delivery,
        "time": row.time,
        "index": row.seq,
    }


class EffectsMiddleware:
    """Mount it around your service's app in its test build::

        app = EffectsMiddleware(factory=create_app)          # a fresh app for every execution
        app = EffectsMiddleware(create_app(), reset=db.clear)  # or: how to start afresh

    Requests without the harness's headers pass through untouched. It answers
    ``GET /_saga-verify/ready`` itself (the runtimes' ready check) and, for the harness, the
    effects of an execution when an answer could not carry them. A factory-built app gets no
    lifespan events after the first one."""

    def __init__(self, app: ASGIApp | None = None, *, factory: Callable[[], ASGIApp] | None = None, reset: Callable[[], Any] | None = None) -> None:
        if (app is None) == (factory is None):
            raise TypeError("EffectsMiddleware takes an app (with reset=) or a factory=, one of the two")
        if app is not None and reset is None:
            raise TypeError(
                "EffectsMiddleware(app) needs reset=: how the service starts an execution afresh "
                "(or give factory=, and every execution gets a new app)"
            )
        if factory is not None and not callable(factory):
            raise TypeError(f"factory must build the app, got {factory!r}")
        if reset is not None and not callable(reset):
            raise TypeError(f"reset must be callable, got {reset!r}")
        self._factory = factory
        self._reset = reset
        self.app: ASGIApp = app if app is not None else factory()  # type: ignore[misc]
        #: The execution being served, and the effects its requests recorded.
        self.execution: str | None = None
        self._rows: list[dict[str, Any]] = []

    def restart(self) -> None:
        """What a crash does to a service in this process: its app is built again from the
        factory, keeping nothing but what the factory reads back (a file, a database)."""
        if self._factory is None:
            raise TypeError("this EffectsMiddleware was given an app, not a factory: it cannot build the app again")
        self.app = self._factory()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == READY_PATH:
            await _answer(send, 200, {"status": "ok"})
            return
        if path == EFFECTS_PATH:
            await self._effects(scope, send)
            return
        said: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            key = _NAMES.get(name)
            if key is not None:
                said[key] = value.decode("latin-1")
        execution = said.get("execution")
        if execution is not None and said.get("fresh") == "1":
            problem = await self._start(execution)
            if problem is not None:
                await _answer(send, 503, {"detail": problem}, [(EXECUTION_ERROR_HEADER.encode(), problem.encode("ascii", "replace"))])
                return
        stamp = _stamp(said)
        if stamp is None:
            await self.app(scope, receive, _marking(send, None, None))
            return
        effects = EffectsScope(*stamp)
        token = EFFECTS_SCOPE.set(effects)
        keep = self._rows if execution is not None and execution == self.execution else None
        try:
            await self.app(scope, receive, _marking(send, effects, keep))
        finally:
            EFFECTS_SCOPE.reset(token)

    async def _start(self, execution: str) -> str | None:
        try:
            if self._factory is not None:
                self.app = self._factory()
            else:
                assert self._reset is not None
                done = self._reset()
                if inspect.isawaitable(done):
                    await done
        except Exception as exc:
            return " ".join(f"cannot start execution {execution}: the reset raised {type(exc).__name__}: {exc}".split())
        self.execution = execution
        self._rows = []
        return None

    async def _effects(self, scope: Any, send: Any) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        wanted = query.get("execution", [None])[0]
        if wanted is None or wanted != self.execution:
            await _answer(send, 404, {"detail": f"not serving execution {wanted!r} (serving {self.execution!r})"})
            return
        await _answer(send, 200, self._rows)


def _stamp(said: dict[str, str]) -> tuple[int, str, float] | None:
    """The delivery, saga instance and virtual time a request's headers name (None: not a
    delivery of the harness, or malformed)."""
    if "delivery" not in said:
        return None
    try:
        return int(said["delivery"]), decode_correlation(said.get("correlation", "")), float(said.get("time", "0"))
    except ValueError:
        return None


def _marking(send: Any, effects: EffectsScope | None, keep: list[dict[str, Any]] | None) -> Any:
    """``send``, adding to the answer's head the middleware's mark and the rows recorded so far."""

    async def marked(message: Any) -> None:
        if message["type"] == "http.response.start":
            extra = [_MARK]
            if effects is not None:
                rows = [row_json(row) for row in effects.rows]
                if keep is not None:
                    keep.extend(rows)
                text = rows_json(rows)
                if len(text) <= MAX_ROWS_HEADER:
                    extra.append((ROWS_HEADER.lower().encode(), text.encode("ascii")))
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return marked


async def _answer(send: Any, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    content = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()), _MARK, *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": content})
