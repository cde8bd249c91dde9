"""The static checks, before anything runs: each finding names the step and the expression. The
reference workflow passes them; each check catches the mistake it is for."""

from __future__ import annotations

from pathlib import Path

import pytest
from arazzo_documents import FREE_ORDER, NO_KEY, ORDER, edited

from saga_verify.arazzo import Finding, WorkflowCheckError, check, load
from saga_verify.reference import reference_http_system


def _found(path: Path) -> list[tuple[str, str, str | None, str]]:
    return [(f.step, f.check, f.expression, f.message) for f in check(path)]


def test_the_reference_workflow_passes_every_check() -> None:
    assert check(ORDER) == ()


def test_a_handoff_from_a_step_that_may_not_have_run_is_caught() -> None:
    (finding,) = check(FREE_ORDER)
    assert str(finding) == (
        f"{FREE_ORDER}: step 'sendNotification': $steps.chargePayment.outputs.chargeId: step 'chargePayment' may not have "
        "run and replied before this step: reserveStock -[onSuccess 'freeOrder']-> createShipment -> sendNotification [handoff]"
    )
    with pytest.raises(WorkflowCheckError) as info:
        load(FREE_ORDER)
    assert info.value.findings == (finding,)
    assert str(info.value).splitlines()[0] == f"workflow 'placeOrder' of {FREE_ORDER} fails 1 static check:"


def test_a_retry_without_a_key_is_flagged_before_the_search_finds_it() -> None:
    (finding,) = check(NO_KEY)
    assert (finding.step, finding.check, finding.expression) == ("chargePayment", "retry-key", "onFailure 'retry'")
    assert finding.message == (
        "retries payment.charge (POST /charges), which is not idempotent, without an idempotency key: "
        "a retry after a lost reply applies it twice"
    )
    # Loaded anyway, it runs: the search shows what the finding means (tests/arazzo/test_broken_workflows.py).
    assert load(NO_KEY, strict=False, participants=reference_http_system()).name == "placeOrder"


def test_a_handoff_of_an_output_the_step_does_not_declare(tmp_path: Path) -> None:
    path = edited(tmp_path, ("reservation_id: $steps.reserveStock.outputs.reservationId", "reservation_id: $steps.reserveStock.outputs.reservation"))
    assert _found(path) == [
        ("createShipment", "handoff", "$steps.reserveStock.outputs.reservation", "step 'reserveStock' declares no output 'reservation' (its outputs: reservationId)")
    ]


def test_a_handoff_from_a_step_that_does_not_exist_or_an_undeclared_input(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        ("reservation_id: $steps.reserveStock.outputs.reservationId", "reservation_id: $steps.holdStock.outputs.reservationId"),
        ("message: 'order {$inputs.order_id} is on its way'", "message: 'order {$inputs.order} is on its way'"),
    )
    assert _found(path) == [
        ("createShipment", "handoff", "$steps.holdStock.outputs.reservationId", "reads step 'holdStock', which the workflow does not have"),
        ("sendNotification", "handoff", "$inputs.order", "the workflow's inputs declare no 'order' (they declare: order_id, sku, qty, amount)"),
    ]


def test_a_compensation_that_reads_the_reply_of_the_step_it_undoes(tmp_path: Path) -> None:
    # Releasing by the reservation id the reply carried: on a timeout there was no reply.
    path = edited(tmp_path, ("reserve_key: '{$inputs.order_id}:reserve'", "reserve_key: $steps.reserveStock.outputs.reservationId"))
    assert _found(path) == [
        (
            "releaseStock",
            "handoff",
            "$steps.reserveStock.outputs.reservationId",
            "step 'reserveStock' may not have run and replied before this step: reserveStock -[onFailure 'undo']-> releaseStock",
        )
    ]


def test_a_request_that_does_not_match_its_operation(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        ("            qty: $inputs.qty\n", "            quantity: $inputs.qty\n"),
        ("            amount: $inputs.amount\n", "            amount: 'a hundred'\n"),
        ("          - {name: Idempotency-Key, in: header, value: '{$inputs.order_id}:ship'}\n", "          - {name: priority, in: query, value: high}\n"),
    )
    assert _found(path) == [
        ("reserveStock", "request", "requestBody.payload", "does not match inventory.reserve (POST /reservations): 'qty' is a required property"),
        (
            "reserveStock",
            "request",
            "requestBody.payload",
            "does not match inventory.reserve (POST /reservations): Additional properties are not allowed ('quantity' was unexpected)",
        ),
        ("chargePayment", "request", "requestBody.payload/amount", "does not match payment.charge (POST /charges): 'a hundred' is not of type 'integer'"),
        ("createShipment", "request", "parameter 'priority'", "shipping.create (POST /shipments) has no query parameter 'priority'"),
        (
            "createShipment",
            "retry-key",
            "onFailure 'retry'",
            "retries shipping.create (POST /shipments), which is not idempotent, without an idempotency key: a retry after a lost reply applies it twice",
        ),
    ]


