"""The durable orchestrator's saga log in PostgreSQL (psycopg 3), behind the same three-method
interface as the SQLite one: a coordinator's store that lives in a database server."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from saga_verify.errors import RecoveryError

from ._saga_log import SCHEMA_NAME, SCHEMA_VERSION, check_entry, check_layout

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
                db.execute(
                    f"INSERT INTO {schema}.saga_log_meta VALUES ('schema', %s), ('version', %s)", (SCHEMA_NAME, str(SCHEMA_VERSION))
                )
            return
        meta = None
        if "saga_log_meta" in tables:
            meta = {str(k): str(v) for k, v in db.execute(f"SELECT key, value FROM {schema}.saga_log_meta").fetchall()}
        check_layout(self._where, tables, meta)

    def append(self, saga_id: str, entry: Mapping[str, Any]) -> None:
        schema = self.schema
        self._db.execute(
            f"INSERT INTO {schema}.saga_log (saga_id, seq, entry) "
            f"VALUES (%s, (SELECT COALESCE(MAX(seq), 0) + 1 FROM {schema}.saga_log WHERE saga_id = %s), %s::jsonb)",
            (saga_id, saga_id, json.dumps(dict(entry), sort_keys=True)),
        )

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
