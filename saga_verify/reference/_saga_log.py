"""The durable orchestrator's write-ahead saga log: a small interface a user can implement over
any database, and its SQLite implementation (stdlib ``sqlite3``).

A log is a list of entries (plain JSON objects) per saga instance, each durable once ``append``
returns. What an entry says is the orchestrator's business; the log only keeps them in order.

It also keeps each instance's lease: who works on it, until when (virtual seconds), and a fencing
token that grows by one with each acquisition. An append that carries a token is refused with
`LeaseLost` once another coordinator has acquired the lease after it, so a coordinator that was
paused past its lease and took over by another cannot write (and so cannot log the intent of a
new call) any more.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from saga_verify.errors import RecoveryError

#: What this log's tables say they are, and the newest layout this code reads and writes.
SCHEMA_NAME = "saga-verify/saga-log"
SCHEMA_VERSION = 2
#: Version 1 had no leases: opening such a log adds the lease table and says version 2.


class LeaseLost(Exception):
    """A write carried a fencing token that is no longer the instance's latest: another
    coordinator took the instance over, and this one must stop working on it."""


@dataclass(frozen=True)
class Lease:
    """Who holds an instance's lease, its fencing token, and when it expires (virtual seconds)."""

    owner: str
    token: int
    expires: float


class SagaLog(Protocol):
    """What the durable orchestrator needs of its store."""

    def append(self, saga_id: str, entry: Mapping[str, Any], token: int | None = None, until: float | None = None) -> None:
        """Add ``entry`` after the saga's last; durable once this returns. With ``token``, only
        while it is the saga's latest fencing token (else `LeaseLost`, and nothing is written),
        and the lease then runs until ``until`` (if given)."""

    def entries(self, saga_id: str) -> list[dict[str, Any]]:
        """The saga's entries in order ([] for a saga never started)."""

    def unfinished(self) -> list[str]:
        """The sagas whose last entry does not end them, oldest first."""

    def acquire(self, saga_id: str, owner: str, now: float, until: float) -> int | None:
        """Take the saga's lease for ``owner`` until ``until`` if nobody holds it or it expired
        (at or before ``now``): its new fencing token, higher than every earlier one. None while
        another's lease is live."""

    def lease(self, saga_id: str) -> Lease | None:
        """The saga's lease as last acquired or extended (None if it never had one)."""


def check_layout(where: str, tables: set[str], meta: dict[str, str] | None) -> None:
    """Refuse a database that holds tables but is not a saga log this code reads."""
    if meta is None:
        raise RecoveryError(
            f"saga log {where} is another program's database (tables: {', '.join(sorted(tables))}), not a saga log; "
            "point the saga at its own log"
        )
    if meta.get("schema") != SCHEMA_NAME:
        raise RecoveryError(f"saga log {where} says it holds {meta.get('schema')!r}, not {SCHEMA_NAME!r}")
    version = meta.get("version", "")
    if not version.isdigit():
        raise RecoveryError(f"saga log {where} has no readable layout version ({version!r})")
    if int(version) > SCHEMA_VERSION:
        raise RecoveryError(
            f"saga log {where} was written in layout version {version}, newer than this code reads "
            f"({SCHEMA_VERSION}); recover it with the newer orchestrator"
        )


