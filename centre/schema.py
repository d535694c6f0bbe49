"""The centre's tables (migration versions 1-49) and the full migration list of the centre.

Versions 50-59 belong to card bindings (centre.bindings), 60-69 to the audit log
(centre.audit), 70 to the trust-list editions (centre.trustpub). Every piece of state that
correctness depends on lives here, shared by every worker and replica (DURABLE-SHARED).
"""

from __future__ import annotations

from konbini.storage import Migration
from konbini.storage.idempotency import idempotency_migration

CORE_MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "sessions",
        """
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,
    terminal TEXT NOT NULL,              -- identity URI of the terminal that opened it
    challenge BLOB NOT NULL,             -- 32 random bytes
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,          -- the challenge (and an unauthenticated session)
    state TEXT NOT NULL,                 -- OPEN, AUTHENTICATED, ENDED
    challenge_used BIGINT NOT NULL DEFAULT 0,
    certificate BLOB,                    -- the card's auth certificate, DER
    card_serial TEXT,                    -- lowercase hex
    residence_code TEXT,
    authenticated_until BIGINT
);
CREATE INDEX sessions_expires ON sessions (expires_at);
""",
    ),
    Migration(
        2,
        "ledger",
        """
CREATE TABLE ledger (
    issuance_id TEXT PRIMARY KEY,
    terminal TEXT NOT NULL,
    request_id TEXT NOT NULL,
    fingerprint BLOB NOT NULL,           -- SHA-256 of the RequestIssuanceRequest
    session_id TEXT NOT NULL,
    card_serial TEXT NOT NULL,
    municipality_code TEXT NOT NULL,
    kind BIGINT NOT NULL,
    copies BIGINT NOT NULL,
    fee_yen BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL,                 -- REQUESTED RESERVED DELIVERED COMMITTED CANCELLED EXPIRED
    prepare_request_id TEXT NOT NULL UNIQUE,
    reservation_id TEXT,
    municipality_expires_at BIGINT,
    expires_at BIGINT,                   -- what the terminal was told (minus the margin)
    response BLOB,                       -- the RequestIssuanceResponse as delivered, with backs
    store_operator TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    committed_at BIGINT,                 -- the municipality's commit time, once acknowledged
    issue_numbers TEXT,
    UNIQUE (terminal, request_id)
);
CREATE INDEX ledger_state_expiry ON ledger (state, expires_at);
CREATE INDEX ledger_committed ON ledger (municipality_code, committed_at);
""",
    ),
    Migration(
        3,
        "outbox",
        """
CREATE TABLE outbox (
    entry_id TEXT PRIMARY KEY,
    issuance_id TEXT NOT NULL,
    action TEXT NOT NULL,                -- COMMIT, CANCEL, CANCEL_PREPARE
    municipality_code TEXT NOT NULL,
    reservation_id TEXT,
    prepare_request_id TEXT,
    cause TEXT NOT NULL DEFAULT '',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    done_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (issuance_id, action)
);
CREATE INDEX outbox_due ON outbox (done_at, next_attempt_at);
""",
    ),
    Migration(
        4,
        "use registrations",
        """
CREATE TABLE use_registrations (
    registration_id TEXT PRIMARY KEY,
    terminal TEXT NOT NULL,
    request_id TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    card_serial TEXT NOT NULL,
    residence_code TEXT NOT NULL,
    register_code TEXT NOT NULL,
    status TEXT NOT NULL,                -- PENDING, APPROVED, REJECTED
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (terminal, request_id)
);
CREATE INDEX use_registrations_card ON use_registrations (card_serial, status);
""",
    ),
    Migration(
        5,
        "test-mode fixtures",
        """
CREATE TABLE fixture_routes (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    endpoints TEXT NOT NULL,             -- JSON array of host:port
    tls_server_name TEXT NOT NULL
);
CREATE TABLE fixture_trust (
    item_id TEXT PRIMARY KEY,
    item_kind TEXT NOT NULL,             -- CA or CRL
    der BLOB NOT NULL
);
CREATE TABLE fixture_bindings (
    serial TEXT PRIMARY KEY,
    municipality_code TEXT NOT NULL
);
CREATE TABLE clock_offset (
    id BIGINT PRIMARY KEY,
    offset_micros BIGINT NOT NULL
);
""",
    ),
    idempotency_migration(6),
    Migration(
        7,
        "audit staging",
        """
CREATE TABLE audit_staging (
    staged_id TEXT PRIMARY KEY,          -- microseconds (zero-padded) + random: sorts by time
    event TEXT NOT NULL,
    fields TEXT NOT NULL                 -- canonical JSON, already checked against the allow-list
);
""",
    ),
]


def centre_migrations() -> list[Migration]:
    """Every migration of the centre: core tables, card bindings, audit log, trust lists."""
    from centre.audit import AUDIT_MIGRATIONS
    from centre.bindings import BINDINGS_MIGRATIONS
    from centre.trustpub import TRUSTPUB_MIGRATIONS

    return [*CORE_MIGRATIONS, *BINDINGS_MIGRATIONS, *AUDIT_MIGRATIONS, *TRUSTPUB_MIGRATIONS]
