"""``konbini centre audit verify``: check the audit chain and its signed checkpoints.

The centre's CLI (centre/cli.py) calls :func:`add_audit_commands` with its subparsers. The
store and the signer certificate come from the centre configuration (``--config FILE``: its
store URL and PKI directory) or are given directly (``--store URL --pki DIR``). Exit status 0
when the log is intact, 1 when a problem was found, 2 when it could not be checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from konbini.pki import PkiDir
from konbini.pki.x509util import load_certificate
from konbini.storage import Migration, StorageError, open_store


def add_audit_commands(centre_subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``audit verify`` under ``konbini centre``."""
    audit = centre_subparsers.add_parser("audit", help="the centre's audit log")
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    check = sub.add_parser(
        "verify", help="check the hash chain and the signed checkpoints of the audit log"
    )
    check.add_argument("--config", type=Path, help="the centre configuration (TOML)")
    check.add_argument("--store", help="store URL (instead of --config)")
    check.add_argument("--pki", type=Path, help="PKI directory (instead of --config)")
    check.add_argument("--schema", default=None,
                       help="PostgreSQL schema of the centre's tables, if the server sets one")
    check.add_argument("--checkpoint-every", type=int, default=None,
                       help="the log's checkpoint interval: also report missing checkpoints")
    check.set_defaults(func=run_verify)


def _migrations() -> list[Migration]:
    try:
        from centre.schema import centre_migrations
    except ImportError:  # the core schema not installed: the audit tables alone
        from centre.audit import AUDIT_MIGRATIONS

        return list(AUDIT_MIGRATIONS)
    return centre_migrations()


def _locate(args: argparse.Namespace) -> tuple[str, PkiDir]:
    if args.config is not None:
        from centre.config import load_config

        config = load_config(args.config)
        return config.effective_store_url, PkiDir(config.pki_dir)
    if not args.store or args.pki is None:
        raise ValueError("give --config FILE, or --store URL and --pki DIR")
    return args.store, PkiDir(args.pki)


def run_verify(args: argparse.Namespace) -> int:
    """The command: print what was checked and every problem found."""
    from centre.audit import verify

    try:
        url, pki = _locate(args)
        cert = load_certificate(pki.trust_list_signer.cert)
        store = open_store(url, migrations=_migrations(), schema=args.schema)
    except (ValueError, OSError, StorageError) as exc:
        print(f"cannot check the audit log: {exc}", file=sys.stderr)
        return 2
    try:
        report = verify(store, cert, checkpoint_every=args.checkpoint_every)
    finally:
        store.close()
    print(f"entries: {report.entries}, signed checkpoints: {report.checkpoints}"
          f" (last covers entry {report.last_checkpoint})")
    if report.ok:
        print("audit log intact")
        return 0
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    return 1
