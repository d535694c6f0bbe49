"""Centre pieces without the network: card bindings, the audit chain, settlement, the rate
limiter and the trust-list publisher (sequence across restarts, re-signing rules)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from centre.audit import AUDIT_MIGRATIONS, AuditLog, card_ref, verify
from centre.bindings import BINDINGS_MIGRATIONS, bind, lookup_binding, unbind
from centre.ratelimit import RateLimiter
from centre.settlement import jst_day_window, settlement_report
from centre.trustpub import TRUSTPUB_MIGRATIONS, TrustListPublisher
from konbini.clock import JST, FixedClock
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.pki import PkiDir, ScrambleKeySet, pki_init, verify_signed_trust_list_at
from konbini.pki.trustlist import from_proto
from konbini.pki.x509util import load_certificate
from konbini.storage import Migration, Store, to_micros

T0 = dt.datetime(2026, 4, 1, 3, 0, tzinfo=dt.UTC)
StoreFactory = Callable[[Sequence[Migration]], Store]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=T0 - dt.timedelta(days=1))
    return PkiDir(path)


# -- bindings --------------------------------------------------------------------------------
def test_binding_moves_between_municipalities(store_factory: StoreFactory) -> None:
    store = store_factory(BINDINGS_MIGRATIONS)
    now = to_micros(T0)
    assert store.run(lambda tx: bind(tx, "1a2b", "192015", now)) is None
    assert store.run(lambda tx: lookup_binding(tx, "1a2b"), write=False) == "192015"
    # Moving in elsewhere moves the card and names where it came from.
    assert store.run(lambda tx: bind(tx, "1a2b", "131016", now)) == "192015"
    assert store.run(lambda tx: lookup_binding(tx, "1a2b"), write=False) == "131016"
    # The old municipality can no longer unbind it; the new one can.
    assert store.run(lambda tx: unbind(tx, "1a2b", "192015")) is False
    assert store.run(lambda tx: lookup_binding(tx, "1a2b"), write=False) == "131016"
    assert store.run(lambda tx: unbind(tx, "1a2b", "131016")) is True
    assert store.run(lambda tx: lookup_binding(tx, "1a2b"), write=False) is None
    assert store.run(lambda tx: unbind(tx, "1a2b", "131016")) is False


# -- audit -----------------------------------------------------------------------------------
def _audit(pki: PkiDir, store: Store, every: int = 3) -> AuditLog:
    signer = pki.trust_list_signer.load()
    assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
    return AuditLog(store, signer.key, signer.certificate, checkpoint_every=every,
                    clock=FixedClock(T0))


def _fill(log: AuditLog, store: Store, n: int) -> None:
    for i in range(n):
        store.run(lambda tx, i=i: log.append(tx, "kiosk.request_issuance", {
            "request_id": f"r{i}", "municipality_code": "192015", "copies": str(i + 1),
        }))


def test_audit_chain_verifies_with_checkpoints(pki: PkiDir, store_factory: StoreFactory) -> None:
    store = store_factory(AUDIT_MIGRATIONS)
    log = _audit(pki, store)
    _fill(log, store, 7)
    report = log.verify()
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints, report.last_checkpoint) == (7, 2, 6)


def test_audit_refuses_fields_outside_the_allow_list(
    pki: PkiDir, store_factory: StoreFactory
) -> None:
    store = store_factory(AUDIT_MIGRATIONS)
    log = _audit(pki, store)
    with pytest.raises(ValueError, match="allow-list"):
        store.run(lambda tx: log.append(tx, "kiosk.auth", {"name": "山田太郎"}))
    with pytest.raises(ValueError, match="short token"):
        store.run(lambda tx: log.append(tx, "kiosk.auth", {"reason": "山田 太郎"}))
    assert card_ref("1a2b") != "1a2b" and len(card_ref("1a2b")) == 16
    assert store.run(lambda tx: tx.execute("SELECT count(*) AS n FROM audit_entries").scalar(),
                     write=False) == 0


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE audit_entries SET fields = '{\"copies\":\"9\"}' WHERE seq = 2",
         "entry 2 does not match"),
        ("DELETE FROM audit_entries WHERE seq = 4", "entry 4 is missing"),
        ("DELETE FROM audit_entries WHERE seq >= 6", "checkpoint 6 covers entries"),
        ("DELETE FROM audit_checkpoints WHERE seq = 3", "checkpoint 3 is missing"),
        ("UPDATE audit_checkpoints SET at = at + 1 WHERE seq = 3", "checkpoint 3 has a bad"),
    ],
)
def test_audit_detects_tampering(
    pki: PkiDir, store_factory: StoreFactory, tamper: str, expected: str
) -> None:
    store = store_factory(AUDIT_MIGRATIONS)
    log = _audit(pki, store)
    _fill(log, store, 7)
    store.run(lambda tx: tx.execute(tamper))
    report = log.verify()
    assert not report.ok
    assert any(expected in p for p in report.problems), report.problems


def test_audit_detects_reordered_entries(pki: PkiDir, store_factory: StoreFactory) -> None:
    store = store_factory(AUDIT_MIGRATIONS)
    log = _audit(pki, store)
    _fill(log, store, 5)

    def swap(tx):  # type: ignore[no-untyped-def]
        rows = {r["seq"]: r for r in tx.execute("SELECT * FROM audit_entries").fetchall()}
        for seq, other in ((1, 2), (2, 1)):
            r = rows[other]
            tx.execute("UPDATE audit_entries SET at = ?, event = ?, fields = ?, entry_hash = ?"
                       " WHERE seq = ?", (r["at"], r["event"], r["fields"], r["entry_hash"], seq))

    store.run(swap)
    assert any("entry 1" in p for p in log.verify().problems)


def test_audit_detects_a_rewritten_chain(pki: PkiDir, store_factory: StoreFactory) -> None:
    """Recomputing every hash after an edit still fails: the signed checkpoint disagrees."""
    from centre.audit import entry_hash

    store = store_factory(AUDIT_MIGRATIONS)
    log = _audit(pki, store)
    _fill(log, store, 4)

    def rewrite(tx):  # type: ignore[no-untyped-def]
        previous = bytes(32)
        for r in tx.execute("SELECT * FROM audit_entries ORDER BY seq").fetchall():
            fields = '{"copies":"99"}' if r["seq"] == 1 else r["fields"]
            digest = entry_hash(previous, r["seq"], r["at"], r["event"], fields)
            tx.execute("UPDATE audit_entries SET fields = ?, entry_hash = ? WHERE seq = ?",
                       (fields, digest, r["seq"]))
            previous = digest

    store.run(rewrite)
    assert any("checkpoint 3 does not match" in p for p in verify(store, log._cert).problems)


# -- settlement ------------------------------------------------------------------------------
def test_settlement_lines_totals_and_csv() -> None:
    start, end = jst_day_window(dt.date(2026, 4, 1))
    assert start == to_micros(dt.datetime(2026, 4, 1, tzinfo=JST))
    assert end - start == 86_400_000_000
    rr = types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD
    seal = types_pb2.CERTIFICATE_KIND_SEAL_REGISTRATION

    def row(i: int, kind: int, op: str, copies: int, fee: int) -> dict[str, object]:
        return {"municipality_code": "192015", "kind": kind, "store_operator": op,
                "copies": copies, "fee_yen": fee, "committed_at": start + i, "issuance_id": f"i{i}"}

    rows = [row(1, rr, "seven", 2, 400), row(2, rr, "seven", 1, 200),
            row(3, seal, "lawson", 1, 300), row(4, rr, "lawson", 3, 600)]
    report = settlement_report(rows, commission_yen=120)
    lines = [(ln.kind, ln.store_operator, ln.issuances, ln.copies, ln.fees.yen, ln.commissions.yen)
             for ln in report.lines]
    assert lines == [(rr, "lawson", 1, 3, 600, 360), (rr, "seven", 2, 3, 600, 360),
                     (seal, "lawson", 1, 1, 300, 120)]
    assert report.total_fees.yen == 1500
    assert report.total_commissions.yen == 840
    table = list(csv.reader(io.StringIO(report.csv.decode("utf-8"))))
    assert table[0][0] == "kind" and len(table) == 5
    assert table[1] == ["CERTIFICATE_KIND_RESIDENCE_RECORD", "lawson", "1", "3", "600", "360"]
    assert table[-1] == ["TOTAL", "", "4", "7", "1500", "840"]
    with pytest.raises(ValueError, match="twice"):
        settlement_report([*rows, rows[0]], commission_yen=120)
    empty = settlement_report([], commission_yen=120)
    assert not empty.lines and empty.total_fees.yen == 0 and empty.csv.count(b"\n") == 2


# -- rate limiter ----------------------------------------------------------------------------
def test_rate_limiter_refuses_past_the_burst_and_refills() -> None:
    now = [100.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("urn:konbini:terminal:seven:T0001")
    with pytest.raises(KonbiniError) as refused:
        limiter.check("urn:konbini:terminal:seven:T0001")
    assert refused.value.reason == "RATE_LIMITED"
    limiter.check("urn:konbini:terminal:lawson:T0002")  # another terminal has its own bucket
    now[0] += 0.5  # one token back at 2 per second
    limiter.check("urn:konbini:terminal:seven:T0001")
    with pytest.raises(KonbiniError):
        limiter.check("urn:konbini:terminal:seven:T0001")


# -- trust-list publisher --------------------------------------------------------------------
def _sequence(signed) -> int:  # type: ignore[no-untyped-def]
    from konbini.pki.trustcodec import decode_trust_list

    return decode_trust_list(signed.trust_list).sequence


def test_trust_list_sequence_persists_and_resigns(
    tmp_path: Path, store_factory: StoreFactory
) -> None:
    path = tmp_path / "pki"
    pki_init(path, now=T0 - dt.timedelta(days=1))
    pki = PkiDir(path)
    clock = FixedClock(T0)
    store = store_factory(TRUSTPUB_MIGRATIONS)
    publisher = TrustListPublisher(pki, store, clock, validity=dt.timedelta(hours=4))
    first = publisher.current()
    assert _sequence(first) == 1
    root = load_certificate(pki.docsign_ca.cert)
    listed = verify_signed_trust_list_at(from_proto(first), [root], T0)
    assert {s.municipality_code for s in listed.document_signers} == {"192015", "131016", "131041"}
    clock.advance(dt.timedelta(hours=1))
    assert publisher.current() == first  # before half the validity: the same edition
    # A restarted replica (new publisher, same store) publishes the same edition.
    again = TrustListPublisher(pki, store_factory(TRUSTPUB_MIGRATIONS), clock,
                               validity=dt.timedelta(hours=4))
    assert again.current() == first
    clock.advance(dt.timedelta(hours=1, seconds=1))  # past half the validity
    second = publisher.current()
    assert _sequence(second) == 2
    # A scramble-key rotation re-signs at once, listing the new key.
    ScrambleKeySet.load(pki.scramble_keys).with_new_key(clock.now(), dt.timedelta(days=30)).save(
        pki.scramble_keys)
    third = again.current()
    assert _sequence(third) == 3
    assert len(verify_signed_trust_list_at(from_proto(third), [root], clock.now())
               .scramble_keys) == 2
    assert publisher.current() == third


# -- audit CLI -------------------------------------------------------------------------------
def test_audit_verify_command(
    pki: PkiDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from centre.audit_cli import _migrations, add_audit_commands
    from konbini.storage import open_store

    url = f"sqlite://{tmp_path / 'centre.db'}"
    store = open_store(url, migrations=_migrations())  # the centre's own database
    log = _audit(pki, store)
    _fill(log, store, 4)
    parser = argparse.ArgumentParser()
    add_audit_commands(parser.add_subparsers())
    args = parser.parse_args(["audit", "verify", "--store", url, "--pki", str(pki.root),
                              "--checkpoint-every", "3"])
    assert args.func(args) == 0
    assert "audit log intact" in capsys.readouterr().out
    store.run(lambda tx: tx.execute("UPDATE audit_entries SET event = 'x.y' WHERE seq = 1"))
    store.close()
    assert args.func(args) == 1
    assert "PROBLEM: entry 1" in capsys.readouterr().out
