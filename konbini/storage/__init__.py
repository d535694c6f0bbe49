"""Storage plumbing shared by every side: one interface, two real backends.

Open a store once per process (after forking worker processes, not before)::

    store = open_store(config.storage_url, migrations=MIGRATIONS, schema="centre")
    total = store.run(lambda tx: tx.execute("SELECT count(*) AS n FROM t").scalar())

URLs: ``sqlite:///abs/path.db`` (embedded default) or ``postgresql://user@host:port/db``
(replicas on several machines; ``?schema=name`` in the URL overrides the side's schema).

Rules for side code, so one body of SQL runs on both backends:

- Placeholders are ``?`` (positional) everywhere; rows come back as dicts keyed by column name.
  Write identifiers and aliases in lower case (PostgreSQL folds unquoted names).
- Do every read-then-write inside ``store.run(fn)``: SQLite write transactions hold the write
  lock from BEGIN, PostgreSQL ones run at SERIALIZABLE, and ``run`` reruns ``fn`` on
  :class:`TransactionConflict`. So ``fn`` must only touch the database (no RPCs, no printing).
  Back invariants with UNIQUE constraints too. ``tx.lock_for_update()`` gives the
  ``FOR UPDATE`` suffix where an explicit row lock reads better; it is not needed for safety.
- Read-only work uses ``store.run(fn, write=False)``: a consistent snapshot, writes refused.
- Types: ``TEXT``; ``BIGINT`` for integers (``INTEGER PRIMARY KEY`` is SQLite-only); ``BLOB``
  for bytes (migrations turn it into ``BYTEA`` on PostgreSQL; both return ``bytes``); booleans
  as ``BIGINT`` 0/1 (PostgreSQL will not compare an integer column with ``True``); JSON as TEXT.
  Instants as ``BIGINT`` microseconds since the epoch, UTC (:mod:`konbini.storage.timestamps`).
  Generate identifiers in code (or use per-dialect SQL for identity columns).
- Portable statements: ``INSERT ... ON CONFLICT (...) DO NOTHING/UPDATE``, ``RETURNING``,
  ``CREATE INDEX``. Where dialects must differ, give a migration a mapping
  ``{"sqlite": ..., "postgresql": ...}``. No ``CREATE INDEX CONCURRENTLY`` (migrations are
  transactional).
- Catch the typed errors of :mod:`konbini.storage.errors`, never driver exceptions.
- grpc.aio servicers use :class:`AsyncStore` (``await astore.run(fn)``).
"""

from konbini.storage.aio import AsyncStore
from konbini.storage.backend import Result, Row
from konbini.storage.errors import (
    ConstraintViolation,
    DatabaseNewerThanCode,
    InvalidStoreUrl,
    MigrationChecksumMismatch,
    MigrationError,
    MigrationOrderError,
    NestedTransactionError,
    ReadOnlyTransactionError,
    StorageError,
    StorageUnavailable,
    TransactionConflict,
    UniqueViolation,
)
from konbini.storage.migrations import Dialect, Migration
from konbini.storage.store import Store, Tx, open_store
from konbini.storage.timestamps import from_micros, now_micros, to_micros

__all__ = [
    "AsyncStore",
    "ConstraintViolation",
    "DatabaseNewerThanCode",
    "Dialect",
    "InvalidStoreUrl",
    "Migration",
    "MigrationChecksumMismatch",
    "MigrationError",
    "MigrationOrderError",
    "NestedTransactionError",
    "ReadOnlyTransactionError",
    "Result",
    "Row",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "TransactionConflict",
    "Tx",
    "UniqueViolation",
    "from_micros",
    "now_micros",
    "open_store",
    "to_micros",
]
