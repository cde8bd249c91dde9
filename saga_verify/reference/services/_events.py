"""The events the reference services publish, and the outbox they are kept in.

Every effect a service's participant records in its ledger (a reservation, a charge, a refund, a
shipment, a message, an order's outcome) is also published as an event: one event per ledger row,
built from the row in the same request and saved in the same SQLite transaction as the state that
row belongs to (a transactional outbox). So a service never publishes what it did not do, never
forgets what it did, and a replayed request (answered from the dedupe store, no new row)
publishes nothing. Consumers read the outbox with ``GET /events?after=N``.

Every event has the same envelope (`Event`): ``type``, ``version``, ``id`` (unique per source and
stable across restarts), ``source``, ``occurred_at``, ``correlation_id`` (the order),
``idempotency_key`` (of the request that caused it, null if it had none) and ``data``, whose
shape the type fixes (`EVENT_DATA`). ``contracts/events/<type>.schema.json`` publishes each
type as JSON Schema; ``tests/reference/test_event_schemas.py`` holds those files to the models
here.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from saga_verify import LedgerRow

__all__ = [
    "EVENT_DATA",
    "EVENT_TYPES",
    "EVENT_VERSION",
    "Event",
    "EventPage",
    "event_schema",
    "event_schema_text",
    "events_for_rows",
    "write_event_schemas",
]

#: The envelope's version. A consumer refuses a version it does not know.
EVENT_VERSION = 1


def _untitled(schema: dict[str, Any], cls: type[Any]) -> None:
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_untitled)


class StockData(_Data):
    reservation_id: str = Field(description="The reservation.")
    qty: int = Field(ge=1, description="How many units.")


class ChargeData(_Data):
    charge_id: str = Field(description="The charge.")
    amount: int = Field(ge=1, description="The amount in minor units (cents).")


class ShipmentData(_Data):
    shipment_id: str = Field(description="The shipment.")


class MessageData(_Data):
    message_id: str = Field(description="The message sent.")


class OrderData(_Data):
    order_id: str = Field(description="The order.")
    outcome: Literal["completed", "compensated", "failed"] = Field(
        description="How its saga ended: completed, compensated (every step undone) or failed (an operator must act)."
    )


#: (service, ledger action) -> event type.
EVENT_TYPES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("inventory", "reserve"): "stock.reserved",
        ("inventory", "release"): "stock.released",
        ("payment", "charge"): "payment.charged",
        ("payment", "refund"): "payment.refunded",
        ("shipping", "create"): "shipment.created",
        ("shipping", "cancel"): "shipment.cancelled",
        ("notification", "send"): "notification.sent",
        ("order", "completed"): "order.completed",
        ("order", "compensated"): "order.compensated",
        ("order", "failed"): "order.failed",
    }
)

#: Event type -> the model of its ``data`` and the description of the event.
EVENT_DATA: Mapping[str, tuple[type[_Data], str]] = MappingProxyType(
    {
        "stock.reserved": (StockData, "Stock was reserved for an order."),
        "stock.released": (StockData, "A reservation was released: the stock is back."),
        "payment.charged": (ChargeData, "The customer was charged."),
        "payment.refunded": (ChargeData, "A charge was refunded."),
        "shipment.created": (ShipmentData, "A shipment was created."),
        "shipment.cancelled": (ShipmentData, "A shipment was cancelled."),
        "notification.sent": (MessageData, "The customer was told about the order. It cannot be taken back."),
        "order.completed": (OrderData, "An order's saga completed: stock reserved, charged, shipped."),
        "order.compensated": (OrderData, "An order's saga was undone: every step that took effect was compensated."),
        "order.failed": (OrderData, "An order's saga could not be undone in full: an operator must act."),
    }
)


def _data(event_type: str, row: LedgerRow, correlation_id: str) -> dict[str, Any]:
    ref = row.ref or ""
    amount = int(row.amount) if row.amount is not None else 0
    model = EVENT_DATA[event_type][0]
    if model is StockData:
        return {"reservation_id": ref, "qty": amount}
    if model is ChargeData:
        return {"charge_id": ref, "amount": amount}
    if model is ShipmentData:
        return {"shipment_id": ref}
    if model is MessageData:
        return {"message_id": ref}
    return {"order_id": correlation_id, "outcome": event_type.rsplit(".", 1)[1]}


class Event(BaseModel):
    """The envelope every event has. Each event type's exact shape is published as JSON Schema in contracts/events/<type>.schema.json."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_untitled)

    type: str = Field(description="What happened, as ``<subject>.<past tense>`` (``payment.charged``).")
    version: int = Field(ge=1, description="The envelope's version; a consumer refuses one it does not know.")
    id: str = Field(min_length=1, description="Unique per source and stable: a consumer deduplicates by it (delivery is at least once).")
    source: str = Field(description="The service that published it.")
    occurred_at: str = Field(description="When it happened (RFC 3339, UTC).", json_schema_extra={"format": "date-time"})
    correlation_id: str = Field(description="The order (saga instance) it belongs to.")
    idempotency_key: str | None = Field(description="The Idempotency-Key of the request that caused it; null if it had none.")
    data: dict[str, Any] = Field(description="What the type says happened; its shape is fixed by the type.")


