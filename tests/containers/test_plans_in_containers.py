"""The search's own plans, played black-box: the simulation finds a broken variant's minimal plan;
the whole reference system then runs in containers (the order service's saga in its own), the
plan is played at the fault proxies in front of the participants (a real pause, a real kill
and restart, dropped and delayed traffic), and the audit, reading only the services' events,
finds what the invariants found. The correct system under the same plan leaves it nothing to find
but an honest "failed"."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hypothesis
import pytest
from reference_system import PARTICIPANTS, ReferenceSystem

import saga_verify
from saga_verify.containers import ContainerSession, ServiceImage
from saga_verify.containers._services import READY_TIMEOUT
from saga_verify.proxy import PlanAtProxies, routes_from_openapi
from saga_verify.reference import OrderSaga, Payment, variants

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {name: routes_from_openapi(ROOT / "contracts" / "openapi" / f"{name}.yaml") for name in PARTICIPANTS}
#: Which variants, and whether the search may pause participants for them: one plan per kind of
#: fault the proxies play (lose-reply, pause, crash, refuse + outage, delay + outage).
CASES = {
    "charge_without_key": False,
    "lost_reply_not_compensated": True,
    "volatile_dedupe": False,
    "swallowed_compensation_error": False,
    "refund_forgets_charge": False,
}
#: Real seconds the order service waits for a participant, where the simulated saga waits its
#: call_timeout (1 virtual second): the plan's seconds scale by it. Short, so that "late" (thirty
#: timeouts) stays short. Where the plan crashes a participant, the call whose reply the crash
#: loses waits until the container is back, so the order service waits as long as a restart may
#: take (its ready check's limit, and as much again for the engine): a slow restart on a busy
#: machine must not turn into a timeout the simulation never had.
UPSTREAM_TIMEOUT = 0.5
CRASH_UPSTREAM_TIMEOUT = 2 * READY_TIMEOUT
ORDER_SERVICE_PROBLEM = "failed: an operator must act"


def play(system: ReferenceSystem, plan: saga_verify.FaultPlan, order_id: str) -> tuple[str, list[str]]:
    """Place one order with ``plan`` played at the proxies; its outcome, and what the audit finds
    about it once every held request, late copy and pause has played out."""
    with PlanAtProxies(plan, system.participants, ROUTES, scale=system.upstream_timeout, refuse=system.refusers()) as played:
        outcome: str = system.place(order_id)["outcome"]
        assert played.settle(120.0), "the plan's held requests and pauses did not play out"
        assert played.errors == []
        assert played.missed() == [], f"the saga never made the planned calls {played.missed()}"
    found = [line.split(": ", 1)[1] for line in system.audit() if line.startswith(f"{order_id}: ")]
    return outcome, found


@pytest.fixture(scope="module")
def minimal_plans() -> dict[str, tuple[saga_verify.FaultPlan, str, str]]:
    """Per variant: the plan the search finds for it, the broken saga's status under it and the
    correct saga's, in simulation."""
    found = {}
    for variant in variants():
        if variant.name not in CASES:
            continue
        saga = dataclasses.replace(variant.saga, pauses=CASES[variant.name])
        result = saga_verify.explore(saga, settings=hypothesis.settings(database=None), report_dir=None, seed=0)
        assert not result.ok, f"the search missed {variant.name}"
        plan = result.failures[0].plan
        broken_status = saga_verify.run_plan(variant.saga, plan).status
        correct = variants()[0].saga
        correct_status = saga_verify.run_plan(correct, plan.for_saga(correct)).status  # the same faults
        found[variant.name] = (plan, broken_status, correct_status)
    return found


def test_each_kind_of_fault_is_in_some_plan(minimal_plans: dict[str, tuple[saga_verify.FaultPlan, str, str]]) -> None:
    kinds = {f.kind for plan, _, _ in minimal_plans.values() for f in plan.faults}
    assert kinds >= {"lose-reply", "pause", "crash", "refuse", "outage", "delay"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_searchs_plan_breaks_the_variant_in_containers_and_the_correct_system_holds(
    name: str, minimal_plans: dict[str, tuple[saga_verify.FaultPlan, str, str]], saga_containers: ContainerSession, service_image: ServiceImage
) -> None:
    plan, broken_status, correct_status = minimal_plans[name]
    variant = next(v for v in variants() if v.name == name)
    timeout = CRASH_UPSTREAM_TIMEOUT if any(f.kind == "crash" for f in plan.faults) else UPSTREAM_TIMEOUT

    broken = ReferenceSystem(
        saga_containers,
        service_image,
        saga_class=None if variant.saga_class is OrderSaga else variant.saga_class,
        payment_class=None if variant.payment_class is Payment else variant.payment_class,
        upstream_timeout=timeout,
    )
    outcome, found = play(broken, plan, "o-1")
    assert outcome == broken_status, f"{plan}: the order service said {outcome}, the simulation {broken_status}"
    assert [f for f in found if f != ORDER_SERVICE_PROBLEM], f"the audit found nothing wrong under {plan}"

    with ContainerSession() as session:
        outcome, found = play(ReferenceSystem(session, service_image, upstream_timeout=timeout), plan, "o-1")
    assert outcome == correct_status, f"{plan}: the correct order service said {outcome}, the simulation {correct_status}"
    assert found == ([ORDER_SERVICE_PROBLEM] if outcome == "failed" else []), found
