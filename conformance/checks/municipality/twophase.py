"""Two-phase issuance: prepare reserves with an expiry; commit records; cancel and expiry are
final; a committed issuance cannot be cancelled."""

from __future__ import annotations

import datetime as dt
import time

from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.failures import CheckFailed
from conformance.fixtures import dataset_of, request_options
from conformance.registry import check
from conformance.seal_meta import issue_numbers
from conformance.target import short_text
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2

K = types_pb2
RESIDENCE = 1


def _prepared(
    ctx: MunicipalityContext, requirement: str, copies: int = 1
) -> tuple[issuing_pb2.PrepareIssuanceRequest, issuing_pb2.PrepareIssuanceResponse]:
    data, people = scenarios.population(ctx, 1)
    ctx.load(dataset_of(data))
    request = ctx.prepare_request(
        people[0].serial, RESIDENCE, request_options(RESIDENCE), copies=copies
    )
    return request, ctx.expect_issued(request, ctx.prepare(request), requirement, "eligible adult")


@check("MUST.municipality.twophase.prepare_commit", covers=("ISSUE-TWO-PHASE", "FEE-CATALOGUE"))
def prepare_then_commit(ctx: MunicipalityContext) -> None:
    """Prepare holds a RESERVED reservation with a future expiry and the catalogue fee × copies;
    commit makes it COMMITTED with one issue number per copy, the documents' numbers, and one
    issue record."""
    request, prepared = _prepared(ctx, "ISSUE-TWO-PHASE", copies=2)
    sent = short_text(request)
    if prepared.fee.yen != 2 * 300:
        raise CheckFailed(
            "FEE-CATALOGUE",
            sent,
            f"fee {prepared.fee.yen}",
            "fee is not the catalogue fee 300 × 2 copies",
        )
    if prepared.expires_at.ToDatetime(tzinfo=dt.UTC) <= ctx.now:
        raise CheckFailed(
            "ISSUE-TWO-PHASE",
            sent,
            str(prepared.expires_at),
            "the reservation expires before the suite's clock",
        )
    state = ctx.reservation(reservation_id=prepared.reservation_id)
    if not state.ok or state.response.state != K.ISSUANCE_STATE_RESERVED:  # type: ignore[union-attr]
        raise CheckFailed(
            "ISSUE-TWO-PHASE",
            "GetReservation",
            state.describe(),
            "a prepared issuance is not RESERVED",
        )
    committed = ctx.commit(prepared.reservation_id)
    if not committed.ok or committed.response.state != K.ISSUANCE_STATE_COMMITTED:  # type: ignore[union-attr]
        raise CheckFailed(
            "ISSUE-TWO-PHASE",
            f"CommitIssuance({prepared.reservation_id})",
            committed.describe(),
            "commit of a fresh reservation did not COMMIT",
            expected={"outcome": "ok"},
        )
    numbers = list(committed.response.issue_numbers)  # type: ignore[union-attr]
    printed = issue_numbers(prepared.documents)
    if len(numbers) != 2 or sorted(numbers) != sorted(printed):
        raise CheckFailed(
            "ISSUE-TWO-PHASE",
            "CommitIssuance",
            f"issue numbers {numbers}",
            f"expected the documents' issue numbers {printed}",
        )
    records = [r for r in ctx.issue_records() if r.reservation_id == prepared.reservation_id]
    if len(records) != 1 or records[0].fee.yen != prepared.fee.yen:
        raise CheckFailed(
            "ISSUE-TWO-PHASE",
            "ListIssueRecords",
            str(records),
            "expected one issue record with the reservation's fee",
        )


@check("MUST.municipality.twophase.commit_after_cancel", covers=("ISSUE-CANCELLED-FINAL",))
def commit_after_cancel(ctx: MunicipalityContext) -> None:
    """A cancelled reservation is never committed: RESERVATION_CANCELLED, no issue record."""
    _, prepared = _prepared(ctx, "ISSUE-CANCELLED-FINAL")
    cancelled = ctx.cancel(prepared.reservation_id)
    if not cancelled.ok:
        raise CheckFailed(
            "ISSUE-CANCELLED-FINAL",
            "CancelIssuance",
            cancelled.describe(),
            "cancel of a fresh reservation failed",
        )
    answer = ctx.commit(prepared.reservation_id)
    ctx.expect_refused(
        f"CommitIssuance({prepared.reservation_id})",
        answer,
        {"RESERVATION_CANCELLED"},
        "ISSUE-CANCELLED-FINAL",
        "after cancel",
    )
    if ctx.issue_records():
        raise CheckFailed(
            "ISSUE-CANCELLED-FINAL",
            "CommitIssuance after cancel",
            "issue record",
            "a cancelled reservation left an issue record",
        )


