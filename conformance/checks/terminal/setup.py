"""Building a terminal run: the suite's cards and JPKI CA, its fake centre listening where the
terminal under test was told to connect, and the context the checks get."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

from conformance.checks.terminal.cards import CardFactory
from conformance.checks.terminal.context import TerminalContext
from conformance.fakes.centre import CentreTls, centre_state, running_centre
from conformance.target import Wire
from konbini.pki import PkiDir

DEFAULT_CENTRE_LISTEN = "127.0.0.1:50090"


class TerminalSetupError(ValueError):
    """The fake centre cannot be set up as asked (no certificate given)."""


def centre_tls(extra: dict[str, Any], pki: Path | None, ca: Path | None) -> CentreTls:
    """The fake centre's server certificate: --centre-cert/--centre-key (clients checked
    against --centre-client-ca, else --ca), or the centre's from --pki."""
    cert, key = extra.get("centre_cert"), extra.get("centre_key")
    if cert and key:
        client_ca = extra.get("centre_client_ca") or ca
        if client_ca is None:
            raise TerminalSetupError("--centre-cert needs --centre-client-ca (or --ca)")
        return CentreTls(Path(cert).read_bytes(), Path(key).read_bytes(),
                         Path(client_ca).read_bytes())
    if pki is None:
        raise TerminalSetupError("give --pki DIR or --centre-cert/--centre-key for the fake centre")
    dirs = PkiDir(pki)
    cert_pem, key_pem = dirs.centre_server.read()
    return CentreTls(cert_pem, key_pem, dirs.network_ca_cert.read_bytes())


def build_terminal_context(
    wire: Wire, *, seed: int, examples: int, extra: dict[str, Any], pki: Path | None,
    ca: Path | None, now: dt.datetime | None = None,
) -> TerminalContext:
    """Start the fake centre and return the context (its close() stops the centre)."""
    now = now or dt.datetime.now(dt.UTC)
    tls = centre_tls(extra, pki, ca)
    cards = CardFactory(now, seed)
    state = centre_state(cards.ca.certificate, cards.crl, fiscal_year=now.year - 1)
    listen = str(extra.get("centre_listen") or DEFAULT_CENTRE_LISTEN)
    stack = contextlib.ExitStack()
    centre = stack.enter_context(running_centre(state, listen, tls))
    host = listen.rpartition(":")[0]
    return TerminalContext(
        wire=wire, centre=state, cards=cards, centre_address=f"{host}:{centre.port}",
        seed=seed, examples=examples, fiscal_year=now.year - 1, on_close=stack.close)
