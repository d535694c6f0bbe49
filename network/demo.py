"""`konbini demo`: the whole reference network on embedded SQLite, issuing real certificates.

It makes the PKI and the cards, starts a single-municipality server (甲府市), a multi-tenant
server (千代田区 and 新宿区) and the centre as processes on loopback with mTLS, loads the demo
registers, then plays a kiosk (the reference terminal library) through every kind and every
refusal, writes the printed PDFs to the output folder, verifies each one with the centre's
public VerificationService, and prints a summary. `konbini up` starts the same network and
keeps it running for interoperability tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from konbini.card import SoftCardReader
from konbini.clock import JST, OffsetClock
from konbini.common.v1 import types_pb2
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from konbini.verification.v1 import verification_pb2, verification_pb2_grpc
from network.demo_data import CHIYODA
from network.launch import SERVERS, NetworkError, ReferenceNetwork, in_service_hours
from terminal.centre import CentreEndpoint, GrpcCentre
from terminal.flow import Choice, Kiosk, Screen, ScreenId
from terminal.journal import Journal
from terminal.payment import SimulatedCashDevice
from terminal.printer import SpoolPrinter

MARKER = ".konbini-demo"
DEMO_SPAN = dt.timedelta(minutes=15)
K = types_pb2


@dataclass(frozen=True)
class Scenario:
    """One kiosk session: who, what, and what must happen (a document or a reason)."""

    title: str
    person: str
    kind: int
    expect: str  # "ISSUED" or a catalogue reason such as "UNDER_15"
    options: Callable[[Screen], types_pb2.CertificateOptions] = field(
        default=lambda _menu: types_pb2.CertificateOptions())
    copies: int = 1
    pin: str = "1234"
    municipality: str = ""
    # A use registration (利用登録) applied for first: (register municipality, 本籍, 筆頭者).
    use_registration: tuple[str, str, str] | None = None


def _rr(scope: int, **show: bool) -> Callable[[Screen], types_pb2.CertificateOptions]:
    def build(menu: Screen) -> types_pb2.CertificateOptions:
        rr = types_pb2.ResidenceRecordOptions(scope=scope, **show)
        if scope == K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS:
            people = next(e.selectable for e in menu.menu
                          if e.kind == K.CERTIFICATE_KIND_RESIDENCE_RECORD)
            rr.member_refs.extend(p.ref for p in people[:2])
        return types_pb2.CertificateOptions(residence_record=rr)
    return build


def _tax(year: int) -> Callable[[Screen], types_pb2.CertificateOptions]:
    return lambda _m: types_pb2.CertificateOptions(income_tax=types_pb2.IncomeTaxOptions(
        fiscal_year=year))


def _register(individual: bool) -> Callable[[Screen], types_pb2.CertificateOptions]:
    def build(menu: Screen) -> types_pb2.CertificateOptions:
        refs: list[str] = []
        if individual:  # the card holder, listed first (CatalogueEntry.selectable)
            refs = [next(e.selectable[0].ref for e in menu.menu
                         if e.kind == K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL)]
        return types_pb2.CertificateOptions(
            family_register=types_pb2.FamilyRegisterOptions(member_refs=refs))
    return build


USE_CHIYODA = (CHIYODA, "東京都千代田区千代田1番", "葛城 太郎")


def _seal(_menu: Screen) -> types_pb2.CertificateOptions:
    return types_pb2.CertificateOptions(seal_registration=types_pb2.SealRegistrationOptions())


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("住民票の写し（本人）", "kofu-tsuji", K.CERTIFICATE_KIND_RESIDENCE_RECORD, "ISSUED",
             _rr(K.HOUSEHOLD_SCOPE_SELF)),
    Scenario("住民票の写し（世帯全員・世帯主続柄・本籍）", "kofu-head",
             K.CERTIFICATE_KIND_RESIDENCE_RECORD, "ISSUED",
             _rr(K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD, show_household_head=True,
                 show_registered_domicile=True), copies=2),
    Scenario("住民票記載事項証明書（世帯の一部・旧氏）", "kofu-spouse",
             K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS, "ISSUED",
             _rr(K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, show_household_head=True)),
    Scenario("印鑑登録証明書", "kofu-tsuji", K.CERTIFICATE_KIND_SEAL_REGISTRATION, "ISSUED",
             _seal),
    Scenario("所得・課税証明書（2026年度）", "kofu-tsuji", K.CERTIFICATE_KIND_INCOME_TAX,
             "ISSUED", _tax(2026)),
    Scenario("住民票の写し（外国人住民・国籍・在留資格）", "shinjuku-resident",
             K.CERTIFICATE_KIND_RESIDENCE_RECORD, "ISSUED",
             _rr(K.HOUSEHOLD_SCOPE_SELF, show_nationality=True, show_residence_status=True)),
    Scenario("戸籍全部事項証明書（本籍地 千代田区・利用登録）", "kofu-head",
             K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL, "ISSUED", _register(False),
             municipality=CHIYODA, use_registration=USE_CHIYODA),
    Scenario("戸籍個人事項証明書（本人）", "kofu-head",
             K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL, "ISSUED", _register(True),
             municipality=CHIYODA),
    Scenario("戸籍の附票の写し", "kofu-head",
             K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY, "ISSUED", _register(False),
             municipality=CHIYODA),
    Scenario("15歳未満", "kofu-child", K.CERTIFICATE_KIND_RESIDENCE_RECORD, "UNDER_15",
             _rr(K.HOUSEHOLD_SCOPE_SELF)),
    Scenario("支援措置", "kofu-protected", K.CERTIFICATE_KIND_RESIDENCE_RECORD,
             "SUPPORT_MEASURE", _rr(K.HOUSEHOLD_SCOPE_SELF)),
    Scenario("印鑑登録廃止", "kofu-abolished", K.CERTIFICATE_KIND_SEAL_REGISTRATION,
             "SEAL_ABOLISHED", _seal),
    Scenario("印鑑登録なし", "kofu-head", K.CERTIFICATE_KIND_SEAL_REGISTRATION,
             "SEAL_NOT_REGISTERED", _seal),
    Scenario("個人番号の記載（甲府市は不可）", "kofu-tsuji", K.CERTIFICATE_KIND_RESIDENCE_RECORD,
             "OPTION_NOT_OFFERED",
             _rr(K.HOUSEHOLD_SCOPE_SELF, show_individual_number=True)),
    Scenario("失効したカード", "kofu-revoked", K.CERTIFICATE_KIND_RESIDENCE_RECORD,
             "CARD_REVOKED", _rr(K.HOUSEHOLD_SCOPE_SELF)),
    Scenario("暗証番号の誤り", "kofu-tsuji", K.CERTIFICATE_KIND_RESIDENCE_RECORD, "PIN_WRONG",
             _rr(K.HOUSEHOLD_SCOPE_SELF), pin="9999"),
)


@dataclass
class Outcome:
    scenario: Scenario
    result: str  # "ISSUED" or the reason shown
    fee: int = 0
    files: tuple[Path, ...] = ()
    verdicts: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        issued_ok = all(v == "GENUINE" for v in self.verdicts) and bool(self.files)
        return self.result == self.scenario.expect and (self.result != "ISSUED" or issued_ok)


class Demo:
    """The demo run over a started network."""

    def __init__(self, net: ReferenceNetwork, out: Path, clock: OffsetClock) -> None:
        self.net, self.out, self.clock = net, out, clock
        self.printed = out / "printed"
        self.centre = GrpcCentre.connect(CentreEndpoint(
            target=f"127.0.0.1:{net.centre.port}", pki=net.pki, store_operator="seven",
            terminal_id="T0001", tls_server_name="centre"))

    def run(self, scenario: Scenario) -> Outcome:
        kiosk = Kiosk(self.centre, SimulatedCashDevice(), SpoolPrinter(self.printed),
                      Journal.open(self.out / "var" / "terminal-journal.db", self.clock),
                      clock=self.clock)
        kiosk.recover()
        screen = kiosk.insert_card(SoftCardReader(self.net.card_path(scenario.person)))
        if screen.id is ScreenId.ENTER_PIN:
            screen = kiosk.enter_pin(scenario.pin)
        if screen.id is ScreenId.MENU and scenario.use_registration:
            applied = kiosk.register_use(*scenario.use_registration)
            if applied.status != "APPROVED":
                kiosk.cancel(remove_card=True)
                return Outcome(scenario, f"USE_REGISTRATION_{applied.status}")
            screen = kiosk.screen
        if screen.id is ScreenId.MENU:
            choice = Choice(kind=scenario.kind, options=scenario.options(screen),
                            copies=scenario.copies, municipality_code=scenario.municipality)
            screen = kiosk.choose(choice)
        fee = 0
        if screen.id is ScreenId.PAYMENT:
            fee = screen.fee
            screen = kiosk.pay(screen.fee)
        if screen.id is ScreenId.DONE:
            files = screen.printed
            kiosk.done()
            return Outcome(scenario, "ISSUED", fee, files, self.verify(files))
        kiosk.cancel(remove_card=True)
        return Outcome(scenario, screen.reason or screen.id.name)

    def verify(self, files: tuple[Path, ...]) -> tuple[str, ...]:
        """Each printed PDF through the centre's public verification service."""
        ca = self.net.pki.network_ca_cert.read_bytes()
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
        target = f"127.0.0.1:{self.net.services['centre-public'].port}"
        verdicts = []
        with grpc.secure_channel(target, creds, options=[
                ("grpc.ssl_target_name_override", "centre"),
                ("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
            stub = verification_pb2_grpc.VerificationServiceStub(channel)
            for path in files:
                reply = stub.VerifyDocument(
                    verification_pb2.VerifyDocumentRequest(pdf=path.read_bytes()), timeout=120)
                verdicts.append(verification_pb2.Verdict.Name(reply.verdict)
                                .removeprefix("VERDICT_"))
        return tuple(verdicts)


def last_open_time(now: dt.datetime) -> dt.datetime:
    """10:00 JST on the latest day, at or before ``now``, that is not in the year-end closure.

    In the past on purpose: a PKI and CRL made an hour before it are valid both then and at
    the real time TLS checks certificates against (a time ahead would outrun the CRL's one-day
    next update)."""
    local = now.astimezone(JST)
    day = local.date()
    while True:
        morning = dt.datetime(day.year, day.month, day.day, 10, tzinfo=JST)
        if morning <= now and not ((day.month, day.day) >= (12, 29)
                                   or (day.month, day.day) <= (1, 3)):
            return morning.astimezone(dt.UTC)
        day -= dt.timedelta(days=1)


def set_clocks(net: ReferenceNetwork, at: dt.datetime) -> None:
    """Test mode only: move every server's clock to `at` (FixtureService.SetClock)."""
    cert, key = net.pki.conformance_client.read()
    from konbini.pki.mtls import channel_credentials

    creds = channel_credentials(net.pki.network_ca_cert.read_bytes(), cert, key)
    for name in [*SERVERS, "centre"]:
        service = net.services[name]
        with grpc.secure_channel(f"127.0.0.1:{service.port}", creds, options=[
                ("grpc.ssl_target_name_override", service.tls_name)]) as channel:
            request = testing_pb2.SetClockRequest(request_id=f"demo-clock-{name}")
            request.now.FromDatetime(at)
            testing_pb2_grpc.FixtureServiceStub(channel).SetClock(request, timeout=30)


def start_network(
    out: Path, say: Callable[[str], None], *, test_mode: bool = False
) -> tuple[ReferenceNetwork, OffsetClock]:
    """A fresh network under `out` (a previous demo there is removed first). With test_mode
    the servers accept the conformance suite's FixtureService (and so can be tested)."""
    if out.exists():
        if not (out / MARKER).exists():
            raise NetworkError(f"{out} exists and is not a konbini demo folder; choose --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by konbini demo; removed by the next run\n")
    now = dt.datetime.now(dt.UTC)
    clock = OffsetClock()
    # Pin when the run could cross a closing time too (a demo takes well under DEMO_SPAN).
    open_throughout = in_service_hours(now) and in_service_hours(now + DEMO_SPAN)
    pinned = None if open_throughout else last_open_time(now)
    # With pinned clocks the PKI, the cards and the CRL are made an hour before the pinned time.
    made = now if pinned is None else pinned - dt.timedelta(hours=1)
    net = ReferenceNetwork(out)
    say("making the PKI, the cards and the register data")
    net.prepare(made, test_mode=test_mode or pinned is not None)
    say("starting 甲府市 (single municipality), tokyo-cloud (千代田区, 新宿区) and the centre")
    net.start()
    try:
        if pinned is not None:
            say("outside kiosk hours now; the servers run in test mode with their clocks at "
                f"{pinned:%Y-%m-%d %H:%M} UTC")
            set_clocks(net, pinned)
            clock.set_now(pinned)
        say("municipalities register their residents' cards with the centre; one card is "
            "revoked")
        net.bind_cards_at_centre()
        net.revoke_cards(now if pinned is None else pinned)  # as of the servers' time
    except BaseException:
        net.stop()  # never leave servers running behind a failed start
        raise
    return net, clock


def summary(outcomes: list[Outcome]) -> str:
    rows = [("", "scenario", "expected", "result", "fee", "verified", "files")]
    for o in outcomes:
        rows.append(("ok" if o.ok else "FAIL", o.scenario.title, o.scenario.expect, o.result,
                     f"{o.fee}円" if o.fee else "", ",".join(o.verdicts),
                     " ".join(p.name for p in o.files)))
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths, strict=True))
                     for r in rows)


