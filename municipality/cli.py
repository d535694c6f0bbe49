"""`konbini municipality ...`: run the issuing server and manage its register data.

    konbini municipality init-config [FILE]              write a documented sample config
    konbini municipality serve --config FILE [--workers N]
    konbini municipality import --config FILE DATASET.json [--replace]
    konbini municipality export --config FILE --municipality CODE > out.json
    konbini municipality decide-link --config FILE --municipality CODE REGISTRATION_ID \\
        [--register ID --member ID]                        (officer's decision; none = reject)

The import format is the protobuf JSON mapping of konbini.register.v1.Dataset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from konbini.register.v1 import register_pb2
from municipality.config import SAMPLE, ConfigError, MunicipalityConfig, load_config
from municipality.registry import Registry, load_dataset


class CommandError(Exception):
    """A user error: printed without a traceback."""


def _config(args: argparse.Namespace) -> MunicipalityConfig:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CommandError(f"{args.config}: {exc}") from exc
    if getattr(args, "workers", None):
        config = replace(config, workers=args.workers)
    return config


def _cmd_init_config(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.exists() and not args.force:
        raise CommandError(f"{path} exists; use --force to overwrite")
    path.write_text(SAMPLE, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from municipality.server import run_server, serve_workers

    config = _config(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def announce(port: int) -> None:
        host = config.bind.rpartition(":")[0]
        print(f"listening on {host}:{port}", flush=True)

    if config.workers == 1:
        asyncio.run(run_server(config, on_started=announce))
        return 0
    return serve_workers(config, on_bound=announce)


def _read_dataset(path: str) -> register_pb2.Dataset:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return json_format.Parse(text, register_pb2.Dataset())
    except (OSError, json_format.ParseError) as exc:
        raise CommandError(f"{path}: not a konbini.register.v1.Dataset: {exc}") from exc


def _cmd_import(args: argparse.Namespace) -> int:
    from municipality.server import open_municipality_store

    config = _config(args)
    dataset = _read_dataset(args.dataset)
    foreign = [m.tenant.code.value for m in dataset.municipalities
               if m.tenant.code.value not in config.tenants]
    if foreign:
        raise CommandError(f"the dataset holds municipalities this server does not serve: "
                           f"{', '.join(foreign)}")
    with open_municipality_store(config) as store:
        counts = store.run(lambda tx: load_dataset(tx, dataset, replace=args.replace))
    for code, per_type in counts.items():
        summary = ", ".join(f"{name} {n}" for name, n in per_type.items())
        print(f"{code}: {summary}")
    return 0


def export_json(config: MunicipalityConfig, code: str) -> str:
    """The tenant's data as the import format (a Dataset with one municipality)."""
    from municipality.server import open_municipality_store

    with open_municipality_store(config) as store:
        data = store.run(lambda tx: Registry(tx, code).export(), write=False)
    if data is None:
        raise CommandError(f"no data for municipality {code}")
    dataset = register_pb2.Dataset(municipalities=[data])
    return json.dumps(json_format.MessageToDict(dataset), ensure_ascii=False, indent=2)


def _cmd_export(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.municipality not in config.tenants:
        raise CommandError(f"this server does not serve {args.municipality}")
    print(export_json(config, args.municipality))
    return 0


def _cmd_decide_link(args: argparse.Namespace) -> int:
    from konbini.errors import KonbiniError
    from municipality.links import decide_pending
    from municipality.server import open_municipality_store

    config = _config(args)
    if bool(args.register) != bool(args.member):
        raise CommandError("give both --register and --member to link, or neither to reject")
    with open_municipality_store(config) as store:
        try:
            decide_pending(store, args.municipality, args.registration_id, args.register or "",
                           args.member or "")
        except KonbiniError as exc:
            raise CommandError(exc.message) from exc
    print("linked" if args.register else "rejected")
    return 0


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def register(subparsers: Any, name: str, help_text: str) -> None:
    """Add `konbini <name> ...` to the konbini CLI."""
    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="municipality_command", metavar="COMMAND", required=True)

    init = sub.add_parser("init-config", help="write a documented sample configuration")
    init.add_argument("file", nargs="?", default="municipality.toml")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=_guarded(_cmd_init_config))

    serve = sub.add_parser("serve", help="run the issuing server (mTLS)")
    serve.add_argument("--config", required=True, help="the TOML configuration")
    serve.add_argument("--workers", type=int, help="worker processes (overrides the config)")
    serve.set_defaults(func=_guarded(_cmd_serve))

    imp = sub.add_parser("import", help="load a Dataset (protobuf JSON) into the store")
    imp.add_argument("--config", required=True)
    imp.add_argument("dataset", help="the JSON file, or - for standard input")
    imp.add_argument("--replace", action="store_true",
                     help="drop the registers of the dataset's municipalities first")
    imp.set_defaults(func=_guarded(_cmd_import))

    exp = sub.add_parser("export", help="print one municipality's data as a Dataset (JSON)")
    exp.add_argument("--config", required=True)
    exp.add_argument("--municipality", required=True, help="the municipality code")
    exp.set_defaults(func=_guarded(_cmd_export))

    decide = sub.add_parser("decide-link", help="decide a PENDING use registration")
    decide.add_argument("--config", required=True)
    decide.add_argument("--municipality", required=True)
    decide.add_argument("registration_id")
    decide.add_argument("--register", help="the family register id to link")
    decide.add_argument("--member", help="the member id to link")
    decide.set_defaults(func=_guarded(_cmd_decide_link))


def main(argv: list[str] | None = None) -> int:
    """Run as `python -m municipality.cli ...` (same commands as `konbini municipality`)."""
    parser = argparse.ArgumentParser(prog="municipality")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, "municipality", "the issuing server")
    args = parser.parse_args(["municipality", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
