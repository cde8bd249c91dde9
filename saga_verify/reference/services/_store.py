"""Where a reference service keeps its participant's state: one SQLite file per service (stdlib
``sqlite3``, WAL mode), so the service can be stopped and started again without forgetting a
charge, an idempotency key or a tombstone. The events the service publishes are kept in the same
file (table ``outbox``) and saved in the same transaction as the state they describe.

The state is saved in the exact JSON form of `saga_verify.reference._state` (readable with the
``sqlite3`` shell; loading it never runs code). State that form cannot hold is refused when the
service starts, naming the attribute.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from .._state import class_name, dump_state, restore_state

__all__ = ["ParticipantState", "StoreError", "dump_state", "restore_state"]

_FORMAT = 1

#: How durable a saved state is: ``full`` survives a power cut, ``normal`` a killed process.
STORE_SYNC = ("full", "normal")


class StoreError(RuntimeError):
    """The store could not be read or written, or holds another participant's state."""


class _SQLite:
    """One row per service in table ``participant_state`` and its events in ``outbox``, through one
    connection kept open for the store's life."""

    def __init__(self, path: str | os.PathLike[str], service: str, sync: str = "full") -> None:
        if sync not in STORE_SYNC:
            raise ValueError(f"store sync {sync!r} is not one of {', '.join(STORE_SYNC)}")
        self.path = os.fspath(path)
        self.service = service
        self.sync = sync
        self._db: sqlite3.Connection | None = None
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS participant_state ("
                " service TEXT PRIMARY KEY, participant TEXT NOT NULL, format INTEGER NOT NULL,"
                " state TEXT NOT NULL, saves INTEGER NOT NULL)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS execution (service TEXT PRIMARY KEY, number INTEGER NOT NULL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " service TEXT NOT NULL, position INTEGER NOT NULL, event TEXT NOT NULL,"
                " PRIMARY KEY (service, position))"
            )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection for the store's life: closing the last connection to a WAL database
        # checkpoints it and deletes the WAL, which cost more than the request itself. Requests
        # are served one at a time (the app's lock), so it is never used by two threads at once.
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            # full: a reply does not leave before the state that produced it is on disk. normal
            # (in WAL mode): it is in the operating system's hands, which a killed process
            # cannot lose (a power cut can), and a commit costs no fsync.
            db.execute(f"PRAGMA synchronous={self.sync.upper()}")
            self._db = db
        yield self._db

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def load(self) -> tuple[str, int, str] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT participant, format, state FROM participant_state WHERE service = ?", (self.service,)
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), str(row[2]))

    def load_execution(self) -> int | None:
        with self._connect() as db:
            row = db.execute("SELECT number FROM execution WHERE service = ?", (self.service,)).fetchone()
        return None if row is None else int(row[0])

    def replace(self, participant: str, state: str, execution: int | None = None) -> None:
        """Make ``state`` the saved state and empty the outbox, in one transaction; record the
        harness's execution it starts (None: none)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("DELETE FROM outbox WHERE service = ?", (self.service,))
                db.execute("DELETE FROM execution WHERE service = ?", (self.service,))
                if execution is not None:
                    db.execute("INSERT INTO execution (service, number) VALUES (?, ?)", (self.service, execution))
                db.execute("DELETE FROM participant_state WHERE service = ?", (self.service,))
                db.execute(
                    "INSERT INTO participant_state (service, participant, format, state, saves) VALUES (?, ?, ?, ?, 1)",
                    (self.service, participant, _FORMAT, state),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def load_outbox(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT event FROM outbox WHERE service = ? ORDER BY position", (self.service,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def save(self, participant: str, state: str, events: Sequence[tuple[int, dict[str, Any]]] = ()) -> None:
        with self._connect() as db:
            # One transaction: the state and the events that tell of it are saved together or not at all.
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO participant_state (service, participant, format, state, saves) VALUES (?, ?, ?, ?, 1)"
                    " ON CONFLICT(service) DO UPDATE SET participant = excluded.participant,"
                    " format = excluded.format, state = excluded.state, saves = saves + 1",
                    (self.service, participant, _FORMAT, state),
                )
                db.executemany(
                    "INSERT INTO outbox (service, position, event) VALUES (?, ?, ?)",
                    [(self.service, position, json.dumps(event, sort_keys=True)) for position, event in events],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


class ParticipantState:
    """Keeps a service's participant, its outbox and its store in step. With no path the state
    and the outbox live in memory only. With a path it loads the saved state and outbox at start
    (or saves the initial state), and ``commit()`` after each request saves the state if the
    request changed it, with the events the request published. If saving fails, the participant
    is put back to the last saved state, the request's events are dropped and ``StoreError`` is
    raised: a request whose effect could not be made durable has no effect."""

    def __init__(
        self,
        participant: object,
        service: str,
        path: str | os.PathLike[str] | None,
        *,
        fresh: bool = False,
        sync: str = "full",
        execution: int | None = None,
    ) -> None:
        self.participant = participant
        self.service = service
        self._db = None if path is None else _SQLite(path, service, sync)
        self._saved = ""
        #: Every event published, oldest first; an event's position is its index + 1.
        self.outbox: list[dict[str, Any]] = []
        self._pending = 0
        #: Effect id (a reservation, charge or shipment id) -> the order it belongs to.
        self.correlations: dict[str, str] = {}
        #: The harness's execution this participant serves, as the store keeps it (None: none).
        self.execution = execution
        if self._db is None:
            return
        if fresh:
            # This participant's state replaces whatever the store held, and its outbox starts empty.
            initial = dump_state(participant)
            try:
                self._db.replace(class_name(participant), initial, execution)
            except sqlite3.Error as error:
                raise StoreError(f"could not reset the {service} store {self._db.path}: {error}") from error
            self._saved = initial
            return
        self.outbox = self._db.load_outbox()
        self.execution = self._db.load_execution()
        for event in self.outbox:
            for value in event.get("data", {}).values():
                if isinstance(value, str) and event.get("correlation_id"):
                    self.correlations.setdefault(value, event["correlation_id"])
        initial = dump_state(participant)  # fails fast on state the store cannot hold
        saved = self._db.load()
        if saved is None:
            self._db.save(class_name(participant), initial)
            self._saved = initial
            return
        cls, fmt, state = saved
        if cls != class_name(participant) or fmt != _FORMAT:
            raise StoreError(
                f"{self._db.path} holds the {service} state of a {cls} (format {fmt}), "
                f"not of a {class_name(participant)} (format {_FORMAT})"
            )
        restore_state(participant, state)
        self._saved = state

    @property
    def path(self) -> str | None:
        return None if self._db is None else self._db.path

    @property
    def sync(self) -> str:
        return "full" if self._db is None else self._db.sync

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Add a request's events to the outbox; ``commit()`` makes them durable with the state."""
        self.outbox.extend(events)
        self._pending += len(events)

    def events(self, after: int, limit: int) -> list[dict[str, Any]]:
        """The events at positions ``after + 1`` .. ``after + limit``."""
        return self.outbox[after : after + limit]

    def commit(self) -> bool:
        """Save the participant's state if it changed since the last save (with the events
        published since); True if it wrote."""
        pending, self._pending = self._pending, 0
        if self._db is None:
            return False
        state = dump_state(self.participant)
        if state == self._saved and not pending:
            return False
        first = len(self.outbox) - pending
        try:
            self._db.save(
                class_name(self.participant),
                state,
                [(first + i + 1, event) for i, event in enumerate(self.outbox[first:])],
            )
        except sqlite3.Error as error:
            restore_state(self.participant, self._saved)
            del self.outbox[first:]
            raise StoreError(f"could not save the {self.service} state to {self._db.path}: {error}") from error
        self._saved = state
        return True
