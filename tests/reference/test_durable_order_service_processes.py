"""The order service running the durable saga, as a process: killed at a plan's coordinator crash
(placed at the fault proxies in front of its participants, so the moment is the plan's, not a
timer's), started again on its store and saga log, it finishes the order as the simulation does
under the same plan, and the audit of the services' events finds nothing wrong. A durable variant
that calls before it logs its intent, under its minimal plan, leaves the audit a double effect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from durable_shop import DurableShop

import saga_verify
from saga_verify import FaultPlan
from saga_verify.errors import PlanError
from saga_verify.proxy import PlanAtProxies
from saga_verify.reference import calls_before_intent, durable_order_saga
from saga_verify.reference._broken import CallsBeforeIntent

pytestmark = pytest.mark.slow

#: A crash after the charge was applied; and a crash during compensation, then another during
#: the recovery that resumes it.
PLANS = {
    "crash-after-charge": '[{"kind": "coordinator-crash-after", "at": "payment.charge#1"}]',
    "crashes-while-compensating": '[{"kind": "refuse", "at": "shipping.create#1"},'
    ' {"kind": "coordinator-crash-after", "at": "payment.refund#1"},'
    ' {"kind": "coordinator-crash-before", "at": "inventory.release#1"}]',
}


def plan(faults: str) -> FaultPlan:
    return FaultPlan.loads(f'{{"faults": {faults}}}')


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[DurableShop]:
    made = DurableShop(tmp_path)
    yield made
    made.close()


@pytest.mark.parametrize("name", sorted(PLANS))
def test_killed_mid_saga_the_order_service_recovers_and_finishes_as_in_simulation(shop: DurableShop, name: str) -> None:
    faults = plan(PLANS[name])
    simulated = saga_verify.run_plan(durable_order_saga, faults)
    outcome = shop.play(faults)
    assert shop.restarts == sum(f.kind.startswith("coordinator-crash") for f in faults.faults) > 0
    assert outcome == simulated.status
    assert shop.audit() == []
    charges = [e["type"] for e in shop.events("payment")]
    assert charges == (["payment.charged"] if outcome == "completed" else ["payment.charged", "payment.refunded"])


def test_a_saga_that_calls_before_logging_its_intent_charges_twice_in_its_service(tmp_path: Path) -> None:
    found = saga_verify.explore(calls_before_intent, report_dir=None, seed=0)
    assert not found.ok
    minimal = found.failures[0].plan
    assert [f.kind for f in minimal.faults] == ["coordinator-crash-after"]
    shop = DurableShop(tmp_path, CallsBeforeIntent)
    try:
        outcome = shop.play(minimal)
        assert outcome == saga_verify.run_plan(calls_before_intent, minimal).status
        assert any("not one" in line for line in shop.audit()), shop.audit()
    finally:
        shop.close()


def test_a_plan_the_proxies_cannot_play_is_refused_naming_why(shop: DurableShop) -> None:
    proxies = dict(shop.participants)
    with pytest.raises(PlanError, match=r"give coordinator=<function"):
        PlanAtProxies(plan('[{"kind": "coordinator-crash-before", "at": "payment.charge#1"}]'), proxies, {"payment": {("POST", "/charges"): "charge"}})
    for kind in ("drop", "switch"):
        with pytest.raises(PlanError, match=f"a {kind} is .*the proxies cannot play it"):
            PlanAtProxies(plan(f'[{{"kind": "{kind}", "at": "payment.charge#1"}}]'), proxies, {}, coordinator=shop.restart_order_service)
    assert httpx.get(f"{shop.order.url}/health").status_code == 200
