"""Issue numbers and issue records: every page names its document's issue number and no number
is given twice in a municipality; the day's issue records are exactly the committed
reservations, each once, with their fees, copies, issue numbers and origin."""

from __future__ import annotations

from conformance import fixtures as fx
from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.documents import read_seals
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.seal_meta import issue_numbers, metadata_of
from conformance.target import short_text
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2

K = types_pb2
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD
SEAL = K.CERTIFICATE_KIND_SEAL_REGISTRATION


def _issued(
    ctx: MunicipalityContext, person: scenarios.Person, kind: int, copies: int, requirement: str
) -> tuple[issuing_pb2.PrepareIssuanceRequest, issuing_pb2.PrepareIssuanceResponse]:
    request = ctx.prepare_request(person.serial, kind, fx.request_options(kind), copies=copies)
    response = ctx.expect_issued(request, ctx.prepare(request), requirement, "eligible adult")
    if len(response.documents) != copies:
        raise CheckFailed(
            "OPT-COPIES",
            short_text(request),
            f"{len(response.documents)} documents",
            f"{copies} copies asked for, each its own document",
        )
    return request, response


@check("MUST.municipality.documents.issue_number", covers=("DOC-ISSUE-NUMBER", "OPT-COPIES"))
def issue_numbers_unique(ctx: MunicipalityContext) -> None:
    """Over prepares of 3, 2 and 1 copies (two people, one of them twice) every document has
    an issue number no other document of the municipality has, and the visible seal of every
    page names that same number."""
    data, people = scenarios.population(ctx, 2)
    ctx.load(fx.dataset_of(data))
    given: dict[str, str] = {}  # issue number -> which document got it
    for person, copies in ((people[0], 3), (people[1], 2), (people[0], 1)):
        request, response = _issued(ctx, person, RESIDENCE, copies, "DOC-ISSUE-NUMBER")
        for n, document in enumerate(response.documents, start=1):
            where = f"copy {n} of {request.request_id}"
            number = metadata_of(document).issue_number
            if not number:
                raise CheckFailed(
                    "DOC-ISSUE-NUMBER",
                    short_text(request),
                    "issue_number ''",
                    f"{where} has no issue number",
                )
            if number in given:
                raise CheckFailed(
                    "DOC-ISSUE-NUMBER",
                    short_text(request),
                    f"issue numbers {sorted(given)} then {number!r} for {where}",
                    f"issue number {number!r} of {where} was already given to {given[number]}",
                )
            given[number] = where
            reading = read_seals(document.pdf, None, ctx.verify_at)
            if reading.findings:
                raise CheckFailed(
                    "DOC-ISSUE-NUMBER",
                    short_text(request),
                    "; ".join(reading.findings),
                    f"a page of {where} carries no readable issue number",
                )
            for page, claims in enumerate(reading.claims, start=1):
                if claims.issue_number != number:
                    raise CheckFailed(
                        "DOC-ISSUE-NUMBER",
                        short_text(request),
                        f"page {page}: seal issue number {claims.issue_number!r}, "
                        f"metadata {number!r}",
                        f"page {page} of {where} carries another issue number",
                    )


def _record_findings(
    record: issuing_pb2.IssueRecord,
    request: issuing_pb2.PrepareIssuanceRequest,
    prepared: issuing_pb2.PrepareIssuanceResponse,
) -> list[str]:
    """How an issue record disagrees with the prepare it records."""
    findings = []
    if record.fee.yen != prepared.fee.yen:
        findings.append(f"fee {record.fee.yen}, reserved {prepared.fee.yen}")
    if record.copies != request.copies or record.kind != request.kind:
        findings.append(
            f"kind {record.kind} ×{record.copies}, asked {request.kind} ×{request.copies}"
        )
    if sorted(record.issue_numbers) != sorted(issue_numbers(prepared.documents)):
        findings.append(
            f"issue numbers {list(record.issue_numbers)}, "
            f"printed {issue_numbers(prepared.documents)}"
        )
    if (record.issuance_id, record.store_operator) != (
        request.origin.issuance_id,
        request.origin.store_operator,
    ):
        findings.append(
            f"origin {record.issuance_id}/{record.store_operator}, sent "
            f"{request.origin.issuance_id}/{request.origin.store_operator}"
        )
    return findings


@check("MUST.municipality.records.reconcile", covers=("DURABLE-RECONCILE", "ONCE-CHARGE"))
def issue_records_reconcile(ctx: MunicipalityContext) -> None:
    """Four prepares: one committed three times with one request id and once with another, one
    committed once, one cancelled, one left reserved. ListIssueRecords for the day lists
    exactly the two committed, each once, with its fee, kind, copies, issue numbers and
    origin."""
    data, people = scenarios.population(ctx, 3)
    ctx.load(fx.dataset_of(data))
    twice = _issued(ctx, people[0], RESIDENCE, 2, "DURABLE-RECONCILE")
    once = _issued(ctx, people[1], SEAL, 1, "DURABLE-RECONCILE")
    cancelled = _issued(ctx, people[2], RESIDENCE, 1, "DURABLE-RECONCILE")
    reserved = _issued(ctx, people[0], RESIDENCE, 1, "DURABLE-RECONCILE")
    commit_id = ctx.rid("commit")
    for _ in range(3):
        answer = ctx.commit(twice[1].reservation_id, request_id=commit_id)
        if not answer.ok:
            raise CheckFailed(
                "ONCE-CHARGE",
                f"CommitIssuance({twice[1].reservation_id}) request_id={commit_id}",
                answer.describe(),
                "a retried commit of a reservation was refused",
                expected={"outcome": "ok"},
            )
    ctx.commit(twice[1].reservation_id)  # another request id: may be answered either way
    answer = ctx.commit(once[1].reservation_id)
    if not answer.ok:
        raise CheckFailed(
            "DURABLE-RECONCILE",
            f"CommitIssuance({once[1].reservation_id})",
            answer.describe(),
            "commit of a fresh reservation failed",
            expected={"outcome": "ok"},
        )
    ctx.cancel(cancelled[1].reservation_id)
    records = ctx.issue_records()
    listed = [r.reservation_id for r in records]
    sent = "ListIssueRecords for the suite's day"
    committed = {twice[1].reservation_id: twice, once[1].reservation_id: once}
    for reservation_id, (request, prepared) in committed.items():
        mine = [r for r in records if r.reservation_id == reservation_id]
        if len(mine) != 1:
            raise CheckFailed(
                "ONCE-CHARGE" if len(mine) > 1 else "DURABLE-RECONCILE",
                sent,
                f"reservations listed {listed}",
                f"committed reservation {reservation_id} has {len(mine)} issue records",
            )
        findings = _record_findings(mine[0], request, prepared)
        if findings:
            raise CheckFailed(
                "DURABLE-RECONCILE",
                sent,
                short_text(mine[0]),
                f"the issue record of {reservation_id} disagrees: {'; '.join(findings)}",
            )
    extra = set(listed) - set(committed)
    if extra:
        uncommitted = {
            cancelled[1].reservation_id: "cancelled",
            reserved[1].reservation_id: "reserved",
        }
        raise CheckFailed(
            "DURABLE-RECONCILE",
            sent,
            f"reservations listed {listed}",
            "issue records of reservations never committed: "
            + ", ".join(f"{r} ({uncommitted.get(r, 'unknown')})" for r in sorted(extra)),
        )
