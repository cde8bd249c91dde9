"""The durable orchestrator's saga log in PostgreSQL (psycopg 3), behind the same three-method
interface as the SQLite one: a coordinator's store that lives in a database server."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from saga_verify.errors import RecoveryError

from ._saga_log import SCHEMA_NAME, SCHEMA_VERSION, Lease, LeaseLost, check_entry, check_layout, fenced

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresSagaLog:
    """A `SagaLog` in the tables of one PostgreSQL schema (``schema``, made if missing).
    ``conninfo`` is a libpq connection string. An unreachable server, a schema holding another
    program's tables or a log of a newer layout is refused with `RecoveryError`."""

    def __init__(self, conninfo: str, schema: str = "saga_log") -> None:
        if not _SCHEMA_RE.match(schema):
            raise RecoveryError(f"saga log schema must be a plain lower-case name, got {schema!r}")
        self.conninfo = conninfo
        self.schema = schema
        self._where = f"{schema!r} at {_safe(conninfo)!r}"
        import psycopg

        try:
            self._db = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise RecoveryError(f"saga log {self._where}: PostgreSQL is unreachable: {str(exc).strip()}") from None
        try:
            self._check_or_create()
        except BaseException:
            self._db.close()
            raise

    def _check_or_create(self) -> None:
        db, schema = self._db, self.schema
        tables = {
            row[0]
            for row in db.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
        }
        if not tables:
            with db.transaction():
                db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                db.execute(f"CREATE TABLE {schema}.saga_log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                db.execute(
                    f"CREATE TABLE {schema}.saga_log (saga_id TEXT NOT NULL, seq INTEGER NOT NULL, entry JSONB NOT NULL, "
                    "written BIGSERIAL, PRIMARY KEY (saga_id, seq))"
                )
                db.execute(self._lease_table())
                db.execute(
                    f"INSERT INTO {schema}.saga_log_meta VALUES ('schema', %s), ('version', %s)", (SCHEMA_NAME, str(SCHEMA_VERSION))
                )
            return
        meta = None
        if "saga_log_meta" in tables:
            meta = {str(k): str(v) for k, v in db.execute(f"SELECT key, value FROM {schema}.saga_log_meta").fetchall()}
        check_layout(self._where, tables, meta)
        if "saga_lease" not in tables:
            # A version-1 log (no leases): its instances have never been leased.
            with db.transaction():
                db.execute(self._lease_table())
                db.execute(f"UPDATE {schema}.saga_log_meta SET value = %s WHERE key = 'version'", (str(SCHEMA_VERSION),))

    def _lease_table(self) -> str:
        return (
            f"CREATE TABLE {self.schema}.saga_lease (saga_id TEXT PRIMARY KEY, owner TEXT NOT NULL, token BIGINT NOT NULL, "
            "expires DOUBLE PRECISION NOT NULL)"
        )

    def append(self, saga_id: str, entry: Mapping[str, Any], token: int | None = None, until: float | None = None) -> None:
        schema, db = self.schema, self._db
        insert = (
            f"INSERT INTO {schema}.saga_log (saga_id, seq, entry) "
            f"VALUES (%s, (SELECT COALESCE(MAX(seq), 0) + 1 FROM {schema}.saga_log WHERE saga_id = %s), %s::jsonb)"
        )
        row = (saga_id, saga_id, json.dumps(dict(entry), sort_keys=True))
        if token is None:
            db.execute(insert, row)
            return
        with db.transaction():  # the token's check and the write; the row lock keeps an acquirer out between
            found = db.execute(f"SELECT token FROM {schema}.saga_lease WHERE saga_id = %s FOR UPDATE", (saga_id,)).fetchone()
            if found is None or found[0] != token:
                raise LeaseLost(fenced(saga_id, token, None if found is None else int(found[0])))
            db.execute(insert, row)
            if until is not None:
                db.execute(f"UPDATE {schema}.saga_lease SET expires = %s WHERE saga_id = %s", (until, saga_id))

    def acquire(self, saga_id: str, owner: str, now: float, until: float) -> int | None:
        schema = self.schema
        found = self._db.execute(
            f"INSERT INTO {schema}.saga_lease AS l (saga_id, owner, token, expires) VALUES (%s, %s, 1, %s) "
            "ON CONFLICT (saga_id) DO UPDATE SET owner = EXCLUDED.owner, token = l.token + 1, expires = EXCLUDED.expires "
            "WHERE l.expires <= %s RETURNING l.token",
            (saga_id, owner, until, now),
        ).fetchone()
        return None if found is None else int(found[0])

    def lease(self, saga_id: str) -> Lease | None:
        found = self._db.execute(f"SELECT owner, token, expires FROM {self.schema}.saga_lease WHERE saga_id = %s", (saga_id,)).fetchone()
        return None if found is None else Lease(str(found[0]), int(found[1]), float(found[2]))

    def entries(self, saga_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(f"SELECT seq, entry FROM {self.schema}.saga_log WHERE saga_id = %s ORDER BY seq", (saga_id,)).fetchall()
        return [check_entry(self._where, saga_id, seq, entry, json.dumps(entry)) for seq, entry in rows]

    def unfinished(self) -> list[str]:
        schema = self.schema
        rows = self._db.execute(
            f"SELECT l.saga_id FROM {schema}.saga_log l WHERE l.seq = (SELECT MAX(seq) FROM {schema}.saga_log WHERE saga_id = l.saga_id) "
            "AND l.entry->>'type' <> 'ended' ORDER BY l.written"
        ).fetchall()
        return [row[0] for row in rows]

    def reopen(self) -> PostgresSagaLog:
        """A new connection after a crash: the server rolled back what the dead one had open."""
        self._db.close()
        return PostgresSagaLog(self.conninfo, self.schema)

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"PostgresSagaLog({self._where})"


def _safe(conninfo: str) -> str:
    """The connection string without its password."""
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", conninfo)
