"""Event schema compatibility as a schema registry checks it (BACKWARD, FORWARD, FULL, transitive),
per producer-consumer edge: the message pacts say which fields each consumer reads, and a change
fails only for a consumer that reads what changed, naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from saga_verify.contracts import EventSchema, SpecError, check_event_schemas, load_event_schema
from saga_verify.contracts._records import Pact, pact_sha

ROOT = Path(__file__).resolve().parents[2]
CHARGED = ROOT / "contracts" / "events" / "payment.charged.schema.json"


def charged() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(CHARGED.read_text())
    return schema


def version(schema: dict[str, Any], source: str) -> EventSchema:
    return load_event_schema(Path(source), json.dumps(schema))


def without(field: str) -> dict[str, Any]:
    schema = charged()
    del schema["properties"]["data"]["properties"][field]
    schema["properties"]["data"]["required"].remove(field)
    return schema


def reader(consumer: str, data: dict[str, Any]) -> Pact:
    """A message pact of ``consumer`` reading payment.charged events with these data fields."""
    document = {
        "consumer": {"name": consumer},
        "provider": {"name": "payment"},
        "interactions": [{
            "description": "a payment.charged event",
            "type": "Asynchronous/Messages",
            "contents": {"content": {"type": "payment.charged", "id": "p-1", "data": data}, "contentType": "application/json"},
        }],
    }  # fmt: skip
    return Pact(consumer, "1.0.0", "payment", pact_sha(document), document)


def test_the_event_type_comes_from_the_schema() -> None:
    assert load_event_schema(CHARGED).event_type == "payment.charged"
    titled = {"title": "custom.thing", "type": "object", "properties": {}}
    assert load_event_schema(Path("x.json"), json.dumps(titled)).event_type == "custom.thing"


def test_a_removed_field_fails_for_the_consumer_that_reads_it_and_only_for_it() -> None:
    history = [version(charged(), "payment 1.0.0"), version(without("amount"), "payment 2.0.0")]
    pacts = [reader("audit", {"charge_id": "ch-1", "amount": 100}), reader("ledger", {"charge_id": "ch-1"})]
    result = check_event_schemas(history, pacts, mode="backward-transitive")
    assert not result.compatible
    assert [(f.consumer, f.field) for f in result.findings] == [("audit", "data.amount")]
    assert "breaks audit: data.amount: audit reads it, and payment 2.0.0 no longer has it (removed)" in result.report()
    assert result.readers["payment.charged"] == ("audit", "ledger")
    # A field no consumer reads may go: the registry's objection is a note, not a failure.
    unread = check_event_schemas([version(charged(), "v1"), version(without("amount"), "v2")], [pacts[1]], mode="full")
    assert unread.compatible
    assert {n.field for n in unread.notes} == {"data.amount"}


def test_without_pacts_the_registry_rule_decides_naming_the_field() -> None:
    history = [version(charged(), "v1"), version(without("amount"), "v2")]
    result = check_event_schemas(history, mode="forward")
    assert [(f.field, f.consumer) for f in result.findings] == [("data.amount", None)]
    assert "removed (it was required)" in result.findings[0].problem


@pytest.mark.parametrize(
    ("mode", "compatible"),
    [("backward", True), ("forward", False), ("full", False), ("none", True)],
)
def test_a_field_added_to_a_closed_object_breaks_only_forward(mode: str, compatible: bool) -> None:
    added = charged()
    added["properties"]["data"]["properties"]["currency"] = {"type": "string"}
    result = check_event_schemas([version(charged(), "v1"), version(added, "v2")], mode=mode)
    assert result.compatible is compatible
    if not compatible:
        assert result.findings[0].field == "data.currency"


def test_a_type_change_is_judged_in_the_direction_of_the_mode() -> None:
    widened = charged()
    widened["properties"]["data"]["properties"]["amount"]["type"] = "number"
    pacts = [reader("audit", {"amount": 100})]
    history = [version(charged(), "v1"), version(widened, "v2")]
    # New readers of the number schema read old integer events: fine. Old integer readers of new events: not.
    assert check_event_schemas(history, pacts, mode="backward").compatible
    forward = check_event_schemas(history, pacts, mode="forward")
    assert [(f.consumer, f.field, f.direction) for f in forward.findings] == [("audit", "data.amount", "forward")]


def test_a_field_made_required_breaks_backward_for_its_reader() -> None:
    optional = charged()
    optional["properties"]["data"]["required"].remove("amount")
    pacts = [reader("audit", {"amount": 100})]
    result = check_event_schemas([version(optional, "v1"), version(charged(), "v2")], pacts, mode="backward")
    assert [f.field for f in result.findings] == ["data.amount"]
    assert "events written with v1 may lack it" in result.findings[0].problem


def test_transitive_modes_compare_with_every_earlier_version() -> None:
    # v2 turned amount into a string (incompatible, but published); v3 only adds a field, so it
    # is compatible with v2 alone, and still not with v1.
    as_text = charged()
    as_text["properties"]["data"]["properties"]["amount"] = {"type": "string"}
    noted = copy.deepcopy(as_text)
    noted["properties"]["note"] = {"type": "string"}
    v1, v2, v3 = version(charged(), "v1"), version(as_text, "v2"), version(noted, "v3")
    plain = check_event_schemas([v1, v2, v3], mode="backward")
    transitive = check_event_schemas([v1, v2, v3], mode="backward-transitive")
    assert [(o, n) for _, o, n in plain.checked] == [("v1", "v2"), ("v2", "v3")]
    assert [(o, n) for _, o, n in transitive.checked] == [("v1", "v2"), ("v1", "v3"), ("v2", "v3")]
    assert {(f.older, f.newer, f.field) for f in plain.findings} == {("v1", "v2", "data.amount")}
    assert {(f.older, f.newer, f.field) for f in transitive.findings} == {("v1", "v2", "data.amount"), ("v1", "v3", "data.amount")}


def test_an_unchanged_schema_republished_is_one_version() -> None:
    result = check_event_schemas([version(charged(), "payment 1.0.0"), version(charged(), "payment 1.1.0")], mode="full-transitive")
    assert result.checked == ()
    assert "nothing to compare" in result.report()


def test_bad_schemas_and_modes_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_event_schema(tmp_path / "missing.schema.json")
    with pytest.raises(SpecError, match="is not valid JSON"):
        load_event_schema(Path("broken.json"), "{")
    with pytest.raises(SpecError, match="names no event type"):
        load_event_schema(Path("anonymous.json"), json.dumps({"type": "object", "properties": {}}))
    with pytest.raises(SpecError, match="mode 'sideways' is not one of"):
        check_event_schemas([], mode="sideways")
