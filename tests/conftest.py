"""Fixtures shared by the whole suite. Keep this file small and general.

Storage: ``store_url`` (and ``new_store_url``, ``store_factory``) run a test once per backend:
"sqlite" (a file in tmp_path) and "postgresql" (a fresh schema, dropped afterwards, in the
database named by KONBINI_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test).
PostgreSQL runs carry the ``postgres`` marker (``-m "not postgres"`` leaves them out). If the
server is unreachable they skip, unless KONBINI_TEST_POSTGRES_URL is set: then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from konbini.storage import Migration, Store, open_store

POSTGRES_URL_ENV = "KONBINI_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL database, checked once per session."""
    url = os.environ.get(POSTGRES_URL_ENV)
    try:
        with psycopg.connect(url or DEFAULT_POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        if url:
            pytest.fail(f"{POSTGRES_URL_ENV} is set but PostgreSQL is unreachable: {exc}")
        pytest.skip(
            f"PostgreSQL unreachable at {DEFAULT_POSTGRES_URL} and {POSTGRES_URL_ENV} unset"
        )
    return url or DEFAULT_POSTGRES_URL


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: "sqlite" or "postgresql"."""
    return str(request.param)


@pytest.fixture
def new_store_url(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], str]]:
    """Make a fresh, isolated, empty database URL per call (for tests running several sides)."""
    schemas: list[str] = []
    base = request.getfixturevalue("postgres_url") if store_backend == "postgresql" else ""

    def make() -> str:
        name = uuid.uuid4().hex[:12]
        if store_backend == "sqlite":
            return f"sqlite://{tmp_path / f'store-{name}.db'}"
        schemas.append(f"test_{name}")
        return f"{base}{'&' if '?' in base else '?'}schema={schemas[-1]}"

    yield make
    if schemas:
        with psycopg.connect(base, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


@pytest.fixture
def store_url(new_store_url: Callable[[], str]) -> str:
    """A fresh, empty database URL for this test, once per backend."""
    return new_store_url()


@pytest.fixture
def store_factory(store_url: str) -> Iterator[Callable[[Sequence[Migration]], Store]]:
    """Open a Store on ``store_url`` with the given migrations; every store is closed after the
    test. Calling it twice opens the same database twice, as a restarted process would."""
    stores: list[Store] = []

    def factory(migrations: Sequence[Migration]) -> Store:
        stores.append(open_store(store_url, migrations=migrations))
        return stores[-1]

    yield factory
    for store in stores:
        store.close()