def _width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()

    def say(text: str) -> None:
        print(f"[demo] {text}", flush=True)

    net, clock = start_network(out, say)
    try:
        demo = Demo(net, out, clock)
        outcomes = []
        for scenario in SCENARIOS:
            outcome = demo.run(scenario)
            say(f"{'ok  ' if outcome.ok else 'FAIL'} {scenario.title}: {outcome.result}")
            outcomes.append(outcome)
    finally:
        net.stop()
    print()
    print(summary(outcomes))
    issued = sum(len(o.files) for o in outcomes)
    failed = [o for o in outcomes if not o.ok]
    print(f"\n{issued} certificates printed to {out / 'printed'}, "
          f"{sum(len(o.verdicts) for o in outcomes)} verified; "
          f"{len(outcomes) - len(failed)} of {len(outcomes)} scenarios as expected.")
    return 1 if failed else 0


def run_up(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    stop = threading.Event()
    # Before anything starts: a SIGTERM at any point stops the servers we started.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    net, _clock = start_network(out, lambda t: print(f"[up] {t}", flush=True),
                                test_mode=args.test_mode)
    pki = net.pki
    print(f"centre (mTLS)         127.0.0.1:{net.centre.port}   TLS name: centre")
    print(f"centre verification   127.0.0.1:{net.services['centre-public'].port}   TLS only")
    for name, codes in SERVERS.items():
        print(f"municipality {name:9} 127.0.0.1:{net.services[name].port}   "
              f"TLS name: {name}   serves {', '.join(codes)}")
    print(f"operator CA           {pki.network_ca_cert}")
    print(f"terminal certificate  {pki.terminal_client('seven', 'T0001').cert}")
    print(f"conformance cert      {pki.conformance_client.cert}")
    print(f"cards (PIN 1234)      {out / 'cards'}")
    print("press Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(1):
            for service in net.services.values():
                if service.process is not None and service.process.poll() is not None:
                    print(f"{service.name} exited; see {service.log}", file=sys.stderr)
                    stop.set()
    except KeyboardInterrupt:
        pass
    finally:
        net.stop()
    return 0


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo-out" if name == "demo" else "konbini-network",
                        help="the output folder (replaced on each run)")
    if name == "up":
        parser.add_argument("--test-mode", action="store_true",
                            help="start the servers in test mode, so that `konbini conformance "
                                 "run` can provision them (never for production data)")
    parser.set_defaults(func=run_demo if name == "demo" else run_up)