def check_entry(where: str, saga_id: str, seq: int, entry: object, text: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise RecoveryError(f"saga log {where}: entry {seq} of saga {saga_id!r} is corrupt: {text[:80]!r}")
    return entry


def fenced(saga_id: str, token: int, latest: int | None) -> str:
    """Why a write under ``token`` was refused."""
    if latest is None:
        return f"saga {saga_id!r} has no lease; a write under fencing token {token} is refused"
    return f"saga {saga_id!r} was taken over (fencing token {latest}); a write under token {token} is refused"


def _create_tables(db: sqlite3.Connection) -> None:
    db.execute("BEGIN")
    db.execute("CREATE TABLE saga_log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE saga_log (saga_id TEXT NOT NULL, seq INTEGER NOT NULL, entry TEXT NOT NULL, PRIMARY KEY (saga_id, seq))")
    db.execute(_LEASE_TABLE)
    db.executemany("INSERT INTO saga_log_meta VALUES (?, ?)", [("schema", SCHEMA_NAME), ("version", str(SCHEMA_VERSION))])
    db.execute("COMMIT")


_LEASE_TABLE = "CREATE TABLE saga_lease (saga_id TEXT PRIMARY KEY, owner TEXT NOT NULL, token INTEGER NOT NULL, expires REAL NOT NULL)"


def _add_leases(db: sqlite3.Connection) -> None:
    """Bring a version-1 log (no leases) to version 2: its instances have never been leased."""
    db.execute("BEGIN IMMEDIATE")
    db.execute(_LEASE_TABLE)
    db.execute("UPDATE saga_log_meta SET value = ? WHERE key = 'version'", (str(SCHEMA_VERSION),))
    db.execute("COMMIT")


_EMPTY: list[sqlite3.Connection] = []


def _empty_log() -> sqlite3.Connection:
    """An empty saga log in memory, made once per process: what new in-memory logs copy."""
    if not _EMPTY:
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        _create_tables(db)
        _EMPTY.append(db)
    return _EMPTY[0]


class SqliteSagaLog:
    """A `SagaLog` in SQLite. ``path`` is a database file, or ``":memory:"``: then the database
    lives as long as this object and those `reopen` makes from it (the way a database server
    outlives the coordinator that crashed while talking to it).

    Opening a file that is not a saga log refuses it with `RecoveryError` naming the problem
    (corrupt, another program's tables, a newer layout): a fresh start there could charge again."""

    def __init__(self, path: str = ":memory:", *, _connection: sqlite3.Connection | None = None) -> None:
        self.path = path
        if _connection is not None:
            self._db = _connection
            return
        # Used by one coordinator at a time, from whichever thread runs it: several actors of one
        # execution (a start delivered twice, a takeover) each run in a thread of their own.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            if path == ":memory:":
                # Empty by definition: its tables are copied from a made one, ten times faster
                # than creating them (a search opens one log per execution).
                _empty_log().backup(self._db)
            else:
                self._check_or_create()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise RecoveryError(f"saga log {path!r} cannot be read: {exc} (a corrupt file, or not an SQLite database)") from None
        except BaseException:
            self._db.close()
            raise

    def _check_or_create(self) -> None:
        db = self._db
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            _create_tables(db)
            return
        meta = dict(db.execute("SELECT key, value FROM saga_log_meta")) if "saga_log_meta" in tables else None
        check_layout(repr(self.path), tables, meta)
        if "saga_lease" not in tables:
            _add_leases(db)

    def append(self, saga_id: str, entry: Mapping[str, Any], token: int | None = None, until: float | None = None) -> None:
        row = (saga_id, saga_id, json.dumps(dict(entry), sort_keys=True))
        if token is None:
            # One statement, one implicit transaction: durable (committed) when it returns.
            self._db.execute("INSERT INTO saga_log VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM saga_log WHERE saga_id = ?), ?)", row)
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # the token's check and the write, with no other writer between
        try:
            found = db.execute("SELECT token FROM saga_lease WHERE saga_id = ?", (saga_id,)).fetchone()
            if found is None or found[0] != token:
                raise LeaseLost(fenced(saga_id, token, None if found is None else found[0]))
            db.execute("INSERT INTO saga_log VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM saga_log WHERE saga_id = ?), ?)", row)
            if until is not None:
                db.execute("UPDATE saga_lease SET expires = ? WHERE saga_id = ?", (until, saga_id))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def acquire(self, saga_id: str, owner: str, now: float, until: float) -> int | None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            found = db.execute("SELECT token, expires FROM saga_lease WHERE saga_id = ?", (saga_id,)).fetchone()
            if found is not None and found[1] > now:
                db.execute("ROLLBACK")
                return None
            token = 1 if found is None else int(found[0]) + 1
            db.execute("INSERT OR REPLACE INTO saga_lease VALUES (?, ?, ?, ?)", (saga_id, owner, token, until))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return token

    def lease(self, saga_id: str) -> Lease | None:
        found = self._db.execute("SELECT owner, token, expires FROM saga_lease WHERE saga_id = ?", (saga_id,)).fetchone()
        return None if found is None else Lease(str(found[0]), int(found[1]), float(found[2]))

    def entries(self, saga_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT seq, entry FROM saga_log WHERE saga_id = ? ORDER BY seq", (saga_id,)).fetchall()
        out = []
        for seq, text in rows:
            try:
                entry = json.loads(text)
            except ValueError:
                entry = None
            out.append(check_entry(repr(self.path), saga_id, seq, entry, text))
        return out

    def unfinished(self) -> list[str]:
        rows = self._db.execute(
            "SELECT l.saga_id FROM saga_log l WHERE l.seq = (SELECT MAX(seq) FROM saga_log WHERE saga_id = l.saga_id) "
            "AND json_extract(l.entry, '$.type') != 'ended' ORDER BY l.rowid"
        ).fetchall()
        return [row[0] for row in rows]

    def reopen(self) -> SqliteSagaLog:
        """The log as a fresh coordinator opens it after a crash: what the dead one had not
        committed is rolled back, and it gets a new connection (in memory: the same database)."""
        if self.path == ":memory:":
            if self._db.in_transaction:
                self._db.rollback()
            return SqliteSagaLog(self.path, _connection=self._db)
        self._db.close()
        return SqliteSagaLog(self.path)

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"SqliteSagaLog({self.path!r})"
