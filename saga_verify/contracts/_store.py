"""The contract store: pacts, verification results, OpenAPI documents and event schemas, each
recorded against a participant version and its branch; environments and what is deployed or
released in each. One SQLite file, every change one transaction (the values it gives back are in
`_records`).

The store checks what it is given (names, versions, pact documents) before it writes anything,
refuses a file that is not one of its own or that a newer saga-verify wrote, and never leaves a
change half-made.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._pact_files import check_pact, interactions_of
from ._records import (
    Deployment,
    Document,
    Environment,
    Pact,
    StoreError,
    UnknownError,
    Verification,
    Version,
    check_name,
    pact_sha,
)
from ._store_file import DEFAULT_STORE, connect

#: The kinds of document a participant version can publish besides pacts.
DOCUMENT_KINDS = ("openapi", "event-schema")

#: Branch names taken as a participant's main branch when it publishes on one first.
_MAIN_BRANCHES = ("main", "master", "develop", "trunk")





def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ContractStore:
    """The contract store in one SQLite file. Open it with `ContractStore.open`; it is safe to use
    from several threads (one connection, one lock) and several processes (SQLite's own locking).
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.RLock()

    # --- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_STORE, *, create: bool = True) -> ContractStore:
        """Open the store at ``path``, creating it (and its folder) when ``create`` and it does not
        exist. A file that is not a contract store, or one a newer saga-verify wrote, is refused."""
        where = Path(path)
        return cls(where, connect(where, create=create))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ContractStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: everything in it is written, or nothing."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[ContractStore]:
        """Group several changes into one transaction: ``with store.transaction(): ...``."""
        with self._write():
            yield self

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    @contextlib.contextmanager
    def _change(self) -> Iterator[sqlite3.Connection]:
        """A transaction of its own, or a part of the one `transaction` opened (whose thread holds
        the lock for as long as it lasts, so no other thread's change can land in it)."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            with self._write() as db:
                yield db

    # --- participants and versions ---------------------------------------------------------------

    def _pacticipant_id(self, db: sqlite3.Connection, name: str, *, create: bool) -> int:
        row = db.execute("SELECT id FROM pacticipants WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            raise UnknownError(f"the store has no participant {name!r}{self._known('pacticipants', 'name')}")
        check_name("participant name", name)
        cursor = db.execute("INSERT INTO pacticipants (name, created_at) VALUES (?, ?)", (name, _now()))
        return int(cursor.lastrowid or 0)

    def _known(self, table: str, column: str) -> str:
        names = [r[0] for r in self._db.execute(f"SELECT {column} FROM {table} ORDER BY {column}")]
        return f" (known: {', '.join(names)})" if names else " (it holds none yet)"

    def _version_id(
        self,
        db: sqlite3.Connection,
        pacticipant: str,
        number: str,
        *,
        create: bool,
        branch: str | None = None,
        tags: Sequence[str] = (),
        build_url: str | None = None,
    ) -> int:
        pacticipant_id = self._pacticipant_id(db, pacticipant, create=create)
        row = db.execute(
            "SELECT id FROM versions WHERE pacticipant_id = ? AND number = ?", (pacticipant_id, number)
        ).fetchone()
        if row is None:
            if not create:
                raise UnknownError(f"the store has no version {number!r} of {pacticipant!r}")
            check_name("version number", number)
            cursor = db.execute(
                "INSERT INTO versions (pacticipant_id, number, build_url, created_at) VALUES (?, ?, ?, ?)",
                (pacticipant_id, number, build_url, _now()),
            )
            version_id = int(cursor.lastrowid or 0)
        else:
            version_id = int(row[0])
            if build_url:
                db.execute("UPDATE versions SET build_url = ? WHERE id = ?", (build_url, version_id))
        if branch is not None:
            check_name("branch name", branch)
            db.execute(
                "INSERT OR IGNORE INTO branch_versions (version_id, branch, created_at) VALUES (?, ?, ?)",
                (version_id, branch, _now()),
            )
            if branch in _MAIN_BRANCHES:
                db.execute(
                    "UPDATE pacticipants SET main_branch = ? WHERE id = ? AND main_branch IS NULL", (branch, pacticipant_id)
                )
        for tag in tags:
            check_name("tag", tag)
            db.execute(
                "INSERT OR IGNORE INTO tags (version_id, name, created_at) VALUES (?, ?, ?)", (version_id, tag, _now())
            )
        return version_id

    def add_version(
        self,
        pacticipant: str,
        number: str,
        *,
        branch: str | None = None,
        tags: Sequence[str] = (),
        build_url: str | None = None,
    ) -> Version:
        """Record a participant version (and the participant) if new; add the branch and tags."""
        with self._change() as db:
            version_id = self._version_id(
                db, pacticipant, number, create=True, branch=branch, tags=tags, build_url=build_url
            )
            return self._version_by_id(db, version_id)

    def pacticipants(self) -> list[str]:
        with self._read() as db:
            return [r[0] for r in db.execute("SELECT name FROM pacticipants ORDER BY name")]

    def main_branch(self, pacticipant: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT main_branch FROM pacticipants WHERE name = ?", (pacticipant,)).fetchone()
        if row is None:
            raise UnknownError(f"the store has no participant {pacticipant!r}{self._known('pacticipants', 'name')}")
        return None if row[0] is None else str(row[0])

    def version(self, pacticipant: str, number: str) -> Version:
        """A version the store holds; `UnknownError` names what is missing."""
        with self._read() as db:
            return self._version_by_id(db, self._version_id(db, pacticipant, number, create=False))

    def _version_by_id(self, db: sqlite3.Connection, version_id: int) -> Version:
        row = db.execute(
            "SELECT p.name, v.number, v.build_url, v.created_at FROM versions v JOIN pacticipants p ON p.id = v.pacticipant_id "
            "WHERE v.id = ?",
            (version_id,),
        ).fetchone()
        branches = tuple(
            r[0]
            for r in db.execute(
                "SELECT branch FROM branch_versions WHERE version_id = ? ORDER BY created_at, rowid", (version_id,)
            )
        )
        tags = tuple(r[0] for r in db.execute("SELECT name FROM tags WHERE version_id = ? ORDER BY rowid", (version_id,)))
        return Version(row[0], row[1], branches, tags, row[2], row[3], version_id)

    def versions(self, pacticipant: str) -> list[Version]:
        """Every version of a participant, oldest first."""
        with self._read() as db:
            pacticipant_id = self._pacticipant_id(db, pacticipant, create=False)
            ids = [r[0] for r in db.execute("SELECT id FROM versions WHERE pacticipant_id = ? ORDER BY id", (pacticipant_id,))]
            return [self._version_by_id(db, i) for i in ids]

    def latest_version(
        self, pacticipant: str, *, branch: str | None = None, tag: str | None = None
    ) -> Version | None:
        """The newest version of a participant, on ``branch`` or with ``tag`` if given."""
        with self._read() as db:
            pacticipant_id = self._pacticipant_id(db, pacticipant, create=False)
            query = "SELECT v.id FROM versions v WHERE v.pacticipant_id = ?"
            args: list[Any] = [pacticipant_id]
            if branch is not None:
                query += " AND EXISTS (SELECT 1 FROM branch_versions b WHERE b.version_id = v.id AND b.branch = ?)"
                args.append(branch)
            if tag is not None:
                query += " AND EXISTS (SELECT 1 FROM tags t WHERE t.version_id = v.id AND t.name = ?)"
                args.append(tag)
            row = db.execute(query + " ORDER BY v.id DESC LIMIT 1", args).fetchone()
            return None if row is None else self._version_by_id(db, row[0])

    # --- pacts -----------------------------------------------------------------------------------

    def publish_pact(
        self,
        document: Mapping[str, Any],
        consumer_version: str,
        *,
        branch: str | None = None,
        tags: Sequence[str] = (),
        build_url: str | None = None,
        source: str = "the pact",
    ) -> Pact:
        """Record ``document`` (a pact) as what ``consumer_version`` of its consumer expects of its
        provider, replacing what that version published for that provider before."""
        checked = check_pact(dict(document), source)
        if not interactions_of(checked):
            raise StoreError(f"{source} has no interactions: there is nothing to publish")
        consumer, provider = checked["consumer"]["name"], checked["provider"]["name"]
        if consumer == provider:
            raise StoreError(f"{source} names {consumer!r} as both its consumer and its provider")
        sha = pact_sha(checked)
        content = json.dumps(checked, sort_keys=True, ensure_ascii=False)
        with self._change() as db:
            version_id = self._version_id(
                db, consumer, consumer_version, create=True, branch=branch, tags=tags, build_url=build_url
            )
            consumer_id = self._pacticipant_id(db, consumer, create=True)
            provider_id = self._pacticipant_id(db, provider, create=True)
            row = db.execute(
                "SELECT id FROM pact_versions WHERE consumer_id = ? AND provider_id = ? AND sha = ?",
                (consumer_id, provider_id, sha),
            ).fetchone()
            if row is None:
                cursor = db.execute(
                    "INSERT INTO pact_versions (consumer_id, provider_id, sha, content, created_at) VALUES (?, ?, ?, ?, ?)",
                    (consumer_id, provider_id, sha, content, _now()),
                )
                pact_version_id = int(cursor.lastrowid or 0)
            else:
                pact_version_id = int(row[0])
            db.execute(
                "DELETE FROM pact_publications WHERE consumer_version_id = ? AND provider_id = ?", (version_id, provider_id)
            )
            db.execute(
                "INSERT INTO pact_publications (consumer_version_id, provider_id, pact_version_id, created_at) "
                "VALUES (?, ?, ?, ?)",
                (version_id, provider_id, pact_version_id, _now()),
            )
        return self.pact(consumer, consumer_version, provider)

    _PACT_COLUMNS = (
        "SELECT c.name, cv.number, p.name, pv.sha, pv.content, pub.created_at, pv.id "
        "FROM pact_publications pub "
        "JOIN versions cv ON cv.id = pub.consumer_version_id "
        "JOIN pacticipants c ON c.id = cv.pacticipant_id "
        "JOIN pacticipants p ON p.id = pub.provider_id "
        "JOIN pact_versions pv ON pv.id = pub.pact_version_id "
    )

    @staticmethod
    def _pact_row(row: Sequence[Any]) -> Pact:
        return Pact(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6])

    def pact(self, consumer: str, consumer_version: str, provider: str) -> Pact:
        """The pact ``consumer_version`` of ``consumer`` published for ``provider``."""
        with self._read() as db:
            row = db.execute(
                self._PACT_COLUMNS + "WHERE c.name = ? AND cv.number = ? AND p.name = ?",
                (consumer, consumer_version, provider),
            ).fetchone()
        if row is None:
            self.version(consumer, consumer_version)
            raise UnknownError(f"{consumer} {consumer_version} published no pact for {provider!r}")
        return self._pact_row(row)

    def pacts_of(self, consumer: str, consumer_version: str) -> list[Pact]:
        """Every pact a consumer version published, by provider name."""
        self.version(consumer, consumer_version)
        with self._read() as db:
            rows = db.execute(
                self._PACT_COLUMNS + "WHERE c.name = ? AND cv.number = ? ORDER BY p.name", (consumer, consumer_version)
            ).fetchall()
        return [self._pact_row(r) for r in rows]

    def pacts_for(self, provider: str) -> list[Pact]:
        """Every pact publication for ``provider``, oldest first."""
        with self._read() as db:
            rows = db.execute(self._PACT_COLUMNS + "WHERE p.name = ? ORDER BY pub.id", (provider,)).fetchall()
        return [self._pact_row(r) for r in rows]

    def pact_version(self, consumer: str, provider: str, sha: str) -> Pact:
        """The newest publication of the pact content ``sha`` between two participants."""
        with self._read() as db:
            row = db.execute(
                self._PACT_COLUMNS + "WHERE c.name = ? AND p.name = ? AND pv.sha = ? ORDER BY pub.id DESC LIMIT 1",
                (consumer, provider, sha),
            ).fetchone()
        if row is None:
            raise UnknownError(f"the store has no pact {sha!r} between {consumer!r} and {provider!r}")
        return self._pact_row(row)

    def consumer_versions_of(self, consumer: str, provider: str, sha: str) -> list[str]:
        """The consumer versions that published the pact content ``sha``, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT cv.number FROM pact_publications pub JOIN versions cv ON cv.id = pub.consumer_version_id "
                "JOIN pacticipants c ON c.id = cv.pacticipant_id JOIN pacticipants p ON p.id = pub.provider_id "
                "JOIN pact_versions pv ON pv.id = pub.pact_version_id "
                "WHERE c.name = ? AND p.name = ? AND pv.sha = ? ORDER BY pub.id",
                (consumer, provider, sha),
            ).fetchall()
        return [r[0] for r in rows]

    # --- verification results ------------------------------------------------------------------

    def record_verification(
        self,
        consumer: str,
        provider: str,
        sha: str,
        provider_version: str,
        *,
        success: bool,
        results: Sequence[Mapping[str, Any]] = (),
        pending: bool = False,
        wip: bool = False,
        branch: str | None = None,
        build_url: str | None = None,
    ) -> Verification:
        """Record that ``provider_version`` of ``provider`` verified the pact content ``sha``."""
        if not isinstance(success, bool):
            raise StoreError(f"a verification result's success must be true or false, not {success!r}")
        with self._change() as db:
            pact = db.execute(
                "SELECT pv.id FROM pact_versions pv JOIN pacticipants c ON c.id = pv.consumer_id "
                "JOIN pacticipants p ON p.id = pv.provider_id WHERE c.name = ? AND p.name = ? AND pv.sha = ?",
                (consumer, provider, sha),
            ).fetchone()
            if pact is None:
                raise UnknownError(f"the store has no pact {sha!r} between {consumer!r} and {provider!r}")
            version_id = self._version_id(db, provider, provider_version, create=True, branch=branch)
            cursor = db.execute(
                "INSERT INTO verifications (pact_version_id, provider_version_id, success, pending, wip, results, build_url, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (pact[0], version_id, success, pending, wip, json.dumps(list(results)), build_url, _now()),
            )
            verification_id = int(cursor.lastrowid or 0)
        return self.verification(verification_id)

    _VERIFICATION_COLUMNS = (
        "SELECT c.name, p.name, prv.number, pv.sha, v.success, v.pending, v.wip, v.results, v.build_url, v.created_at, v.id "
        "FROM verifications v JOIN pact_versions pv ON pv.id = v.pact_version_id "
        "JOIN pacticipants c ON c.id = pv.consumer_id JOIN pacticipants p ON p.id = pv.provider_id "
        "JOIN versions prv ON prv.id = v.provider_version_id "
    )

    @staticmethod
    def _verification_row(row: Sequence[Any]) -> Verification:
        return Verification(
            row[0], row[1], row[2], row[3], bool(row[4]), bool(row[5]), bool(row[6]),
            tuple(json.loads(row[7])), row[8], row[9], row[10],
        )  # fmt: skip

    def verification(self, verification_id: int) -> Verification:
        with self._read() as db:
            row = db.execute(self._VERIFICATION_COLUMNS + "WHERE v.id = ?", (verification_id,)).fetchone()
        if row is None:
            raise UnknownError(f"the store has no verification result {verification_id}")
        return self._verification_row(row)

    def verifications(self, consumer: str, provider: str, sha: str) -> list[Verification]:
        """Every verification of the pact content ``sha``, oldest first."""
        with self._read() as db:
            rows = db.execute(
                self._VERIFICATION_COLUMNS + "WHERE c.name = ? AND p.name = ? AND pv.sha = ? ORDER BY v.id",
                (consumer, provider, sha),
            ).fetchall()
        return [self._verification_row(r) for r in rows]

    def latest_verification(self, pact: Pact, provider_version: str) -> Verification | None:
        """The newest result of ``provider_version`` verifying ``pact``'s content: it decides."""
        found = [v for v in self.verifications(pact.consumer, pact.provider, pact.sha) if v.provider_version == provider_version]
        return found[-1] if found else None

    # --- environments and deployments ------------------------------------------------------------

    def create_environment(
        self,
        name: str,
        *,
        display_name: str | None = None,
        production: bool = False,
        contacts: Sequence[Mapping[str, Any]] = (),
    ) -> Environment:
        check_name("environment name", name)
        with self._change() as db:
            if db.execute("SELECT 1 FROM environments WHERE name = ?", (name,)).fetchone():
                raise StoreError(f"the environment {name!r} exists already")
            db.execute(
                "INSERT INTO environments (uuid, name, display_name, production, contacts, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), name, display_name or name, bool(production), json.dumps(list(contacts)), _now()),
            )
        return self.environment(name)

    @staticmethod
    def _environment_row(row: Sequence[Any]) -> Environment:
        return Environment(row[0], row[1], row[2], bool(row[3]), tuple(json.loads(row[4])), row[5], row[6])

    def environment(self, name: str) -> Environment:
        """An environment by name (or by its uuid)."""
        with self._read() as db:
            row = db.execute(
                "SELECT name, uuid, display_name, production, contacts, created_at, id FROM environments "
                "WHERE name = ? OR uuid = ?",
                (name, name),
            ).fetchone()
            if row is None:
                raise UnknownError(f"the store has no environment {name!r}{self._known('environments', 'name')}")
        return self._environment_row(row)

    def environments(self) -> list[Environment]:
        with self._read() as db:
            rows = db.execute(
                "SELECT name, uuid, display_name, production, contacts, created_at, id FROM environments ORDER BY name"
            ).fetchall()
        return [self._environment_row(r) for r in rows]

    def record_deployment(
        self, pacticipant: str, version: str, environment: str, *, application_instance: str | None = None
    ) -> Deployment:
        """Record that ``version`` of ``pacticipant`` now runs in ``environment``; the version it
        replaces there (same application instance) is no longer deployed."""
        instance = application_instance or ""
        if instance:
            check_name("application instance", instance)
        with self._change() as db:
            version_id = self._version_id(db, pacticipant, version, create=False)
            env = self.environment(environment)
            db.execute(
                "UPDATE deployments SET undeployed_at = ? WHERE environment_id = ? AND application_instance = ? "
                "AND undeployed_at IS NULL AND version_id IN "
                "(SELECT id FROM versions WHERE pacticipant_id = (SELECT pacticipant_id FROM versions WHERE id = ?))",
                (_now(), env.id, instance, version_id),
            )
            deployment_uuid = str(uuid.uuid4())
            db.execute(
                "INSERT INTO deployments (uuid, version_id, environment_id, application_instance, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (deployment_uuid, version_id, env.id, instance, _now()),
            )
        return self.deployment(deployment_uuid)

    def record_release(self, pacticipant: str, version: str, environment: str) -> Deployment:
        """Record that ``version`` of ``pacticipant`` is released (and supported) in ``environment``."""
        with self._change() as db:
            version_id = self._version_id(db, pacticipant, version, create=False)
            env = self.environment(environment)
            existing = db.execute(
                "SELECT uuid FROM releases WHERE version_id = ? AND environment_id = ? AND support_ended_at IS NULL",
                (version_id, env.id),
            ).fetchone()
            release_uuid = existing[0] if existing else str(uuid.uuid4())
            if existing is None:
                db.execute(
                    "INSERT INTO releases (uuid, version_id, environment_id, created_at) VALUES (?, ?, ?, ?)",
                    (release_uuid, version_id, env.id, _now()),
                )
        return self.deployment(release_uuid)

    _DEPLOYMENT_COLUMNS = (
        "SELECT d.uuid, p.name, v.number, e.name, d.application_instance, d.undeployed_at IS NULL, d.created_at, 'deployed' "
        "FROM deployments d JOIN versions v ON v.id = d.version_id JOIN pacticipants p ON p.id = v.pacticipant_id "
        "JOIN environments e ON e.id = d.environment_id "
    )
    _RELEASE_COLUMNS = (
        "SELECT r.uuid, p.name, v.number, e.name, '', r.support_ended_at IS NULL, r.created_at, 'released' "
        "FROM releases r JOIN versions v ON v.id = r.version_id JOIN pacticipants p ON p.id = v.pacticipant_id "
        "JOIN environments e ON e.id = r.environment_id "
    )

    def deployment(self, deployment_uuid: str) -> Deployment:
        with self._read() as db:
            row = db.execute(self._DEPLOYMENT_COLUMNS + "WHERE d.uuid = ?", (deployment_uuid,)).fetchone()
            row = row or db.execute(self._RELEASE_COLUMNS + "WHERE r.uuid = ?", (deployment_uuid,)).fetchone()
        if row is None:
            raise UnknownError(f"the store has no deployment or release {deployment_uuid!r}")
        return Deployment(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7])

    def deployed(self, environment: str | None = None) -> list[Deployment]:
        """What is currently deployed, or released and supported, in ``environment`` (or anywhere)."""
        where_d, where_r, args = "WHERE d.undeployed_at IS NULL", "WHERE r.support_ended_at IS NULL", []
        if environment is not None:
            env = self.environment(environment)
            where_d += " AND e.id = ?"
            where_r += " AND e.id = ?"
            args = [env.id]
        with self._read() as db:
            rows = db.execute(self._DEPLOYMENT_COLUMNS + where_d + " ORDER BY d.id", args).fetchall()
            rows += db.execute(self._RELEASE_COLUMNS + where_r + " ORDER BY r.id", args).fetchall()
        return [Deployment(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows]

    def deployments_of(self, pacticipant: str, version: str) -> list[Deployment]:
        """Every deployment and release of one version, current or not."""
        with self._read() as db:
            rows = db.execute(
                self._DEPLOYMENT_COLUMNS + "WHERE p.name = ? AND v.number = ? ORDER BY d.id", (pacticipant, version)
            ).fetchall()
            rows += db.execute(
                self._RELEASE_COLUMNS + "WHERE p.name = ? AND v.number = ? ORDER BY r.id", (pacticipant, version)
            ).fetchall()
        return [Deployment(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows]

    # --- OpenAPI documents and event schemas -----------------------------------------------------

    def publish_document(
        self,
        pacticipant: str,
        version: str,
        kind: str,
        name: str,
        content: str,
        *,
        branch: str | None = None,
    ) -> Document:
        """Record an OpenAPI document or an event schema (``kind``) that a participant version publishes."""
        if kind not in DOCUMENT_KINDS:
            raise StoreError(f"a document's kind is one of {', '.join(DOCUMENT_KINDS)}, not {kind!r}")
        check_name("document name", name)
        with self._change() as db:
            version_id = self._version_id(db, pacticipant, version, create=True, branch=branch)
            db.execute(
                "INSERT INTO documents (version_id, kind, name, content, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (version_id, kind, name) DO UPDATE SET content = excluded.content",
                (version_id, kind, name, content, _now()),
            )
        return Document(pacticipant, version, kind, name, content)

    def documents(self, kind: str, *, pacticipant: str | None = None, version: str | None = None) -> list[Document]:
        """Documents of one kind, oldest first (by the version that published them)."""
        query = (
            "SELECT p.name, v.number, d.kind, d.name, d.content, d.created_at FROM documents d "
            "JOIN versions v ON v.id = d.version_id JOIN pacticipants p ON p.id = v.pacticipant_id WHERE d.kind = ?"
        )
        args: list[Any] = [kind]
        if pacticipant is not None:
            query += " AND p.name = ?"
            args.append(pacticipant)
        if version is not None:
            query += " AND v.number = ?"
            args.append(version)
        with self._read() as db:
            rows = db.execute(query + " ORDER BY v.id, d.id", args).fetchall()
        return [Document(*r) for r in rows]
