"""The issuing server's database schema, as versioned migrations (never edit a released one).

Register records are stored as their serialized konbini.register.v1 message (``data``) beside
the columns that are looked up or constrained, so the import format and the store cannot drift
apart. Every table is keyed by the tenant (``tenant`` = municipality code) first: every query
names it (AUTHZ-TENANT).
"""

from __future__ import annotations

from konbini.storage import Migration
from konbini.storage.idempotency import idempotency_migration

REGISTERS_SQL = """
CREATE TABLE tenants (
    code TEXT PRIMARY KEY,
    data BLOB NOT NULL                      -- register.v1.Tenant (offers, hours, seal image)
);
CREATE TABLE residents (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    data BLOB NOT NULL,                     -- register.v1.Resident
    PRIMARY KEY (tenant, id)
);
CREATE INDEX residents_household ON residents (tenant, household_id);
CREATE TABLE seals (
    tenant TEXT NOT NULL,
    number TEXT NOT NULL,
    resident_id TEXT NOT NULL,
    state BIGINT NOT NULL,                  -- register.v1.SealState
    data BLOB NOT NULL,                     -- register.v1.SealRegistration
    PRIMARY KEY (tenant, number)
);
CREATE INDEX seals_resident ON seals (tenant, resident_id);
CREATE TABLE tax_records (
    tenant TEXT NOT NULL,
    resident_id TEXT NOT NULL,
    fiscal_year BIGINT NOT NULL,
    data BLOB NOT NULL,                     -- register.v1.TaxRecord
    PRIMARY KEY (tenant, resident_id, fiscal_year)
);
CREATE TABLE family_registers (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    registered_domicile TEXT NOT NULL,
    head_of_register TEXT NOT NULL,
    data BLOB NOT NULL,                     -- register.v1.FamilyRegister (members, events, 附票)
    PRIMARY KEY (tenant, id)
);
CREATE TABLE register_members (
    tenant TEXT NOT NULL,
    register_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    resident_id TEXT NOT NULL,              -- '' when the member does not live here
    PRIMARY KEY (tenant, register_id, member_id)
);
CREATE INDEX register_members_resident ON register_members (tenant, resident_id);
CREATE TABLE card_bindings (
    tenant TEXT NOT NULL,
    certificate_serial TEXT NOT NULL,
    resident_id TEXT NOT NULL,
    PRIMARY KEY (tenant, certificate_serial)
);
CREATE TABLE register_links (
    tenant TEXT NOT NULL,
    certificate_serial TEXT NOT NULL,
    register_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (tenant, certificate_serial, register_id)
);
"""

ISSUANCE_SQL = """
CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    caller TEXT NOT NULL,                   -- the centre's identity
    request_id TEXT NOT NULL,               -- PrepareIssuanceRequest.request_id
    fingerprint BLOB NOT NULL,
    kind BIGINT NOT NULL,
    subject_ids TEXT NOT NULL,              -- JSON list, printed order (no names)
    copies BIGINT NOT NULL,
    fee_yen BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('RESERVED', 'COMMITTED', 'CANCELLED', 'EXPIRED')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,                        -- committed, cancelled or expired
    documents BLOB NOT NULL,                -- the serialized PrepareIssuanceResponse
    issue_numbers TEXT NOT NULL,            -- JSON list, one per copy
    store_operator TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    issuance_id TEXT NOT NULL,
    UNIQUE (tenant, caller, request_id)
);
CREATE INDEX reservations_sweep ON reservations (state, expires_at);
CREATE TABLE issue_records (
    tenant TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    jst_day TEXT NOT NULL,                  -- YYYY-MM-DD of committed_at in Japan time
    committed_at BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    copies BIGINT NOT NULL,
    fee_yen BIGINT NOT NULL,
    issue_numbers TEXT NOT NULL,            -- JSON list
    issuance_id TEXT NOT NULL,
    store_operator TEXT NOT NULL,
    PRIMARY KEY (tenant, reservation_id)
);
CREATE INDEX issue_records_day ON issue_records (tenant, jst_day, committed_at, reservation_id);
CREATE TABLE issue_numbers (
    tenant TEXT NOT NULL,
    number TEXT NOT NULL,                   -- DOC-ISSUE-NUMBER: unique within the municipality
    reservation_id TEXT NOT NULL,
    PRIMARY KEY (tenant, number)
);
CREATE TABLE issue_counters (
    tenant TEXT PRIMARY KEY,
    next_value BIGINT NOT NULL
);
CREATE TABLE link_requests (
    tenant TEXT NOT NULL,
    registration_id TEXT NOT NULL,          -- the centre's use registration id
    certificate_serial TEXT NOT NULL,
    decision BIGINT NOT NULL,               -- issuing.v1.LinkDecision
    register_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, registration_id)
);
CREATE TABLE settings (
    name TEXT PRIMARY KEY,                  -- 'clock_offset_us', 'person_ref_secret'
    value TEXT NOT NULL
);
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "registers", REGISTERS_SQL),
    Migration(2, "issuance", ISSUANCE_SQL),
    idempotency_migration(3),
]

# Tables emptied by FixtureService.Reset and by an import with --replace (registers only).
REGISTER_TABLES = (
    "tenants", "residents", "seals", "tax_records", "family_registers", "register_members",
    "card_bindings", "register_links",
)
STATE_TABLES = (
    "reservations", "issue_records", "issue_numbers", "issue_counters", "link_requests",
    "idempotency_records",
)
