"""End to end refusals: each one reaches the kiosk screen with the catalogue's words (and the
gRPC status with its reason and code), and leaves no ledger row, no relay, no reservation and
no charge anywhere in the network."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from test_e2e_support import (
    FR_FULL,
    RR,
    SEAL,
    K,
    Network,
    Rig,
    card_signer,
    register_use,
    request_refusal,
    rid,
    start_network,
)

from centre import outbox
from konbini.contracts import reasons
from konbini.errors import parse_rpc_error
from konbini.kiosk.v1 import kiosk_pb2
from municipality.sample import CHIYODA, DOMICILE, KOFU
from terminal.centre import GrpcCentre
from terminal.flow import Choice, Screen, ScreenId

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Network]:
    root = tmp_path_factory.mktemp("e2e-refusals")
    async with contextlib.AsyncExitStack() as stack:
        # No CRL grace: a CRL past its next update refuses every card at once (CARD-CRL-FRESH).
        yield await start_network(root, lambda name: f"sqlite://{root / name}.db", stack,
                                  crl_grace_s=0.0)


def state_of(net: Network) -> tuple[Any, ...]:
    """Everything a refusal must leave untouched."""
    outbox_rows = net.centre_read(
        lambda tx: tx.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"])
    return (len(net.ledger_rows()), outbox_rows, len(net.centre_read(outbox.pending)),
            len(net.reservations(KOFU)), len(net.reservations(CHIYODA)))


@pytest.fixture
def unchanged(net: Network) -> Iterator[None]:
    """The network's state is the same after the test as before it (REFUSE-NO-STATE)."""
    before = state_of(net)
    yield
    assert state_of(net) == before


def assert_refused(screen: Screen, reason: str) -> None:
    """The kiosk shows the refusal with the catalogue's words for ``reason``."""
    assert screen.id is ScreenId.REFUSED, screen
    assert screen.reason == reason
    words = reasons()[reason]
    assert (screen.message_ja, screen.message_en) == (words.message_ja, words.message_en)
    assert screen.message_ja and screen.message_en


def residence(**shown: bool) -> K.CertificateOptions:
    return K.CertificateOptions(residence_record=K.ResidenceRecordOptions(
        scope=K.HOUSEHOLD_SCOPE_SELF, **shown))


async def card_refused(net: Network, tmp_path: Path, card: str, reason: str) -> Rig:
    rig = net.kiosk(tmp_path)
    screen = await rig.to_menu(net.cards[card])
    assert_refused(screen, reason)
    assert rig.cash.events == []
    return rig


def publish_crl(net: Network, at: dt.datetime, valid_for: dt.timedelta) -> None:
    net.pki.jpki_ca().publish_crl_at(at, valid_for)


@pytest.mark.usefixtures("unchanged")
async def test_revoked_card(net: Network, tmp_path: Path) -> None:
    ca = net.pki.jpki_ca()
    ca.revoke_at(net.now - dt.timedelta(minutes=30), net.cards["revoked"].serial_int)
    publish_crl(net, net.now - dt.timedelta(minutes=20), dt.timedelta(days=1))
    await card_refused(net, tmp_path, "revoked", "CARD_REVOKED")
    # Another card of the same CA still passes with that CRL.
    rig = net.kiosk(tmp_path)
    assert (await rig.to_menu(net.cards["taro"])).id is ScreenId.MENU


@pytest.mark.usefixtures("unchanged")
async def test_expired_card(net: Network, tmp_path: Path) -> None:
    await card_refused(net, tmp_path, "expired", "CARD_EXPIRED")


@pytest.mark.usefixtures("unchanged")
async def test_stale_crl_refuses_every_card(net: Network, tmp_path: Path) -> None:
    publish_crl(net, net.now - dt.timedelta(days=1), dt.timedelta(hours=23))
    try:
        await card_refused(net, tmp_path, "taro", "CRL_STALE")
    finally:
        publish_crl(net, net.now - dt.timedelta(minutes=10), dt.timedelta(days=1))
    rig = net.kiosk(tmp_path)
    assert (await rig.to_menu(net.cards["taro"])).id is ScreenId.MENU


@pytest.mark.usefixtures("unchanged")
async def test_card_key_not_matching_its_certificate(net: Network, tmp_path: Path) -> None:
    await card_refused(net, tmp_path, "wrong_key", "CARD_SIGNATURE_INVALID")


class TamperingCentre:
    """A man in the middle between the kiosk flow and the centre: after the card signed the
    issuance intent, it asks for a different kind with the same signature."""

    def __init__(self, inner: GrpcCentre) -> None:
        self._inner = inner
        self.tampered = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def request_issuance(self, req: kiosk_pb2.RequestIssuanceRequest
                         ) -> kiosk_pb2.RequestIssuanceResponse:
        intent = kiosk_pb2.IssuanceIntent.FromString(req.intent)
        intent.kind = SEAL  # type: ignore[assignment]
        intent.options.Clear()
        changed = kiosk_pb2.RequestIssuanceRequest()
        changed.CopyFrom(req)
        changed.intent = intent.SerializeToString()
        self.tampered += 1
        return self._inner.request_issuance(changed)


