"""What the fault proxy does with a request, as values: the actions ``decide`` answers
(`Pass`, `Delay`, `DropRequest`, `Stall`, `DropResponse`, `Duplicate`), what ``decide`` sees
(`ProxiedRequest`), what the proxy records (`ProxyRecord`), and decisions made from tables
(`scripted`, `scripted_by_delivery`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from ..errors import OptionError
from ..systems._protocol import DELIVERY_HEADER

__all__ = [
    "ACTIONS",
    "PASS",
    "Decide",
    "Delay",
    "DropRequest",
    "DropResponse",
    "Duplicate",
    "Pass",
    "ProxiedRequest",
    "ProxyAction",
    "ProxyRecord",
    "Stall",
    "check_seconds",
    "pass_all",
    "proxied",
    "scripted",
    "scripted_by_delivery",
]

_DIGITS = re.compile(r"^[0-9]{1,18}$")


# -- actions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyAction:
    """What the proxy does with one request; each subclass is one action. Actions are values: they
    compare, hash and print (``"delay seconds=0.5"``)."""

    kind: ClassVar[str] = ""

    def __str__(self) -> str:
        return self.kind


@dataclass(frozen=True)
class Pass(ProxyAction):
    """Forward the request and answer with the upstream's reply."""

    kind: ClassVar[str] = "pass"


@dataclass(frozen=True)
class Delay(ProxyAction):
    """Hold the request ``seconds`` real seconds on the proxy's loop, then forward it. The hold
    goes on if the client gives up meanwhile: the request lands late all the same, after whatever
    the caller did next (the reply then has no one to go to).

    With ``until``, the hold ends as soon as ``until()`` is true (asked every hundredth of a second
    on the proxy's loop: keep it quick, as ``decide``), and ``seconds`` only caps it: a request held
    until something else has happened lands after it however slow the machine is. If ``until``
    raises, nothing is forwarded: the client gets 500 and the record's ``error`` says why. ``until``
    takes no part in comparing, hashing or printing the action."""

    seconds: float
    until: Callable[[], bool] | None = field(default=None, compare=False, repr=False)

    kind: ClassVar[str] = "delay"

    def __post_init__(self) -> None:
        check_seconds(self.seconds, "Delay(seconds=...)")
        if self.until is not None and not callable(self.until):
            raise OptionError(f"Delay(until=...) must be a function answering whether to forward now, got {self.until!r}")

    def __str__(self) -> str:
        return f"delay seconds={_seconds_text(self.seconds)}"


@dataclass(frozen=True)
class DropRequest(ProxyAction):
    """Never forward the request; close the client connection without a reply. The caller sees
    the connection end (``httpx.RemoteProtocolError``) and nothing happened upstream."""

    kind: ClassVar[str] = "drop-request"


@dataclass(frozen=True)
class Stall(ProxyAction):
    """Never forward the request and never answer it: keep the client connection open (reading
    and dropping whatever else comes on it) until the client closes it or the proxy closes. The
    caller sees its own timeout and nothing happened upstream. Recorded at once, status None."""

    kind: ClassVar[str] = "stall"


@dataclass(frozen=True)
class DropResponse(ProxyAction):
    """Forward the request, read the upstream's whole reply (so its effect is committed), then
    close the client connection without answering: the caller sees the connection end and cannot
    tell whether the request took effect (the unknown outcome).

    ``then``, if given, runs between the two: once the whole reply is read and before the client
    connection is closed, on a worker thread (not the proxy's loop: it may block, e.g. to kill and
    restart the upstream, and may call ``proxy.retarget``), and the proxy waits for it. If it raises,
    the record's ``error`` says so; the client connection is closed without an answer all the same.
    The upstream connection of that client connection is closed too, never used again. ``then``
    does not run when the upstream fails (the client gets 502). It takes no part in comparing,
    hashing or printing the action. Do not call ``settle`` from it: ``then`` is in flight itself."""

    then: Callable[[], object] | None = field(default=None, compare=False, repr=False)

    kind: ClassVar[str] = "drop-response"


@dataclass(frozen=True)
class Duplicate(ProxyAction):
    """Forward the request twice, one after the other on the same upstream connection (a new one
    if the upstream closed it after the first reply), then answer with the reply to the first.

    The first reply because that is what a duplicate looks like to the caller on a real network:
    its request is answered by the delivery it made, and the copy's reply goes to no one. The
    client is answered only once the copy's reply is in, so when it has its answer both deliveries
    have taken effect (or been refused) upstream. The copy is sent byte for byte as the original,
    ``Saga-Verify-Delivery`` included. If the first delivery fails the client gets 502 and no
    copy is sent.

    With ``lag`` (real seconds, default 0: all of the above) the copy comes late instead: the
    proxy forwards the original and answers the client with its reply at once, then ``lag``
    seconds later sends the copy on a new upstream connection of its own, to the proxy's target
    of that time (byte for byte the original unless ``retarget`` changed the ``Host``), reads its
    reply and drops it. The request's record is appended when the client is answered (its
    ``copy_status`` None); when the copy settles a second record with the same ``seq`` and action
    is appended, its ``status`` None and its ``copy_status`` the copy's status (or its ``error``
    why the copy failed). The copy is in flight until then (`FaultProxy.settle` waits for it);
    closing the proxy abandons it, like a delayed request."""

    lag: float = 0.0

    kind: ClassVar[str] = "duplicate"

    def __post_init__(self) -> None:
        check_seconds(self.lag, "Duplicate(lag=...)")

    def __str__(self) -> str:
        return "duplicate" if self.lag == 0 else f"duplicate lag={_seconds_text(self.lag)}"


