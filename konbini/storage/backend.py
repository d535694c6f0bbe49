"""What a backend is (internal): the rows it returns and the calls :class:`Store` makes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from konbini.storage.errors import StorageError
from konbini.storage.migrations import Dialect

Row = dict[str, Any]
Params = Sequence[object]


class Result:
    """The rows of one statement, fetched eagerly so they outlive the transaction.

    Rows are dicts keyed by column name (PostgreSQL folds unquoted names to lower case, so write
    column names and aliases in lower case).
    """

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        """Rows changed by INSERT/UPDATE/DELETE; -1 when the driver does not say."""

    def fetchone(self) -> Row | None:
        """The next row, or None when there is none left."""
        if self._next >= len(self._rows):
            return None
        row = self._rows[self._next]
        self._next += 1
        return row

    def fetchall(self) -> list[Row]:
        """All rows not fetched yet."""
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    def scalar(self) -> Any:
        """The first column of the next row, or None when there is no row."""
        row = self.fetchone()
        return None if row is None else next(iter(row.values()))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class Backend(Protocol):
    """What a backend provides to :class:`Store` (internal; sides never call it)."""

    dialect: Dialect

    def acquire(self) -> AbstractContextManager[Any]:
        """Lend a connection used by this thread only, until the context exits."""
        ...

    def begin(self, conn: Any, *, write: bool) -> None: ...

    def commit(self, conn: Any) -> None: ...

    def rollback(self, conn: Any) -> None: ...

    def end(self, conn: Any, *, write: bool) -> None:
        """Undo per-transaction connection settings after commit or rollback."""
        ...

    def execute(self, conn: Any, sql: str, params: Params) -> Result: ...

    def translate_error(self, exc: BaseException) -> StorageError | None:
        """The typed error for a driver exception, or None if ``exc`` is not the driver's."""
        ...

    def begin_migration(self, conn: Any) -> None:
        """Open the write transaction that migrations run in, holding the migration lock."""
        ...

    def run_script(self, conn: Any, sql: str) -> None:
        """Run a migration script (several statements, no parameters) in the open transaction."""
        ...

    def close(self) -> None: ...