@check("MUST.municipality.twophase.commit_after_expiry", covers=("ISSUE-EXPIRY",))
def commit_after_expiry(ctx: MunicipalityContext) -> None:
    """With the clock past expires_at, commit is RESERVATION_EXPIRED and no issue record."""
    _, prepared = _prepared(ctx, "ISSUE-EXPIRY")
    ctx.set_clock(prepared.expires_at.ToDatetime(tzinfo=dt.UTC) + dt.timedelta(seconds=1))
    answer = ctx.commit(prepared.reservation_id)
    ctx.expect_refused(
        f"CommitIssuance({prepared.reservation_id}) after expiry",
        answer,
        {"RESERVATION_EXPIRED"},
        "ISSUE-EXPIRY",
        "the clock is past expires_at",
    )
    if ctx.issue_records():
        raise CheckFailed(
            "ISSUE-EXPIRY",
            "CommitIssuance after expiry",
            "issue record",
            "an expired reservation left an issue record",
        )


@check("MUST.municipality.twophase.expired_is_ended", covers=("ISSUE-SWEEPER",))
def expired_reservation_ends(ctx: MunicipalityContext) -> None:
    """A reservation past its expiry is reported EXPIRED (or CANCELLED), never RESERVED."""
    _, prepared = _prepared(ctx, "ISSUE-SWEEPER")
    ctx.set_clock(prepared.expires_at.ToDatetime(tzinfo=dt.UTC) + dt.timedelta(minutes=5))
    deadline = time.monotonic() + ctx.sweep_wait
    while True:
        state = ctx.reservation(reservation_id=prepared.reservation_id)
        if state.ok and state.response.state in (
            K.ISSUANCE_STATE_EXPIRED,  # type: ignore[union-attr]
            K.ISSUANCE_STATE_CANCELLED,
        ):
            return
        if time.monotonic() > deadline:
            raise CheckFailed(
                "ISSUE-SWEEPER",
                f"GetReservation({prepared.reservation_id})",
                state.describe(),
                f"still not EXPIRED {ctx.sweep_wait:.0f} s after its expiry",
            )
        time.sleep(0.2)  # polling the target's sweeper, not waiting for our own server


@check("MUST.municipality.twophase.cancel_after_commit", covers=("ISSUE-COMMITTED-FINAL",))
def cancel_after_commit(ctx: MunicipalityContext) -> None:
    """A committed issuance cannot be cancelled: RESERVATION_COMMITTED, the record stays."""
    _, prepared = _prepared(ctx, "ISSUE-COMMITTED-FINAL")
    committed = ctx.commit(prepared.reservation_id)
    if not committed.ok:
        raise CheckFailed(
            "ISSUE-COMMITTED-FINAL",
            "CommitIssuance",
            committed.describe(),
            "commit of a fresh reservation failed",
            expected={"outcome": "ok"},
        )
    answer = ctx.cancel(prepared.reservation_id)
    ctx.expect_refused(
        f"CancelIssuance({prepared.reservation_id}) after commit",
        answer,
        {"RESERVATION_COMMITTED"},
        "ISSUE-COMMITTED-FINAL",
        "after commit",
    )
    if len(ctx.issue_records()) != 1:
        raise CheckFailed(
            "ISSUE-COMMITTED-FINAL",
            "CancelIssuance after commit",
            "issue records changed",
            "the issue record did not stay",
        )


@check("MUST.municipality.hours.standard", covers=("HOURS-STANDARD",))
def outside_standard_hours(ctx: MunicipalityContext) -> None:
    """At 05:00 Japan time (standard hours 06:30-23:00) a request is OUTSIDE_SERVICE_HOURS."""
    data, people = scenarios.population(ctx, 1)
    early = ctx.now - dt.timedelta(hours=5)  # the suite clock is 10:00 JST
    ctx.load(dataset_of(data), at=early)
    request = ctx.prepare_request(people[0].serial, RESIDENCE, request_options(RESIDENCE))
    ctx.expect_refused(
        request, ctx.prepare(request), {"OUTSIDE_SERVICE_HOURS"}, "HOURS-STANDARD", "05:00 JST"
    )
    ctx.expect_nothing_reserved(request.request_id, "REFUSE-NO-STATE", short_text(request))


@check("MUST.municipality.hours.year_end", covers=("HOURS-YEAR-END",))
def year_end_closed(ctx: MunicipalityContext) -> None:
    """On 30 December at 10:00 Japan time a request is SERVICE_CLOSED_DAY."""
    data, people = scenarios.population(ctx, 1)
    jst = dt.timezone(dt.timedelta(hours=9))
    closed = dt.datetime(ctx.today.year, 12, 30, 10, 0, tzinfo=jst).astimezone(dt.UTC)
    ctx.load(dataset_of(data), at=closed)
    request = ctx.prepare_request(people[0].serial, RESIDENCE, request_options(RESIDENCE))
    ctx.expect_refused(
        request, ctx.prepare(request), {"SERVICE_CLOSED_DAY"}, "HOURS-YEAR-END", "30 December"
    )
