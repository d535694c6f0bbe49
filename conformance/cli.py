"""`konbini conformance run | requirements`: argument parsing and printing only; the engine,
the checks and the reporters live in their own modules."""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

from conformance.checks import load_checks
from conformance.engine import run_checks
from conformance.events import Subscriber
from conformance.expected import Verdict, judge_run, load_expected, updated_file_text
from conformance.registry import ROLES, select
from conformance.reporters.console import ConsoleReporter
from conformance.reporters.coverage import checks_by_requirement, coverage_text
from conformance.reporters.jsonreport import JsonReporter
from conformance.reporters.junit import JUnitReporter
from conformance.reporters.replay import ReplayWriter
from conformance.session import RunOptions, SessionError, build_context

DEFAULT_EXAMPLES = 15  # keeps the default run against the reference municipality under 2 min


def _add_centre_role_options(run: Any) -> None:
    """--role centre: the suite's fake municipalities, which the centre under test must reach,
    and the other identities the suite plays."""
    run.add_argument("--fake-bind", default="127.0.0.1:0", metavar="HOST:PORT",
                     help="centre role: where the fake municipality server listens")
    run.add_argument("--fake-advertise", default="", metavar="HOST",
                     help="centre role: the host the centre connects to (default: bind host)")
    run.add_argument("--fake-cert", type=Path,
                     help="centre role: the fake municipality's server certificate (no --pki)")
    run.add_argument("--fake-key", type=Path)
    run.add_argument("--fake-client-ca", type=Path,
                     help="centre role: CA of the centre's client certificate (no --pki)")
    run.add_argument("--fake-tls-name", default="",
                     help="centre role: the name the centre should expect from the fake")
    run.add_argument("--municipality-cert", type=Path,
                     help="centre role: a municipality client certificate (PlatformService)")
    run.add_argument("--municipality-key", type=Path)
    run.add_argument("--terminal-b-cert", type=Path,
                     help="centre role: a second terminal's client certificate")
    run.add_argument("--terminal-b-key", type=Path)
    run.add_argument("--jpki-ca-cert", type=Path,
                     help="centre role: JPKI CA to issue the suite's cards from")
    run.add_argument("--jpki-ca-key", type=Path)
    run.add_argument("--relay-wait", type=float, default=30.0,
                     help="centre role: seconds a completion may take to reach the municipality")


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    sub = parser.add_subparsers(dest="conformance_command", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="run the suite against an implementation")
    run.add_argument("--role", choices=ROLES, required=True, help="the side under test")
    run.add_argument("--target", required=True, metavar="HOST:PORT")
    run.add_argument(
        "--pki", type=Path, help="a `konbini pki init` dir (CA, suite's certs, trust list)"
    )
    run.add_argument("--ca", type=Path, help="CA that signed the target's server certificate")
    run.add_argument(
        "--cert",
        type=Path,
        help="the role's caller certificate (the centre's against a municipality)",
    )
    run.add_argument("--key", type=Path)
    run.add_argument(
        "--fixture-cert",
        type=Path,
        help="conformance certificate for the test-mode services (default: --cert)",
    )
    run.add_argument("--fixture-key", type=Path)
    run.add_argument(
        "--wrong-role-cert", type=Path, help="another role's certificate (authorization checks)"
    )
    run.add_argument("--wrong-role-key", type=Path)
    run.add_argument("--tls-server-name", default="")
    run.add_argument(
        "--municipality",
        nargs="+",
        default=[],
        metavar="CODE",
        help="tenants the target serves (the first is the main one)",
    )
    run.add_argument(
        "--trust-list",
        type=Path,
        help="serialized konbini.common.v1.SignedTrustList to verify documents with",
    )
    run.add_argument("--docsign-ca", type=Path, help="document-signing CA (PEM) for --trust-list")
    run.add_argument("--report-junit", type=Path, metavar="FILE")
    run.add_argument("--report-json", type=Path, metavar="FILE")
    run.add_argument(
        "--replay-dir",
        type=Path,
        metavar="DIR",
        help="write a replay script per failing check here",
    )
    run.add_argument("--seed", type=int, help="Hypothesis seed (default: random, printed)")
    run.add_argument(
        "--examples",
        type=int,
        default=DEFAULT_EXAMPLES,
        help=f"examples per property (default {DEFAULT_EXAMPLES})",
    )
    run.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="REQ-ID",
        help="run only the checks covering these requirements",
    )
    run.add_argument("--expected-failures", type=Path, metavar="FILE")
    run.add_argument(
        "--update-expected-failures",
        action="store_true",
        help="rewrite --expected-failures FILE from this run's results",
    )
    run.add_argument(
        "--clock",
        help="the suite's fixed time, ISO 8601 with offset (default: 10:00 JST two days from now)",
    )
    run.add_argument(
        "--sweep-wait",
        type=float,
        default=5.0,
        help="seconds an expired reservation may stay RESERVED",
    )
    run.add_argument(
        "--shrink-budget",
        type=float,
        default=20.0,
        help="seconds a property may spend shrinking a failure",
    )
    run.add_argument("--call-timeout", type=float, default=30.0)
    # --role terminal: the suite's fake centre, where the terminal under test connects.
    run.add_argument(
        "--centre-listen",
        default="127.0.0.1:50090",
        metavar="HOST:PORT",
        help="terminal role: where the suite's fake centre listens (default 127.0.0.1:50090)",
    )
    run.add_argument(
        "--centre-cert", type=Path, help="terminal role: the fake centre's server certificate"
    )
    run.add_argument("--centre-key", type=Path)
    run.add_argument(
        "--centre-client-ca",
        type=Path,
        help="terminal role: CA of the terminal's client certificate (default --ca)",
    )
    _add_centre_role_options(run)
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=cmd_run)

    reqs = sub.add_parser("requirements", help="list requirements and the checks covering them")
    reqs.add_argument("--role", choices=ROLES, action="append")
    reqs.set_defaults(func=cmd_requirements)


