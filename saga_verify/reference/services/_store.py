"""Where a reference service keeps its participant's state: one SQLite file per service (stdlib
``sqlite3``, WAL mode), so the service can be stopped and started again without forgetting a
charge, an idempotency key or a tombstone.

The state is the participant object's attributes (``vars(participant)``) in an exact JSON form:
tuples, sets and the ledger are tagged so they come back as what they were (a payload tuple in the
dedupe store must compare equal to the one the next request builds, or a replay would be taken
for a reused key). JSON rather than pickle because the row then stays readable with the
``sqlite3`` shell, and loading a file never runs code. Whatever the form cannot hold (a lock, a
client, an object of an unknown class) is refused when the service starts, naming the attribute.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from typing import Any

from ...world import Ledger
from ...world._ledger import LedgerRow

__all__ = ["ParticipantState", "StoreError", "dump_state", "restore_state"]

_FORMAT = 1

# A JSON object with exactly one of these keys is a tagged value, not a dict.
_SCALARS = (bool, int, float, str)
_TAGS = frozenset({"__tuple__", "__set__", "__frozenset__", "__dict__", "__ledger__", "__row__"})


class StoreError(RuntimeError):
    """The store could not be read or written, or holds another participant's state."""


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


def _class_name(participant: object) -> str:
    cls = type(participant)
    return f"{cls.__module__}.{cls.__qualname__}"


def dump_state(participant: object) -> str:
    """The participant's attributes as exact JSON text (raises TypeError for what it cannot hold)."""
    try:
        attributes = vars(participant)
    except TypeError:
        raise TypeError(f"cannot store a {_class_name(participant)}: it has no attributes dict (__slots__?)") from None
    state = {name: _encode(value, f"{type(participant).__name__}.{name}") for name, value in attributes.items()}
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


class _SQLite:
    """One row per service in table ``participant_state``. A connection per call: the service
    serves one request at a time, and nothing stays open when an app is dropped without shutdown."""

    def __init__(self, path: str | os.PathLike[str], service: str) -> None:
        self.path = os.fspath(path)
        self.service = service
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS participant_state ("
                " service TEXT PRIMARY KEY, participant TEXT NOT NULL, format INTEGER NOT NULL,"
                " state TEXT NOT NULL, saves INTEGER NOT NULL)"
            )

    def _connect(self) -> closing[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        # A reply must not leave before the state that produced it is on disk.
        db.execute("PRAGMA synchronous=FULL")
        return closing(db)

    def load(self) -> tuple[str, int, str] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT participant, format, state FROM participant_state WHERE service = ?", (self.service,)
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), str(row[2]))

    def save(self, participant: str, state: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO participant_state (service, participant, format, state, saves) VALUES (?, ?, ?, ?, 1)"
                " ON CONFLICT(service) DO UPDATE SET participant = excluded.participant,"
                " format = excluded.format, state = excluded.state, saves = saves + 1",
                (self.service, participant, _FORMAT, state),
            )


class ParticipantState:
    """Keeps a service's participant and its store in step. With no path it does nothing (the
    state lives in memory only). With a path it loads the saved state at start (or saves the
    initial one), and ``commit()`` after each request saves the state if the request changed it.
    If saving fails, the participant is put back to the last saved state and ``StoreError`` is
    raised: a request whose effect could not be made durable has no effect."""

    def __init__(self, participant: object, service: str, path: str | os.PathLike[str] | None) -> None:
        self.participant = participant
        self.service = service
        self._db = None if path is None else _SQLite(path, service)
        self._saved = ""
        if self._db is None:
            return
        initial = dump_state(participant)  # fails fast on state the store cannot hold
        saved = self._db.load()
        if saved is None:
            self._db.save(_class_name(participant), initial)
            self._saved = initial
            return
        cls, fmt, state = saved
        if cls != _class_name(participant) or fmt != _FORMAT:
            raise StoreError(
                f"{self._db.path} holds the {service} state of a {cls} (format {fmt}), "
                f"not of a {_class_name(participant)} (format {_FORMAT})"
            )
        restore_state(participant, state)
        self._saved = state

    @property
    def path(self) -> str | None:
        return None if self._db is None else self._db.path

    def commit(self) -> bool:
        """Save the participant's state if it changed since the last save; True if it wrote."""
        if self._db is None:
            return False
        state = dump_state(self.participant)
        if state == self._saved:
            return False
        try:
            self._db.save(_class_name(self.participant), state)
        except sqlite3.Error as error:
            restore_state(self.participant, self._saved)
            raise StoreError(f"could not save the {self.service} state to {self._db.path}: {error}") from error
        self._saved = state
        return True
