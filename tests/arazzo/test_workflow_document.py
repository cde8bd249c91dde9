"""Reading an Arazzo document: bad input (a document that does not parse or validate, a missing
OpenAPI source, an unknown operationId, a runtime expression that does not parse) is an error that
names the file, the step and the expression, and the command line exits 2 on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from arazzo_documents import ORDER, edited

from saga_verify._cli import main
from saga_verify.arazzo import ArazzoError, load
from saga_verify.arazzo._document import read_workflow
from saga_verify.errors import SagaDefinitionError

BAD_INPUT = {
    "does not parse": (
        [("  - name: payment\n", "  - name: payment\n   url: [")],
        r"order\.arazzo\.yaml: the Arazzo document is not valid YAML \(line \d+, column \d+\)",
    ),
    "unknown field in a step": (
        [("      - stepId: chargePayment\n", "      - stepId: chargePayment\n        operation: charge\n")],
        r"order\.arazzo\.yaml: step 'chargePayment': does not validate against the Arazzo 1\.0 schema at "
        r"workflows\[0\]\.steps\[1\]: Unevaluated properties are not allowed \('operation' was unexpected\)",
    ),
    "a document without info": (
        [("info:\n  title: saga-verify reference order saga\n  summary: Reserve stock, charge, ship, notify; on failure undo in reverse.\n  version: 1.0.0\n", "")],
        r"order\.arazzo\.yaml: does not validate against the Arazzo 1\.0 schema at the document: 'info' is a required property",
    ),
    "a missing OpenAPI source": (
        [("url: ../openapi/payment.yaml", "url: ../openapi/payments.yaml")],
        r"order\.arazzo\.yaml: source 'payment': the OpenAPI document \.\./openapi/payments\.yaml \(.*payments\.yaml\) does not exist",
    ),
    "an unknown operationId": (
        [("operationId: $sourceDescriptions.payment.charge", "operationId: $sourceDescriptions.payment.debit")],
        r"order\.arazzo\.yaml: step 'chargePayment': operationId 'debit' is in none of the OpenAPI documents: "
        r"payment \(payment\.yaml\): charge, refund, events, health",
    ),
    "an ambiguous operationId": (
        [("operationId: $sourceDescriptions.payment.charge", "operationId: events")],
        r"step 'chargePayment': operationId 'events' is in several sources \(inventory, payment, shipping, notification\): "
        r"write it as \$sourceDescriptions\.<name>\.events",
    ),
    "an expression that does not parse": (
        [("reservation_id: $steps.reserveStock.outputs.reservationId", "reservation_id: $steps.reserveStock.reservationId")],
        r"order\.arazzo\.yaml: step 'createShipment', requestBody\.payload: runtime expression "
        r"'\$steps\.reserveStock\.reservationId' does not parse: a step is read as \$steps\.<stepId>\.outputs\.<name>",
    ),
    "an embedded expression that does not parse": (
        [("value: '{$inputs.order_id}:charge'", "value: '{$input.order_id}:charge'")],
        r"step 'chargePayment', parameter 'Idempotency-Key': runtime expression '\$input\.order_id' does not parse: "
        r"\$input is not a runtime expression",
    ),
    "a condition that does not parse": (
        [("- condition: $statusCode == 402 || $statusCode == 422", "- condition: $statusCode = 402")],
        r"step 'chargePayment', onFailure\[0\]\.criteria\[0\]: condition '\$statusCode = 402' does not parse",
    ),
    "a goto to no step": (
        [("            stepId: refundPayment\n", "            stepId: refundPayments\n")],
        r"step 'createShipment': action 'undeliverable' goes to step 'refundPayments', which the workflow does not have",
    ),
    "a remote source": (
        [("url: ../openapi/shipping.yaml", "url: https://shipping.example/openapi.yaml")],
        r"source 'shipping' is at https://shipping\.example/openapi\.yaml: saga-verify reads local files only",
    ),
    "a nested workflow": (
        [("operationId: $sourceDescriptions.notification.send", "workflowId: notify")],
        r"step 'sendNotification': calls workflow 'notify'; saga-verify runs operation steps",
    ),
    "an input that does not match": (
        [("- {order_id: order-1, sku: sku-1, qty: 2, amount: 100}", "- {order_id: order-1, sku: sku-1, qty: 0, amount: 100}")],
        r"workflow 'placeOrder' gets input .* which does not match its inputs schema at qty: 0 is less than the minimum of 1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_names_the_file_the_step_and_the_expression(case: str, tmp_path: Path) -> None:
    changes, message = BAD_INPUT[case]
    path = edited(tmp_path, *changes)
    with pytest.raises(ArazzoError, match=message):
        load(path, participants=None)


@pytest.mark.parametrize("case", ["does not parse", "a missing OpenAPI source", "an unknown operationId", "an expression that does not parse"])
def test_the_command_line_exits_2_on_bad_input(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changes, message = BAD_INPUT[case]
    path = edited(tmp_path, *changes)
    assert main(["explore", f"{path}#placeOrder", "--report-dir", str(tmp_path / "plans")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("saga-verify: error: ")
    assert re.search(message, err)
    assert not (tmp_path / "plans").exists()  # nothing ran, nothing was written


def test_an_arazzo_error_is_a_definition_error() -> None:
    assert issubclass(ArazzoError, SagaDefinitionError)


def test_a_missing_document_and_a_missing_workflow(tmp_path: Path) -> None:
    with pytest.raises(ArazzoError, match=r"nothing\.arazzo\.yaml: the Arazzo document does not exist"):
        load(tmp_path / "nothing.arazzo.yaml")
    with pytest.raises(ArazzoError, match=r"order\.arazzo\.yaml: has no workflow 'refund'; it has placeOrder"):
        load(f"{ORDER}#refund")


def test_an_openapi_document_given_as_a_workflow_is_named(tmp_path: Path) -> None:
    with pytest.raises(ArazzoError, match=r"payment\.yaml: this is an OpenAPI document, not an Arazzo one"):
        read_workflow(ORDER.parents[1] / "openapi" / "payment.yaml")


def test_several_workflows_need_one_named(tmp_path: Path) -> None:
    text = ORDER.read_text(encoding="utf-8")
    second = text[text.index("  - workflowId: placeOrder") :].replace("workflowId: placeOrder", "workflowId: placeOtherOrder", 1)
    path = edited(tmp_path, text=text + second)
    with pytest.raises(ArazzoError, match=r"holds several workflows \(placeOrder, placeOtherOrder\); name one as .*#<workflowId>"):
        read_workflow(path)
    assert read_workflow(f"{path}#placeOtherOrder").id == "placeOtherOrder"
    assert read_workflow(path, "placeOrder").id == "placeOrder"


def test_the_reference_workflow_reads_as_written() -> None:
    workflow = read_workflow(ORDER)
    assert [(s.id, str(s.operation)) for s in workflow.steps] == [
        ("reserveStock", "inventory.reserve (POST /reservations)"),
        ("chargePayment", "payment.charge (POST /charges)"),
        ("createShipment", "shipping.create (POST /shipments)"),
        ("sendNotification", "notification.send (POST /notifications)"),
        ("cancelShipment", "shipping.cancel (POST /cancellations)"),
        ("refundPayment", "payment.refund (POST /refunds)"),
        ("releaseStock", "inventory.release (POST /releases)"),
    ]
    charge = workflow.step("chargePayment")
    assert [(a.name, a.type, a.step, a.retry_after, a.retry_limit) for a in charge.on_failure] == [
        ("declined", "goto", "releaseStock", 0.0, 1),
        ("retry", "retry", None, 0.2, 1),
        ("retryAgain", "retry", None, 0.4, 1),
        ("undo", "goto", "refundPayment", 0.0, 1),
    ]
    assert charge.idempotency_key is not None
    assert charge.idempotency_key.name == "Idempotency-Key"
    assert workflow.example_input == {"order_id": "order-1", "sku": "sku-1", "qty": 2, "amount": 100}
