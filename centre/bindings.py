"""Card bindings: which municipality a My Number Card belongs to (CARD-BINDING).

A municipality registers a card through ``PlatformService.BindCard`` when it issues the card or
when its holder moves in; the centre finds the residence municipality of a card from here.
A card is bound to at most one municipality (the table's primary key is the serial): binding
it elsewhere moves it. Serials are the certificate serial in lowercase hex.

Every function takes the caller's transaction (``store.run(lambda tx: ...)``), so a binding
changes together with the idempotency record and the audit entry of the same call.
"""

from __future__ import annotations

from konbini.storage import Migration, Tx

BINDINGS_MIGRATIONS: list[Migration] = [
    Migration(
        50,
        "card bindings",
        """
CREATE TABLE card_bindings (
    serial TEXT PRIMARY KEY,            -- card certificate serial, lowercase hex
    municipality_code TEXT NOT NULL,
    bound_at BIGINT NOT NULL            -- microseconds since the epoch, UTC
);
CREATE INDEX card_bindings_municipality ON card_bindings (municipality_code);
""",
    ),
]


def serial_hex(serial: int) -> str:
    """The binding key of a certificate serial number: lowercase hex, no prefix."""
    return format(serial, "x")


def lookup_binding(tx: Tx, serial: str) -> str | None:
    """The municipality code the card ``serial`` is bound to, or None."""
    row = tx.execute(
        "SELECT municipality_code FROM card_bindings WHERE serial = ?", (serial,)
    ).fetchone()
    return None if row is None else str(row["municipality_code"])


def bind(tx: Tx, serial: str, code: str, now_micros: int) -> str | None:
    """Bind ``serial`` to ``code``; return the municipality it was bound to before (None when
    it was unbound; ``code`` itself when it already was bound there)."""
    previous = lookup_binding(tx, serial)
    # Read and write run in one transaction (SQLite write lock / PostgreSQL SERIALIZABLE), and
    # the upsert keeps a concurrent first binding from failing on the primary key.
    tx.execute(
        "INSERT INTO card_bindings (serial, municipality_code, bound_at) VALUES (?, ?, ?)"
        " ON CONFLICT (serial) DO UPDATE SET municipality_code = excluded.municipality_code,"
        " bound_at = excluded.bound_at",
        (serial, code, now_micros),
    )
    return previous


def unbind(tx: Tx, serial: str, code: str) -> bool:
    """Remove the binding of ``serial`` if it is held by ``code``; True if one was removed.
    A binding held by another municipality is left alone (AUTHZ-TENANT)."""
    result = tx.execute(
        "DELETE FROM card_bindings WHERE serial = ? AND municipality_code = ?", (serial, code)
    )
    return result.rowcount > 0
