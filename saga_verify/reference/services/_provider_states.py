"""The provider states the reference services' pacts name, as state handlers for
`saga_verify.contracts.verify_provider`: each puts a running service (in this process, a process
or a container: it works through the verifier's client) into the state, with the parameters the
consumer passed to ``given(...)``. The services must serve their inspection endpoints
(``--inspect``) for the states that arm a refusal."""

from __future__ import annotations

from typing import Any

from ...contracts import ProviderState, StateHandler

__all__ = ["PROVIDER_STATES", "provider_states"]


class StateSetupError(RuntimeError):
    """A request that sets up a state was not accepted; names the state, the path and the answer."""


def _post(state: ProviderState, path: str, body: dict[str, Any], key: str | None = None) -> None:
    headers = {"Idempotency-Key": key} if key else {}
    response = state.client.post(path, json=body, headers=headers)
    if response.status_code >= 300:
        raise StateSetupError(f"setting up {state.name!r}: {path} answered {response.status_code} {response.text[:300]}")


def _made(path: str, *fields: str) -> StateHandler:
    """A state in which the request of one operation was already made, with the state's key."""
    return lambda state: _post(state, path, {f: state.params[f] for f in fields}, state.params["key"])


def _refuse_next(state: ProviderState) -> None:
    _post(state, "/_inspect/refuse-next", {})


def _charged_and_refunded(state: ProviderState) -> None:
    _made("/charges", "order_id", "amount")(state)
    _post(state, "/refunds", {"charge_key": state.params["key"]}, state.params["refund_key"])


#: Service -> state name -> handler.
PROVIDER_STATES: dict[str, dict[str, StateHandler]] = {
    "inventory": {
        "a reservation was made": _made("/reservations", "order_id", "sku", "qty"),
        "the next reservation is out of stock": _refuse_next,
    },
    "payment": {
        "a charge was made": _made("/charges", "order_id", "amount"),
        "a charge was made and refunded": _charged_and_refunded,
        "the next charge is declined": _refuse_next,
    },
    "shipping": {
        "a shipment was created": _made("/shipments", "order_id", "reservation_id"),
        "the next shipment is undeliverable": _refuse_next,
    },
    "notification": {
        "a notification was sent": _made("/notifications", "order_id", "message"),
    },
}


def provider_states(service: str) -> dict[str, StateHandler]:
    """The state handlers of one reference service (a copy)."""
    if service not in PROVIDER_STATES:
        raise ValueError(f"no provider states are known for {service!r}; known: {', '.join(PROVIDER_STATES)}")
    return dict(PROVIDER_STATES[service])
