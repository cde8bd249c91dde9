"""The whole reference system in the session's containers, for the tests that run it end to end:
the four participants, each behind its fault proxy, and the order service (its saga in its own
container) calling them through the proxies; and the audit over every service's events."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from saga_verify.containers import ContainerParticipant, ContainerSession, ContainerStartError, ServiceImage
from saga_verify.containers._services import READY_TIMEOUT
from saga_verify.proxy import Decide
from saga_verify.reference._audit import Audit

PARTICIPANTS = ("inventory", "payment", "shipping", "notification")


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class ReferenceSystem:
    """Start it with the saga class the order service runs and the payment participant's class
    (None: the correct ones), each proxy's ``decide``, and how long the order service waits for a
    participant. ``durable``: the saga class is a durable one, and the order service keeps its
    store and saga log on a volume of its own, so that a new container of it finds them."""

    def __init__(
        self,
        session: ContainerSession,
        image: ServiceImage,
        *,
        saga_class: type | None = None,
        payment_class: type | None = None,
        decide: Mapping[str, Decide] | None = None,
        upstream_timeout: float = 1.0,
        durable: bool = False,
    ) -> None:
        self.upstream_timeout = upstream_timeout
        self.participants: dict[str, ContainerParticipant] = {}
        for name in PARTICIPANTS:
            command = ["--service", name, "--host", "0.0.0.0", "--port", "8000", "--inspect", "--store", f"/data/{name}.sqlite"]
            if name == "payment" and payment_class is not None:
                command += ["--participant", _class_path(payment_class)]
            self.participants[name] = session.participant(name, image.tag, command, decide=(decide or {}).get(name))
        command = ["--service", "order", "--host", "0.0.0.0", "--port", "8000", "--upstream-timeout", str(upstream_timeout)]
        command += [arg for name, p in self.participants.items() for arg in ("--upstream", f"{name}={p.url}")]
        if saga_class is not None:
            command += ["--participant", _class_path(saga_class)]
        if durable:
            command += ["--store", "/data/order.sqlite", "--saga-log", "/data/order-saga-log.sqlite"]
        # Durable: a new container of it may be started mid-saga on a busy machine, whose wait for
        # it must not be what fails.
        self.order = session.start(
            "order", image.tag, command, volumes={"data": "/data"} if durable else None, ready_timeout=120.0 if durable else READY_TIMEOUT
        )

    def place(self, order_id: str = "o-1") -> dict[str, Any]:
        """Place an order (two of sku-1 for 100) and return the order service's answer."""
        order = {"order_id": order_id, "sku": "sku-1", "qty": 2, "amount": 100}
        reply = httpx.post(f"{self.order.url}/orders", json=order, headers={"Idempotency-Key": order_id}, timeout=120)
        assert reply.status_code == 201, reply.text
        outcome: dict[str, Any] = reply.json()
        return outcome

    def events(self, name: str) -> list[dict[str, Any]]:
        url = self.order.url if name == "order" else self.participants[name].direct_url
        found: list[dict[str, Any]] = httpx.get(f"{url}/events", params={"limit": 1000}, timeout=10).json()["events"]
        return found

    def audit(self) -> list[str]:
        """What the audit finds over every service's events, one ``"<order id>: <problem>"`` each."""
        audit = Audit()
        for name in ("order", *PARTICIPANTS):
            for event in self.events(name):
                audit.handle(event)
        return audit.findings()

    def refusers(self) -> dict[str, Callable[[], object]]:
        """Per participant, what makes it refuse its next request."""

        def refuse(participant: ContainerParticipant) -> Callable[[], object]:
            return lambda: httpx.post(f"{participant.direct_url}/_inspect/refuse-next", timeout=10).raise_for_status()

        return {name: refuse(p) for name, p in self.participants.items()}

    def outcome(self, order_id: str, timeout: float = 120.0) -> str:
        """The order's outcome once it has one: polled, since an order service started again
        finishes on its own what it had not answered (its requests wait until it has)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                reply = httpx.get(f"{self.order.url}/orders/{order_id}", timeout=timeout)
                if reply.status_code == 200:
                    return str(reply.json()["outcome"])
                last = f"{reply.status_code} {reply.text[:200]}"
            except (httpx.TransportError, ContainerStartError) as error:  # a container of it is being replaced
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.05)
        raise AssertionError(f"order {order_id} did not end within {timeout:g} s ({last}); the order service wrote:\n{self.order.logs_tail()}")

    def wait_for(self, what: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, "it did not happen in time"
            time.sleep(0.05)
