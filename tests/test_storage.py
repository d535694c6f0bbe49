"""The storage interface on both backends: migrations, transactions, SQL portability, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from konbini.storage import (
    AsyncStore,
    ConstraintViolation,
    DatabaseNewerThanCode,
    InvalidStoreUrl,
    Migration,
    MigrationChecksumMismatch,
    MigrationOrderError,
    NestedTransactionError,
    ReadOnlyTransactionError,
    StorageError,
    StorageUnavailable,
    Store,
    Tx,
    UniqueViolation,
    from_micros,
    open_store,
    to_micros,
)
from konbini.storage.migrations import pending_migrations
from konbini.storage.sqltext import ddl_for_postgresql, split_sqlite_script, to_psycopg

StoreFactory = Callable[[Sequence[Migration]], Store]

ITEMS = Migration(
    1,
    "items",
    """
    CREATE TABLE items (
        id TEXT PRIMARY KEY,
        qty BIGINT NOT NULL CHECK (qty >= 0),
        payload BLOB,
        created_at BIGINT NOT NULL
    );
    -- a comment with a ; and a ? in it
    CREATE INDEX items_created_at ON items (created_at);
    """,
)
NOTES = Migration(
    2,
    "notes",
    """
    CREATE TABLE notes (
        item_id TEXT NOT NULL REFERENCES items (id),
        body TEXT NOT NULL DEFAULT 'semi;colon ''quoted'' ?'
    );
    """,
)
MIGRATIONS = [ITEMS, NOTES]


def _insert(tx: Tx, item_id: str, qty: int = 1) -> None:
    tx.execute(
        "INSERT INTO items (id, qty, payload, created_at) VALUES (?, ?, ?, ?)",
        (item_id, qty, None, 0),
    )


def _ids(store: Store) -> list[str]:
    rows = store.run(lambda tx: tx.execute("SELECT id FROM items ORDER BY id").fetchall())
    return [row["id"] for row in rows]


# --- migrations ---------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    store.run(lambda tx: _insert(tx, "a"))
    history = store.run(
        lambda tx: tx.execute(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
    )
    assert [(r["version"], r["name"]) for r in history] == [(1, "items"), (2, "notes")]
    assert [r["checksum"] for r in history] == [m.checksum(store.dialect) for m in MIGRATIONS]
    store.close()

    # Reopening must not rerun CREATE TABLE (it would fail) nor touch the data or history.
    again = store_factory(MIGRATIONS)
    assert _ids(again) == ["a"]
    assert (
        again.run(
            lambda tx: tx.execute("SELECT * FROM schema_migrations ORDER BY version")
        ).fetchall()
        == history
    )


def test_new_migration_applies_on_reopen(store_factory: StoreFactory) -> None:
    store_factory([ITEMS]).close()
    store = store_factory(MIGRATIONS)
    store.run(lambda tx: _insert(tx, "a"))
    store.run(lambda tx: tx.execute("INSERT INTO notes (item_id) VALUES (?)", ("a",)))
    body = store.run(lambda tx: tx.execute("SELECT body FROM notes").scalar())
    assert body == "semi;colon 'quoted' ?"


def test_edited_migration_is_refused(store_factory: StoreFactory) -> None:
    store_factory(MIGRATIONS).close()
    edited = Migration(2, "notes", NOTES.sql_for("sqlite") + "\n-- edited")
    with pytest.raises(MigrationChecksumMismatch, match="migration 2"):
        store_factory([ITEMS, edited])


def test_database_newer_than_code_is_refused(store_factory: StoreFactory) -> None:
    store_factory(MIGRATIONS).close()
    with pytest.raises(DatabaseNewerThanCode, match=r"\[2\]"):
        store_factory([ITEMS])


def test_migration_older_than_applied_is_refused(store_factory: StoreFactory) -> None:
    store_factory([ITEMS, Migration(3, "three", "CREATE TABLE three (x TEXT)")]).close()
    with pytest.raises(MigrationOrderError, match=r"\[2\]"):
        store_factory([ITEMS, NOTES, Migration(3, "three", "CREATE TABLE three (x TEXT)")])


def test_failed_migration_leaves_nothing_behind(store_factory: StoreFactory) -> None:
    broken = Migration(2, "broken", "CREATE TABLE half (x TEXT); CREATE TABLE oops (")
    with pytest.raises(StorageError):
        store_factory([ITEMS, broken])
    store = store_factory([ITEMS])
    store.run(lambda tx: _insert(tx, "a"))
    with pytest.raises(StorageError):
        store.run(lambda tx: tx.execute("SELECT * FROM half"))
    history = store.run(lambda tx: tx.execute("SELECT version FROM schema_migrations").fetchall())
    assert history == [{"version": 1}]


def test_per_dialect_migration_runs_its_own_text(store_factory: StoreFactory) -> None:
    flavour = Migration(
        1,
        "flavour",
        {
            dialect: f"CREATE TABLE flavour (name TEXT DEFAULT '{dialect}');"
            " INSERT INTO flavour DEFAULT VALUES;"
            for dialect in ("sqlite", "postgresql")
        },
    )
    store = store_factory([flavour])
    assert store.run(lambda tx: tx.execute("SELECT name FROM flavour").scalar()) == store.dialect


def test_bad_migration_definitions_fail_at_once() -> None:
    with pytest.raises(ValueError, match="positive"):
        Migration(0, "zero", "SELECT 1")
    with pytest.raises(ValueError, match="exactly the keys"):
        Migration(1, "half", {"sqlite": "SELECT 1"})
    with pytest.raises(ValueError, match="used twice"):
        open_store("sqlite:///:memory:", migrations=[ITEMS, Migration(1, "again", "SELECT 1")])
    assert pending_migrations(MIGRATIONS, {}, "sqlite") == MIGRATIONS


# --- transactions and SQL portability ------------------------------------------------------


def test_commit_on_clean_exit_and_rollback_on_exception(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    with store.transaction() as tx:
        _insert(tx, "kept")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as tx:
        _insert(tx, "lost")
        raise Boom
    assert _ids(store) == ["kept"]


def test_values_round_trip_and_placeholders_skip_literals(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    blob = bytes(range(256))
    big = to_micros(datetime(2100, 1, 1, tzinfo=UTC))

    def write(tx: Tx) -> int:
        tx.execute(
            "INSERT INTO items (id, qty, payload, created_at) VALUES (?, ?, ?, ?)",
            ("50%?'x", 3, blob, big),
        )
        return tx.execute("UPDATE items SET qty = qty + ? WHERE id = ?", (2, "50%?'x")).rowcount

    assert store.run(write) == 1
    row = store.run(
        lambda tx: tx.execute(
            "SELECT id, qty, payload, created_at, '?%' AS lit FROM items WHERE id LIKE ?",
            ("50%",),
        ).fetchone(),
        write=False,
    )
    assert row == {"id": "50%?'x", "qty": 5, "payload": blob, "created_at": big, "lit": "?%"}
    assert type(row["payload"]) is bytes


def test_result_api(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    for item_id in ("a", "b", "c"):
        store.run(lambda tx, i=item_id: _insert(tx, i))
    with store.transaction(write=False) as tx:
        result = tx.execute("SELECT id FROM items ORDER BY id")
        assert result.fetchone() == {"id": "a"}
        assert result.fetchall() == [{"id": "b"}, {"id": "c"}]
        assert result.fetchone() is None
        assert tx.execute("SELECT id FROM items WHERE id = ?", ("z",)).scalar() is None
        sql = "SELECT id FROM items WHERE id = ?" + tx.lock_for_update()
    assert store.run(lambda tx: tx.execute(sql, ("b",)).scalar()) == "b"


def test_constraints_raise_typed_errors(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    store.run(lambda tx: _insert(tx, "a"))
    with pytest.raises(UniqueViolation):
        store.run(lambda tx: _insert(tx, "a"))
    with pytest.raises(ConstraintViolation) as check:
        store.run(lambda tx: _insert(tx, "negative", qty=-1))
    assert not isinstance(check.value, UniqueViolation)
    # Foreign keys are enforced on both backends (SQLite needs PRAGMA foreign_keys).
    with pytest.raises(ConstraintViolation):
        store.run(lambda tx: tx.execute("INSERT INTO notes (item_id) VALUES (?)", ("nope",)))
    assert _ids(store) == ["a"]


def test_read_only_transaction_refuses_writes(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    with pytest.raises(ReadOnlyTransactionError):
        store.run(lambda tx: _insert(tx, "a"), write=False)
    # The connection is writable again afterwards.
    store.run(lambda tx: _insert(tx, "b"))
    assert _ids(store) == ["b"]


def test_nested_transaction_fails_fast(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    with pytest.raises(NestedTransactionError), store.transaction() as tx:
        _insert(tx, "outer")
        store.run(lambda inner: _insert(inner, "inner"))
    assert _ids(store) == []


def test_async_store_runs_transactions_off_the_loop(store_factory: StoreFactory) -> None:
    astore = AsyncStore(store_factory(MIGRATIONS), max_workers=3)

    async def main() -> list[str]:
        await asyncio.gather(
            *(astore.run(lambda tx, i=i: _insert(tx, f"item{i}")) for i in range(6))
        )
        ids = await astore.run(
            lambda tx: [r["id"] for r in tx.execute("SELECT id FROM items ORDER BY id")],
            write=False,
        )
        await astore.close()
        return ids

    assert asyncio.run(main()) == [f"item{i}" for i in range(6)]


def test_sqlite_is_durable_and_enforces_foreign_keys(tmp_path: Path) -> None:
    with (
        open_store(f"sqlite://{tmp_path}/s.db", migrations=[]) as store,
        store.transaction(write=False) as tx,
    ):
        assert tx.execute("PRAGMA journal_mode").scalar() == "wal"
        assert tx.execute("PRAGMA synchronous").scalar() == 2  # FULL
        assert tx.execute("PRAGMA foreign_keys").scalar() == 1


# --- URLs and schemas ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["sqlite://relative.db", "sqlite:///", "mysql://x@y/z", "sqlite:///a.db?mode=ro"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidStoreUrl):
        open_store(url, migrations=[])


def test_memory_store_for_unit_tests() -> None:
    with open_store("sqlite:///:memory:", migrations=MIGRATIONS) as store:
        store.run(lambda tx: _insert(tx, "a"))
        assert _ids(store) == ["a"]


def test_unopenable_sqlite_is_reported(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable):
        open_store(f"sqlite://{tmp_path}/missing-dir/s.db", migrations=[])


def test_unreachable_postgres_is_reported() -> None:
    # Port 1 on loopback refuses at once; nothing listens there.
    with pytest.raises(StorageUnavailable):
        open_store("postgresql://postgres@127.0.0.1:1/test", migrations=[], connect_timeout_s=1)


@pytest.mark.postgres
def test_schemas_isolate_sides_in_one_database(postgres_url: str) -> None:
    import uuid

    import psycopg

    names = [f"test_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    try:
        first = open_store(postgres_url, migrations=[ITEMS], schema=names[0])
        second = open_store(
            f"{postgres_url}?application_name=konbini-test&schema={names[1]}",
            migrations=[ITEMS],
            schema="x",
        )
        first.run(lambda tx: _insert(tx, "first"))
        second.run(lambda tx: _insert(tx, "second"))
        assert (_ids(first), _ids(second)) == (["first"], ["second"])
        first.close()
        second.close()
        with psycopg.connect(postgres_url) as conn:
            found = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1",
                ([*names, "x"],),
            ).fetchall()
        # The URL's schema won over the side's default "x".
        assert [r[0] for r in found] == sorted(names)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for name in names:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.mark.postgres
def test_invalid_schema_name_is_refused(postgres_url: str) -> None:
    with pytest.raises(InvalidStoreUrl):
        open_store(postgres_url, migrations=[], schema='bad"; DROP')


# --- SQL text and timestamps (no database) ------------------------------------------------


def test_placeholder_translation_leaves_literals_and_comments() -> None:
    sql = "SELECT '?', \"a?\", x FROM t WHERE y = ? AND z LIKE '5%' -- ?\n AND w = ?"
    assert to_psycopg(sql) == (
        "SELECT '?', \"a?\", x FROM t WHERE y = %s AND z LIKE '5%%' -- ?\n AND w = %s"
    )


def test_ddl_translation_and_script_splitting() -> None:
    assert ddl_for_postgresql("b BLOB, c blob, d 'BLOB', blobby TEXT") == (
        "b BYTEA, c BYTEA, d 'BLOB', blobby TEXT"
    )
    script = """
        CREATE TABLE t (x TEXT DEFAULT ';');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'a;b'; END;
        -- trailing comment;
    """
    statements = split_sqlite_script(script)
    assert len(statements) == 2
    assert statements[1].endswith("END;")
    with pytest.raises(ValueError, match="incomplete"):
        split_sqlite_script("CREATE TABLE t (x TEXT); CREATE TABLE u (x TEXT DEFAULT 'a;")


def test_micros_round_trip() -> None:
    instant = datetime(2026, 3, 31, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=9)))
    micros = to_micros(instant)
    assert micros == 1_774_969_199_123_456
    assert from_micros(micros) == instant
    assert from_micros(micros).tzinfo == UTC
    with pytest.raises(ValueError, match="naive"):
        to_micros(datetime(2026, 1, 1))
