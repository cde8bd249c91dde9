"""Your own system under saga-verify: declare each service once (`System`, `Service`) and the
same saga and plans run on ``sim``, ``asgi``, ``process`` and ``container``.

A service's effects reach the invariants in one of three ways: it mounts `EffectsMiddleware` in
its test build and reports them with `record_effect` (or a `saga_verify.Ledger`); or the harness
reads its event feed (`EventFeed`) or its store (`StoreReader`) after each delivery. On an HTTP
runtime a step's hooks are given the service's `ServiceHandle`.

``python -m saga_verify.systems module:factory --port N`` serves an app factory with the
middleware mounted (the ``process`` runtime's default command for ``Service(app="module:factory")``).
"""

from .._system import EventFeed, Service, StoreReader, System
from .._world._ledger import record_effect
from ._middleware import EffectsMiddleware
from ._remote import ServiceHandle, ServiceLostError, ServiceSetupError

__all__ = [
    "EffectsMiddleware",
    "EventFeed",
    "Service",
    "ServiceHandle",
    "ServiceLostError",
    "ServiceSetupError",
    "StoreReader",
    "System",
    "record_effect",
]
