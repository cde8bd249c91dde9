"""The reference system with the durable order service, as processes on this machine: the four
participants, each behind a fault proxy of its own, and the order service running a durable saga
through them with its store and its saga log in files, so that it can be killed mid-saga and
started again. A plan is played at the proxies; its coordinator crashes kill the order service."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from saga_verify import FaultPlan
from saga_verify._runtimes._process import ServiceProcess
from saga_verify.proxy import FaultProxy, PlanAtProxies, routes_from_openapi
from saga_verify.reference import DurableOrderSaga
from saga_verify.reference.services import _harness as harness

ROOT = Path(__file__).resolve().parents[2]
PARTICIPANTS = ("inventory", "payment", "shipping", "notification")
ROUTES = {name: routes_from_openapi(ROOT / "contracts" / "openapi" / f"{name}.yaml") for name in PARTICIPANTS}
SERVE = [sys.executable, "-m", "saga_verify.reference.services", "--host", "{host}", "--port", "{port}", "--parent-pid", "{parent_pid}"]
#: How long anything here may take on a busy machine: waits poll until it happens, this is their limit.
PATIENCE = 120.0
#: Real seconds the order service waits for a participant: longer than killing and starting it
#: again takes, so that a crash the plan places always lands while the saga waits.
UPSTREAM_TIMEOUT = 60.0


@dataclass
class Proxied:
    """A participant process behind its proxy (what `PlanAtProxies` plays the plan at)."""

    process: ServiceProcess
    proxy: FaultProxy


class DurableShop:
    """Start it in a folder (its services' files), with the durable saga class the order service
    runs; `close` stops everything."""

    def __init__(self, folder: Path, saga_class: type[DurableOrderSaga] = DurableOrderSaga) -> None:
        self.participants: dict[str, Proxied] = {}
        try:
            for name in PARTICIPANTS:
                process = ServiceProcess(name, [*SERVE, "--service", name, "--inspect"], ready="/health").start()
                self.participants[name] = Proxied(process, FaultProxy(process.url).start())
            upstreams = [arg for name, p in self.participants.items() for arg in ("--upstream", f"{name}={p.proxy.url}")]
            self.order = ServiceProcess(
                "order",
                [
                    *SERVE, "--service", "order", "--participant", harness.class_path(saga_class), *upstreams,
                    "--store", str(folder / "order.sqlite"), "--saga-log", str(folder / "order-saga-log.sqlite"),
                    "--upstream-timeout", str(UPSTREAM_TIMEOUT),
                ],
                ready="/health",
            ).start()  # fmt: skip
        except BaseException:
            self.close()
            raise
        self.restarts = 0

    def restart_order_service(self) -> None:
        """The coordinator crash: SIGKILL, then the same command on the same files and port."""
        self.restarts += 1
        self.order.restart()

    def refusers(self) -> dict[str, Any]:
        return {name: harness.refuser(p.process.url) for name, p in self.participants.items()}

    def play(self, plan: FaultPlan, order_id: str = "o-1") -> str:
        """Place one order with ``plan`` played at the proxies; the outcome the order service
        ends it with, once every fault has played out."""
        order = {"order_id": order_id, "sku": "sku-1", "qty": 2, "amount": 100}
        proxies = dict(self.participants)
        with PlanAtProxies(plan, proxies, ROUTES, refuse=self.refusers(), coordinator=self.restart_order_service) as played:
            try:
                first = httpx.post(f"{self.order.url}/orders", json=order, headers={"Idempotency-Key": order_id}, timeout=PATIENCE)
            except httpx.TransportError:
                first = None  # the order service was killed under the request: it owes the order
            # The order's end comes after the plan's last crash: then nothing more is owed.
            try:
                outcome = self.outcome(order_id)
            except TimeoutError as error:
                raise AssertionError(f"{error}\nplaying the plan: {played.errors}; at the proxies: {played.applied}") from None
            assert played.settle(PATIENCE), "the plan's held requests and restarts did not play out"
            assert played.errors == [], f"playing the plan went wrong: {played.errors}; at the proxies: {played.applied}"
            assert played.missed() == [], f"the saga never made the planned calls {played.missed()}"
        if first is not None:
            assert (first.status_code, first.json()["outcome"]) == (201, outcome)
        # The place request again with its key, as a client whose connection broke retries it:
        # answered with the outcome of the order it placed, not run again.
        again = httpx.post(f"{self.order.url}/orders", json=order, headers={"Idempotency-Key": order_id}, timeout=PATIENCE)
        assert (again.status_code, again.json(), again.headers.get("Idempotency-Replayed")) == (
            201, {"status": "ok", "order_id": order_id, "outcome": outcome}, "true",
        )  # fmt: skip
        return outcome

    def outcome(self, order_id: str) -> str:
        """The order's outcome, once it has one (a restarted order service finishes it on its own)."""
        return harness.order_outcome(lambda: self.order.url, order_id, PATIENCE, told=self.order.stderr_tail)

    def events(self, name: str) -> list[dict[str, Any]]:
        return harness.events(self.order.url if name == "order" else self.participants[name].process.url)

    def audit(self) -> list[str]:
        """What the audit finds over every service's events."""
        return harness.audit([self.order.url, *(p.process.url for p in self.participants.values())])

    def close(self) -> None:
        for p in self.participants.values():
            p.proxy.close()
            p.process.stop()
        order = getattr(self, "order", None)
        if order is not None:
            order.stop()
