"""The ``asgi`` runtime: each participant is an HTTP app in this process, reached through an
httpx client whose transport is the harness's, so every request is a delivery point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._world._asgi import SyncASGITransport


def _refuse_next(participant: Any) -> None:
    """The refuse hook over HTTP: arm the service's own business refusal."""
    participant.state.refuse_next()


def _restart(participant: Any) -> None:
    """The restart hook over HTTP: the service's participant dies and comes back from its store."""
    participant.state.restart()


def reference_saga(variant: Any, home: str | None = None) -> Any:
    """The reference ``variant`` with every participant an HTTP app in this process. Each app is
    built once; every execution gets fresh participants behind them, as in simulation. ``home``
    is the module that holds the saga under the variant's name (so plan files can name it)."""
    from .._world import HttpParticipant
    from ..reference import Inventory, Notification, Shipping
    from ..reference.services import SERVICES, create_app, serve_participant

    classes = {"inventory": Inventory, "payment": variant.payment_class, "shipping": Shipping, "notification": Notification}
    apps = {name: create_app(name, participant=cls(), inspect=False) for name, cls in classes.items()}
    transports = {name: SyncASGITransport(app) for name, app in apps.items()}
    # The harness maps each request to its delivery point by the provider's own routes.
    routes = {name: {op.name: f"POST {op.path}" for op in SERVICES[name].operations} for name in classes}

    def participants() -> dict[str, object]:
        made: dict[str, object] = {}
        for name, cls in classes.items():
            participant = cls()
            serve_participant(apps[name], participant)
            made[name] = HttpParticipant(
                transports[name], routes[name], base_url=f"http://{name}", ledger=participant.ledger, state=participant
            )
        return made

    return http_reference_saga(variant, participants, home)


def http_reference_saga(variant: Any, participants: Callable[[], dict[str, object]], home: str | None) -> Any:
    """The reference ``variant``'s saga run over HTTP against the participants ``participants()``
    builds (HttpParticipants whose ``state`` can ``refuse_next()``), named from module ``home``."""
    from .._saga import Saga, Step
    from ..reference import ORDER, STEPS
    from ..reference._order_client import HttpServices

    saga_class = variant.saga_class

    def run(services: Any, order: Any) -> str:
        return str(saga_class(HttpServices(services), order).run())

    if home is not None:
        run.__module__ = home  # Saga.ref finds the saga through the module of its code
    steps = tuple(
        Step(
            s.participant,
            s.action,
            s.compensation,
            refuse=_refuse_next if s.refuse else None,
            restart=_restart if s.restart else None,
        )
        for s in STEPS
    )
    return Saga(variant.name, steps=steps, participants=participants, run=run, input=ORDER)
