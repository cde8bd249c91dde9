"""The exact JSON form of a participant's state: what a participant keeps across a restart.

A participant's state is its attributes (``vars(participant)``), less those its class names as
``transient`` (configuration such as clients, or what a broken participant forgets on purpose).
Tuples, sets and the ledger are tagged so they come back as what they were (a payload tuple in
the dedupe store must compare equal to the one the next request builds, or a replay would be
taken for a reused key). JSON rather than pickle because the text stays readable and loading it
never runs code. Whatever the form cannot hold (a lock, a client, an object of an unknown class)
is refused, naming the attribute.

The services' SQLite store (`saga_verify.reference.services._store`) saves this text; a
participant's ``restart()`` goes through it too, so a restart in simulation forgets exactly what
a restarted service forgets.
"""

from __future__ import annotations

import json
from typing import Any

from saga_verify import Ledger, LedgerRow

__all__ = ["class_name", "dump_state", "restore_state"]

# A JSON object with exactly one of these keys is a tagged value, not a dict.
_SCALARS = (bool, int, float, str)
_TAGS = frozenset({"__tuple__", "__set__", "__frozenset__", "__dict__", "__ledger__", "__row__"})


def _encode(value: Any, where: str) -> Any:
    if value is None or type(value) in _SCALARS:
        return value
    if type(value) is list:
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if type(value) is LedgerRow:
        return {"__row__": [_encode(v, f"{where}.{f}") for f, v in zip(LedgerRow._fields, value, strict=True)]}
    if type(value) is tuple:
        return {"__tuple__": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if type(value) in (set, frozenset):
        tag = "__set__" if type(value) is set else "__frozenset__"
        items = [_encode(v, f"{where}{{...}}") for v in value]
        # Sorted so that the same set always gives the same text (change detection compares texts).
        return {tag: sorted(items, key=lambda item: json.dumps(item, sort_keys=True))}
    if type(value) is dict:
        if all(type(k) is str for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS):
            return {k: _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {"__dict__": [[_encode(k, f"{where} key"), _encode(v, f"{where}[{k!r}]")] for k, v in value.items()]}
    if type(value) is Ledger:
        # Only the rows: the binding to an execution (``_world``) belongs to whoever runs the service.
        return {"__ledger__": [_encode(row, f"{where}.rows[{i}]") for i, row in enumerate(value.rows)]}
    raise TypeError(
        f"cannot store {where}: a {type(value).__module__}.{type(value).__qualname__}; the store keeps None, "
        "bool, int, float, str, list, tuple, set, frozenset, dict, Ledger and LedgerRow"
    )


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        tag, inner = next(iter(value.items()))
        if tag == "__tuple__":
            return tuple(_decode(v) for v in inner)
        if tag == "__set__":
            return {_decode(v) for v in inner}
        if tag == "__frozenset__":
            return frozenset(_decode(v) for v in inner)
        if tag == "__dict__":
            return {_decode(k): _decode(v) for k, v in inner}
        if tag == "__row__":
            return LedgerRow(*(_decode(v) for v in inner))
        if tag == "__ledger__":
            ledger = Ledger()
            ledger.rows = [_decode(row) for row in inner]
            return ledger
    return {k: _decode(v) for k, v in value.items()}


def class_name(participant: object) -> str:
    cls = type(participant)
    return f"{cls.__module__}.{cls.__qualname__}"


def dump_state(participant: object) -> str:
    """The participant's attributes as exact JSON text (raises TypeError for what it cannot hold)."""
    try:
        attributes = vars(participant)
    except TypeError:
        raise TypeError(f"cannot store a {class_name(participant)}: it has no attributes dict (__slots__?)") from None
    # A participant may name attributes that are configuration, not state (clients, classes).
    transient = getattr(type(participant), "transient", ())
    state = {
        name: _encode(value, f"{type(participant).__name__}.{name}")
        for name, value in attributes.items()
        if name not in transient
    }
    return json.dumps(state, separators=(",", ":"))


def restore_state(participant: object, text: str) -> None:
    """Put the attributes saved by ``dump_state`` back on ``participant``. A ledger already on the
    participant is kept (it may be bound to an execution) and gets the saved rows."""
    for name, value in _decode(json.loads(text)).items():
        current = getattr(participant, name, None)
        if isinstance(value, Ledger) and isinstance(current, Ledger):
            current.rows = value.rows
        else:
            setattr(participant, name, value)
