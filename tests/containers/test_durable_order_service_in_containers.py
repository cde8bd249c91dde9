"""The order service running the durable saga in its container, killed mid-saga: the plan's
coordinator crash is placed at the fault proxies in front of the participants (the moment the
plan names, not a timer's), and there the order service's container is killed, removed, and a new
one started on the volume that holds its store and saga log. The new container finishes the order
as the simulation does under the same plan, and the audit of the services' events finds nothing
wrong. The durable variant that calls before logging its intent leaves the audit a double effect."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from reference_system import PARTICIPANTS, ReferenceSystem

import saga_verify
from saga_verify import FaultPlan
from saga_verify.containers import ContainerSession, ServiceImage
from saga_verify.proxy import PlanAtProxies, routes_from_openapi
from saga_verify.reference import DurableOrderSaga, calls_before_intent, durable_order_saga
from saga_verify.reference._broken import CallsBeforeIntent

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {name: routes_from_openapi(ROOT / "contracts" / "openapi" / f"{name}.yaml") for name in PARTICIPANTS}
#: Real seconds the order service waits for a participant: longer than killing its container and
#: starting a new one takes on a busy machine, so the crash always lands while the saga waits.
UPSTREAM_TIMEOUT = 90.0
PATIENCE = 180.0

PLANS = {
    # applied, and the coordinator dies before it reads the reply
    "crash-after-charge": '[{"kind": "coordinator-crash-after", "at": "payment.charge#1"}]',
    # a crash while compensating, then another during the recovery that resumes it
    "crashes-while-compensating": '[{"kind": "refuse", "at": "shipping.create#1"},'
    ' {"kind": "coordinator-crash-after", "at": "payment.refund#1"},'
    ' {"kind": "coordinator-crash-before", "at": "inventory.release#1"}]',
}


class Replaced:
    """The coordinator hook: the order service's container killed, removed and started anew."""

    def __init__(self, system: ReferenceSystem) -> None:
        self.system = system
        self.count = 0
        self.containers: list[str] = [system.order.id]
        #: How long each replacement took, until the new container answered.
        self.seconds: list[float] = []

    def __call__(self) -> None:
        self.count += 1
        started = time.monotonic()
        self.system.order.replace()
        self.containers.append(self.system.order.id)
        self.seconds.append(round(time.monotonic() - started, 1))


def play(system: ReferenceSystem, plan: FaultPlan, order_id: str = "o-1") -> tuple[str, Replaced]:
    order = {"order_id": order_id, "sku": "sku-1", "qty": 2, "amount": 100}
    replaced = Replaced(system)
    with PlanAtProxies(plan, system.participants, ROUTES, refuse=system.refusers(), coordinator=replaced) as played:
        try:
            httpx.post(f"{system.order.url}/orders", json=order, headers={"Idempotency-Key": order_id}, timeout=PATIENCE)
        except httpx.TransportError:
            pass  # the container was killed under the request: the order is owed all the same
        # The order's end comes after the plan's last crash: then nothing more is owed.
        try:
            outcome = system.outcome(order_id, PATIENCE)
        except TimeoutError as error:
            raise AssertionError(
                f"{error}\nplaying the plan: {played.errors}; at the proxies: {played.applied}; replaced in {replaced.seconds} s"
            ) from None
        assert played.settle(PATIENCE), "the plan's held requests and restarts did not play out"
        assert played.errors == []
        assert played.missed() == [], f"the saga never made the planned calls {played.missed()}"
    # The place request again with its key, as a client whose connection broke retries it.
    again = httpx.post(f"{system.order.url}/orders", json=order, headers={"Idempotency-Key": order_id}, timeout=PATIENCE)
    assert (again.status_code, again.json()["outcome"], again.headers.get("Idempotency-Replayed")) == (201, outcome, "true")
    return outcome, replaced


@pytest.mark.parametrize("name", sorted(PLANS))
def test_killed_mid_saga_a_new_container_of_the_order_service_finishes_the_order(
    name: str, service_image: ServiceImage
) -> None:
    plan = FaultPlan.loads(f'{{"faults": {PLANS[name]}}}')
    simulated = saga_verify.run_plan(durable_order_saga, plan)
    with ContainerSession() as session:
        system = ReferenceSystem(session, service_image, saga_class=DurableOrderSaga, upstream_timeout=UPSTREAM_TIMEOUT, durable=True)
        outcome, replaced = play(system, plan)
        assert replaced.count == sum(f.kind.startswith("coordinator-crash") for f in plan.faults) > 0
        assert len(set(replaced.containers)) == replaced.count + 1  # a new container each time
        assert outcome == simulated.status
        assert system.audit() == []
        charged = [e["type"] for e in system.events("payment")]
        assert charged == (["payment.charged"] if outcome == "completed" else ["payment.charged", "payment.refunded"])


def test_a_saga_that_calls_before_logging_its_intent_double_reserves_in_its_container(service_image: ServiceImage) -> None:
    found = saga_verify.explore(calls_before_intent, report_dir=None, seed=0)
    assert not found.ok
    plan = found.failures[0].plan
    with ContainerSession() as session:
        system = ReferenceSystem(session, service_image, saga_class=CallsBeforeIntent, upstream_timeout=UPSTREAM_TIMEOUT, durable=True)
        outcome, _ = play(system, plan)
        assert outcome == saga_verify.run_plan(calls_before_intent, plan).status
        assert any("not one" in line for line in system.audit()), system.audit()
