"""Replay scripts: for each failing check, a small standalone Python program (grpc + the
konbini stubs only) that makes the same calls over gRPC and says whether the failure
reproduces (exit 1), does not (exit 0), or needs a human to judge the printed answers (exit 2).

Concurrency is not replayed: calls run one after another in their recorded order.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from conformance.events import CheckFinished, CheckResult, Event, Outcome
from conformance.target import Call, TargetConfig, method_types

_TEMPLATE = '''#!/usr/bin/env python3
"""Replay of conformance check {name} ({requirement}).

{detail}

Run: python {filename} [--target HOST:PORT] [--ca FILE] [--identity NAME=CERT,KEY ...]
Exit status: 1 the failure reproduces, 0 it does not, 2 judge the printed answers yourself.
"""

import argparse
import base64
import importlib
import sys

import grpc
from google.rpc import error_details_pb2, status_pb2

TARGET = {target!r}
TLS_SERVER_NAME = {tls_name!r}
CA = {ca!r}
IDENTITIES = {identities!r}  # name -> [cert file, key file]; empty: no client certificate
EXPECTED = {expected!r}  # what the last judged call should have answered
CALLS = {calls}


def message_class(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def reason_of(error):
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info.reason
    return None


def channel_for(name, args, cache={{}}):
    if name not in cache:
        cert, key = args.identities.get(name, ["", ""])
        creds = grpc.ssl_channel_credentials(
            root_certificates=open(args.ca, "rb").read(),
            private_key=open(key, "rb").read() if key else None,
            certificate_chain=open(cert, "rb").read() if cert else None,
        )
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        if args.tls_server_name:
            options.append(("grpc.ssl_target_name_override", args.tls_server_name))
        cache[name] = grpc.secure_channel(args.target, creds, options=options)
    return cache[name]


def subject_digests(response):
    meta_cls = message_class("konbini.common.v1.types_pb2.DocumentMetadata")
    return [meta_cls.FromString(d.signed_metadata).subject_digest.hex()
            for d in getattr(response, "documents", [])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--target", default=TARGET)
    parser.add_argument("--ca", default=CA)
    parser.add_argument("--tls-server-name", default=TLS_SERVER_NAME)
    parser.add_argument("--identity", action="append", default=[], metavar="NAME=CERT,KEY")
    args = parser.parse_args()
    args.identities = dict(IDENTITIES)
    for item in args.identity:
        name, _, files = item.partition("=")
        args.identities[name] = files.split(",", 1) if files else ["", ""]
    results = []
    for index, (identity, path, request_type, response_type, payload, timeout) in enumerate(CALLS):
        request = message_class(request_type).FromString(base64.b64decode(payload))
        call = channel_for(identity, args).unary_unary(
            path, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message_class(response_type).FromString)
        try:
            response = call(request, timeout=timeout)
            results.append(("ok", response))
            print(f"[{{index}}] {{path}} as {{identity}}: OK", subject_digests(response) or "")
        except grpc.RpcError as error:
            results.append(("error", error))
            print(f"[{{index}}] {{path}} as {{identity}}:", error.code().name, reason_of(error))
    if not EXPECTED:
        print("no machine-checkable expectation: judge the answers above")
        return 2
    index = int(EXPECTED.get("call", len(results) - 1))
    kind, value = results[index]
    if EXPECTED["outcome"] == "error":
        got = reason_of(value) if kind == "error" else "a response"
        allowed = EXPECTED.get("reason", "").split("|")
        same = kind == "error" and (allowed == [""] or got in allowed)
        print(f"call {{index}}: expected error {{EXPECTED.get('reason')}}, got {{got}}")
    else:
        same = kind == "ok"
        if same and EXPECTED.get("subject_digest"):
            got_digests = subject_digests(value)
            same = all(d == EXPECTED["subject_digest"] for d in got_digests)
            print(f"call {{index}}: expected subject digest", EXPECTED["subject_digest"],
                  "got", got_digests)
        elif not same:
            print(f"call {{index}}: expected a response, got", value.code().name,
                  reason_of(value))
    print("NOT REPRODUCED" if same else "REPRODUCED")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
'''


def _call_tuple(call: Call) -> tuple[Any, ...]:
    req, resp = method_types(call.path)
    return (
        call.identity,
        call.path,
        f"{req.__module__}.{req.__qualname__}",
        f"{resp.__module__}.{resp.__qualname__}",
        base64.b64encode(call.request).decode(),
        call.timeout,
    )


def replay_script(result: CheckResult, config: TargetConfig, filename: str) -> str:
    """The replay program for one failing result."""
    ce = result.counterexample
    calls = [_call_tuple(c) for c in result.calls if isinstance(c, Call)]
    identities = {
        name: [ident.cert_path, ident.key_path] for name, ident in config.identities.items()
    }
    return _TEMPLATE.format(
        name=result.name,
        requirement=ce.requirement if ce else ", ".join(result.requirements),
        detail=(ce.detail if ce else result.message).replace('"""', "'''"),
        filename=filename,
        target=config.address,
        tls_name=config.tls_server_name,
        ca=config.ca_path,
        identities=identities,
        expected=dict(ce.expected) if ce else {},
        calls=json.dumps(calls, indent=1),
    )


def script_name(check_name: str) -> str:
    return "replay_" + re.sub(r"[^A-Za-z0-9_]", "_", check_name) + ".py"


class ReplayWriter:
    """Writes one replay script per failing (or erroring) check into ``folder``."""

    def __init__(self, folder: Path, config: TargetConfig) -> None:
        self.folder = folder
        self.config = config
        self.written: list[Path] = []

    def __call__(self, event: Event) -> None:
        if not isinstance(event, CheckFinished):
            return
        result = event.result
        if result.outcome not in (Outcome.FAIL, Outcome.ERROR) or not result.calls:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / script_name(result.name)
        path.write_text(replay_script(result, self.config, path.name), encoding="utf-8")
        path.chmod(0o755)
        self.written.append(path)
