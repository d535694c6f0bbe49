"""SQLite backend: WAL, synchronous=FULL, BEGIN IMMEDIATE for writes, one connection per thread.

Connections are pooled and each is lent to one thread for one transaction at a time, so the
pool grows to the number of threads that use the store at once (asyncio's worker threads).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from konbini.storage.backend import Params, Result, Row
from konbini.storage.errors import (
    ConstraintViolation,
    ReadOnlyTransactionError,
    StorageError,
    StorageUnavailable,
    TransactionConflict,
    UniqueViolation,
)
from konbini.storage.migrations import Dialect
from konbini.storage.sqltext import split_sqlite_script

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_CANTOPEN = 14
_SQLITE_CONSTRAINT = 19
_SQLITE_CONSTRAINT_PRIMARYKEY = 1555
_SQLITE_CONSTRAINT_UNIQUE = 2067


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


class SqliteBackend:
    """One database file (or one private in-memory database when ``path`` is None)."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: str | None, *, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # An in-memory database exists per connection, so all threads share one, in turn.
        self._memory_turn = threading.Lock() if path is None else None
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path or ":memory:",
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # lent to one thread at a time by acquire()
            )
        except sqlite3.Error as exc:
            raise StorageUnavailable("cannot open the SQLite database") from exc
        conn.row_factory = _dict_row
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            if self._path is not None:
                mode = self._switch_to_wal(conn)
                if str(next(iter(mode.values()))).lower() != "wal":
                    raise StorageUnavailable("the SQLite database refused WAL mode")
            # FULL: a commit is on disk before COMMIT returns, so a crash loses nothing.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException as exc:
            conn.close()
            typed = self.translate_error(exc) if isinstance(exc, Exception) else None
            if typed is None or isinstance(exc, StorageError):
                raise
            raise typed from exc
        return conn

    def _switch_to_wal(self, conn: sqlite3.Connection) -> dict[str, object]:
        """PRAGMA journal_mode = WAL, retried within the busy timeout: SQLite answers BUSY at
        once, without its busy handler, when another process opens a new file at the same
        moment (two workers starting together)."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                return conn.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def acquire(self) -> Iterator[sqlite3.Connection]:
        if self._memory_turn is not None:
            self._memory_turn.acquire()
        try:
            with self._lock:
                if self._closed:
                    raise StorageError("the store is closed")
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
                with self._lock:
                    self._all.append(conn)
            try:
                yield conn
            finally:
                with self._lock:
                    if not self._closed:
                        self._idle.append(conn)
        finally:
            if self._memory_turn is not None:
                self._memory_turn.release()

    def begin(self, conn: sqlite3.Connection, *, write: bool) -> None:
        if write:
            # Take the write lock now: a deferred upgrade could fail after reads, unretryably.
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn.execute("PRAGMA query_only = ON")
            conn.execute("BEGIN DEFERRED")

    def commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def end(self, conn: sqlite3.Connection, *, write: bool) -> None:
        if not write:
            conn.execute("PRAGMA query_only = OFF")

    def execute(self, conn: sqlite3.Connection, sql: str, params: Params) -> Result:
        cursor = conn.execute(sql, tuple(params))
        rows = cursor.fetchall() if cursor.description is not None else []
        return Result(rows, cursor.rowcount)

    def translate_error(self, exc: BaseException) -> StorageError | None:  # noqa: PLR0911
        if not isinstance(exc, sqlite3.Error):
            return None
        code = getattr(exc, "sqlite_errorcode", None) or 0
        primary = code & 0xFF
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return TransactionConflict("the SQLite database is busy")
        if code in (_SQLITE_CONSTRAINT_UNIQUE, _SQLITE_CONSTRAINT_PRIMARYKEY):
            return UniqueViolation(f"unique constraint failed: {_table_and_columns(exc)}")
        if primary == _SQLITE_CONSTRAINT or isinstance(exc, sqlite3.IntegrityError):
            name = getattr(exc, "sqlite_errorname", "")
            return ConstraintViolation(f"constraint failed ({name})")
        if primary == _SQLITE_READONLY:
            return ReadOnlyTransactionError("write attempted in a read-only transaction")
        if primary == _SQLITE_CANTOPEN:
            return StorageUnavailable("cannot open the SQLite database")
        return StorageError(f"SQLite error: {exc}")

    def begin_migration(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def run_script(self, conn: sqlite3.Connection, sql: str) -> None:
        for statement in split_sqlite_script(sql):
            conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all, self._idle = self._all, [], []
        for conn in conns:
            conn.close()


def _table_and_columns(exc: sqlite3.Error) -> str:
    # SQLite's message names only table.column, never values, so it is safe to keep.
    text = str(exc)
    return text.split(":", 1)[1].strip() if ":" in text else text