def cmd_requirements(args: argparse.Namespace) -> int:
    for role in args.role or ROLES:
        checks = load_checks(role)
        print(coverage_text(role, checks_by_requirement(checks)))
    return 0


# RunOptions.extra keys of the centre role (see conformance/checks/centre/setup.py).
CENTRE_ROLE_OPTIONS = (
    "fake_bind", "fake_advertise", "fake_cert", "fake_key", "fake_client_ca", "fake_tls_name",
    "municipality_cert", "municipality_key", "terminal_b_cert", "terminal_b_key",
    "jpki_ca_cert", "jpki_ca_key", "relay_wait",
)


def _options(args: argparse.Namespace, seed: int) -> RunOptions:
    return RunOptions(
        role=args.role,
        target=args.target,
        pki=args.pki,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        fixture_cert=args.fixture_cert,
        fixture_key=args.fixture_key,
        wrong_role_cert=args.wrong_role_cert,
        wrong_role_key=args.wrong_role_key,
        tls_server_name=args.tls_server_name,
        municipalities=tuple(args.municipality),
        trust_list=args.trust_list,
        docsign_ca=args.docsign_ca,
        seed=seed,
        examples=args.examples,
        only=tuple(args.only),
        clock=dt.datetime.fromisoformat(args.clock) if args.clock else None,
        call_timeout=args.call_timeout,
        extra={
            "sweep_wait": args.sweep_wait,
            "shrink_budget": args.shrink_budget,
            "centre_listen": args.centre_listen,
            "centre_cert": args.centre_cert,
            "centre_key": args.centre_key,
            "centre_client_ca": args.centre_client_ca,
            **{k: getattr(args, k) for k in CENTRE_ROLE_OPTIONS},
        },
    )


def _without_seed(command: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for item in command:
        if skip:
            skip = False
        elif item == "--seed":
            skip = True
        elif not item.startswith("--seed="):
            out.append(item)
    return out


def _print_verdict(verdict: Verdict, expected: dict[str, str]) -> None:
    for name in verdict.expected_failures:
        print(f"expected failure: {name}  # {expected.get(name, '')}")
    for name in verdict.should_failures:
        print(f"SHOULD failing (not fatal): {name}")
    for name in verdict.unexpected_failures:
        print(f"UNEXPECTED FAILURE: {name}")
    for name in verdict.unexpected_passes:
        print(f"UNEXPECTED PASS (remove it from the expected-failures file): {name}")
    for name in verdict.unknown_entries:
        print(f"EXPECTED-FAILURES ENTRY NAMES NO CHECK: {name}")


def _update_command(args: argparse.Namespace, seed: int) -> str:
    """The command line that rewrites the expected-failures file from a run like this one."""
    argv = sys.argv[1:]
    if argv[:1] == ["conformance"]:
        argv = argv[1:]
    if argv[:1] != ["run"]:
        argv = ["run", "..."]
    command = _without_seed(["konbini", "conformance", *argv])
    command = [c for c in command if c != "--update-expected-failures"]
    if "--expected-failures" not in command:
        file = args.expected_failures or Path("expected-failures.txt")
        command += ["--expected-failures", str(file)]
    return shlex.join([*command, "--seed", str(seed), "--update-expected-failures"])


def cmd_run(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    opts = _options(args, seed)
    all_checks = load_checks(args.role)
    try:
        checks = select(all_checks, opts.only)
        ctx, wire = build_context(opts)
    except (SessionError, ValueError, OSError) as error:
        print(f"konbini conformance: {error}", file=sys.stderr)
        return 2
    expected = (
        load_expected(args.expected_failures)
        if args.expected_failures and args.expected_failures.exists()
        else {}
    )
    subscribers: list[Subscriber] = [ConsoleReporter(sys.stdout, verbose=args.verbose)]
    if args.report_junit:
        subscribers.append(JUnitReporter(args.report_junit))
    if args.report_json:
        subscribers.append(JsonReporter(args.report_json, checks_by_requirement(all_checks)))
    replay = ReplayWriter(args.replay_dir, wire.config) if args.replay_dir else None
    if replay:
        subscribers.append(replay)
    try:
        results = run_checks(checks, ctx, subscribers)
    finally:
        wire.close()
        close = getattr(ctx, "close", None)  # a role's fakes (the terminal role's centre)
        if callable(close):
            close()
    print(coverage_text(args.role, checks_by_requirement(all_checks)).splitlines()[-1])
    if replay and replay.written:
        print(f"replay scripts: {len(replay.written)} in {args.replay_dir}")
    verdict = judge_run(results, expected, [c.name for c in all_checks])
    if args.update_expected_failures and args.expected_failures:
        args.expected_failures.write_text(updated_file_text(results, expected), encoding="utf-8")
        print(f"wrote {args.expected_failures}")
        return 0
    _print_verdict(verdict, expected)
    if not verdict.ok:
        if args.expected_failures or verdict.unexpected_failures:
            print(
                "to record these results as the expected failures, run:\n  "
                + _update_command(args, seed)
            )
        print("RESULT: FAIL")
        return 1
    print("RESULT: PASS")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m conformance.cli run ...` (the same as `konbini conformance ...`)."""
    parser = argparse.ArgumentParser(prog="konbini")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers, "conformance", "run the conformance suite")
    args = parser.parse_args(["conformance", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
