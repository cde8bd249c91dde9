"""The reference services' operations as HTTP routes (what their apps serve and their OpenAPI
contracts promise), kept apart from the apps so that declaring the system imports no web stack."""

from __future__ import annotations

ROUTES: dict[str, dict[str, str]] = {
    "inventory": {"reserve": "POST /reservations", "release": "POST /releases"},
    "payment": {"charge": "POST /charges", "refund": "POST /refunds"},
    "shipping": {"create": "POST /shipments", "cancel": "POST /cancellations"},
    "notification": {"send": "POST /notifications"},
}
