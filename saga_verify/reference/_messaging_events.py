"""The messages of the order saga orchestrated by messaging: commands (each names the type its reply
is published as, ``reply_to``), replies (each names its command as its cause) and the orchestrator's
own timeout; one JSON Schema per type (written to ``contracts/events/messaging/``) and the check
every receiver makes before it acts."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ._choreography_events import (
    ID,
    QTY,
    envelope,
    envelope_problem,
    envelope_properties,
    schema_document,
    write_schemas,
)

_ORDER = {"order_id": ID}
#: Per command type: what it asks, and its data's properties (all required).
COMMAND_TYPES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "inventory.reserve": ("Reserve the order's stock.", {**_ORDER, "sku": ID, "qty": QTY}),
    "inventory.release": ("Release whatever stock the order holds (compensation).", _ORDER),
    "payment.charge": ("Charge the order's amount.", {**_ORDER, "amount": QTY}),
    "payment.refund": ("Refund whatever the order was charged (compensation).", _ORDER),
    "shipping.create": ("Create the order's shipment.", _ORDER),
    "shipping.cancel": ("Cancel whatever shipment the order has (compensation).", _ORDER),
    "notification.send": ("Tell the customer the order is on its way (irreversible).", _ORDER),
}
#: The data of every reply: ``ok`` or ``refused``, and what was done or why not.
_REPLY_DATA = {"status": ID, "detail": ID}
#: Per message type that is no command: what it says, and its data's properties.
REPLY_TYPES: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    **{f"{command}.reply": (f"The answer to {command}.", _REPLY_DATA) for command in COMMAND_TYPES},
    "order.timeout": ("The orchestrator's own deadline for the command it names.", {"command_id": ID}),
}
#: Every message type: the commands, then the replies.
_KNOWN = {**COMMAND_TYPES, **REPLY_TYPES}


def reply_type(command_type: str) -> str:
    """The type a command's reply is published as."""
    return f"{command_type}.reply"


@functools.cache
def message_schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema of one message type, envelope included (a command's with its ``reply_to``)."""
    command = message_type in COMMAND_TYPES
    what, data = COMMAND_TYPES[message_type] if command else REPLY_TYPES[message_type]
    properties = envelope_properties(message_type, "What it asks (a command) or answers (a reply).", data)
    if command:
        properties["reply_to"] = {"const": reply_type(message_type), "description": "The type its reply is published as."}
    return schema_document("messaging", message_type, what, properties)


def write_message_schemas(folder: Path) -> list[Path]:
    """Write every message type's schema into ``folder`` (``contracts/events/messaging``)."""
    return write_schemas(folder, {message_type: message_schema(message_type) for message_type in _KNOWN})


def command(
    command_type: str, *, source: str, correlation_id: str, causation_id: str | None, command_id: str, data: dict[str, Any], now: float
) -> dict[str, Any]:
    """A command in the canonical envelope, naming the type its reply comes back as."""
    message = envelope(command_type, source=source, correlation_id=correlation_id, causation_id=causation_id, key=command_id, data=data, now=now)
    message["reply_to"] = reply_type(command_type)
    return message


def invalid(message: object, expected: str) -> str | None:
    """Why ``message`` cannot be acted on as an ``expected`` message, or None when it can."""
    return envelope_problem(message, expected, _KNOWN, message_schema, noun="message", reader="receiver")
