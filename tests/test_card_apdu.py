"""The software JPKI card at the APDU level, the JpkiCard client and the readers."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from konbini.card import (
    CardPinLess,
    JpkiCard,
    PcscReader,
    PinFormatInvalid,
    PinLocked,
    PinWrong,
    SoftCard,
    SoftCardReader,
)
from konbini.card.apdu import sha256_digest_info
from konbini.card.issue import issue_soft_card
from konbini.card.reader import CardReaderError
from konbini.pki.jpki import AUTH_POLICY_OID, JPKI_AUTH_ISSUER, JpkiCa

NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)
AID = "D392F000260100000001"
SELECT_AID = bytes.fromhex("00A4040C0A" + AID)
OK = bytes.fromhex("9000")


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.fixture(scope="module")
def jpki_ca(tmp_path_factory: pytest.TempPathFactory) -> JpkiCa:
    d = tmp_path_factory.mktemp("jpki")
    return JpkiCa.create(d / "ca.pem", d / "ca.key", d / "db.json", d / "crl.pem",
                         now=NOW, valid_for=dt.timedelta(days=3650))


@pytest.fixture(scope="module")
def master_card(jpki_ca: JpkiCa, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cards") / "master.card"
    issue_soft_card(jpki_ca, path, "1234", now=NOW)
    return path


@pytest.fixture
def card_path(master_card: Path, tmp_path: Path) -> Path:
    # A fresh copy per test: PIN counters are persistent.
    path = tmp_path / "card.json"
    path.write_bytes(master_card.read_bytes())
    return path


def card_cert(path: Path) -> bytes:
    card = SoftCard.open(path)
    card.transmit(SELECT_AID)
    card.transmit(h("00A4020C02 000A"))
    head = card.transmit(h("00B00000 04"))[:-2]
    total = 4 + int.from_bytes(head[2:4], "big")
    out = b""
    while len(out) < total:
        n = min(256, total - len(out))
        out += card.transmit(bytes([0, 0xB0, len(out) >> 8, len(out) & 0xFF, n % 256]))[:-2]
    return out


def replay(card: SoftCard, transcript: list[tuple[bytes, bytes]]) -> None:
    for i, (command, expected) in enumerate(transcript):
        got = card.transmit(command)
        assert got == expected, f"step {i}: {command.hex()} -> {got.hex()}, want {expected.hex()}"


def test_card_file_is_private(card_path: Path, master_card: Path) -> None:
    assert stat.S_IMODE(os.stat(master_card).st_mode) == 0o600
    assert b"PRIVATE KEY" in master_card.read_bytes()  # held in the file, never via APDU


def test_select_and_read_transcript(card_path: Path) -> None:
    cert = card_cert(card_path)
    card = SoftCard.open(card_path)
    replay(card, [
        (h("00A4020C02 000A"), h("6A82")),  # no application selected yet
        (SELECT_AID, OK),
        (h("00A4040C0A D392F000260100000002"), h("6A82")),  # another AID
        (h("00A4020C02 000A"), OK),
        (h("00B00000 04"), cert[:4] + OK),
        (h("00B00004 10"), cert[4:20] + OK),
        (h("00B00000 00"), cert[:256] + OK),  # Le 00 = 256
        (bytes([0, 0xB0, len(cert) >> 8, len(cert) & 0xFF, 1]), h("6B00")),  # past the end
        (bytes([0, 0xB0, (len(cert) - 2) >> 8, (len(cert) - 2) & 0xFF, 4]),
         cert[-2:] + h("6282")),
        (h("00A4020C02 0006"), OK),
        (h("00B00000 0F"), b"JPKIAPICCTOKEN2" + OK),
        (h("00A4020C02 0017"), OK),
        (h("00B00000 00"), h("6981")),  # the private key is never readable
        (h("00A4020C02 0018"), OK),
        (h("00B00000 04"), h("6981")),  # nor the PIN
        (h("00A4020C02 001A"), h("6A82")),  # signing side not on this card
        (h("00A4020C03 000A00"), h("6700")),
        (h("00A4010C02 000A"), h("6A86")),
        (h("10A4020C02 000A"), h("6E00")),
        (h("00CA0000 00"), h("6D00")),
        (h("00A4"), h("6700")),
        (h("00B00000"), h("6700")),  # READ BINARY without Le
    ])


def test_verify_right_wrong_locked_transcript(card_path: Path) -> None:
    card = SoftCard.open(card_path)
    replay(card, [
        (SELECT_AID, OK),
        (h("00200080"), h("6986")),  # no PIN EF selected
        (h("00A4020C02 0018"), OK),
        (h("00200080"), h("63C3")),
        (h("00200080 04 31323334"), OK),
        (h("00200080"), OK),  # already verified in this session
        (h("00200080 04 30303030"), h("63C2")),
        (h("00200080"), h("63C2")),
        (h("00200080 04 31323334"), OK),  # right PIN resets the counter
        (h("00200080"), OK),
        (SELECT_AID, OK),
        (h("00A4020C02 0018"), OK),
        (h("00200080"), h("63C3")),  # reselecting the application drops verification
        (h("00200080 03 313233"), h("6700")),
        (h("00200081 04 31323334"), h("6A86")),
        (h("00200080 04 39393939"), h("63C2")),
        (h("00200080 04 39393939"), h("63C1")),
        (h("00200080 04 39393939"), h("63C0")),
        (h("00200080 04 31323334"), h("6983")),  # locked: even the right PIN is refused
        (h("00200080"), h("63C0")),
    ])


def test_lock_survives_reopen(card_path: Path) -> None:
    for expected in ("63C2", "63C1"):
        card = SoftCard.open(card_path)
        replay(card, [(SELECT_AID, OK), (h("00A4020C02 0018"), OK),
                      (h("00200080 04 30303030"), h(expected))])
        card.close()
    card = SoftCard.open(card_path)
    replay(card, [(SELECT_AID, OK), (h("00A4020C02 0018"), OK), (h("00200080"), h("63C1")),
                  (h("00200080 04 30303030"), h("63C0"))])
    reopened = SoftCard.open(card_path)
    replay(reopened, [(SELECT_AID, OK), (h("00A4020C02 0018"), OK),
                      (h("00200080 04 31323334"), h("6983")), (h("00200080"), h("63C0"))])


def test_sign_transcript_and_signature_verifies(card_path: Path) -> None:
    cert = x509.load_der_x509_certificate(card_cert(card_path))
    data = b"intent bytes bound to challenge 42"
    digest_info = sha256_digest_info(data)
    assert digest_info.hex().startswith("3031300d060960864801650304020105000420")
    sign_apdu = h("802A0080") + bytes([len(digest_info)]) + digest_info + b"\x00"
    card = SoftCard.open(card_path)
    replay(card, [
        (SELECT_AID, OK),
        (h("00A4020C02 0017"), OK),
        (sign_apdu, h("6982")),  # PIN not verified
        (h("00A4020C02 0018"), OK),
        (h("00200080 04 31323334"), OK),
        (sign_apdu, h("6985")),  # the key EF is not selected
        (h("00A4020C02 0017"), OK),
        (h("802A0081") + sign_apdu[4:], h("6A86")),
        (h("002A0080") + sign_apdu[4:], h("6D00")),
        (h("802A0080"), h("6700")),  # no DigestInfo
    ])
    response = card.transmit(sign_apdu)
    assert response[-2:] == OK and len(response) == 258
    signature = response[:-2]
    public_key = cert.public_key()
    public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    # PKCS#1 v1.5 is deterministic: the same APDU gives the same bytes (a replayable transcript).
    assert card.transmit(sign_apdu) == response
    public_key.verify(
        signature, hashlib.sha256(data).digest(), padding.PKCS1v15(),
        utils.Prehashed(hashes.SHA256()),
    )


def test_certificate_profile_on_card(card_path: Path) -> None:
    cert = x509.load_der_x509_certificate(card_cert(card_path))
    assert cert.issuer == JPKI_AUTH_ISSUER
    assert [a.oid for a in cert.subject] == [x509.NameOID.COMMON_NAME]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [AUTH_POLICY_OID]
    assert cert.public_key().key_size == 2048


def test_client_flow(card_path: Path) -> None:
    reader = SoftCardReader(card_path)
    card = JpkiCard(reader.connect())
    card.select_jpki()
    cert_der = card.read_auth_certificate()
    assert cert_der == card_cert(card_path)
    assert card.read_token_info().startswith(b"JPKIAPICCTOKEN2")
    assert x509.load_der_x509_certificate(card.read_auth_ca_certificate()).subject == \
        JPKI_AUTH_ISSUER
    assert card.pin_tries_left() == 3
    with pytest.raises(PinWrong) as wrong:
        card.verify_pin("9999")
    assert wrong.value.tries_left == 2 and wrong.value.reason == "PIN_WRONG"
    card.verify_pin("1234")
    signature = card.sign_sha256(b"hello")
    x509.load_der_x509_certificate(cert_der).public_key().verify(
        signature, b"hello", padding.PKCS1v15(), hashes.SHA256())
    reader.disconnect()


class CountingTransport:
    def __init__(self, inner: SoftCard) -> None:
        self.inner = inner
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return self.inner.transmit(apdu)


@pytest.mark.parametrize("pin", ["123", "12345", "12a4", "１２３４", "", " 123"])
def test_pin_format_checked_before_sending(card_path: Path, pin: str) -> None:
    transport = CountingTransport(SoftCard.open(card_path))
    card = JpkiCard(transport)
    card.select_jpki()
    with pytest.raises(PinFormatInvalid) as exc:
        card.verify_pin(pin)
    assert exc.value.reason == "PIN_FORMAT_INVALID"
    assert transport.sent == [SELECT_AID]
    assert card.pin_tries_left() == 3


def test_client_locks_and_never_retries(card_path: Path) -> None:
    transport = CountingTransport(SoftCard.open(card_path))
    card = JpkiCard(transport)
    card.select_jpki()
    for left in (2, 1):
        with pytest.raises(PinWrong) as exc:
            card.verify_pin("0000")
        assert exc.value.tries_left == left
    with pytest.raises(PinLocked):
        card.verify_pin("0000")
    verifies = [a for a in transport.sent if a[:2] == b"\x00\x20"]
    assert len(verifies) == 3  # one VERIFY per call
    card2 = JpkiCard(SoftCard.open(card_path))
    card2.select_jpki()
    assert card2.pin_tries_left() == 0
    with pytest.raises(PinLocked) as exc2:
        card2.verify_pin("1234")
    assert exc2.value.reason == "PIN_LOCKED"


def test_pin_less_card(jpki_ca: JpkiCa, tmp_path: Path) -> None:
    path = tmp_path / "faceonly.card"
    assert issue_soft_card(jpki_ca, path, None, now=NOW) is None
    soft = SoftCard.open(path)
    assert soft.pin_less
    replay(soft, [(SELECT_AID, OK), (h("00A4020C02 000A"), h("6A82")),
                  (h("00A4020C02 0017"), h("6A82")), (h("00A4020C02 0018"), h("6A82")),
                  (h("00A4020C02 000B"), OK)])
    card = JpkiCard(SoftCard.open(path))
    card.select_jpki()
    with pytest.raises(CardPinLess) as exc:
        card.read_auth_certificate()
    assert exc.value.reason == "CARD_WITHOUT_PIN"


def test_issue_refuses_to_overwrite(jpki_ca: JpkiCa, card_path: Path) -> None:
    before = card_path.read_bytes()
    with pytest.raises(FileExistsError):
        issue_soft_card(jpki_ca, card_path, "1111", now=NOW)
    assert card_path.read_bytes() == before


def test_soft_reader_without_card(tmp_path: Path) -> None:
    with pytest.raises(CardReaderError):
        SoftCardReader(tmp_path / "absent.card").connect()


# -- PC/SC path against the software card ----------------------------------------------


class FakePyscardConnection:
    """A pyscard-like connection (lists of ints, (data, sw1, sw2)) over a software card.

    With ``t0=True`` it behaves like a T=0 reader: a response with data is announced with
    ``61 xx`` and fetched with GET RESPONSE.
    """

    def __init__(self, path: Path, *, t0: bool = False) -> None:
        self.path = path
        self.t0 = t0
        self.card: SoftCard | None = None
        self.pending = b""
        self.log: list[list[int]] = []

    def connect(self) -> None:
        self.card = SoftCard.open(self.path)

    def disconnect(self) -> None:
        self.card = None

    def transmit(self, command: list[int]) -> tuple[list[int], int, int]:
        assert self.card is not None, "not connected"
        assert all(isinstance(b, int) and 0 <= b <= 255 for b in command)
        self.log.append(command)
        if self.t0 and command[:2] == [0x00, 0xC0]:
            n = command[4] or 256
            data, self.pending = self.pending[:n], self.pending[n:]
            # 61 00: 256 or more bytes still waiting.
            sw = (0x61, min(len(self.pending), 256) % 256) if self.pending else (0x90, 0x00)
            return list(data), *sw
        response = self.card.transmit(bytes(command))
        data, sw1, sw2 = response[:-2], response[-2], response[-1]
        if self.t0 and data and (sw1, sw2) == (0x90, 0x00):
            self.pending = data
            return [], 0x61, min(len(data), 256) % 256
        return list(data), sw1, sw2


@pytest.mark.parametrize("t0", [False, True])
def test_pcsc_reader_path(card_path: Path, t0: bool) -> None:
    connections: list[FakePyscardConnection] = []

    def factory(name: str) -> FakePyscardConnection:
        assert name == "ACS ACR39U ICC Reader 00 00"
        conn = FakePyscardConnection(card_path, t0=t0)
        connections.append(conn)
        return conn

    reader = PcscReader("ACS ACR39U ICC Reader 00 00", connection_factory=factory)
    card = JpkiCard(reader.connect())
    card.select_jpki()
    cert_der = card.read_auth_certificate()
    assert cert_der == card_cert(card_path)
    with pytest.raises(PinWrong):
        card.verify_pin("4321")
    card.verify_pin("1234")
    signature = card.sign_sha256(b"via pcsc")
    x509.load_der_x509_certificate(cert_der).public_key().verify(
        signature, b"via pcsc", padding.PKCS1v15(), hashes.SHA256())
    log = connections[0].log
    assert log[0] == list(SELECT_AID)
    assert any(c[:2] == [0x00, 0xC0] for c in log) == t0
    reader.disconnect()
    assert connections[0].card is None


def test_pcsc_without_pyscard_gives_clear_error() -> None:
    try:
        import smartcard  # noqa: F401
    except ImportError:
        with pytest.raises(CardReaderError, match="pyscard"):
            PcscReader("any reader").connect()
    else:
        pytest.skip("pyscard is installed")
