"""Exactly once: a retried PrepareIssuance gives the same reservation and the same bytes; a
commit repeated gives one issue record; a request id reused with other content is refused."""

from __future__ import annotations

from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.failures import CheckFailed
from conformance.fixtures import dataset_of, request_options
from conformance.registry import check
from conformance.target import short_text
from konbini.issuing.v1 import issuing_pb2

RESIDENCE = 1


def _two(ctx: MunicipalityContext) -> list[scenarios.Person]:
    data, people = scenarios.population(ctx, 2)
    ctx.load(dataset_of(data))
    return people


@check("MUST.municipality.idempotency.prepare_retry", covers=("ONCE-REQUEST-ID",))
def prepare_retry(ctx: MunicipalityContext) -> None:
    """The same PrepareIssuance sent twice returns the same reservation id and byte-identical
    documents, and leaves one reservation."""
    person = _two(ctx)[0]
    request = ctx.prepare_request(person.serial, RESIDENCE, request_options(RESIDENCE), copies=2)
    first = ctx.expect_issued(request, ctx.prepare(request), "ONCE-REQUEST-ID", "eligible adult")
    second = ctx.expect_issued(request, ctx.prepare(request), "ONCE-REQUEST-ID", "a retry")
    if second.reservation_id != first.reservation_id:
        raise CheckFailed(
            "ONCE-REQUEST-ID",
            short_text(request),
            f"reservation {first.reservation_id} then {second.reservation_id}",
            "a retry with the same request_id made a second reservation",
            expected={"outcome": "ok"},
        )
    same = len(first.documents) == len(second.documents) and all(
        a.pdf == b.pdf and a.signed_metadata == b.signed_metadata and a.signature == b.signature
        for a, b in zip(first.documents, second.documents, strict=True)
    )
    if not same or first.fee != second.fee or first.expires_at != second.expires_at:
        raise CheckFailed(
            "ONCE-REQUEST-ID",
            short_text(request),
            "documents, fee or expiry differ between the answers",
            "a retry did not return the first answer",
        )


@check("MUST.municipality.idempotency.commit_once", covers=("ONCE-REQUEST-ID",))
def commit_once(ctx: MunicipalityContext) -> None:
    """CommitIssuance repeated with the same request id, and again with a new one, leaves
    exactly one issue record for the reservation."""
    person = _two(ctx)[0]
    request = ctx.prepare_request(person.serial, RESIDENCE, request_options(RESIDENCE))
    prepared = ctx.expect_issued(request, ctx.prepare(request), "ONCE-REQUEST-ID", "eligible adult")
    commit_id = ctx.rid("commit")
    first = ctx.commit(prepared.reservation_id, request_id=commit_id)
    again = ctx.commit(prepared.reservation_id, request_id=commit_id)
    if not first.ok or not again.ok:
        raise CheckFailed(
            "ONCE-REQUEST-ID",
            f"CommitIssuance({prepared.reservation_id}) twice",
            f"{first.describe()} / {again.describe()}",
            "a commit retry failed",
            expected={"outcome": "ok"},
        )
    if first.response != again.response:
        raise CheckFailed(
            "ONCE-REQUEST-ID",
            "CommitIssuance twice with one request_id",
            f"{first.describe()} / {again.describe()}",
            "a retried commit gave a different answer",
        )
    ctx.commit(prepared.reservation_id)  # a second, distinct commit request for the same one
    records = [r for r in ctx.issue_records() if r.reservation_id == prepared.reservation_id]
    if len(records) != 1:
        raise CheckFailed(
            "ONCE-REQUEST-ID",
            "CommitIssuance three times (two request ids)",
            f"{len(records)} issue records",
            "one reservation, not one record",
        )


@check("MUST.municipality.idempotency.request_id_reused", covers=("ONCE-REUSE",))
def request_id_reused(ctx: MunicipalityContext) -> None:
    """A request id reused for another resident is REQUEST_ID_REUSED and changes nothing."""
    first_person, other = _two(ctx)
    request = ctx.prepare_request(first_person.serial, RESIDENCE, request_options(RESIDENCE))
    prepared = ctx.expect_issued(request, ctx.prepare(request), "ONCE-REUSE", "eligible adult")
    reused = ctx.prepare_request(
        other.serial, RESIDENCE, request_options(RESIDENCE), request_id=request.request_id
    )
    ctx.expect_refused(
        reused,
        ctx.prepare(reused),
        {"REQUEST_ID_REUSED"},
        "ONCE-REUSE",
        "same request_id, another card",
    )
    state = ctx.reservation(prepare_request_id=request.request_id)
    if (
        not state.ok
        or not isinstance(state.response, issuing_pb2.GetReservationResponse)
        or state.response.reservation_id != prepared.reservation_id
    ):
        raise CheckFailed(
            "ONCE-REUSE",
            f"GetReservation(prepare_request_id={request.request_id})",
            state.describe(),
            "the reused request id changed the first reservation",
        )
