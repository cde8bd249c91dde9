"""The reference sagas with their participants as service processes on loopback, importable by
name (``saga_verify.runtimes.process_reference:charge_without_key``) so their plan files replay."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from ..reference import variants
    from ._process import reference_saga

    for variant in variants():
        if variant.name == name:
            saga = reference_saga(variant, home=__name__)
            globals()[name] = saga
            return saga
    raise AttributeError(f"module {__name__!r} has no reference saga {name!r}")
