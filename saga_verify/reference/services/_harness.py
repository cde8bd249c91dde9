"""What a harness does with the reference services it runs (as processes or in containers) over
HTTP: read their outboxes and audit them, make a participant refuse its next request, and wait
for an order's outcome while the order service may be killed and started again under it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from .._audit import Audit

__all__ = ["audit", "class_path", "events", "order_outcome", "refuser"]


def class_path(cls: type) -> str:
    """``module:QualifiedName``, as ``--participant`` takes it."""
    return f"{cls.__module__}:{cls.__qualname__}"


def events(url: str) -> list[dict[str, Any]]:
    """The events in the outbox of the service at ``url``, oldest first."""
    found: list[dict[str, Any]] = httpx.get(f"{url}/events", params={"limit": 1000}, timeout=10).json()["events"]
    return found


def audit(urls: Iterable[str]) -> list[str]:
    """What the audit finds over the events of the services at ``urls`` (the order service's and
    its participants'), one ``"<order id>: <problem>"`` each."""
    found = Audit()
    for url in urls:
        for event in events(url):
            found.handle(event)
    return found.findings()


def refuser(url: str) -> Callable[[], object]:
    """What makes the participant at ``url`` (served with ``--inspect``) refuse its next request."""
    return lambda: httpx.post(f"{url}/_inspect/refuse-next", timeout=10).raise_for_status()


def order_outcome(
    url: Callable[[], str],
    order_id: str,
    timeout: float,
    *,
    told: Callable[[], str],
    meanwhile: tuple[type[Exception], ...] = (),
) -> str:
    """The outcome of order ``order_id`` once the order service at ``url()`` has one. Polled: a
    service started again finishes the order on its own (a request for the order waits until it
    has), and until it is back there is nothing to ask. ``meanwhile``: errors of ``url()`` while
    the service is being replaced, asked again like a refused connection. A `TimeoutError` after
    ``timeout`` seconds says the last answer and what the service ``told`` (the end of its log)."""
    asked_again: tuple[type[Exception], ...] = (httpx.TransportError, *meanwhile)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(f"{url()}/orders/{order_id}", timeout=timeout)
            if reply.status_code == 200:
                return str(reply.json()["outcome"])
            last = f"{reply.status_code} {reply.text[:200]}"
        except asked_again as error:
            last = f"{type(error).__name__}: {error}"
        time.sleep(0.05)
    raise TimeoutError(f"order {order_id} did not end within {timeout:g} s ({last}); the order service says:\n{told()}")
