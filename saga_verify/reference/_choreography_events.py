"""The events of the choreographed order saga: the canonical envelope, one JSON Schema per type
(written to ``contracts/events/choreography/``), and the check every consumer makes before it
processes a message."""

from __future__ import annotations

import datetime
import functools
import json
import os
import tempfile
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any

#: The envelope's version; a consumer dead-letters one it does not know.
ENVELOPE_VERSION = 1
_EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

#: The schemas of an id and a quantity, shared by every message family.
ID = {"type": "string", "minLength": 1}
QTY = {"type": "integer", "minimum": 1}
#: Per event type: what it says happened, and its data's properties (all required).
EVENT_TYPES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "order.placed": ("An order was placed: its saga begins.", {"order_id": ID, "sku": ID, "qty": QTY, "amount": QTY}),
    "stock.reserved": ("Stock was reserved for the order.", {"reservation_id": ID, "qty": QTY}),
    "stock.unavailable": ("The stock could not be reserved: the order cannot go on.", {"sku": ID}),
    "stock.released": ("A reservation was released (compensation).", {"reservation_id": ID}),
    "payment.captured": ("The order's amount was charged.", {"charge_id": ID, "amount": QTY}),
    "payment.declined": ("The charge was declined.", {"reason": ID}),
    "payment.refunded": ("A charge was refunded (compensation).", {"charge_id": ID}),
    "shipment.created": ("A shipment was created.", {"shipment_id": ID}),
    "shipment.failed": ("No shipment could be created.", {"reason": ID}),
    "order.confirmed": ("Every step took effect: the order is confirmed.", {"order_id": ID}),
    "order.compensated": ("The order was undone: every step that took effect was compensated.", {"order_id": ID}),
    "notification.sent": ("The customer was told (irreversible).", {"message_id": ID}),
}

_ENVELOPE: dict[str, tuple[dict[str, Any], str]] = {
    "type": ({"type": "string"}, "What happened, as <subject>.<past tense>."),
    "version": ({"const": ENVELOPE_VERSION}, "The envelope's version; a consumer refuses one it does not know."),
    "id": (ID, "Unique and stable: a consumer deduplicates by it (delivery is at least once)."),
    "occurred_at": ({"type": "string", "format": "date-time"}, "When it happened (RFC 3339, UTC)."),
    "correlation_id": (ID, "The saga instance (the order) it belongs to."),
    "causation_id": ({"type": ["string", "null"]}, "The id of the event that caused it; null for the first."),
    "idempotency_key": (ID, "The key of the effect it reports: the same effect always carries the same key."),
    "source": (ID, "The service that published it."),
    "data": ({"type": "object"}, "What the type says happened; its shape is fixed by the type."),
}


