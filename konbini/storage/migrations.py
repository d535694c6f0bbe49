"""Versioned schema migrations: the definition and the pure checks of a database's history.

Each side keeps its own list of :class:`Migration`. :func:`open_store` records applied ones in
``schema_migrations`` (version, name, checksum, applied_at) and refuses to open a database whose
history disagrees with the code: an edited migration, an unknown newer one, or one out of order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from konbini.storage.errors import (
    DatabaseNewerThanCode,
    MigrationChecksumMismatch,
    MigrationOrderError,
)

Dialect = Literal["sqlite", "postgresql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql")

# Created by open_store itself, identical on both backends.
SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)
"""


@dataclass(frozen=True)
class Migration:
    """One schema change of one side.

    ``sql`` is either one script in the portable subset (see the package docstring) or a mapping
    with exactly the keys ``"sqlite"`` and ``"postgresql"`` when the dialects must differ.
    Never edit a migration once released: its checksum is checked on every start.
    """

    version: int
    name: str
    sql: str | Mapping[str, str]

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or self.version <= 0:
            raise ValueError(f"migration version must be a positive int, got {self.version!r}")
        if not self.name.strip():
            raise ValueError(f"migration {self.version} needs a name")
        if not isinstance(self.sql, str) and set(self.sql) != set(DIALECTS):
            raise ValueError(
                f"migration {self.version} ({self.name}): per-dialect SQL needs exactly the keys "
                f"{list(DIALECTS)}, got {sorted(self.sql)}"
            )

    def sql_for(self, dialect: Dialect) -> str:
        """The script as written for ``dialect`` (before any ``BLOB``→``BYTEA`` translation)."""
        return self.sql if isinstance(self.sql, str) else self.sql[dialect]

    def checksum(self, dialect: Dialect) -> str:
        """SHA-256 (hex) of the script that runs on ``dialect``."""
        return hashlib.sha256(self.sql_for(dialect).encode("utf-8")).hexdigest()


def check_definitions(migrations: Sequence[Migration]) -> None:
    """Fail at once on a list that cannot be right: duplicate versions."""
    seen: dict[int, str] = {}
    for migration in migrations:
        if migration.version in seen:
            raise ValueError(
                f"migration version {migration.version} is used twice "
                f"({seen[migration.version]!r} and {migration.name!r})"
            )
        seen[migration.version] = migration.name


def pending_migrations(
    migrations: Sequence[Migration], applied: Mapping[int, str], dialect: Dialect
) -> list[Migration]:
    """The migrations still to apply, in version order, given ``applied`` (version → checksum).

    Raises a :class:`MigrationError` subclass when the history disagrees with the code.
    """
    check_definitions(migrations)
    known = {m.version: m for m in migrations}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise DatabaseNewerThanCode(
            f"database has migrations {unknown} that this code does not know; "
            "run the newer code or restore a matching backup"
        )
    for version, checksum in applied.items():
        if known[version].checksum(dialect) != checksum:
            raise MigrationChecksumMismatch(
                f"migration {version} ({known[version].name}) was edited after it was applied; "
                "restore its original SQL and add a new migration instead"
            )
    pending = sorted((m for m in migrations if m.version not in applied), key=lambda m: m.version)
    newest_applied = max(applied, default=0)
    late = [m.version for m in pending if m.version < newest_applied]
    if late:
        raise MigrationOrderError(
            f"migrations {late} are older than applied migration {newest_applied}; "
            "give them versions above it"
        )
    return pending
