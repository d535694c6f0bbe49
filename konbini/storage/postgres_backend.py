"""PostgreSQL backend: psycopg 3 with a connection pool, SERIALIZABLE write transactions.

Each connection's search_path is the side's schema, so sides (and tests) share one database
without seeing each other's tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from konbini.storage.backend import Params, Result
from konbini.storage.errors import (
    ConstraintViolation,
    InvalidStoreUrl,
    ReadOnlyTransactionError,
    StorageError,
    StorageUnavailable,
    TransactionConflict,
    UniqueViolation,
)
from konbini.storage.migrations import Dialect
from konbini.storage.sqltext import ddl_for_postgresql, to_psycopg

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Advisory-lock class for "migrating schema X"; the second key is hashtext(schema).
_MIGRATION_LOCK_CLASS = 0x6B6F6E62  # "konb"
_CONFLICT_STATES = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
}


class PostgresBackend:
    """A pool of connections to one database, all using ``schema`` (or the server default)."""

    dialect: Dialect = "postgresql"

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None,
        pool_size: int,
        connect_timeout_s: float,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise InvalidStoreUrl(
                f"schema name {schema!r} must be lower-case letters, digits and _ (max 63)"
            )
        self._schema = schema
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={
                "autocommit": True,  # we issue BEGIN/COMMIT ourselves
                "row_factory": dict_row,
                "connect_timeout": max(1, int(connect_timeout_s)),
            },
            configure=self._configure,
            check=ConnectionPool.check_connection,  # drop connections broken by a restart
            timeout=connect_timeout_s,
            open=False,
            name="konbini-storage",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StorageUnavailable("cannot connect to the PostgreSQL server") from exc

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        if self._schema is not None:
            conn.execute(
                pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(self._schema))
            )

    @contextmanager
    def acquire(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StorageUnavailable("no PostgreSQL connection became available") from exc

    def begin(self, conn: psycopg.Connection[Any], *, write: bool) -> None:
        if write:
            # SERIALIZABLE: "read, decide, write" cannot interleave; losers get 40001 and rerun.
            conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        else:
            # A snapshot that never fails: read-only transactions never need a retry.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: psycopg.Connection[Any]) -> None:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")

    def end(self, conn: psycopg.Connection[Any], *, write: bool) -> None:
        del conn, write  # nothing is set per transaction

    def execute(self, conn: psycopg.Connection[Any], sql: str, params: Params) -> Result:
        cursor = conn.execute(to_psycopg(sql), tuple(params))
        rows = cursor.fetchall() if cursor.description is not None else []
        return Result(rows, cursor.rowcount)

    def translate_error(self, exc: BaseException) -> StorageError | None:  # noqa: PLR0911
        if not isinstance(exc, psycopg.Error):
            return None
        state = exc.sqlstate or ""
        if state in _CONFLICT_STATES:
            return TransactionConflict(f"PostgreSQL transaction conflict ({state})")
        if isinstance(exc, pg_errors.UniqueViolation):
            name = exc.diag.constraint_name or "?"
            return UniqueViolation(f"unique constraint failed: {name}")
        if state.startswith("23"):
            name = exc.diag.constraint_name or "?"
            return ConstraintViolation(f"constraint failed ({state}): {name}")
        if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            return ReadOnlyTransactionError("write attempted in a read-only transaction")
        if isinstance(exc, psycopg.OperationalError) and not state:
            return StorageUnavailable("lost the connection to the PostgreSQL server")
        # The primary message names objects, not values; DETAIL (which may) is left out.
        primary = exc.diag.message_primary or type(exc).__name__
        return StorageError(f"PostgreSQL error ({state or 'no state'}): {primary}")

    def begin_migration(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        # Two processes starting at once must not both apply (or both create the schema).
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (_MIGRATION_LOCK_CLASS, self._schema or ""),
        )
        if self._schema is not None:
            exists = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._schema,)
            ).fetchone()
            if exists is None:
                conn.execute(pg_sql.SQL("CREATE SCHEMA {}").format(pg_sql.Identifier(self._schema)))

    def run_script(self, conn: psycopg.Connection[Any], sql: str) -> None:
        # Sent whole and without parameters, so psycopg allows several statements.
        conn.execute(ddl_for_postgresql(sql).encode("utf-8"))

    def close(self) -> None:
        self._pool.close()
