"""`konbini pki ...` and `konbini jpki ...`: make and inspect the development PKI, run the JPKI
test CA (issue software cards, revoke, publish CRLs)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from konbini.pki.jpki import UnknownSerial
from konbini.pki.pkidir import (
    DEFAULT_MUNICIPALITIES,
    PkiDir,
    PkiInitError,
    certificate_summary,
    pki_init,
)

INIT_HELP = """\
Make a complete development PKI in DIR: operator CA with TLS certificates for the centre,
municipalities (client per code, server per municipality server), terminals and the conformance
suite; document-signing CA with a signer per municipality and the trust-list signer; the
scramble-key set; the JPKI test CA with an empty CRL. Private keys are written 0600.

Running it again on the same DIR never overwrites anything: existing items are kept, items
missing (e.g. a new --terminal) are added and signed by the existing CAs, and an item with only
some of its files present is refused. To start over, delete DIR.
"""


def _server_spec(text: str) -> tuple[str, tuple[str, ...]]:
    name, sep, codes = text.partition("=")
    if not sep or not name or not codes:
        raise argparse.ArgumentTypeError("expected NAME=CODE[,CODE...]")
    return name, tuple(c.strip() for c in codes.split(","))


def _terminal_spec(text: str) -> tuple[str, str]:
    operator, sep, terminal_id = text.partition(":")
    if not sep or not operator or not terminal_id:
        raise argparse.ArgumentTypeError("expected OPERATOR:ID")
    return operator, terminal_id


def _serial(text: str) -> int:
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a serial is decimal or 0x-hex") from None


def _cmd_init(args: argparse.Namespace) -> int:
    servers = dict(args.server) if args.server else None
    try:
        report = pki_init(
            args.dir,
            municipalities=args.municipality or None,
            servers=servers,
            terminals=args.terminal or None,
        )
    except (PkiInitError, ValueError) as exc:
        print(f"konbini pki init: {exc}", file=sys.stderr)
        return 2
    for label in report.created:
        print(f"created  {label}")
    for label in report.kept:
        print(f"kept     {label} (already present, not overwritten)")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    pki = PkiDir(args.dir)
    if not pki.manifest_path.exists():
        print(f"konbini pki show: {args.dir} holds no PKI (run konbini pki init)",
              file=sys.stderr)
        return 2
    m = pki.manifest()
    rows: list[tuple[str, Path]] = [
        ("operator CA", pki.network_ca.cert),
        ("centre server", pki.centre_server.cert),
        ("centre client", pki.centre_client.cert),
    ]
    rows += [(f"municipality {c} client", pki.municipality_client(c).cert)
             for c in m.municipalities]
    rows += [(f"server {n} ({','.join(codes)})", pki.municipality_server(n).cert)
             for n, codes in m.servers.items()]
    rows += [(f"terminal {o}:{t}", pki.terminal_client(o, t).cert) for o, t in m.terminals]
    rows += [("conformance client", pki.conformance_client.cert),
             ("document-signing CA", pki.docsign_ca.cert)]
    rows += [(f"document signer {c}", pki.document_signer(c).cert) for c in m.municipalities]
    rows += [("trust-list signer", pki.trust_list_signer.cert),
             ("JPKI test CA", pki.jpki_ca_cert)]
    for label, path in rows:
        if not path.exists():
            print(f"{label:40} MISSING {path}")
            continue
        identity, not_after = certificate_summary(path)
        print(f"{label:40} expires {not_after:%Y-%m-%d}  {identity}")
    revoked = pki.jpki_ca().revocations()
    print(f"{'JPKI revoked cards':40} {len(revoked)}")
    return 0


def _cmd_issue_card(args: argparse.Namespace) -> int:
    # Imported here so `konbini --help` does not load the card package.
    from konbini.card.issue import issue_soft_card

    pki = PkiDir(args.pki)
    try:
        serial = issue_soft_card(
            pki.jpki_ca(), Path(args.out), None if args.pin_less else args.pin,
            now=dt.datetime.now(dt.UTC), expired=args.expired,
        )
    except (ValueError, FileExistsError) as exc:
        print(f"konbini jpki issue-card: {exc}", file=sys.stderr)
        return 2
    if serial is None:
        print("PIN-less card written (no user-authentication certificate)")
    else:
        print(serial)
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    try:
        new = PkiDir(args.pki).jpki_ca().revoke_at(dt.datetime.now(dt.UTC), args.serial)
    except UnknownSerial as exc:
        print(f"konbini jpki revoke: {exc}", file=sys.stderr)
        return 2
    print("revoked" if new else "already revoked",
          "(publish with: konbini jpki crl --pki DIR)")
    return 0


def _cmd_crl(args: argparse.Namespace) -> int:
    pki = PkiDir(args.pki)
    crl = pki.jpki_ca().publish_crl_at(
        dt.datetime.now(dt.UTC), dt.timedelta(hours=args.next_update_hours)
    )
    print(f"wrote {pki.jpki_crl}: {len(list(crl))} revoked, next update "
          f"{crl.next_update_utc:%Y-%m-%dT%H:%M:%SZ}")
    return 0


def _register_pki(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="make the development PKI",
                          description=INIT_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--municipality", action="append", metavar="CODE",
                      help="municipality code (repeatable; default "
                      f"{' '.join(DEFAULT_MUNICIPALITIES)})")
    init.add_argument("--server", action="append", type=_server_spec, metavar="NAME=CODE,CODE",
                      help="a municipality server and the codes it serves (repeatable; default "
                      "kofu=192015 and tokyo-cloud=131016,131041, or one per --municipality)")
    init.add_argument("--terminal", action="append", type=_terminal_spec, metavar="OPERATOR:ID",
                      help="a terminal (repeatable; default seven:T0001 lawson:T0002 "
                      "family:T0003)")
    init.set_defaults(func=_cmd_init)
    show = sub.add_parser("show", help="list identities and expiry dates")
    show.add_argument("dir", type=Path, metavar="DIR")
    show.set_defaults(func=_cmd_show)


def _register_jpki(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="jpki_command", metavar="ACTION", required=True)
    issue = sub.add_parser("issue-card", help="issue a software My Number Card (prints serial)")
    issue.add_argument("--pki", required=True, type=Path, metavar="DIR")
    issue.add_argument("--out", required=True, type=Path, metavar="CARD",
                       help="card file to write (must not exist)")
    issue.add_argument("--pin", default="1234", help="4-digit auth PIN (default 1234)")
    issue.add_argument("--expired", action="store_true",
                       help="a certificate whose validity already ended")
    issue.add_argument("--pin-less", action="store_true",
                       help="a face-only card without user-authentication certificate")
    issue.set_defaults(func=_cmd_issue_card)
    revoke = sub.add_parser("revoke", help="revoke a card certificate by serial")
    revoke.add_argument("--pki", required=True, type=Path, metavar="DIR")
    revoke.add_argument("serial", type=_serial, metavar="SERIAL")
    revoke.set_defaults(func=_cmd_revoke)
    crl = sub.add_parser("crl", help="publish a new CRL where the centre reads it")
    crl.add_argument("--pki", required=True, type=Path, metavar="DIR")
    crl.add_argument("--next-update-hours", type=float, default=24.0, metavar="H")
    crl.set_defaults(func=_cmd_crl)


def register(subparsers: Any, name: str, help_text: str) -> None:
    """Add the ``pki`` or ``jpki`` subcommand to the ``konbini`` parser."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    if name == "pki":
        _register_pki(parser)
    elif name == "jpki":
        _register_jpki(parser)
    else:
        raise ValueError(f"konbini.pki.cli registers 'pki' and 'jpki', not {name!r}")
