"""Generate the Python stubs (messages, gRPC stubs and their type stubs) from proto/.

`./dev gen` (or `konbini proto generate`) writes them into the `konbini` package, next to the
hand-written code; `konbini proto check` regenerates into a scratch folder and fails on any
difference, which is how a test keeps the committed stubs from drifting from the protos.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
HEADER = "# Generated from proto/ by konbini.devtools.genproto. Do not edit.\n"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over every .proto file into out_dir; return the files written."""
    from grpc_tools import protoc  # dev-only dependency

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    files = [str(p.relative_to(PROTO_DIR)) for p in proto_files()]
    bin_dir = Path(sys.executable).parent  # mypy-protobuf's plugins sit beside the interpreter
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    written = [p for p in out_dir.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)]
    # Package markers so the stubs import as ordinary packages.
    for package_dir in {p.parent for p in written}:
        for d in [package_dir, *package_dir.parents]:
            if d == out_dir or not d.is_relative_to(out_dir):
                break
            init = d / "__init__.py"
            if not init.exists():
                init.write_text("")
                written.append(init)
    return sorted(written)


def generated_tree(root: Path) -> dict[Path, Path]:
    """Generated files under root/konbini, keyed by their path relative to root."""
    return {
        p.relative_to(root): p
        for p in (root / "konbini").rglob("*")
        if p.name.endswith(GENERATED_SUFFIXES)
    }


def drift() -> list[str]:
    """Differences between the committed stubs and freshly generated ones."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh = generated_tree(fresh_root)
        committed = generated_tree(ROOT)
        problems = [f"missing: {p}" for p in sorted(fresh.keys() - committed.keys())]
        problems += [f"stale (no proto): {p}" for p in sorted(committed.keys() - fresh.keys())]
        problems += [
            f"differs: {p}"
            for p in sorted(fresh.keys() & committed.keys())
            if not filecmp.cmp(fresh[p], committed[p], shallow=False)
        ]
        return problems


def write_in_place() -> None:
    for _rel, path in generated_tree(ROOT).items():
        path.unlink()
    generate(ROOT)


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    sub = parser.add_subparsers(dest="proto_command", required=True)
    gen = sub.add_parser("generate", help="regenerate the Python stubs in place")
    gen.set_defaults(func=lambda _a: write_in_place())
    check = sub.add_parser("check", help="fail if the committed stubs differ from proto/")
    check.set_defaults(func=_check)


def _check(_args: argparse.Namespace) -> int:
    problems = drift()
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print("stubs are stale: run ./dev gen", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    write_in_place()
