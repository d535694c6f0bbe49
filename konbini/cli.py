"""The `konbini` command: one entry point whose subcommands live with the code they drive.

Each subcommand module exposes ``register(subparsers)``; it is imported only when needed, so
`konbini --help` stays fast and a missing optional dependency of one side cannot break another.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (module, help) per top-level subcommand; the module's register() adds the parser.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "pki": ("konbini.pki.cli", "make and inspect the development PKI"),
    "jpki": ("konbini.pki.cli", "JPKI test CA: issue cards, revoke, publish CRLs"),
    "proto": ("konbini.devtools.genproto", "generate stubs from proto/ and check drift"),
    "bench": ("konbini.bench", "measure speed (medians and ratios from one run)"),
    "conformance": ("conformance.cli", "run the conformance suite against an implementation"),
    "demo": ("network.demo", "run the whole reference network and issue every kind"),
    "up": ("network.demo", "start the reference network and keep it running"),
    "requirements": ("konbini.requirements", "list the normative requirements"),
    "municipality": (
        "municipality.cli",
        "run the municipal issuing server and manage its register data",
    ),
    "centre": ("centre.cli", "run the reference centre and check its audit log"),
    "verify": ("centre.verify_cli", "verify a printed certificate offline"),
    "terminal": (
        "terminal.cli",
        "the reference kiosk terminal: issue, recover, web kiosk, test driver",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="konbini",
        description="konbini-kofu: contracts, reference servers and conformance suite for "
        "certificate issuance at convenience-store kiosks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        module.register(sub, name, help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
