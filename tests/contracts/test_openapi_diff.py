"""OpenAPI breaking changes: each kind of difference gets its rule id and level, in the direction
that matters (a request must still accept what clients send, a response may answer only what
clients expect); with the consumers' pacts, a change breaks only the consumers that use it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from saga_verify.contracts import SpecError, diff_openapi
from saga_verify.contracts._openapi_diff import load_openapi, parse_openapi
from saga_verify.contracts._records import Pact, pact_sha

ROOT = Path(__file__).resolve().parents[2]


PARAMETERS = [
    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "mode", "in": "query", "required": False, "schema": {"type": "string", "enum": ["fast", "slow"]}},
]


def api(**schemas: Any) -> dict[str, Any]:
    """A one-operation API: POST /charges/{id} with a query parameter, a body and two responses."""
    request = schemas.get("request", {"type": "object", "properties": {"amount": {"type": "integer"}}, "required": ["amount"]})
    reply = schemas.get("reply", {
        "type": "object",
        "properties": {"charge_id": {"type": "string"}, "state": {"type": "string", "enum": ["ok", "held"]}},
        "required": ["charge_id"],
    })  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "payment", "version": "1"},
        "paths": {
            "/charges/{id}": {
                "post": {
                    "parameters": copy.deepcopy(schemas.get("parameters", PARAMETERS)),
                    "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                    "responses": schemas.get("responses", {
                        "201": {"description": "charged", "content": {"application/json": {"schema": reply}}},
                        "402": {"description": "declined"},
                    }),
                }
            }
        },
    }


def rules(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c.rule, c.level) for c in diff_openapi(old, new).changes]


def changed(edit: Any) -> dict[str, Any]:
    document = api()
    edit(document["paths"]["/charges/{id}"]["post"])
    return document


def test_an_unchanged_document_has_no_changes() -> None:
    assert diff_openapi(api(), api()).changes == ()
    described = changed(lambda op: op.update(description="now documented"))
    assert rules(api(), described) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda op: op["responses"].pop("201"), [("response-success-status-removed", "breaking")]),
        (lambda op: op["responses"].pop("402"), [("response-non-success-status-removed", "potentially breaking")]),
        (lambda op: op["responses"].update({"409": {"description": "conflict"}}), [("response-status-added", "safe")]),
        (
            lambda op: op["parameters"].append({"name": "currency", "in": "query", "required": True, "schema": {"type": "string"}}),
            [("new-required-request-parameter", "breaking")],
        ),
        (
            lambda op: op["parameters"].append({"name": "Trace", "in": "header", "schema": {"type": "string"}}),
            [("new-optional-request-parameter", "safe")],
        ),
        (lambda op: op["parameters"][1].update(required=True), [("request-parameter-became-required", "breaking")]),
        (lambda op: op["parameters"].pop(1), [("request-parameter-removed", "potentially breaking")]),
        (lambda op: op["parameters"][1]["schema"].update(enum=["fast"]), [("request-parameter-enum-value-removed", "breaking")]),
        (lambda op: op["parameters"][1]["schema"].update(enum=["fast", "slow", "later"]), [("request-parameter-enum-value-added", "safe")]),
    ],
)
def test_operation_level_rules(edit: Any, expected: list[tuple[str, str]]) -> None:
    assert rules(api(), changed(edit)) == expected


REQUEST = "requestBody"


def body(op: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = op["requestBody"]["content"]["application/json"]["schema"]
    return schema


def reply(op: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = op["responses"]["201"]["content"]["application/json"]["schema"]
    return schema


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda op: (body(op)["properties"].update(note={"type": "string"}), body(op)["required"].append("note")),
         [("new-required-request-property", "breaking")]),
        (lambda op: body(op)["properties"].update(note={"type": "string"}), [("new-optional-request-property", "safe")]),
        (lambda op: body(op)["required"].clear(), [("request-property-became-optional", "safe")]),
        (lambda op: body(op)["properties"]["amount"].update(type="string"), [("request-property-type-changed", "breaking")]),
        (lambda op: body(op)["properties"]["amount"].update(type="number"), [("request-property-schema-changed", "safe")]),
        (lambda op: body(op)["properties"]["amount"].update(maximum=100), [("request-property-type-changed", "breaking")]),
        (lambda op: (body(op).update(additionalProperties=False), body(op)["properties"].pop("amount"), body(op)["required"].clear()),
         [("request-property-removed", "breaking"), ("request-body-type-changed", "breaking")]),
        (lambda op: op.update(requestBody={"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}),
         [("request-body-media-type-removed", "breaking"), ("request-body-media-type-added", "safe")]),
        (lambda op: (reply(op)["properties"].pop("charge_id"), reply(op)["required"].clear()),
         [("response-required-property-removed", "breaking")]),
        (lambda op: reply(op)["properties"].pop("state"), [("response-optional-property-removed", "potentially breaking")]),
        (lambda op: reply(op)["required"].clear(), [("response-property-became-optional", "breaking")]),
        (lambda op: reply(op)["properties"].update(currency={"type": "string"}), [("response-property-added", "safe")]),
        (lambda op: reply(op)["properties"]["charge_id"].update(type="integer"), [("response-property-type-changed", "breaking")]),
        (lambda op: reply(op)["properties"]["charge_id"].update(maxLength=10), [("response-property-schema-changed", "safe")]),
        (lambda op: reply(op)["properties"]["state"].update(enum=["ok"]), [("response-property-enum-value-removed", "safe")]),
        (lambda op: reply(op)["properties"]["state"].update(enum=["ok", "held", "lost"]),
         [("response-property-enum-value-added", "potentially breaking")]),
    ],
)  # fmt: skip
def test_body_rules_in_the_direction_that_matters(edit: Any, expected: list[tuple[str, str]]) -> None:
    assert rules(api(), changed(edit)) == expected


def test_paths_and_operations_removed_and_added() -> None:
    new = api()
    new["paths"]["/refunds"] = copy.deepcopy(new["paths"].pop("/charges/{id}"))
    assert rules(api(), new) == [("api-path-removed", "breaking"), ("api-path-added", "safe")]
    renamed_parameter = api()
    renamed_parameter["paths"]["/charges/{charge}"] = renamed_parameter["paths"].pop("/charges/{id}")
    renamed_parameter["paths"]["/charges/{charge}"]["post"]["parameters"][0]["name"] = "charge"
    assert ("api-path-removed", "breaking") not in rules(api(), renamed_parameter)
    get_instead = api()
    get_instead["paths"]["/charges/{id}"]["get"] = get_instead["paths"]["/charges/{id}"].pop("post")
    assert rules(api(), get_instead) == [("api-removed", "breaking"), ("api-added", "safe")]


def test_references_are_followed_and_nested_properties_named() -> None:
    old = api(reply={"$ref": "#/components/schemas/Charged"})
    old["components"] = {"schemas": {
        "Charged": {"type": "object", "properties": {"card": {"$ref": "#/components/schemas/Card"}}, "required": ["card"]},
        "Card": {"type": "object", "properties": {"last4": {"type": "string"}}, "required": ["last4"]},
    }}  # fmt: skip
    new = copy.deepcopy(old)
    new["components"]["schemas"]["Card"]["properties"].pop("last4")
    new["components"]["schemas"]["Card"]["required"] = []
    [change] = diff_openapi(old, new).changes
    assert (change.rule, change.where) == ("response-required-property-removed", "response 201 body: card.last4")


def order_pact(*interactions: dict[str, Any]) -> Pact:
    document = {"consumer": {"name": "order"}, "provider": {"name": "payment"}, "interactions": list(interactions)}
    return Pact("order", "1.0.0", "payment", pact_sha(document), document)


def interaction(description: str, *, query: dict[str, Any] | None = None, request: Any = None, status: int = 201, response: Any = None) -> dict[str, Any]:
    return {
        "description": description,
        "type": "Synchronous/HTTP",
        "request": {"method": "POST", "path": "/charges/ch-1", "query": query or {},
                    "body": {"content": request or {"amount": 1}, "contentType": "application/json"}},
        "response": {"status": status, "body": {"content": response or {"charge_id": "ch-1"}, "contentType": "application/json"}},
    }  # fmt: skip


def test_a_breaking_change_breaks_only_the_consumers_whose_pact_uses_it() -> None:
    uses_state = order_pact(interaction("a charge"), interaction("a held charge", response={"charge_id": "ch-2", "state": "held"}))
    new = changed(lambda op: (reply(op)["required"].append("state"), reply(op)["properties"].pop("charge_id"), reply(op)["required"].remove("charge_id")))
    result = diff_openapi(api(), new, consumers=[uses_state])
    removed = next(c for c in result.changes if c.rule == "response-required-property-removed")
    assert removed.broken == (("order", ("a charge", "a held charge")),)
    assert result.breaking_for_someone
    assert "breaks order: 'a charge', 'a held charge'" in result.report()

    # Nobody sends mode: making it required breaks whom it touches, a consumer that sends it is fine.
    sends_mode = order_pact(interaction("a fast charge", query={"mode": ["fast"]}))
    required_mode = changed(lambda op: op["parameters"][1].update(required=True))
    assert not diff_openapi(api(), required_mode, consumers=[sends_mode]).breaking_for_someone
    lacking = diff_openapi(api(), required_mode, consumers=[order_pact(interaction("a charge"))])
    assert lacking.breaking_for_someone
    assert lacking.changes[0].broken == (("order", ("a charge",)),)


def test_a_breaking_change_no_consumer_uses_is_reported_without_failing() -> None:
    declined_gone = changed(lambda op: op["responses"].pop("201"))
    result = diff_openapi(api(), declined_gone, consumers=[order_pact(interaction("a declined charge", status=402))])
    assert result.breaking
    assert not result.breaking_for_someone
    assert "no consumer's pact uses it" in result.report()
    assert diff_openapi(api(), declined_gone).breaking_for_someone  # no pacts: every breaking change counts


def test_the_reference_payment_versions() -> None:
    old, _ = load_openapi(ROOT / "contracts" / "openapi" / "payment.yaml")
    order = json.loads((ROOT / "contracts" / "pacts" / "order-payment.json").read_text())
    pacts = [Pact("order", "1.0.0", "payment", pact_sha(order), order)]
    additive = diff_openapi(old, load_openapi(ROOT / "fixtures" / "contracts" / "payment-1.1.0.yaml")[0], consumers=pacts)
    assert {c.level for c in additive.changes} == {"safe"}
    breaking = diff_openapi(old, load_openapi(ROOT / "fixtures" / "contracts" / "payment-2.0.0.yaml")[0], consumers=pacts)
    [change] = breaking.breaking
    assert (change.rule, change.operation, change.where) == ("response-required-property-removed", "POST /charges", "response 201 body: charge_id")
    assert change.broken == (("order", ("a charge", "a charge replayed with its idempotency key")),)


def test_a_malformed_document_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_openapi(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="not valid YAML or JSON"):
        parse_openapi("paths: [", "broken.yaml")
    with pytest.raises(SpecError, match=r"broken\.yaml is not an OpenAPI 3 document"):
        parse_openapi("swagger: '2.0'", "broken.yaml")
    with pytest.raises(SpecError, match="path '/x' is not an object"):
        parse_openapi("openapi: 3.1.0\npaths:\n  /x: 3", "broken.yaml")
    dangling = api(reply={"$ref": "#/components/schemas/Nowhere"})
    with pytest.raises(SpecError, match="'#/components/schemas/Nowhere' points nowhere"):
        diff_openapi(api(), dangling)
