"""``konbini centre``: run the reference centre, check its audit log.

``konbini centre serve --config FILE [--workers N] [--port-file FILE]`` runs N worker
processes on one port (SO_REUSEPORT). With port 0 in ``bind``/``public_bind`` the parent
reserves concrete ports first so that every worker shares them; ``--port-file`` receives
``{"port", "public_port", "pid"}`` once a worker serves (tests and scripts wait for it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from centre.config import CentreConfig, ConfigError, load_config


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    """Add ``konbini centre`` and its subcommands."""
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    sub = parser.add_subparsers(dest="centre_command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="run the centre server")
    serve.add_argument("--config", type=Path, required=True, help="the configuration (TOML)")
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes (default: the configuration's workers)")
    serve.add_argument("--port-file", type=Path, default=None,
                       help="write the bound ports here (JSON) once serving")
    serve.set_defaults(func=run_serve)
    from centre.audit_cli import add_audit_commands

    add_audit_commands(sub)


def _worker(config: CentreConfig, port_file: Path | None) -> None:
    from centre.server import serve_centre

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    asyncio.run(serve_centre(config, port_file=port_file))


def _split(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def run_serve(args: argparse.Namespace) -> int:
    """``konbini centre serve``."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"konbini centre serve: {exc}", file=sys.stderr)
        return 2
    workers = args.workers or config.workers
    if workers <= 1:
        _worker(config, args.port_file)
        return 0
    from konbini.server import reserve_port, run_workers

    held = []
    changes = {}
    for key in ("bind", "public_bind"):
        value = getattr(config, key)
        if not value:
            continue
        host, port = _split(value)
        sock, port = reserve_port(host, port)
        held.append(sock)  # keep the port ours until the workers listen on it
        changes[key] = f"{host}:{port}"
    config = config.with_changes(**changes)
    try:
        return run_workers(workers, _worker, (config, args.port_file))
    finally:
        for sock in held:
            sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point without the konbini dispatcher (``python -m centre.cli serve ...``)."""
    parser = argparse.ArgumentParser(prog="konbini")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, "centre", "the reference centre")
    args = parser.parse_args(["centre", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
