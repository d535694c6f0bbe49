"""Server-wide values kept in the store so every worker process and replica shares them: the
test-mode clock offset and the secret behind Person.ref values."""

from __future__ import annotations

import datetime as dt
import secrets

from konbini.storage import Store, Tx

CLOCK_OFFSET = "clock_offset_us"
PERSON_REF_SECRET = "person_ref_secret"  # noqa: S105 - the row name, not the secret


def _get(tx: Tx, name: str) -> str | None:
    row = tx.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row["value"])


def _put(tx: Tx, name: str, value: str) -> None:
    tx.execute(
        "INSERT INTO settings (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


def person_ref_secret(store: Store) -> bytes:
    """The secret, made once by whichever process asks first (replicas agree through the store)."""

    def ensure(tx: Tx) -> str:
        tx.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (PERSON_REF_SECRET, secrets.token_hex(32)),
        )
        value = _get(tx, PERSON_REF_SECRET)
        assert value is not None
        return value

    return bytes.fromhex(store.run(ensure))


class StoreClock:
    """Real time plus the offset FixtureService.SetClock stored (test mode only).

    Reads the offset on every ``now()``, so a SetClock through one worker is seen by all; call
    it outside any transaction of the same thread.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def offset(self) -> dt.timedelta:
        value = self._store.run(lambda tx: _get(tx, CLOCK_OFFSET), write=False)
        return dt.timedelta(microseconds=int(value)) if value else dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset()

    def set_now(self, now: dt.datetime | None) -> dt.datetime:
        """From now on the server sees ``now`` (None: real time); returns the time it sees."""
        offset = dt.timedelta(0) if now is None else now - dt.datetime.now(dt.UTC)
        micros = offset // dt.timedelta(microseconds=1)
        self._store.run(lambda tx: _put(tx, CLOCK_OFFSET, str(micros)))
        return self.now()
