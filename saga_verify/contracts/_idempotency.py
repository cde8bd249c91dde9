"""The Idempotency-Key contract, checked against any HTTP provider.

A saga retries, and the network duplicates, so every participant must be an idempotent
receiver. This module checks what that promises, operation by operation, over real HTTP:

1. ``same_key_same_reply``: the same key with the same body gets the same status and body;
   ``replay_marker``: the repeat carries the provider's replay header (when it declares one) and
   the first reply does not; ``no_second_effect``: the repeat changes nothing (when an effect
   probe is given).
2. ``same_key_other_body_rejected``: the same key with another body is rejected (409 or 422 by
   default) and changes nothing; ``key_keeps_first_request``: afterwards the key still replays
   the first request.
3. ``compensation_twice_harmless`` (compensations only): the same compensation sent twice, as
   two separate requests with keys of their own (a second attempt, not a retry), answers no 5xx,
   the same reply both times, and has no second effect.
4. ``keyless_accepted``: a request without a key is accepted (2xx): the key is optional.

Nothing here knows the reference services: an operation is a method, a path and a valid body
(or a factory of bodies, which may first create what a compensation undoes).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import OptionError
from ._errors import ContractError, ProviderUnreachableError

__all__ = [
    "IDEMPOTENCY_CHECKS",
    "IdempotencyError",
    "IdempotencyFinding",
    "IdempotencyResult",
    "IdempotentOperation",
    "check_idempotency",
]

#: Every check `check_idempotency` makes, in the order it makes them.
IDEMPOTENCY_CHECKS = (
    "accepts_valid_body",
    "same_key_same_reply",
    "replay_marker",
    "no_second_effect",
    "same_key_other_body_rejected",
    "key_keeps_first_request",
    "compensation_twice_harmless",
    "keyless_accepted",
)

Body = Mapping[str, Any]
BodyFactory = Callable[[httpx.Client], Body]


class IdempotencyError(ContractError, AssertionError):
    """The provider breaks the Idempotency-Key contract; the message lists every finding."""

    def __init__(self, message: str, result: IdempotencyResult) -> None:
        super().__init__(message)
        #: The whole result, for programmatic use.
        self.result = result


@dataclass(frozen=True)
class IdempotentOperation:
    """One operation to check: ``method path`` with a JSON body.

    ``body`` is a valid body, or a factory that makes one from the client the check uses (called
    once per check, so it can make a fresh order, or first create what a compensation undoes).
    ``other_body`` is another valid body for the key-reuse check; by default a second body from
    the factory, or for a fixed body a copy with its first text (else number) field changed.
    ``compensation`` marks an operation that undoes another (a refund, a release, a cancel)."""

    method: str
    path: str
    body: Body | BodyFactory | None
    other_body: Body | BodyFactory | None = None
    compensation: bool = False
    name: str | None = None
    """How findings name it; ``METHOD /path`` by default."""

    @property
    def label(self) -> str:
        return self.name or f"{self.method.upper()} {self.path}"

    def make_body(self, client: httpx.Client) -> Body | None:
        return _made(self.body, client)

    def make_other_body(self, client: httpx.Client, first: Body | None) -> Body | None:
        if self.other_body is not None:
            other = _made(self.other_body, client)
        elif callable(self.body):
            other = _made(self.body, client)
        else:
            other = _varied(first, self.label)
        if _canonical(other) == _canonical(first):
            raise OptionError(
                f"{self.label}: the other body equals the first ({_text(first)}); "
                "give other_body, or a body factory that makes a different body each time"
            )
        return other


def _made(body: Body | BodyFactory | None, client: httpx.Client) -> Body | None:
    made = body(client) if callable(body) else body
    if made is not None and not isinstance(made, Mapping):
        raise OptionError(f"a body factory must return a mapping (a JSON object), not {made!r}")
    return made


def _varied(body: Body | None, label: str) -> Body:
    """A copy of ``body`` with its first text field (else number) changed."""
    if body is not None:
        for key, value in body.items():
            if isinstance(value, str):
                return {**body, key: f"{value}-other"}
        for key, value in body.items():
            if isinstance(value, int) and not isinstance(value, bool):
                return {**body, key: value + 1}
    raise OptionError(f"{label}: cannot derive a different body from {_text(body)}; give other_body")


@dataclass(frozen=True)
class IdempotencyFinding:
    """One broken promise of one operation."""

    check: str
    """One of `IDEMPOTENCY_CHECKS`."""
    operation: str
    message: str
    exchanges: tuple[str, ...] = ()
    """The requests that show it, each with its reply, in the order sent."""

    def __str__(self) -> str:
        lines = [f"{self.check} on {self.operation}: {self.message}"]
        lines += [f"      {exchange}" for exchange in self.exchanges]
        return "\n".join(lines)


@dataclass(frozen=True)
class IdempotencyResult:
    target: str
    operations: tuple[str, ...]
    findings: tuple[IdempotencyFinding, ...]
    requests: int
    checks: Mapping[str, int] = field(default_factory=dict)
    """How many times each check was made."""

    @property
    def ok(self) -> bool:
        return not self.findings

    def findings_of(self, check: str) -> list[IdempotencyFinding]:
        return [finding for finding in self.findings if finding.check == check]

    def report(self) -> str:
        head = (
            f"Idempotency-Key contract of {self.target}: {len(self.findings)} finding(s) "
            f"over {len(self.operations)} operation(s), {self.requests} requests"
        )
        return "\n".join([head, *(f"  {i}. {finding}" for i, finding in enumerate(self.findings, 1))])


# --- talking to the provider -----------------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    body: Any
    headers: httpx.Headers

    @classmethod
    def of(cls, response: httpx.Response) -> _Reply:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.content
        return cls(response.status_code, body, response.headers)

    def __str__(self) -> str:
        return f"{self.status} {_text(self.body)}"


def _text(value: Any, limit: int = 160) -> str:
    if isinstance(value, bytes):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


class _Session:
    def __init__(self, client: httpx.Client, target: str, key_header: str) -> None:
        self.client = client
        self.target = target
        self.key_header = key_header
        self.requests = 0
        self.prefix = f"sv-idem-{secrets.token_hex(4)}-"
        self.keys = 0

    def fresh_key(self) -> str:
        self.keys += 1
        return f"{self.prefix}{self.keys}"

    def send(self, op: IdempotentOperation, body: Body | None, key: str | None, log: list[str]) -> _Reply:
        headers = {self.key_header: key} if key is not None else {}
        try:
            response = self.client.request(op.method.upper(), op.path, json=body, headers=headers)
        except httpx.TransportError as error:
            raise ProviderUnreachableError(
                f"the provider at {self.target} did not answer {op.method.upper()} {op.path}: "
                f"{type(error).__name__}: {error or 'no reply'}"
            ) from error
        self.requests += 1
        reply = _Reply.of(response)
        sent = f"{self.key_header}: {key}" if key is not None else f"no {self.key_header}"
        log.append(f"{op.method.upper()} {op.path} [{sent}] {_text(body)} -> {reply}")
        return reply


def _client_for(client_or_base_url: Any, timeout: float) -> tuple[httpx.Client, str, bool]:
    """The client to use, how to name the provider, and whether this module must close the client."""
    if isinstance(client_or_base_url, httpx.Client):
        return client_or_base_url, str(client_or_base_url.base_url) or "the client's provider", False
    if isinstance(client_or_base_url, str):
        if not client_or_base_url.startswith(("http://", "https://")):
            raise OptionError(f"not an http(s) base URL: {client_or_base_url!r}")
        return httpx.Client(base_url=client_or_base_url, timeout=timeout), client_or_base_url, True
    if callable(client_or_base_url):
        from .._world._asgi import SyncASGITransport

        client = httpx.Client(transport=SyncASGITransport(client_or_base_url), base_url="http://provider", timeout=timeout)
        return client, f"asgi:{type(client_or_base_url).__name__}", True
    raise OptionError(
        f"check_idempotency needs an httpx.Client, a base URL or an ASGI app, not {client_or_base_url!r}"
    )


# --- the checks ------------------------------------------------------------------------------------


class _Checker:
    def __init__(
        self,
        session: _Session,
        *,
        replay_header: str | None,
        replay_value: str | None,
        conflict_statuses: frozenset[int],
        effects: Callable[[], object] | None,
    ) -> None:
        self.session = session
        self.replay_header = replay_header
        self.replay_value = replay_value
        self.conflict_statuses = conflict_statuses
        self.effects = effects
        self.findings: list[IdempotencyFinding] = []
        self.made: dict[str, int] = dict.fromkeys(IDEMPOTENCY_CHECKS, 0)

    def snapshot(self) -> object:
        return self.effects() if self.effects is not None else None

    def expect(self, check: str, op: IdempotentOperation, holds: bool, message: str, log: Sequence[str]) -> bool:
        self.made[check] += 1
        if not holds:
            self.findings.append(IdempotencyFinding(check, op.label, message, tuple(log)))
        return holds

    def marked(self, reply: _Reply) -> bool:
        assert self.replay_header is not None
        value = reply.headers.get(self.replay_header)
        return value is not None and (self.replay_value is None or value == self.replay_value)

    def replay(self, op: IdempotentOperation) -> None:
        """Check 1: same key, same body."""
        log: list[str] = []
        body, key = op.make_body(self.session.client), self.session.fresh_key()
        first = self.session.send(op, body, key, log)
        self.expect(
            "accepts_valid_body", op, 200 <= first.status < 300,
            f"a valid body was answered {first.status}, not 2xx (is the body valid?)", log,
        )
        before = self.snapshot()
        again = self.session.send(op, body, key, log)
        after = self.snapshot()
        self.expect(
            "same_key_same_reply", op, (again.status, _canonical(again.body)) == (first.status, _canonical(first.body)),
            f"the same key and body got {again} after {first}", log,
        )
        if self.replay_header is not None:
            self.expect(
                "replay_marker", op, self.marked(again) and not self.marked(first),
                f"the repeat should carry {self.replay_header}: {self.replay_value or '<any>'} and the first reply "
                f"should not; got {self.replay_header}={again.headers.get(self.replay_header)!r} on the repeat, "
                f"{first.headers.get(self.replay_header)!r} on the first",
                log,
            )
        if self.effects is not None:
            self.expect(
                "no_second_effect", op, before == after,
                f"the repeat took effect again: {_diff(before, after)}", log,
            )

    def conflict(self, op: IdempotentOperation) -> None:
        """Check 2: same key, another body."""
        log: list[str] = []
        body, key = op.make_body(self.session.client), self.session.fresh_key()
        first = self.session.send(op, body, key, log)
        other = op.make_other_body(self.session.client, body)
        before = self.snapshot()
        reused = self.session.send(op, other, key, log)
        after = self.snapshot()
        allowed = " or ".join(str(status) for status in sorted(self.conflict_statuses))
        self.expect(
            "same_key_other_body_rejected", op, reused.status in self.conflict_statuses and before == after,
            f"the key of an earlier request, sent with another body, was answered {reused.status} (expected {allowed})"
            + ("" if before == after else f" and took effect: {_diff(before, after)}"),
            log,
        )
        again = self.session.send(op, body, key, log)
        self.expect(
            "key_keeps_first_request", op, (again.status, _canonical(again.body)) == (first.status, _canonical(first.body)),
            f"after the conflicting request the key no longer replays the first one: got {again} after {first}", log,
        )

    def compensation_twice(self, op: IdempotentOperation) -> None:
        """Check 3: a compensation sent twice, each time with a key of its own."""
        log: list[str] = []
        body = op.make_body(self.session.client)
        first = self.session.send(op, body, self.session.fresh_key(), log)
        before = self.snapshot()
        second = self.session.send(op, body, self.session.fresh_key(), log)
        after = self.snapshot()
        problems = []
        if first.status >= 500 or second.status >= 500:
            problems.append(f"a server error ({first.status}, then {second.status})")
        elif (first.status, _canonical(first.body)) != (second.status, _canonical(second.body)):
            problems.append(f"another reply the second time ({second} after {first})")
        if before != after:
            problems.append(f"a second effect: {_diff(before, after)}")
        self.expect(
            "compensation_twice_harmless", op, not problems,
            "the compensation sent twice caused " + "; ".join(problems), log,
        )

    def keyless(self, op: IdempotentOperation) -> None:
        """Check 4: no key at all."""
        log: list[str] = []
        reply = self.session.send(op, op.make_body(self.session.client), None, log)
        self.expect(
            "keyless_accepted", op, 200 <= reply.status < 300,
            f"a request without {self.session.key_header} was answered {reply.status}, not 2xx", log,
        )


def _diff(before: object, after: object) -> str:
    if (
        isinstance(before, Sequence)
        and isinstance(after, Sequence)
        and not isinstance(before, str | bytes)
        and len(after) >= len(before)
        and list(after[: len(before)]) == list(before)
    ):
        added = list(after[len(before) :])
        return f"{len(added)} new: " + "; ".join(_text(item, 120) for item in added[:3])
    return f"{_text(before, 120)} -> {_text(after, 120)}"


def check_idempotency(
    client_or_base_url: httpx.Client | str | Any,
    operations: Iterable[IdempotentOperation],
    *,
    key_header: str = "Idempotency-Key",
    replay_header: str | None = None,
    replay_value: str | None = "true",
    conflict_statuses: Iterable[int] = (409, 422),
    effects: Callable[[], object] | None = None,
    timeout: float = 10.0,
    raise_on_failure: bool = True,
) -> IdempotencyResult:
    """Check that a provider honours the Idempotency-Key contract on each of ``operations``.

    ``client_or_base_url`` is an ``httpx.Client`` (used as it is, and not closed), a base URL,
    or an ASGI app (called in this process). ``key_header`` is the header that carries the key.
    ``replay_header`` is the header the provider puts on a replayed reply, if it declares one
    (``"Idempotency-Replayed"`` for the reference services), with ``replay_value`` its value
    (None: any value). ``conflict_statuses`` are the answers accepted for a key reused with
    another body. ``effects`` is an optional probe: a callable returning a snapshot of the
    provider's effects (its ledger rows, say) compared with ``==``; a repeat or a second
    compensation must leave it unchanged. See the module's documentation for the checks.

    Returns an `IdempotencyResult`. Unless ``raise_on_failure`` is False, raises
    `IdempotencyError` (with the result) when any check fails. A provider that stops answering
    raises `ProviderUnreachableError` naming it.
    """
    ops = list(operations)
    if not ops:
        raise OptionError("check_idempotency needs at least one operation")
    for op in ops:
        if not isinstance(op, IdempotentOperation):
            raise OptionError(f"not an IdempotentOperation: {op!r}")
    statuses = frozenset(conflict_statuses)
    if not statuses or not all(isinstance(status, int) and 400 <= status < 500 for status in statuses):
        raise OptionError(f"conflict_statuses must be 4xx status codes, not {sorted(statuses)!r}")
    client, target, owned = _client_for(client_or_base_url, timeout)
    session = _Session(client, target, key_header)
    checker = _Checker(
        session, replay_header=replay_header, replay_value=replay_value, conflict_statuses=statuses, effects=effects
    )
    try:
        for op in ops:
            checker.replay(op)
            checker.conflict(op)
            if op.compensation:
                checker.compensation_twice(op)
            checker.keyless(op)
    finally:
        if owned:
            client.close()
    result = IdempotencyResult(
        target=target,
        operations=tuple(op.label for op in ops),
        findings=tuple(checker.findings),
        requests=session.requests,
        checks={name: count for name, count in checker.made.items() if count},
    )
    if raise_on_failure and not result.ok:
        raise IdempotencyError(result.report(), result)
    return result
