"""The messages of the order saga orchestrated by messaging: commands (each names the type its reply
is published as, ``reply_to``), replies (each names its command as its cause) and the orchestrator's
own timeout; one JSON Schema per type (written to ``contracts/events/messaging/``) and the check
every receiver makes before it acts."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ._choreography_events import _ENVELOPE, ENVELOPE_VERSION, _check, envelope

_ID = {"type": "string", "minLength": 1}
_QTY = {"type": "integer", "minimum": 1}
_ORDER = {"order_id": _ID}
#: Per command type: what it asks, and its data's properties (all required).
COMMAND_TYPES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "inventory.reserve": ("Reserve the order's stock.", {**_ORDER, "sku": _ID, "qty": _QTY}),
    "inventory.release": ("Release whatever stock the order holds (compensation).", _ORDER),
    "payment.charge": ("Charge the order's amount.", {**_ORDER, "amount": _QTY}),
    "payment.refund": ("Refund whatever the order was charged (compensation).", _ORDER),
    "shipping.create": ("Create the order's shipment.", _ORDER),
    "shipping.cancel": ("Cancel whatever shipment the order has (compensation).", _ORDER),
    "notification.send": ("Tell the customer the order is on its way (irreversible).", _ORDER),
}
#: The data of every reply: ``ok`` or ``refused``, and what was done or why not.
_REPLY_DATA = {"status": _ID, "detail": _ID}
#: Per message type that is no command: what it says, and its data's properties.
REPLY_TYPES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    **{f"{command}.reply": (f"The answer to {command}.", _REPLY_DATA) for command in COMMAND_TYPES},
    "order.timeout": ("The orchestrator's own deadline for the command it names.", {"command_id": _ID}),
}


def reply_type(command_type: str) -> str:
    """The type a command's reply is published as."""
    return f"{command_type}.reply"


@functools.cache
def message_schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema of one message type, envelope included (a command's with its ``reply_to``)."""
    command = message_type in COMMAND_TYPES
    what, data = COMMAND_TYPES[message_type] if command else REPLY_TYPES[message_type]
    properties = {name: {**schema, "description": text} for name, (schema, text) in _ENVELOPE.items()}
    properties["type"] = {"const": message_type, "description": "What it asks (a command) or answers (a reply)."}
    properties["data"] = {
        "type": "object",
        "description": _ENVELOPE["data"][1],
        "properties": data,
        "required": list(data),
        "additionalProperties": False,
    }
    if command:
        properties["reply_to"] = {"const": reply_type(message_type), "description": "The type its reply is published as."}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://saga-verify.invalid/contracts/events/messaging/{message_type}.schema.json",
        "title": message_type,
        "description": what,
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def write_message_schemas(folder: Path) -> list[Path]:
    """Write every message type's schema into ``folder`` (``contracts/events/messaging``)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for message_type in (*COMMAND_TYPES, *REPLY_TYPES):
        path = folder / f"{message_type}.schema.json"
        path.write_text(json.dumps(message_schema(message_type), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def command(
    command_type: str, *, source: str, correlation_id: str, causation_id: str | None, command_id: str, data: dict[str, Any], now: float
) -> dict[str, Any]:
    """A command in the canonical envelope, naming the type its reply comes back as."""
    message = envelope(command_type, source=source, correlation_id=correlation_id, causation_id=causation_id, key=command_id, data=data, now=now)
    message["reply_to"] = reply_type(command_type)
    return message


def invalid(message: object, expected: str) -> str | None:
    """Why ``message`` cannot be acted on as an ``expected`` message (a malformed envelope, an
    unknown type or version, data that fails its schema), or None when it can."""
    if not isinstance(message, dict):
        return f"not an envelope: a {type(message).__name__}"
    message_type = message.get("type")
    if message_type not in COMMAND_TYPES and message_type not in REPLY_TYPES:
        return f"unknown message type {message_type!r}"
    if message_type != expected:
        return f"a {message_type} delivered where {expected} was subscribed"
    if message.get("version") != ENVELOPE_VERSION:
        return f"unknown envelope version {message.get('version')!r}; this receiver reads {ENVELOPE_VERSION}"
    return _check(message, message_schema(message_type), "envelope")
