"""``konbini verify FILE [FILE...]``: check a printed certificate offline.

Give the PDF as delivered (front, back, front, back, ...) or PNG scans as front/back pairs in
sheet order (``front1.png back1.png front2.png back2.png``, 150 dpi or more). The checks are
:mod:`konbini.verify`, the same the centre's VerificationService and the conformance suite
run. Trust comes from a signed trust list file (``--trust-list FILE``, the serialized
``konbini.common.v1.SignedTrustList`` that GetTrustList returns) checked against the
document-signing CA root (``--root PEM`` or the PKI directory's), or from a PKI directory
alone (``--pki DIR``: a trust list is signed from it on the spot, as the centre would).
Nothing is sent anywhere.

Exit status: 0 genuine, 1 rejected, 2 the command could not run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from konbini.common.v1 import trust_pb2
from konbini.pki import PkiDir
from konbini.pki.trustlist import to_proto
from konbini.pki.x509util import load_certificate
from konbini.verification.v1 import verification_pb2

LOCAL_TRUST_LIST_VALIDITY = dt.timedelta(hours=1)


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    """Add the ``verify`` command."""
    parser = subparsers.add_parser(name, help=help_text, description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="the PDF, or front/back PNG scans in sheet order")
    parser.add_argument("--trust-list", type=Path, help="a signed trust list (binary protobuf)")
    parser.add_argument("--root", type=Path, help="the document-signing CA certificate (PEM)")
    parser.add_argument("--pki", type=Path, help="a PKI directory (root and trust material)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def _trust(args: argparse.Namespace, now: dt.datetime) -> tuple[trust_pb2.SignedTrustList, list]:  # type: ignore[type-arg]
    pki = PkiDir(args.pki) if args.pki is not None else None
    root_path = args.root or (pki.docsign_ca.cert if pki is not None else None)
    if root_path is None:
        raise ValueError("give --pki DIR, or --trust-list FILE with --root PEM")
    roots = [load_certificate(root_path)]
    if args.trust_list is not None:
        return trust_pb2.SignedTrustList.FromString(args.trust_list.read_bytes()), roots
    if pki is None:
        raise ValueError("give --trust-list FILE or --pki DIR")
    signed = pki.signed_trust_list_at(now, sequence=0, next_update_in=LOCAL_TRUST_LIST_VALIDITY)
    return to_proto(signed), roots


def _print(response: verification_pb2.VerifyDocumentResponse) -> None:
    for f in response.findings:
        where = f"page {f.page}" if f.page else "document"
        print(f"{'PASS' if f.passed else 'FAIL'}  {f.check:<20} {where:<9} {f.detail}")
    if response.municipality_code.value:
        print(f"seal: municipality {response.municipality_code.value}, issue number "
              f"{response.issue_number}, issued {response.issued_at.ToJsonString()}")
    genuine = response.verdict == verification_pb2.VERDICT_GENUINE
    print("GENUINE: every check passed" if genuine else
          "REJECTED: do not rely on this certificate")


def run(args: argparse.Namespace) -> int:
    """The command."""
    from konbini.verify import verify_pdf, verify_scans

    now = dt.datetime.now(dt.UTC)
    try:
        signed, roots = _trust(args, now)
        files: list[Path] = args.files
        if len(files) == 1 and files[0].suffix.lower() == ".pdf":
            response = verify_pdf(files[0].read_bytes(), signed, roots, now)
        elif len(files) % 2 == 0 and all(f.suffix.lower() == ".png" for f in files):
            pairs = [(files[i].read_bytes(), files[i + 1].read_bytes())
                     for i in range(0, len(files), 2)]
            response = verify_scans(pairs, signed, roots, now)
        else:
            raise ValueError("give one PDF, or PNG scans as front/back pairs")
    except (ValueError, OSError) as exc:
        print(f"konbini verify: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(MessageToDict(response), ensure_ascii=False, indent=2))
    else:
        _print(response)
    return 0 if response.verdict == verification_pb2.VERDICT_GENUINE else 1
