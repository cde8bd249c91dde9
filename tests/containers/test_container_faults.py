"""Faults only real services give, on the reference system running entirely in containers: the
order service's saga (itself in a container) calls the four participants through fault proxies
(`saga_verify.proxy`), and the audit reads every service's events to judge the outcome.

Each proxy fault (a response dropped after the charge committed, a duplicated request, dropped
requests, a delayed request) and a container paused mid-saga is shown catching a broken variant,
while the correct saga under the same fault leaves nothing for the audit to find. These use the
``saga_containers`` fixture, as a user testing their own images would.

Real time decides nothing here that load could change: the order service waits for its
participants longer than anything the machine does may take (`PATIENT`), except where a test needs
it to give up, and then what must come after its giving up waits for it (a charge held until the
refund was answered, a container thawed by the compensation's arrival, a restart done before the
retry is sent)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from reference_system import ReferenceSystem

from saga_verify.containers import ContainerParticipant, ContainerSession, ServiceImage
from saga_verify.containers._services import READY_TIMEOUT
from saga_verify.proxy import Delay, DropRequest, DropResponse, Duplicate, Pass, ProxiedRequest, ProxyAction
from saga_verify.reference import _broken

pytestmark = pytest.mark.slow

#: How long the order service waits for a participant where no test needs it to give up: longer
#: than a container restart may take (its ready check's own limit, and as much again for the
#: engine to kill and start it), so that only a real failure, never a slow machine, ends a call.
PATIENT = 2 * READY_TIMEOUT
#: Where a test needs the order service to give up on a call that cannot answer.
IMPATIENT = 0.5


def stack(
    session: ContainerSession,
    image: ServiceImage,
    *,
    saga: str | None = None,
    payment: str | None = None,
    decide: dict[str, Callable[[ProxiedRequest], ProxyAction]] | None = None,
    upstream_timeout: float = PATIENT,
) -> ReferenceSystem:
    """The reference system with the broken saga or payment named (from `_broken`)."""
    return ReferenceSystem(
        session,
        image,
        saga_class=getattr(_broken, saga) if saga else None,
        payment_class=getattr(_broken, payment) if payment else None,
        decide=decide,
        upstream_timeout=upstream_timeout,
    )


def on(method: str, path: str, actions: dict[int, ProxyAction]) -> Callable[[ProxiedRequest], ProxyAction]:
    """Decide by the n-th ``method path`` request the proxy sees (1: the first); others pass."""
    seen = {"n": 0}
    lock = threading.Lock()

    def decide(request: ProxiedRequest) -> ProxyAction:
        if (request.method, request.path.split("?")[0]) != (method, path):
            return Pass()
        with lock:
            seen["n"] += 1
            return actions.get(seen["n"], Pass())

    return decide


def charged(stack: ReferenceSystem) -> list[str]:
    return [e["data"]["charge_id"] for e in stack.events("payment") if e["type"] == "payment.charged"]


@pytest.mark.parametrize("fault", [DropResponse(), Duplicate()], ids=["drop-response", "duplicate"])
def test_a_charge_without_a_key_is_made_twice(saga_containers: ContainerSession, service_image: ServiceImage, fault: ProxyAction) -> None:
    broken = stack(saga_containers, service_image, saga="ChargeWithoutKey", decide={"payment": on("POST", "/charges", {1: fault})})
    assert broken.place()["outcome"] == "completed"
    assert len(charged(broken)) == 2
    assert "o-1: 2 charges (ch-1, ch-2), not one" in broken.audit()
    assert [r.action for r in broken.participants["payment"].proxy.records if r.path == "/charges"] == [fault] + (
        [Pass()] if isinstance(fault, DropResponse) else []
    )


@pytest.mark.parametrize("fault", [DropResponse(), Duplicate()], ids=["drop-response", "duplicate"])
def test_the_correct_saga_charges_once_under_the_same_fault(saga_containers: ContainerSession, service_image: ServiceImage, fault: ProxyAction) -> None:
    correct = stack(saga_containers, service_image, decide={"payment": on("POST", "/charges", {1: fault})})
    assert correct.place()["outcome"] == "completed"
    assert len(charged(correct)) == 1
    assert correct.audit() == []


def _refund_never_arrives(saga: str | None, session: ContainerSession, image: ServiceImage) -> tuple[ReferenceSystem, dict[str, Any]]:
    lost = {n: DropRequest() for n in range(1, 10)}
    made = stack(session, image, saga=saga, decide={"payment": on("POST", "/refunds", lost)})
    # The shipment is refused, so the saga must refund the charge: every refund request is dropped.
    assert httpx.post(f"{made.participants['shipping'].direct_url}/_inspect/refuse-next").status_code == 204
    return made, made.place()


def test_dropped_compensations_reported_as_done_are_caught(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    broken, placed = _refund_never_arrives("SwallowedCompensationError", saga_containers, service_image)
    assert placed["outcome"] == "compensated"
    assert broken.audit() == ["o-1: compensated, but charge ch-1 still stands"]


def test_the_correct_saga_says_it_failed_when_compensations_are_dropped(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    correct, placed = _refund_never_arrives(None, saga_containers, service_image)
    assert placed["outcome"] == "failed"
    assert correct.audit() == ["o-1: failed: an operator must act"]


def _late_charge(payment: str | None, session: ContainerSession, image: ServiceImage) -> ReferenceSystem:
    # The first charge is held past the order service's timeout, its retries are lost: the saga
    # gives up, refunds, and only then, once the refund was answered, does the first charge land.
    holder: list[ReferenceSystem] = []

    def refunded() -> bool:
        return bool(holder) and any(r.path == "/refunds" and r.status is not None for r in holder[0].participants["payment"].proxy.records)

    actions: dict[int, ProxyAction] = {1: Delay(PATIENT, until=refunded), 2: DropRequest(), 3: DropRequest()}
    made = stack(session, image, payment=payment, decide={"payment": on("POST", "/charges", actions)}, upstream_timeout=IMPATIENT)
    holder.append(made)
    assert made.place()["outcome"] == "compensated"
    made.settle()  # the held charge has landed
    assert any(r.path == "/charges" and r.status is not None for r in made.participants["payment"].proxy.records)
    return made


def test_a_delayed_charge_that_lands_after_its_refund_is_caught(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    broken = _late_charge("RefundForgetsCharge", saga_containers, service_image)
    assert broken.audit() == ["o-1: compensated, but charge ch-1 still stands"]


def test_the_correct_payment_refuses_a_charge_that_lands_after_its_refund(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    correct = _late_charge(None, saga_containers, service_image)
    landed = [r for r in correct.participants["payment"].proxy.records if r.path == "/charges" and r.status is not None]
    assert [r.status for r in landed] == [402]  # refused: refunded before it arrived
    assert correct.audit() == []


def _paused_during_charge(saga: str | None, session: ContainerSession, image: ServiceImage) -> ReferenceSystem:
    """The payment container is frozen when the first charge arrives (the charge waits in it,
    and so do its retries); it thaws when the first compensation request arrives, at payment
    (a refund) or at inventory (a release)."""
    payment: list[ContainerParticipant] = []
    paused = threading.Event()

    def thaw() -> None:
        if paused.is_set():
            payment[0].unpause()
            paused.clear()

    def at_payment(request: ProxiedRequest) -> ProxyAction:
        if request.path == "/charges" and not paused.is_set() and not payment[0].container.paused:
            payment[0].pause()
            paused.set()
        elif request.path == "/refunds":
            thaw()
        return Pass()

    def at_inventory(request: ProxiedRequest) -> ProxyAction:
        if request.path == "/releases":
            thaw()
        return Pass()

    made = stack(session, image, saga=saga, decide={"payment": at_payment, "inventory": at_inventory}, upstream_timeout=IMPATIENT)
    payment.append(made.participants["payment"])
    assert made.place()["outcome"] == "compensated"
    made.settle()  # the charge frozen in the container has landed once it thawed
    assert len(charged(made)) == 1
    return made


def test_a_charge_frozen_in_a_paused_container_is_never_refunded_by_the_broken_saga(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    broken = _paused_during_charge("LostReplyNotCompensated", saga_containers, service_image)
    assert broken.audit() == ["o-1: compensated, but charge ch-1 still stands"]


def test_the_correct_saga_refunds_a_charge_that_was_frozen(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    correct = _paused_during_charge(None, saga_containers, service_image)
    assert correct.audit() == []
    assert [e["type"] for e in correct.events("payment")] == ["payment.charged", "payment.refunded"]


def _killed_after_charge(payment: str | None, session: ContainerSession, image: ServiceImage) -> ReferenceSystem:
    """The first charge commits and its reply is lost: the payment container is killed and
    started again before the order service learns the call failed, so its retry reaches a service
    that has only what its store kept. The order service waits for the call as long as a restart
    may take, so the retry comes after the restart however slow the restart is."""
    holder: list[ContainerParticipant] = []
    restart_after_the_charge = DropResponse(then=lambda: holder[0].restart())
    made = stack(session, image, payment=payment, decide={"payment": on("POST", "/charges", {1: restart_after_the_charge})})
    holder.append(made.participants["payment"])
    outcome = made.place()["outcome"]
    charges = [r for r in holder[0].proxy.records if r.path == "/charges"]
    assert [(r.action, r.error) for r in charges] == [(DropResponse(), None), (Pass(), None)]  # restarted, then retried once
    assert outcome == "completed"
    return made


def test_a_payment_that_keeps_its_keys_in_memory_charges_again_after_a_kill(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    broken = _killed_after_charge("VolatileDedupePayment", saga_containers, service_image)
    assert len(charged(broken)) == 2
    assert "o-1: 2 charges (ch-1, ch-2), not one" in broken.audit()


def test_a_killed_payment_comes_back_from_its_store_and_replays(saga_containers: ContainerSession, service_image: ServiceImage) -> None:
    correct = _killed_after_charge(None, saga_containers, service_image)
    assert len(charged(correct)) == 1
    assert correct.audit() == []
