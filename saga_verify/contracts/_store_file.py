"""The contract store's file: one SQLite database that is ours (its application id says so) and
of a schema this code reads, created with its tables when new; anything else is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ._records import StoreError

#: ``PRAGMA application_id`` of a contract store: "SVCS" (saga-verify contract store).
APPLICATION_ID = 0x53564353
#: The schema this code writes; a store with a higher one was written by a newer saga-verify.
SCHEMA_VERSION = 1
#: Where the CLI keeps the store unless told otherwise.
DEFAULT_STORE = Path(".saga-verify") / "contracts.db"

_SCHEMA = """
CREATE TABLE pacticipants (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    main_branch TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE versions (
    id INTEGER PRIMARY KEY,
    pacticipant_id INTEGER NOT NULL REFERENCES pacticipants(id),
    number TEXT NOT NULL,
    build_url TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (pacticipant_id, number)
);
CREATE TABLE branch_versions (
    version_id INTEGER NOT NULL REFERENCES versions(id),
    branch TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (version_id, branch)
);
CREATE TABLE tags (
    version_id INTEGER NOT NULL REFERENCES versions(id),
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (version_id, name)
);
CREATE TABLE pact_versions (
    id INTEGER PRIMARY KEY,
    consumer_id INTEGER NOT NULL REFERENCES pacticipants(id),
    provider_id INTEGER NOT NULL REFERENCES pacticipants(id),
    sha TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (consumer_id, provider_id, sha)
);
CREATE TABLE pact_publications (
    id INTEGER PRIMARY KEY,
    consumer_version_id INTEGER NOT NULL REFERENCES versions(id),
    provider_id INTEGER NOT NULL REFERENCES pacticipants(id),
    pact_version_id INTEGER NOT NULL REFERENCES pact_versions(id),
    created_at TEXT NOT NULL,
    UNIQUE (consumer_version_id, provider_id)
);
CREATE TABLE verifications (
    id INTEGER PRIMARY KEY,
    pact_version_id INTEGER NOT NULL REFERENCES pact_versions(id),
    provider_version_id INTEGER NOT NULL REFERENCES versions(id),
    success INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    wip INTEGER NOT NULL,
    results TEXT NOT NULL,
    build_url TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE environments (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    production INTEGER NOT NULL,
    contacts TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    environment_id INTEGER NOT NULL REFERENCES environments(id),
    application_instance TEXT NOT NULL,
    created_at TEXT NOT NULL,
    undeployed_at TEXT
);
CREATE TABLE releases (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    environment_id INTEGER NOT NULL REFERENCES environments(id),
    created_at TEXT NOT NULL,
    support_ended_at TEXT
);
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    version_id INTEGER NOT NULL REFERENCES versions(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (version_id, kind, name)
);
"""


def connect(where: Path, *, create: bool) -> sqlite3.Connection:
    """A connection to the store at ``where`` (created when ``create`` and missing), checked."""
    if where.is_dir():
        raise StoreError(f"the contract store {where} is a folder; give a file (default {DEFAULT_STORE})")
    if not where.exists():
        if not create:
            raise StoreError(f"there is no contract store at {where}: publish something first")
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the contract store {where}: {exc}") from exc
    elif where.stat().st_size > 0:
        with open(where, "rb") as handle:
            if handle.read(16) != b"SQLite format 3\x00":
                raise StoreError(f"{where} is not a saga-verify contract store (not an SQLite database)")
    try:
        # Autocommit: every change runs in an explicit transaction of the store's own.
        connection = sqlite3.connect(where, timeout=30, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the contract store {where}: {exc}") from exc
    try:
        _check_or_create(connection, where)
    except BaseException:
        connection.close()
        raise
    return connection


def _check_or_create(db: sqlite3.Connection, where: Path) -> None:
    try:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        schema = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{where} is not a saga-verify contract store ({exc})") from exc
    if application_id == 0 and tables == 0:
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    elif application_id != APPLICATION_ID:
        raise StoreError(f"{where} is an SQLite database but not a saga-verify contract store")
    elif schema > SCHEMA_VERSION:
        raise StoreError(
            f"the contract store {where} was written by a newer saga-verify (store schema {schema}; "
            f"this one reads up to {SCHEMA_VERSION}): upgrade saga-verify"
        )
    db.execute("PRAGMA foreign_keys = ON")