def test_a_handed_off_value_of_the_wrong_type_is_caught(tmp_path: Path) -> None:
    # reservation_id is a string in inventory's reply and in shipping's request; an order id is
    # given where the amount goes: the types come from the inputs and the reply schemas.
    path = edited(
        tmp_path,
        ("            amount: $inputs.amount\n", "            amount: $inputs.order_id\n"),
        ("            reservation_id: $steps.reserveStock.outputs.reservationId\n", "            reservation_id: $steps.reserveStock.outputs.reservationId\n            qty: $inputs.qty\n"),
    )
    assert _found(path) == [
        ("chargePayment", "request", "requestBody.payload/amount", "does not match payment.charge (POST /charges): 'order-1' is not of type 'integer'"),
        (
            "createShipment",
            "request",
            "requestBody.payload",
            "does not match shipping.create (POST /shipments): Additional properties are not allowed ('qty' was unexpected)",
        ),
    ]


def test_a_missing_request_body(tmp_path: Path) -> None:
    text = ORDER.read_text(encoding="utf-8")
    start = text.index("        requestBody:\n          contentType: application/json\n          payload:\n            shipment_key")
    end = text.index("        successCriteria:", start)
    path = edited(tmp_path, text=text[:start] + text[end:])
    assert _found(path) == [("cancelShipment", "request", "requestBody", "shipping.cancel (POST /cancellations) requires a request body; the step sends none")]


def test_a_way_back_that_skips_a_compensation(tmp_path: Path) -> None:
    # A charge whose reply was lost goes back to releasing the stock only: the charge may stand.
    path = edited(tmp_path, ("          - {name: undo, type: goto, stepId: refundPayment}", "          - {name: undo, type: goto, stepId: releaseStock}"))
    assert _found(path) == [
        (
            "chargePayment",
            "compensation",
            None,
            "may stay in effect: after it, this path goes back without 'refundPayment' undoing it: "
            "chargePayment -[onFailure 'undo']-> releaseStock -[the last step]-> the end",
        )
    ]


def test_a_step_nothing_undoes_before_one_that_can_fail(tmp_path: Path) -> None:
    # Notify first: then the shipment can still fail and send the saga back after the message went out.
    text = ORDER.read_text(encoding="utf-8")
    notify = text[text.index("      - stepId: sendNotification") : text.index("      # Compensations")]
    shipment = text[text.index("      - stepId: createShipment") : text.index("      - stepId: sendNotification")]
    moved = text.replace(shipment + notify, notify.replace("        onSuccess:\n          - {name: done, type: end}\n", "") + shipment)
    moved = moved.replace(
        "          - {name: undo, type: goto, stepId: cancelShipment}\n",
        "          - {name: undo, type: goto, stepId: cancelShipment}\n        onSuccess:\n          - {name: done, type: end}\n",
    )
    path = edited(tmp_path, text=moved)
    (finding,) = check(path)
    assert (finding.step, finding.check) == ("sendNotification", "irreversible")
    assert finding.message == (
        "is irreversible (no step undoes notification.send (POST /notifications)), yet 'createShipment' can still fail "
        "and be undone after it: sendNotification -> createShipment"
    )


def test_a_retry_whose_key_changes_between_attempts(tmp_path: Path) -> None:
    path = edited(tmp_path, ("value: '{$inputs.order_id}:ship'", "value: '{$inputs.order_id}:ship:{$statusCode}'"))
    assert ("createShipment", "retry-key", "parameter 'Idempotency-Key'", "its idempotency key reads the reply, so it changes between attempts") in _found(path)


def test_a_step_nothing_reaches(tmp_path: Path) -> None:
    text = ORDER.read_text(encoding="utf-8") + (
        "        onSuccess:\n          - {name: done, type: end}\n"
        "      - stepId: checkStock\n        operationId: $sourceDescriptions.inventory.health\n"
    )
    path = edited(tmp_path, text=text)
    assert _found(path) == [("checkStock", "unreachable", None, "no path from the first step reaches it: it never runs")]


def test_findings_print_the_file_the_step_and_the_expression() -> None:
    finding = Finding("order.arazzo.yaml", "createShipment", "handoff", "$steps.x.outputs.y", "step 'x' may not have run")
    assert str(finding) == "order.arazzo.yaml: step 'createShipment': $steps.x.outputs.y: step 'x' may not have run [handoff]"