class EventPage(BaseModel):
    """A page of the outbox."""

    model_config = ConfigDict(json_schema_extra=_untitled)

    events: list[Event] = Field(description="The events after the position asked for, oldest first.")
    next: int = Field(description="The position to ask for next (``after=``): the last event's position, or the one asked for.")


def events_for_rows(
    source: str,
    rows: list[LedgerRow],
    *,
    first_position: int,
    fields: Mapping[str, Any],
    key: str | None,
    correlations: dict[str, str],
) -> list[dict[str, Any]]:
    """The events of the ledger rows one request recorded, numbered from ``first_position``.

    The correlation id is the request's ``order_id``; a compensation names its forward request
    only by key, so its rows take the order of the forward effect with the same ``ref`` (the
    reservation, charge or shipment id), which ``correlations`` remembers (it is updated here)."""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    made: list[dict[str, Any]] = []
    for offset, row in enumerate(rows):
        event_type = EVENT_TYPES.get((source, row.action))
        if event_type is None:
            continue  # an action without a published event (none in the reference services)
        order = fields.get("order_id")
        correlation = order if isinstance(order, str) else correlations.get(row.ref or "", "")
        if row.ref and correlation:
            correlations.setdefault(row.ref, correlation)
        made.append(
            {
                "type": event_type,
                "version": EVENT_VERSION,
                "id": f"{source}-{first_position + offset}",
                "source": source,
                "occurred_at": now,
                "correlation_id": correlation,
                "idempotency_key": key,
                "data": _data(event_type, row, correlation),
            }
        )
    return made


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of one event type: the envelope with ``type`` fixed and ``data`` exact."""
    model, description = EVENT_DATA[event_type]
    schema = Event.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://saga-verify.invalid/contracts/events/{event_type}.schema.json"
    schema["title"] = event_type
    schema["description"] = description
    properties = schema["properties"]
    properties["type"] = {"const": event_type, "description": properties["type"]["description"]}
    properties["version"] = {"const": EVENT_VERSION, "description": properties["version"]["description"]}
    data = model.model_json_schema()
    data["description"] = properties["data"]["description"]
    properties["data"] = data
    properties["idempotency_key"] = {
        "type": ["string", "null"],
        "description": properties["idempotency_key"]["description"],
    }
    # Keys in a fixed order: the checked-in files are compared as text by reviewers.
    return {k: schema[k] for k in ("$schema", "$id", "title", "description", "type", "properties", "required", "additionalProperties") if k in schema}


def event_schema_text(event_type: str) -> str:
    """The checked-in text of ``contracts/events/<event_type>.schema.json``."""
    return json.dumps(event_schema(event_type), indent=2, ensure_ascii=False) + "\n"


def write_event_schemas(folder: str | os.PathLike[str]) -> list[Path]:
    """Write every event type's schema into ``folder`` (atomically, one file each); the paths."""
    written = []
    Path(folder).mkdir(parents=True, exist_ok=True)
    for event_type in EVENT_DATA:
        path = Path(folder) / f"{event_type}.schema.json"
        # Whole or not at all: a reader sees the old schema or the new one, never half of it.
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, suffix=".tmp", delete=False) as handle:
            handle.write(event_schema_text(event_type))
        os.replace(handle.name, path)
        written.append(path)
    return written