def check_seconds(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise OptionError(f"{what} must be a finite number of seconds >= 0, got {value!r}")


def _seconds_text(seconds: float) -> str:
    return str(int(seconds) if float(seconds).is_integer() else seconds)


ACTIONS = (Pass, Delay, DropRequest, DropResponse, Duplicate, Stall)
PASS = Pass()


# -- what decide sees and what the proxy records -----------------------------------------------------
@dataclass(frozen=True)
class ProxiedRequest:
    """A request as the client sent it, for ``decide``."""

    seq: int
    """Its number on this proxy: 1 for the first request the proxy read, over all connections."""
    method: str
    path: str
    """The request target: path and query (``"/charges?dry=1"``)."""
    headers: tuple[tuple[str, str], ...]
    """Every header as sent, names as the client spelled them (values read as latin-1)."""
    body: bytes
    delivery: int | None
    """The ``Saga-Verify-Delivery`` header as a number (the harness's trace entry of this
    delivery), or None if it is absent or not a number."""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


class ProxyRecord(NamedTuple):
    """What the proxy did with one request that reached ``decide``; or, for a `Duplicate` with a
    ``lag``, with its copy: a second record with the request's ``seq`` and action, ``status``
    None and the copy's outcome in ``copy_status`` (or ``error``)."""

    seq: int
    method: str
    path: str
    action: ProxyAction | None
    """What ``decide`` answered; None when it raised or answered something else (the client got
    500)."""
    status: int | None
    """The upstream's status (for a duplicate: of the first delivery); None when nothing was
    forwarded (a stall too), the upstream failed, or on the second record of a lagged copy."""
    copy_status: int | None = None
    """For a duplicate: the upstream's status for the copy. Without a lag it is on the request's
    record; with one, the request's record has None and the copy's own record has it."""
    error: str | None = None
    """Why it did not go as the action says (upstream unreachable, copy lost, decide raised, a
    ``DropResponse``'s ``then`` raised)."""


#: The decision function: called once per request, on the proxy's thread.
Decide = Callable[[ProxiedRequest], ProxyAction]


def _check_table(actions: Mapping[int, ProxyAction], default: ProxyAction, what: str) -> dict[int, ProxyAction]:
    table: dict[int, ProxyAction] = {}
    for key, action in actions.items():
        if isinstance(key, bool) or not isinstance(key, int) or key < 0:
            raise OptionError(f"{what}: keys must be whole numbers, got {key!r}")
        if not isinstance(action, ACTIONS):
            raise OptionError(f"{what}: {key} maps to {action!r}, which is not a proxy action")
        table[key] = action
    if not isinstance(default, ACTIONS):
        raise OptionError(f"{what}: default {default!r} is not a proxy action")
    return table


def scripted(actions: Mapping[int, ProxyAction], *, default: ProxyAction = PASS) -> Decide:
    """A ``decide`` that looks the request's number on the proxy up in ``actions``
    (``scripted({1: DropResponse(), 3: Duplicate()})``), else answers ``default``. The table is
    copied: the function is pure, and safe on any thread."""
    table = _check_table(actions, default, "scripted")
    if any(key < 1 for key in table):
        raise OptionError("scripted: requests are numbered from 1")

    def decide(request: ProxiedRequest) -> ProxyAction:
        return table.get(request.seq, default)

    return decide


def scripted_by_delivery(actions: Mapping[int, ProxyAction], *, default: ProxyAction = PASS) -> Decide:
    """A ``decide`` that looks the request's ``Saga-Verify-Delivery`` header up in ``actions``,
    else (no header, or a number not in the table) answers ``default``. Each attempt the harness
    makes is another delivery, so a retry is not hit again. Pure, like `scripted`."""
    table = _check_table(actions, default, "scripted_by_delivery")

    def decide(request: ProxiedRequest) -> ProxyAction:
        return default if request.delivery is None else table.get(request.delivery, default)

    return decide


def pass_all(request: ProxiedRequest) -> ProxyAction:
    """The default ``decide``: pass everything."""
    return PASS


def proxied(seq: int, method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes) -> ProxiedRequest:
    """The `ProxiedRequest` ``decide`` sees for a request, its delivery read from its headers."""
    delivery_name = DELIVERY_HEADER.lower()
    delivery_text = next((v for k, v in headers if k.lower() == delivery_name), None)
    delivery = int(delivery_text) if delivery_text is not None and _DIGITS.match(delivery_text.strip()) else None
    return ProxiedRequest(seq, method, target, headers, body, delivery)