def envelope_properties(message_type: str, type_text: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope's properties for one message type: its ``type`` fixed, its ``data`` shaped."""
    properties = {name: {**schema, "description": text} for name, (schema, text) in _ENVELOPE.items()}
    properties["type"] = {"const": message_type, "description": type_text}
    properties["data"] = {
        "type": "object",
        "description": _ENVELOPE["data"][1],
        "properties": dict(data),
        "required": list(data),
        "additionalProperties": False,
    }
    return properties


def schema_document(family: str, message_type: str, what: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """One message type's JSON Schema, as written to ``contracts/events/<family>/``: every property required, no other."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://saga-verify.invalid/contracts/events/{family}/{message_type}.schema.json",
        "title": message_type,
        "description": what,
        "type": "object",
        "properties": dict(properties),
        "required": list(properties),
        "additionalProperties": False,
    }


@functools.cache
def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of one event type, envelope included."""
    what, data = EVENT_TYPES[event_type]
    return schema_document("choreography", event_type, what, envelope_properties(event_type, _ENVELOPE["type"][1], data))


def write_schemas(folder: Path, schemas: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Write each type's schema into ``folder`` as ``<type>.schema.json``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for message_type, schema in schemas.items():
        path = folder / f"{message_type}.schema.json"
        # Whole or not at all: a reader sees the old schema or the new one, never half of it.
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, suffix=".tmp", delete=False) as handle:
            handle.write(json.dumps(schema, indent=2) + "\n")
        os.replace(handle.name, path)
        written.append(path)
    return written


def write_event_schemas(folder: Path) -> list[Path]:
    """Write every event type's schema into ``folder`` (``contracts/events/choreography``)."""
    return write_schemas(folder, {event_type: event_schema(event_type) for event_type in EVENT_TYPES})


def envelope(
    event_type: str, *, source: str, correlation_id: str, causation_id: str | None, key: str, data: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """A new event in the canonical envelope. Its id is its idempotency key's: the same effect,
    published again after a crash, is the same event, which consumers deduplicate."""
    return {
        "type": event_type,
        "version": ENVELOPE_VERSION,
        "id": key,
        "occurred_at": (_EPOCH + datetime.timedelta(seconds=round(now, 6))).isoformat().replace("+00:00", "Z"),
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "idempotency_key": key,
        "source": source,
        "data": dict(data),
    }


_PYTHON = {"string": str, "integer": int, "object": dict, "null": type(None)}
_ABSENT = object()


def _check(value: Any, schema: Mapping[str, Any], where: str) -> str | None:
    """The JSON Schema keywords the event schemas use, checked: why ``value`` fails, or None."""
    const = schema.get("const", _ABSENT)
    if const is not _ABSENT and (value != const or type(value) is not type(const)):
        return f"{where} must be {const!r}, got {value!r}"
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else kinds
        if isinstance(value, bool) or not isinstance(value, tuple(_PYTHON[k] for k in allowed)):
            return f"{where} must be {' or '.join(allowed)}, got {type(value).__name__}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where} must not be empty"
        if schema.get("format") == "date-time":
            try:
                datetime.datetime.fromisoformat(value)
            except ValueError:
                return f"{where} must be an RFC 3339 date-time, got {value!r}"
    elif isinstance(value, int) and value < schema.get("minimum", value):
        return f"{where} must be at least {schema['minimum']}, got {value}"
    elif isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        missing = [k for k in schema.get("required", ()) if k not in value]
        if missing:
            return f"{where} lacks {', '.join(missing)}"
        if schema.get("additionalProperties") is False:
            extra = sorted(str(k) for k in value if k not in properties)
            if extra:
                return f"{where} has unknown field(s) {', '.join(extra)}"
        for name, sub in properties.items():
            problem = _check(value[name], sub, f"{where}.{name}" if where != "envelope" else name)
            if problem:
                return problem
    return None


def envelope_problem(
    message: object, expected: str, known: Container[str], schema_of: Callable[[str], Mapping[str, Any]], *, noun: str, reader: str
) -> str | None:
    """Why ``message`` cannot be acted on as an ``expected`` message of a family whose types are
    ``known`` (a malformed envelope, an unknown type or version, a payload that fails its schema),
    or None when it can. ``noun`` and ``reader`` name the family's messages and receivers."""
    if not isinstance(message, dict):
        return f"not an envelope: a {type(message).__name__}"
    message_type = message.get("type")
    if message_type not in known:
        return f"unknown {noun} type {message_type!r}"
    if message_type != expected:
        return f"a {message_type} delivered where {expected} was subscribed"
    if message.get("version") != ENVELOPE_VERSION:
        return f"unknown envelope version {message.get('version')!r}; this {reader} reads {ENVELOPE_VERSION}"
    return _check(message, schema_of(message_type), "envelope")


def invalid(message: object, expected: str) -> str | None:
    """Why ``message`` cannot be processed as an ``expected`` event, or None when it can."""
    return envelope_problem(message, expected, EVENT_TYPES, event_schema, noun="event", reader="consumer")
