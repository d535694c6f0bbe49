"""No cross-talk: concurrent PrepareIssuance calls for different residents, some timing out or
cancelled by the client while others run; every document names its own subject (signed
metadata and visible seal), and a retry of an abandoned call gets its own subject too."""

from __future__ import annotations

from typing import Any

import grpc

from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.documents import read_seals
from conformance.failures import CheckFailed
from conformance.fixtures import dataset_of, request_options
from conformance.registry import check
from conformance.seal_meta import metadata_of
from conformance.target import short_text
from konbini.seal import subject_digest

RESIDENCE = 1
PEOPLE = 12
SHORT_DEADLINE = 0.05  # seconds: most renderings take longer, so these time out mid-flight


@check("MUST.municipality.crosstalk.concurrent", covers=("XTALK-SUBJECT",))
def concurrent_subjects(ctx: MunicipalityContext) -> None:
    """12 residents asked for at once, every third call with a 50 ms deadline and every fourth
    cancelled by the client right away; then the abandoned ones retried with the same
    request_id. Each document's metadata and QR subject digest name the resident asked for."""
    data, people = scenarios.population(ctx, PEOPLE)
    ctx.load(dataset_of(data))
    requests = [
        ctx.prepare_request(p.serial, RESIDENCE, request_options(RESIDENCE)) for p in people
    ]
    futures = []
    for n, request in enumerate(requests):
        timeout = SHORT_DEADLINE if n % 3 == 1 else None
        futures.append(ctx.issuing.future("PrepareIssuance", request, timeout=timeout))
    for n, future in enumerate(futures):
        if n % 4 == 3:
            future.cancel()
    answers = []
    for future in futures:
        try:
            answers.append(future.result())
        except (grpc.RpcError, grpc.FutureCancelledError):
            answers.append(None)
    # Retry what timed out or was cancelled: the same request id must give the same subject.
    for n, request in enumerate(requests):
        if answers[n] is None:
            answers[n] = ctx.issuing.PrepareIssuance(request)
    _judge_subjects(ctx, people, requests, answers)


def _judge_subjects(
    ctx: MunicipalityContext, people: list[Any], requests: list[Any], answers: list[Any]
) -> None:
    """Every document's metadata (and, for a few, the QR) names the person asked for."""
    checked_qr = 0
    for person, request, response in zip(people, requests, answers, strict=True):
        want = subject_digest(ctx.code, [(person.id, person.name)])
        for document in response.documents:
            got = metadata_of(document).subject_digest
            if got != want:
                raise CheckFailed(
                    "XTALK-SUBJECT",
                    short_text(request),
                    f"metadata subject digest {got.hex()}",
                    f"a document for {person.id} names another subject (expected {want.hex()})",
                    expected={
                        "outcome": "ok",
                        "subject_digest": want.hex(),
                        "call": str(_last_call_index(ctx, request)),
                    },
                )
        if checked_qr < 4:  # decoding QR codes is slow; a few pages are enough for the seal
            checked_qr += 1
            reading = read_seals(response.documents[0].pdf, None, ctx.verify_at)
            for claims in reading.claims:
                if claims.subject_digest != want:
                    raise CheckFailed(
                        "XTALK-SUBJECT",
                        short_text(request),
                        f"QR subject digest {claims.subject_digest.hex()}",
                        f"the visible seal of {person.id}'s document names another subject",
                    )


def _last_call_index(ctx: MunicipalityContext, request: object) -> int:
    """Index of the last recorded call carrying ``request`` (for the replay script)."""
    payload = request.SerializeToString()  # type: ignore[attr-defined]
    index = 0
    for n, call in enumerate(ctx.wire.calls):
        if call.request == payload:
            index = n
    return index
