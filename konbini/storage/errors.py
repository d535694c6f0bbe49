"""Typed storage exceptions, the same for every backend.

Side code catches these, never ``sqlite3`` or ``psycopg`` exceptions, so one body of SQL and one
``except`` clause work on both backends. The driver's exception is kept as ``__cause__``.
"""

from __future__ import annotations


class StorageError(Exception):
    """A storage failure that is none of the more specific kinds below."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or opened (server down, bad path, bad credentials)."""


class InvalidStoreUrl(StorageError):
    """The store URL is not ``sqlite:///abs/path.db`` or ``postgresql://...``."""


class TransactionConflict(StorageError):
    """Another transaction got in the way (SQLite busy/locked, PostgreSQL serialization failure
    or deadlock). Nothing was committed; running the same transaction again is safe, and
    :meth:`Store.run` does so by itself."""


class ConstraintViolation(StorageError):
    """A NOT NULL, CHECK, FOREIGN KEY or UNIQUE constraint refused a write."""


class UniqueViolation(ConstraintViolation):
    """A UNIQUE or PRIMARY KEY constraint refused a write: the row already exists."""


class ReadOnlyTransactionError(StorageError):
    """A write was attempted inside ``transaction(write=False)``."""


class NestedTransactionError(StorageError):
    """A transaction was opened while this thread already holds one on the same store.

    It would wait for itself (SQLite) or escape the outer transaction's atomicity; pass the
    outer ``Tx`` down instead."""


class MigrationError(StorageError):
    """The database's schema history does not match the code; the store refuses to open."""


class MigrationChecksumMismatch(MigrationError):
    """An already applied migration's SQL was edited. Add a new migration instead."""


class DatabaseNewerThanCode(MigrationError):
    """The database has migrations this code does not know: it was upgraded by newer code."""


class MigrationOrderError(MigrationError):
    """A pending migration's version is lower than one already applied."""
