"""The whole reference system in the session's containers, for the tests that run it end to end:
the four participants, each behind its fault proxy, and the order service (its saga in its own
container) calling them through the proxies; and the audit over every service's events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from saga_verify.containers import ContainerParticipant, ContainerSession, ContainerStartError, ServiceImage
from saga_verify.containers._services import READY_TIMEOUT
from saga_verify.proxy import Decide
from saga_verify.reference.services import _harness as harness

PARTICIPANTS = ("inventory", "payment", "shipping", "notification")
#: How long anything here may take on a busy machine: waits end when what they wait for happens.
PATIENCE = 120.0

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
                command += ["--participant", harness.class_path(payment_class)]
            self.participants[name] = session.participant(name, image.tag, command, decide=(decide or {}).get(name))
        command = ["--service", "order", "--host", "0.0.0.0", "--port", "8000", "--upstream-timeout", str(upstream_timeout)]
        command += [arg for name, p in self.participants.items() for arg in ("--upstream", f"{name}={p.url}")]
        if saga_class is not None:
            command += ["--participant", harness.class_path(saga_class)]
        if durable:
            command += ["--store", "/data/order.sqlite", "--saga-log", "/data/order-saga-log.sqlite"]
        # Durable: a new container of it may be started mid-saga on a busy machine, whose wait for
        # it must not be what fails.
        self.order = session.start(
            "order", image.tag, command, volumes={"data": "/data"} if durable else None, ready_timeout=PATIENCE if durable else READY_TIMEOUT
        )

    def place(self, order_id: str = "o-1") -> dict[str, Any]:
        """Place an order (two of sku-1 for 100) and return the order service's answer."""
        order = {"order_id": order_id, "sku": "sku-1", "qty": 2, "amount": 100}
        reply = httpx.post(f"{self.order.url}/orders", json=order, headers={"Idempotency-Key": order_id}, timeout=PATIENCE)
        assert reply.status_code == 201, reply.text
        outcome: dict[str, Any] = reply.json()
        return outcome

    def events(self, name: str) -> list[dict[str, Any]]:
        return harness.events(self.order.url if name == "order" else self.participants[name].direct_url)

    def audit(self) -> list[str]:
        """What the audit finds over every service's events, one ``"<order id>: <problem>"`` each."""
        return harness.audit([self.order.url, *(p.direct_url for p in self.participants.values())])

    def refusers(self) -> dict[str, Callable[[], object]]:
        """Per participant, what makes it refuse its next request."""
        return {name: harness.refuser(p.direct_url) for name, p in self.participants.items()}

    def outcome(self, order_id: str, timeout: float = PATIENCE) -> str:
        """The order's outcome once it has one (an order service started again finishes on its
        own what it had not answered), asked again while a container of it is being replaced."""
        return harness.order_outcome(
            lambda: self.order.url, order_id, timeout, told=self.order.logs_tail, meanwhile=(ContainerStartError,)
        )

    def settle(self, timeout: float = PATIENCE) -> None:
        """Wait until nothing is in flight at any participant's proxy: every request held or
        forwarded there has landed (what a test reads next is what those requests did)."""
        for name, participant in self.participants.items():
            assert participant.proxy.settle(timeout), f"requests to {name} still in flight after {timeout:g} s"
