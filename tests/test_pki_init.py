"""`konbini pki init`, the identities, document signing, trust list, scramble keys and CLI."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from konbini.card import JpkiCard, SoftCard
from konbini.municode import check_digit, validate_municipality_code
from konbini.pki import (
    DocumentSignatureRejected,
    InvalidIdentity,
    PkiDir,
    PkiInitError,
    Role,
    ScrambleKeySet,
    TrustListRejected,
    identity_of,
    key_id_of,
    pki_init,
    sign_p1363,
    verify_document_signature,
    verify_p1363,
    verify_signed_trust_list_at,
)
from konbini.pki import cli as pki_cli
from konbini.pki.identity import parse_identity_uris
from konbini.pki.scramble import NoScrambleKey
from konbini.pki.trustlist import SignedTrustList, from_proto, scramble_key, to_proto
from konbini.pki.x509util import load_certificate

NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki") / "dev"
    pki_init(path, now=NOW)
    return PkiDir(path)


def all_cert_paths(pki: PkiDir) -> list[tuple[Path, Path]]:
    m = pki.manifest()
    pairs = [pki.network_ca, pki.centre_server, pki.centre_client, pki.conformance_client,
             pki.docsign_ca, pki.trust_list_signer, pki.jpki_ca_paths]
    pairs += [pki.municipality_client(c) for c in m.municipalities]
    pairs += [pki.document_signer(c) for c in m.municipalities]
    pairs += [pki.municipality_server(n) for n in m.servers]
    pairs += [pki.terminal_client(o, t) for o, t in m.terminals]
    return [(p.cert, p.key) for p in pairs]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_makes_everything(pki: PkiDir) -> None:
    m = pki.manifest()
    assert m.municipalities == ("192015", "131016", "131041")
    assert m.servers == {"kofu": ("192015",), "tokyo-cloud": ("131016", "131041")}
    assert m.terminals == (("seven", "T0001"), ("lawson", "T0002"), ("family", "T0003"))
    pairs = all_cert_paths(pki)
    assert len(pairs) == 7 + 3 + 3 + 2 + 3
    for cert, key in pairs:
        assert mode(key) == 0o600, key
        assert mode(cert) == 0o644, cert
        load_certificate(cert)
    assert mode(pki.scramble_keys) == 0o600
    assert pki.jpki_crl.exists() and pki.jpki_revocations.exists()
    ca = load_certificate(pki.network_ca_cert)
    for cert_path, _ in pairs[2:4]:
        load_certificate(cert_path).verify_directly_issued_by(ca)


def test_identities_in_certificates(pki: PkiDir) -> None:
    server = load_certificate(pki.municipality_server("tokyo-cloud").cert)
    ident = identity_of(server)
    assert ident.role is Role.MUNICIPALITY and ident.municipality_codes == ("131016", "131041")
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["tokyo-cloud", "localhost"]
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    term = identity_of(load_certificate(pki.terminal_client("lawson", "T0002").cert))
    assert (term.role, term.store_operator, term.id) == (Role.TERMINAL, "lawson", "T0002")
    assert term.uri == "urn:konbini:terminal:lawson:T0002"
    assert identity_of(load_certificate(pki.centre_client.cert)).role is Role.CENTRE
    assert identity_of(load_certificate(pki.conformance_client.cert)).role is Role.CONFORMANCE


@pytest.mark.parametrize("uris", [
    [],
    ["urn:konbini:municipality:192016"],  # wrong check digit
    ["urn:konbini:terminal:seven"],
    ["urn:konbini:centre:a", "urn:konbini:terminal:seven:T1"],
    ["urn:konbini:centre:a", "urn:konbini:centre:b"],
    ["urn:konbini:admin:root"],
    ["urn:konbini:terminal:se:ven:T1"],
])
def test_bad_identities(uris: list[str]) -> None:
    with pytest.raises(InvalidIdentity):
        parse_identity_uris(uris)


def test_municipality_code_check_digit() -> None:
    for code in ("131016", "011002", "131041", "131130", "271403", "192015"):
        assert validate_municipality_code(code)
        assert check_digit(code[:5]) == code[5]
    for bad in ("131017", "13101", "1310160", "13101a", "１３１０１６"):
        assert not validate_municipality_code(bad)


def test_second_run_does_not_overwrite(tmp_path: Path) -> None:
    first = pki_init(tmp_path, now=NOW)
    assert "operator CA" in first.created
    pki = PkiDir(tmp_path)
    keys = {key: key.read_bytes() for _, key in all_cert_paths(pki)}
    scramble = pki.scramble_keys.read_bytes()
    second = pki_init(tmp_path, terminals=[("seven", "T0009")], now=NOW + dt.timedelta(days=1))
    assert second.created == ["terminal seven:T0009 client certificate"]
    assert "operator CA" in second.kept
    assert {k: k.read_bytes() for k in keys} == keys
    assert pki.scramble_keys.read_bytes() == scramble
    assert ("seven", "T0009") in pki.manifest().terminals
    assert ("seven", "T0001") in pki.manifest().terminals  # merged, not replaced
    # A partial item is refused, not silently repaired.
    pki.centre_server.cert.unlink()
    with pytest.raises(PkiInitError, match="incomplete"):
        pki_init(tmp_path, now=NOW)
    assert pki.centre_server.key.read_bytes() == keys[pki.centre_server.key]


def test_init_validates_configuration(tmp_path: Path) -> None:
    with pytest.raises(PkiInitError, match="check digit"):
        pki_init(tmp_path / "a", municipalities=["131017"], now=NOW)
    with pytest.raises(PkiInitError, match="not municipalities"):
        pki_init(tmp_path / "b", municipalities=["131016"], servers={"x": ["131041"]}, now=NOW)
    report = pki_init(tmp_path / "c", municipalities=["011002"], terminals=[], now=NOW)
    assert "municipality server m011002 certificate" in report.created


def test_p1363_signatures(pki: PkiDir) -> None:
    signer = pki.document_signer("192015").load()
    assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
    sig = sign_p1363(signer.key, b"seal payload")
    assert len(sig) == 64
    assert verify_p1363(signer.certificate, b"seal payload", sig)
    assert not verify_p1363(signer.certificate, b"seal payload!", sig)
    assert not verify_p1363(signer.certificate, b"seal payload", sig[:63])
    assert not verify_p1363(signer.certificate, b"seal payload", bytes(64))
    other = pki.document_signer("131016").load()
    assert not verify_p1363(other.certificate, b"seal payload", sig)


def test_trust_list_round_trip(pki: PkiDir) -> None:
    signed = pki.signed_trust_list_at(NOW, sequence=7, next_update_in=dt.timedelta(days=1))
    roots = [load_certificate(pki.docsign_ca.cert)]
    wire = to_proto(signed).SerializeToString()
    again = from_proto(type(to_proto(signed)).FromString(wire))
    tl = verify_signed_trust_list_at(again, roots, NOW + dt.timedelta(hours=1))
    assert tl.sequence == 7
    assert {s.municipality_code for s in tl.document_signers} == {"192015", "131016", "131041"}
    signer = pki.document_signer("131041").load()
    key_id = key_id_of(signer.certificate)
    data = b"document claims"
    sig = sign_p1363(signer.key, data)  # type: ignore[arg-type]
    entry = verify_document_signature(tl, "131041", key_id, data, sig, NOW)
    assert entry.key_id == key_id
    with pytest.raises(DocumentSignatureRejected) as exc:
        verify_document_signature(tl, "131041", key_id, data + b"x", sig, NOW)
    assert exc.value.cause == "DOCUMENT_SIGNATURE_INVALID"
    with pytest.raises(DocumentSignatureRejected) as exc:  # another municipality's key id
        verify_document_signature(tl, "192015", key_id, data, sig, NOW)
    assert exc.value.cause == "DOCUMENT_SIGNER_UNKNOWN"
    with pytest.raises(DocumentSignatureRejected) as exc:  # signed after the key expired
        verify_document_signature(tl, "131041", key_id, data, sig, NOW + dt.timedelta(days=800))
    assert exc.value.cause == "DOCUMENT_SIGNER_UNKNOWN"
    keys = ScrambleKeySet.load(pki.scramble_keys)
    assert scramble_key(tl, keys.current_key_at(NOW).key_id).key == keys.current_key_at(NOW).key


def test_trust_list_rejections(pki: PkiDir, tmp_path: Path) -> None:
    signed = pki.signed_trust_list_at(NOW, sequence=1, next_update_in=dt.timedelta(hours=6))
    roots = [load_certificate(pki.docsign_ca.cert)]
    with pytest.raises(TrustListRejected) as exc:
        verify_signed_trust_list_at(signed, roots, NOW + dt.timedelta(hours=7))
    assert exc.value.cause == "TRUST_LIST_STALE"
    tampered = SignedTrustList(signed.trust_list + b"\x08\x02", signed.signature,
                               signed.signer_certificate_der)
    with pytest.raises(TrustListRejected) as exc:
        verify_signed_trust_list_at(tampered, roots, NOW)
    assert exc.value.cause == "TRUST_LIST_INVALID"
    # Signed by a municipality's document key (not a centre): refused.
    muni = pki.document_signer("192015").load()
    from cryptography.hazmat.primitives.serialization import Encoding

    forged = SignedTrustList(signed.trust_list, sign_p1363(muni.key, signed.trust_list),  # type: ignore[arg-type]
                             muni.certificate.public_bytes(Encoding.DER))
    with pytest.raises(TrustListRejected):
        verify_signed_trust_list_at(forged, roots, NOW)
    # Another PKI's root does not anchor this list.
    other = PkiDir(tmp_path / "other")
    pki_init(other.root, now=NOW)
    with pytest.raises(TrustListRejected):
        verify_signed_trust_list_at(signed, [load_certificate(other.docsign_ca.cert)], NOW)


def test_scramble_key_rotation(tmp_path: Path) -> None:
    counter = iter(range(1, 100))
    keys = ScrambleKeySet(()).with_new_key(NOW, dt.timedelta(days=30),
                                           lambda n: bytes([next(counter)]) * n)
    rotated = keys.with_new_key(NOW + dt.timedelta(days=20), dt.timedelta(days=30),
                                lambda n: bytes([next(counter)]) * n)
    path = tmp_path / "keys.json"
    rotated.save(path)
    loaded = ScrambleKeySet.load(path)
    assert mode(path) == 0o600
    assert loaded.current_key_at(NOW + dt.timedelta(days=1)).key == b"\x01" * 32
    newest = loaded.current_key_at(NOW + dt.timedelta(days=25))
    assert newest.key == b"\x02" * 32 and newest.key_id != keys.keys[0].key_id
    assert loaded.key(keys.keys[0].key_id).key == b"\x01" * 32  # old paper still verifies
    with pytest.raises(NoScrambleKey):
        loaded.current_key_at(NOW + dt.timedelta(days=60))


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="konbini")
    sub = parser.add_subparsers(dest="command", required=True)
    pki_cli.register(sub, "pki", "pki")
    pki_cli.register(sub, "jpki", "jpki")
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "pki"
    assert run_cli("pki", "init", str(d), "--municipality", "131016", "--server",
                   "edge=131016", "--terminal", "seven:T0042") == 0
    out = capsys.readouterr().out
    assert "created  operator CA" in out
    assert run_cli("pki", "init", str(d)) == 0
    out = capsys.readouterr().out
    assert "kept     operator CA" in out and "created  operator CA" not in out
    assert run_cli("pki", "init", str(tmp_path / "bad"), "--municipality", "131017") == 2
    capsys.readouterr()
    assert run_cli("pki", "show", str(d)) == 0
    assert "urn:konbini:terminal:seven:T0042" in capsys.readouterr().out

    card = tmp_path / "c.card"
    assert run_cli("jpki", "issue-card", "--pki", str(d), "--out", str(card), "--pin",
                   "4321") == 0
    serial = int(capsys.readouterr().out.strip())
    jc = JpkiCard(SoftCard.open(card))
    jc.select_jpki()
    assert x509.load_der_x509_certificate(jc.read_auth_certificate()).serial_number == serial
    assert run_cli("jpki", "revoke", "--pki", str(d), str(serial)) == 0
    assert run_cli("jpki", "crl", "--pki", str(d), "--next-update-hours", "2") == 0
    crl = x509.load_pem_x509_crl(PkiDir(d).jpki_crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert run_cli("jpki", "revoke", "--pki", str(d), "12345") == 2
    assert run_cli("jpki", "issue-card", "--pki", str(d), "--out", str(card)) == 2
    db = json.loads(PkiDir(d).jpki_revocations.read_bytes())
    assert db["revoked"][0]["serial"] == str(serial)
