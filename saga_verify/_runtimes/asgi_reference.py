"""The reference sagas with their participants as HTTP apps in this process, importable by name
(``saga_verify._runtimes.asgi_reference:charge_without_key``) so their plan files replay."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from . import saga_by_name
    from ._asgi import reference_saga

    return saga_by_name(globals(), __name__, name, reference_saga)
