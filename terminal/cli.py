"""``konbini terminal``: issue one certificate from the command line, recover after a crash,
serve the web kiosk, or serve the TerminalDriverService for the conformance suite.

Also runnable as ``python -m terminal.cli ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from konbini.card import PcscReader, SoftCardReader
from konbini.card.reader import CardReader
from konbini.common.v1 import types_pb2
from konbini.pki import PkiDir
from terminal.centre import CentreEndpoint, GrpcCentre
from terminal.flow import Choice, Kiosk, Screen, ScreenId
from terminal.journal import Journal
from terminal.payment import SimulatedCashDevice
from terminal.printer import LpPrinter, Printer, SpoolPrinter

PAUSE_ENV = "KONBINI_TERMINAL_PAUSE_AT"
PAUSE_POINTS = ("after-payment", "after-print")
SHOW_OPTIONS = ("registered_domicile", "household_head", "individual_number", "nationality",
                "residence_card_number", "residence_status")
SCOPES = {"self": types_pb2.HOUSEHOLD_SCOPE_SELF,
          "household": types_pb2.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD,
          "members": types_pb2.HOUSEHOLD_SCOPE_SELECTED_MEMBERS}


def kind_names() -> dict[str, int]:
    """``residence-record`` -> CERTIFICATE_KIND_RESIDENCE_RECORD, and so on."""
    return {
        v.name.removeprefix("CERTIFICATE_KIND_").lower().replace("_", "-"): v.number
        for v in types_pb2.CertificateKind.DESCRIPTOR.values if v.number
    }


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--centre", required=True, metavar="HOST:PORT", help="the centre")
    p.add_argument("--pki", type=Path, help="PKI directory (konbini pki init)")
    p.add_argument("--terminal", default="seven:T0001", metavar="OPERATOR:ID",
                   help="this terminal's identity (its client certificate)")
    p.add_argument("--tls-server-name", default="", help="expected centre TLS name")
    p.add_argument("--insecure-dev", action="store_true",
                   help="plaintext, identity in metadata (local development only)")
    p.add_argument("--journal", type=Path, default=Path("konbini-terminal-journal.db"),
                   help="the local journal (SQLite)")
    p.add_argument("--spool", type=Path, default=Path("konbini-spool"),
                   help="print into this directory (default)")
    p.add_argument("--lp", metavar="DEST", nargs="?", const="",
                   help="print through CUPS lp instead (optional destination)")


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add ``konbini terminal`` and its subcommands."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    sub = parser.add_subparsers(dest="terminal_command", metavar="ACTION", required=True)

    issue = sub.add_parser("issue", help="issue one certificate with a card and a PIN")
    _add_connection(issue)
    issue.add_argument("--card", required=True,
                       help="software card file, or pcsc:<reader name>")
    issue.add_argument("--pin", required=True, help="the 4-digit PIN (sent to the card only)")
    issue.add_argument("--kind", required=True, choices=sorted(kind_names()))
    issue.add_argument("--municipality", default="", help="a linked register municipality")
    issue.add_argument("--scope", choices=sorted(SCOPES), default="self")
    issue.add_argument("--member", action="append", default=[], help="a Person.ref")
    issue.add_argument("--fiscal-year", type=int)
    issue.add_argument("--copies", type=int, default=1)
    for option in SHOW_OPTIONS:
        issue.add_argument(f"--show-{option.replace('_', '-')}", action="store_true")
    issue.add_argument("--pay", type=int, help="yen put in (default: exactly the fee)")
    issue.add_argument("--test-hooks", action="store_true",
                       help=f"honour {PAUSE_ENV} (tests only: pause at a crash point)")
    issue.set_defaults(func=run_issue)

    recover = sub.add_parser("recover", help="finish transactions a crash left unfinished")
    _add_connection(recover)
    recover.set_defaults(func=run_recover)

    kiosk = sub.add_parser("kiosk", help="serve the touch-screen kiosk on localhost")
    _add_connection(kiosk)
    kiosk.add_argument("--card-dir", type=Path, required=True,
                       help="software card files offered as 'inserted cards'")
    kiosk.add_argument("--listen", default="127.0.0.1:0", help="loopback address:port")
    kiosk.set_defaults(func=run_kiosk)

    driver = sub.add_parser("driver", help="serve TerminalDriverService (test mode only)")
    _add_connection(driver)
    driver.add_argument("--listen", default="127.0.0.1:0")
    driver.add_argument("--server-cert", type=Path, help="TLS certificate of this service")
    driver.add_argument("--server-key", type=Path)
    driver.set_defaults(func=run_driver)


def _endpoint(args: argparse.Namespace) -> CentreEndpoint:
    operator, _, terminal_id = args.terminal.partition(":")
    if not terminal_id:
        raise SystemExit("--terminal is OPERATOR:ID, e.g. seven:T0001")
    if args.pki is None and not args.insecure_dev:
        raise SystemExit("--pki is required (or --insecure-dev for local development)")
    return CentreEndpoint(args.centre, PkiDir(args.pki) if args.pki else None, operator,
                          terminal_id, insecure_dev=args.insecure_dev,
                          tls_server_name=args.tls_server_name)


def _printer(args: argparse.Namespace) -> Printer:
    if args.lp is not None:
        return LpPrinter(args.lp or None)
    return SpoolPrinter(args.spool)


def _reader(card: str) -> CardReader:
    if card.startswith("pcsc:"):
        return PcscReader(card.removeprefix("pcsc:"))
    return SoftCardReader(Path(card))


def _pause_hook(args: argparse.Namespace) -> Callable[[str], None] | None:
    point = os.environ.get(PAUSE_ENV, "")
    if not point:
        return None
    if not args.test_hooks:
        print(f"{PAUSE_ENV} is ignored without --test-hooks", file=sys.stderr)
        return None
    if point not in PAUSE_POINTS:
        raise SystemExit(f"{PAUSE_ENV} must be one of {', '.join(PAUSE_POINTS)}")

    def pause(name: str) -> None:
        if name == point:
            print(f"PAUSED {name}", flush=True)
            threading.Event().wait()  # until the test kills the process

    return pause


def _words(screen: Screen) -> str:
    return f"{screen.message_ja} / {screen.message_en}" if screen.message_ja else ""


def _choice(args: argparse.Namespace) -> Choice:
    kind = kind_names()[args.kind]
    options = types_pb2.CertificateOptions()
    if kind in (types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD,
                types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS):
        rr = options.residence_record
        rr.scope = SCOPES[args.scope]
        rr.member_refs.extend(args.member)
        for option in SHOW_OPTIONS:
            setattr(rr, f"show_{option}", getattr(args, f"show_{option}"))
    elif kind == types_pb2.CERTIFICATE_KIND_SEAL_REGISTRATION:
        options.seal_registration.SetInParent()
    elif kind == types_pb2.CERTIFICATE_KIND_INCOME_TAX:
        if args.fiscal_year is None:
            raise SystemExit("--fiscal-year is required for income-tax")
        options.income_tax.fiscal_year = args.fiscal_year
    else:
        options.family_register.member_refs.extend(args.member)
    return Choice(kind, options, args.copies, args.municipality)


def _report_recovered(kiosk: Kiosk) -> None:
    for result in kiosk.recover():
        print(f"recovered transaction {result.txn_id}: {result.centre_state}, "
              f"charged {result.charged} yen, refunded {result.refunded} yen")


def run_issue(args: argparse.Namespace) -> int:
    """One resident, one certificate, no retries of the PIN."""
    centre = GrpcCentre.connect(_endpoint(args))
    journal = Journal.open(args.journal)
    try:
        kiosk = Kiosk(centre, SimulatedCashDevice(), _printer(args), journal,
                      pause_at=_pause_hook(args))
        _report_recovered(kiosk)
        screen = kiosk.insert_card(_reader(args.card))
        if screen.id is ScreenId.ENTER_PIN:
            screen = kiosk.enter_pin(args.pin)
        if screen.id is ScreenId.ENTER_PIN:  # wrong or malformed: never typed again here
            print(f"PIN refused: {_words(screen)} ({screen.pin_tries_left} tries left)",
                  file=sys.stderr)
            return 2
        if screen.id is ScreenId.MENU:
            screen = kiosk.choose(_choice(args))
        if screen.id is ScreenId.PAYMENT:
            fee = screen.fee
            screen = kiosk.pay(args.pay if args.pay is not None else fee)
            if screen.id is ScreenId.PAYMENT:
                print(f"{screen.paid} yen is less than the fee of {fee} yen", file=sys.stderr)
                screen = kiosk.cancel(remove_card=True)
                return 2
        if screen.id is not ScreenId.DONE:
            print(f"refused: {screen.reason}: {_words(screen)}", file=sys.stderr)
            if screen.returned:
                print(f"returned {screen.returned} yen", file=sys.stderr)
            kiosk.cancel(remove_card=True)
            return 2
        for path in screen.printed:
            print(f"printed {path}")
        print(f"fee {screen.fee} yen, paid {screen.paid} yen, change {screen.returned} yen")
        kiosk.done()
        return 0
    finally:
        journal.close()
        centre.close()


def run_recover(args: argparse.Namespace) -> int:
    """Settle unfinished transactions: printed -> PRINTED, otherwise FAILED and refunded."""
    centre = GrpcCentre.connect(_endpoint(args))
    journal = Journal.open(args.journal)
    try:
        kiosk = Kiosk(centre, SimulatedCashDevice(), _printer(args), journal)
        results = kiosk.recover()
        for result in results:
            print(f"transaction {result.txn_id}: {result.centre_state}, charged "
                  f"{result.charged} yen, refunded {result.refunded} yen")
        print(f"{len(results)} transaction(s) settled; {len(journal.unfinished())} open")
        return 0 if not journal.unfinished() else 1
    finally:
        journal.close()
        centre.close()


def run_kiosk(args: argparse.Namespace) -> int:
    """Serve the web kiosk until interrupted."""
    from terminal.web import KioskWebServer

    centre = GrpcCentre.connect(_endpoint(args))
    journal = Journal.open(args.journal)
    kiosk = Kiosk(centre, SimulatedCashDevice(), _printer(args), journal)
    _report_recovered(kiosk)
    host, _, port = args.listen.rpartition(":")
    server = KioskWebServer(kiosk, args.card_dir, host or "127.0.0.1", int(port or 0))
    print(f"kiosk at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        journal.close()
        centre.close()
    return 0


def run_driver(args: argparse.Namespace) -> int:
    """Serve TerminalDriverService in test mode until SIGTERM/SIGINT."""
    import asyncio

    from terminal.driver import DriverConfig, serve_driver

    config = DriverConfig(
        endpoint=_endpoint(args), listen=args.listen, journal=args.journal, spool=args.spool,
        server_cert=args.server_cert, server_key=args.server_key,
    )
    return asyncio.run(serve_driver(config, on_started=lambda port: print(
        f"TerminalDriverService on {args.listen.rpartition(':')[0]}:{port}", flush=True)))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m terminal.cli``: the same as ``konbini terminal``."""
    parser = argparse.ArgumentParser(prog="konbini")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, "terminal", "the reference kiosk terminal")
    args = parser.parse_args(["terminal", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