@pytest.mark.usefixtures("unchanged")
async def test_tampered_issuance_intent(net: Network, tmp_path: Path) -> None:
    wrappers: list[TamperingCentre] = []

    def wrap(inner: GrpcCentre) -> TamperingCentre:
        wrappers.append(TamperingCentre(inner))
        return wrappers[-1]

    rig = net.kiosk(tmp_path, wrap=wrap)
    assert (await rig.to_menu(net.cards["taro"])).id is ScreenId.MENU
    screen = await rig.run(rig.kiosk.choose, Choice(RR, residence()))
    assert_refused(screen, "CARD_SIGNATURE_INVALID")
    assert wrappers[0].tampered == 1
    assert rig.cash.events == [] and rig.printer.attempts == 0


async def test_replayed_challenge(net: Network) -> None:
    kiosk = net.kiosk_stub()
    certificate, sign = card_signer(net.cards["taro"])
    created = await kiosk.CreateSession(kiosk_pb2.CreateSessionRequest(request_id=rid()))
    intent = kiosk_pb2.AuthIntent(session_id=created.session_id,
                                  challenge=created.challenge).SerializeToString()
    signature = sign(intent)

    def authenticate() -> Any:
        return kiosk.Authenticate(kiosk_pb2.AuthenticateRequest(
            request_id=rid(), session_id=created.session_id, auth_certificate_der=certificate,
            intent=intent, signature=signature))

    first = await authenticate()
    assert first.residence_municipality_code.value == KOFU
    with pytest.raises(grpc.aio.AioRpcError) as replay:
        await authenticate()
    parsed = parse_rpc_error(replay.value)
    assert parsed.reason == "CHALLENGE_REPLAYED"
    assert parsed.code.value[0] == reasons()["CHALLENGE_REPLAYED"].grpc_code
    # Another terminal cannot use the session either (SESSION-TERMINAL-BOUND).
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await net.kiosk_stub("lawson", "T0002").Authenticate(kiosk_pb2.AuthenticateRequest(
            request_id=rid(), session_id=created.session_id, auth_certificate_der=certificate,
            intent=intent, signature=signature))
    assert parse_rpc_error(other.value).reason == "SESSION_UNKNOWN"


@pytest.mark.parametrize(("card", "kind", "options", "reason"), [
    ("ichiro", RR, residence(), "UNDER_15"),
    ("dv", RR, residence(), "SUPPORT_MEASURE"),
    ("abolished", SEAL, K.CertificateOptions(seal_registration=K.SealRegistrationOptions()),
     "SEAL_ABOLISHED"),
    ("taro", RR, residence(show_individual_number=True), "OPTION_NOT_OFFERED"),
])
@pytest.mark.usefixtures("unchanged")
async def test_eligibility_refusals(net: Network, tmp_path: Path, card: str, kind: int,
                                    options: K.CertificateOptions, reason: str) -> None:
    # On the kiosk: the screen says why, nothing is paid or printed.
    rig = net.kiosk(tmp_path)
    screen = await rig.to_menu(net.cards[card])
    if screen.id is ScreenId.MENU:
        screen = await rig.run(rig.kiosk.choose, Choice(kind, options))
    assert_refused(screen, reason)
    assert rig.cash.events == [] and rig.printer.attempts == 0
    # Through the centre at the gRPC level, past the kiosk's own catalogue checks: the
    # municipality's refusal arrives with its reason and status code.
    parsed = await request_refusal(net, net.cards[card], kind, options)
    assert parsed.reason == reason, parsed
    assert parsed.code.value[0] == reasons()[reason].grpc_code


@pytest.mark.usefixtures("unchanged")
async def test_family_register_elsewhere_needs_an_approved_use_registration(
        net: Network) -> None:
    full = K.CertificateOptions(family_register=K.FamilyRegisterOptions())
    jiro = net.cards["jiro"]  # lives in Chiyoda; his register is in Kofu
    parsed = await request_refusal(net, jiro, FR_FULL, full, code=KOFU)
    assert parsed.reason == "USE_REGISTRATION_REQUIRED"
    # A head of register that does not match Kofu's records: the register municipality
    # rejects the link, and the centre keeps refusing.
    rejected = await register_use(net, jiro, KOFU, DOMICILE, "甲斐 太郎")
    assert rejected.status == kiosk_pb2.USE_REGISTRATION_STATUS_REJECTED
    parsed = await request_refusal(net, jiro, FR_FULL, full, code=KOFU)
    assert parsed.reason == "USE_REGISTRATION_REJECTED"
    assert parsed.code.value[0] == reasons()["USE_REGISTRATION_REJECTED"].grpc_code
