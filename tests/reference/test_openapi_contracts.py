"""The checked-in OpenAPI contracts (contracts/openapi/<service>.yaml) against what FastAPI generates
from the services' routes and models. The YAML is the reviewed promise; the generated document is
what the code really does. Any difference in a path, method, status code, parameter, header,
request schema or response schema fails here, naming where."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from pydantic import Field

from saga_verify.reference import Payment
from saga_verify.reference.services import SERVICES, create_app
from saga_verify.reference.services._app import ChargeRequest, Operation, ReplyModel, RequestModel, build_app


class Renamed(Payment):
    """A payment participant that also answers to the names the drift tests give its operations."""

    pay = Payment.charge
    capture = Payment.charge


CONTRACTS = Path(__file__).resolve().parents[2] / "contracts" / "openapi"


def contract(service: str) -> dict[str, Any]:
    return yaml.safe_load((CONTRACTS / f"{service}.yaml").read_text())


def differences(generated: Any, checked_in: Any, where: str = "") -> list[str]:
    """Where the two documents differ, as JSON Pointers (``/paths/~1charges/post``). Numbers compare by value (JSON
    has one number type; FastAPI writes ``minimum: 1.0`` where the YAML says 1), but a boolean is
    never a number."""
    if isinstance(generated, dict) and isinstance(checked_in, dict):
        found = []
        for key in [*generated, *(k for k in checked_in if k not in generated)]:
            at = f"{where}/{str(key).replace('~', '~0').replace('/', '~1')}"
            if key not in checked_in:
                found.append(f"{at}: generated but not in the contract: {json.dumps(generated[key])[:200]}")
            elif key not in generated:
                found.append(f"{at}: in the contract but not generated: {json.dumps(checked_in[key])[:200]}")
            else:
                found += differences(generated[key], checked_in[key], at)
        return found
    if isinstance(generated, list) and isinstance(checked_in, list) and len(generated) == len(checked_in):
        return [d for i, (g, c) in enumerate(zip(generated, checked_in, strict=True)) for d in differences(g, c, f"{where}/{i}")]
    if isinstance(generated, bool) != isinstance(checked_in, bool) or generated != checked_in:
        return [f"{where or '/'}: generated {generated!r}, contract says {checked_in!r}"]
    return []


@pytest.mark.parametrize("service", list(SERVICES))
def test_each_app_generates_exactly_its_checked_in_contract(service):
    generated = create_app(service).openapi()
    assert differences(generated, contract(service)) == []
    assert generated == contract(service)


def test_the_order_app_generates_exactly_its_checked_in_contract():
    from saga_verify.reference.services._order_app import create_order_app

    app = create_order_app(dict.fromkeys(("inventory", "payment", "shipping", "notification"), "http://127.0.0.1:9"))
    try:
        assert differences(app.openapi(), contract("order")) == []
    finally:
        app.state.close()


@pytest.mark.parametrize("service", list(SERVICES))
def test_inspection_is_never_in_the_contract(service):
    generated = create_app(service, inspect=True).openapi()
    assert differences(generated, contract(service)) == []
    assert not [path for path in generated["paths"] if path.startswith("/_inspect")]


def test_the_served_document_is_the_contract():
    async def fetch():
        transport = httpx.ASGITransport(app=create_app("payment", inspect=True))
        async with httpx.AsyncClient(transport=transport, base_url="http://payment") as client:
            return await client.get("/openapi.json")

    response = asyncio.run(fetch())
    assert response.status_code == 200
    assert differences(response.json(), contract("payment")) == []


@pytest.mark.parametrize("service", list(SERVICES))
def test_the_contract_documents_every_operation_in_full(service):
    doc = contract(service)
    assert doc["openapi"] == "3.1.0"
    operations = SERVICES[service].operations
    assert sorted(doc["paths"]) == sorted([op.path for op in operations] + ["/events", "/health"])
    assert doc["paths"]["/health"] == {"get": doc["paths"]["/health"]["get"]}
    for op in operations:
        assert list(doc["paths"][op.path]) == ["post"]
        post = doc["paths"][op.path]["post"]
        assert post["operationId"] == op.name
        [key] = post["parameters"]
        assert (key["name"], key["in"], key["required"]) == ("Idempotency-Key", "header", False)
        assert (key["schema"]["type"], key["schema"]["minLength"], key["schema"]["maxLength"]) == ("string", 1, 200)
        request = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert doc["components"]["schemas"][request]["additionalProperties"] is False
        refused = 402 if (service, op.name) == ("payment", "charge") else 409
        assert sorted(post["responses"]) == sorted([str(op.ok_status), str(refused), "422"])
        for status, response in post["responses"].items():
            assert response["content"]["application/json"]["schema"]["$ref"].startswith("#/components/schemas/")
            assert response["headers"]["Idempotency-Replayed"]["schema"] == {"type": "string", "enum": ["true"]}
            assert response["description"], status


@pytest.mark.parametrize("service", list(SERVICES))
def test_the_contract_schemas_are_json_schema(service):
    doc = contract(service)
    schemas = doc["components"]["schemas"]
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    # Every reference resolves, and every schema is referenced.
    text = json.dumps(doc)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs == set(schemas)


# --- drift: the test above fails when the code moves away from the contract -----------------------


def drifted(service: str, operation: str, **changes: Any) -> list[str]:
    """The differences between the contract and the app built with one operation changed."""
    spec = SERVICES[service]
    operations = tuple(dataclasses.replace(op, **changes) if op.name == operation else op for op in spec.operations)
    app = build_app(dataclasses.replace(spec, operations=operations), participant=Renamed())
    return differences(app.openapi(), contract(service))


def test_a_renamed_request_field_is_caught():
    class ChargeRequest(RequestModel):  # same name, one field renamed
        order_id: str = Field(description="The order (saga instance) the request belongs to.")
        total: int = Field(ge=1, description="The amount in minor units (cents).")

    found = drifted("payment", "charge", request=ChargeRequest)
    assert "/components/schemas/ChargeRequest/properties/total: generated but not in the contract: " in found[0]
    assert any(d.startswith("/components/schemas/ChargeRequest/properties/amount: in the contract") for d in found)
    assert any(d.startswith("/components/schemas/ChargeRequest/required/1: generated 'total'") for d in found)


def test_a_loosened_request_field_is_caught():
    class ChargeRequest(RequestModel):
        order_id: str = Field(description="The order (saga instance) the request belongs to.")
        amount: int = Field(ge=0, description="The amount in minor units (cents).")

    assert drifted("payment", "charge", request=ChargeRequest) == [
        "/components/schemas/ChargeRequest/properties/amount/minimum: generated 0.0, contract says 1"
    ]


def test_a_changed_reply_is_caught():
    class Charged(ReplyModel):
        status: str
        charge_id: str

    assert drifted("payment", "charge", reply=Charged) == [
        '/components/schemas/Charged/properties/status/const: in the contract but not generated: "ok"'
    ]


def test_a_changed_status_code_is_caught():
    found = drifted("payment", "charge", refused_status=409)
    assert any(d.startswith("/paths/~1charges/post/responses/409: generated but not in the contract") for d in found)
    assert any(d.startswith("/paths/~1charges/post/responses/402: in the contract but not generated") for d in found)
    assert any("/responses/200: generated" in d for d in drifted("payment", "charge", ok_status=200))


def test_a_moved_or_renamed_operation_is_caught():
    assert any(d.startswith("/paths/~1payments: generated") for d in drifted("payment", "charge", path="/payments"))
    assert any("/operationId: generated 'pay'" in d for d in drifted("payment", "charge", name="pay"))


def test_a_new_operation_is_caught():
    spec = SERVICES["payment"]
    extra = Operation("capture", "/charges/{id}/capture", ChargeRequest, spec.operations[0].reply, 200, "Capture",
                      ok="Captured.", refused="Refused.")
    app = build_app(dataclasses.replace(spec, operations=(*spec.operations, extra)), participant=Renamed())
    assert any(d.startswith("/paths/~1charges~1{id}~1capture: generated but not in the contract") for d in
               differences(app.openapi(), contract("payment")))


def test_differences_name_what_differs():
    assert differences({"a": 1, "b": [1, {"c": True}]}, {"a": 1.0, "b": [1, {"c": 1}]}) == [
        "/b/1/c: generated True, contract says 1"
    ]
    assert differences({"a": [1]}, {"a": [1, 2]}) == ["/a: generated [1], contract says [1, 2]"]
    assert differences({}, {"x": 1}) == ["/x: in the contract but not generated: 1"]
