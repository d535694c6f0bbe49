"""The storage interface every side uses: ``open_store`` → ``Store`` → ``Tx``.

One body of SQL runs on both backends; see the package docstring for the portable subset.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from konbini.storage.backend import Backend, Params, Result
from konbini.storage.errors import (
    InvalidStoreUrl,
    NestedTransactionError,
    TransactionConflict,
)
from konbini.storage.migrations import (
    SCHEMA_MIGRATIONS_DDL,
    Dialect,
    Migration,
    check_definitions,
    pending_migrations,
)
from konbini.storage.postgres_backend import PostgresBackend
from konbini.storage.sqlite_backend import SqliteBackend
from konbini.storage.timestamps import now_micros

T = TypeVar("T")

DEFAULT_RETRIES = 12


class Tx:
    """One open transaction. Valid only inside its ``with`` block or ``run`` callback."""

    def __init__(self, backend: Backend, conn: Any, *, write: bool) -> None:
        self._backend = backend
        self._conn = conn
        self.dialect: Dialect = backend.dialect
        self.write = write

    def execute(self, sql: str, params: Params = ()) -> Result:
        """Run one statement with ``?`` placeholders; driver errors become typed errors."""
        try:
            return self._backend.execute(self._conn, sql, params)
        except Exception as exc:
            typed = self._backend.translate_error(exc)
            if typed is None:
                raise
            raise typed from exc

    def lock_for_update(self) -> str:
        """The suffix that row-locks a SELECT on PostgreSQL (``" FOR UPDATE"``) and is empty on
        SQLite, whose write transactions already hold the database's single write lock."""
        return " FOR UPDATE" if self.dialect == "postgresql" else ""


class Store:
    """A database with its migrations applied. Thread-safe; open one per process.

    Isolation: write transactions on SQLite hold the write lock from BEGIN (``BEGIN IMMEDIATE``),
    on PostgreSQL they run at SERIALIZABLE. Either way a "read, decide, write" transaction run
    through :meth:`run` cannot lose an update: the loser gets :class:`TransactionConflict` and
    is run again. Read-only transactions see one consistent snapshot.
    """

    def __init__(self, backend: Backend, *, rng: random.Random | None = None) -> None:
        self._backend = backend
        self._local = threading.local()
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not security
        self.dialect: Dialect = backend.dialect

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """Commit on clean exit, roll back on exception. Not retried; prefer :meth:`run`."""
        if getattr(self._local, "active", False):
            raise NestedTransactionError("this thread already has a transaction on this store")
        self._local.active = True
        try:
            with self._backend.acquire() as conn:
                try:
                    self._guarded(lambda: self._backend.begin(conn, write=write))
                    try:
                        yield Tx(self._backend, conn, write=write)
                    except BaseException:
                        self._rollback_quietly(conn)
                        raise
                    try:
                        self._guarded(lambda: self._backend.commit(conn))
                    except BaseException:
                        self._rollback_quietly(conn)
                        raise
                finally:
                    # Even after a failed BEGIN: the connection goes back to the pool clean.
                    self._backend.end(conn, write=write)
        finally:
            self._local.active = False

    def run(
        self,
        fn: Callable[[Tx], T],
        *,
        write: bool = True,
        retries: int = DEFAULT_RETRIES,
    ) -> T:
        """Run ``fn`` in a transaction, again (with jittered backoff) on a
        :class:`TransactionConflict`, at most ``retries`` more times.

        ``fn`` may run several times, so it must have no effect outside the transaction.
        """
        attempt = 0
        while True:
            try:
                with self.transaction(write=write) as tx:
                    return fn(tx)
            except TransactionConflict:
                if attempt >= retries:
                    raise
                attempt += 1
                # Exponential backoff from 1 ms, capped at 50 ms, with jitter to split herds.
                delay = min(0.05, 0.001 * 2**attempt) * self._rng.uniform(0.5, 1.5)
                time.sleep(delay)

    def close(self) -> None:
        """Close every connection. Transactions must be finished first."""
        self._backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            typed = self._backend.translate_error(exc)
            if typed is None:
                raise
            raise typed from exc

    def _rollback_quietly(self, conn: Any) -> None:
        # The original error matters more than a failed rollback on a broken connection.
        with contextlib.suppress(Exception):
            self._backend.rollback(conn)

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        backend = self._backend
        with backend.acquire() as conn:
            self._guarded(lambda: backend.begin_migration(conn))
            try:
                backend.execute(conn, SCHEMA_MIGRATIONS_DDL, ())
                applied = {
                    int(row["version"]): str(row["checksum"])
                    for row in backend.execute(
                        conn, "SELECT version, checksum FROM schema_migrations", ()
                    )
                }
                for migration in pending_migrations(migrations, applied, backend.dialect):
                    backend.run_script(conn, migration.sql_for(backend.dialect))
                    backend.execute(
                        conn,
                        "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
                        " VALUES (?, ?, ?, ?)",
                        (
                            migration.version,
                            migration.name,
                            migration.checksum(backend.dialect),
                            now_micros(),
                        ),
                    )
                backend.commit(conn)
            except BaseException as exc:
                self._rollback_quietly(conn)
                typed = backend.translate_error(exc) if isinstance(exc, Exception) else None
                if typed is None:
                    raise
                raise typed from exc
            finally:
                backend.end(conn, write=True)


def open_store(
    url: str,
    *,
    migrations: Sequence[Migration],
    schema: str | None = None,
    pool_size: int = 8,
    busy_timeout_ms: int = 5000,
    connect_timeout_s: float = 10.0,
) -> Store:
    """Open the database at ``url`` and apply the pending ``migrations``.

    URLs: ``sqlite:///abs/path.db`` (``sqlite:///:memory:`` for unit tests only: one shared
    connection, nothing persists) and ``postgresql://user@host:port/db``. For PostgreSQL,
    ``schema`` is the default schema (search_path) of every connection and is created if
    missing, so several sides share one database; a ``?schema=name`` in the URL overrides it
    (how operators and tests choose). SQLite ignores ``schema``: give each side its own file.

    ``pool_size`` bounds PostgreSQL connections; ``busy_timeout_ms`` is how long SQLite waits
    for the write lock before the transaction counts as a conflict.
    """
    check_definitions(migrations)
    parts = urlsplit(url)
    backend: Backend
    if parts.scheme == "sqlite":
        path = url[len("sqlite://") :]
        if path == "/:memory:":
            backend = SqliteBackend(None, busy_timeout_ms=busy_timeout_ms)
        elif path.startswith("/") and not parts.query and not parts.fragment and len(path) > 1:
            backend = SqliteBackend(path, busy_timeout_ms=busy_timeout_ms)
        else:
            raise InvalidStoreUrl("SQLite URLs look like sqlite:///absolute/path.db")
    elif parts.scheme in ("postgresql", "postgres"):
        query = parse_qsl(parts.query, keep_blank_values=True)
        url_schema = [value for key, value in query if key == "schema"]
        if len(url_schema) > 1:
            raise InvalidStoreUrl("the store URL names more than one schema")
        conninfo = urlunsplit(
            parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"]))
        )
        backend = PostgresBackend(
            conninfo,
            schema=url_schema[0] if url_schema else schema,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
        )
    else:
        raise InvalidStoreUrl(f"unsupported store URL scheme {parts.scheme!r}")
    store = Store(backend)
    try:
        store._migrate(migrations)
    except BaseException:
        store.close()
        raise
    return store
