"""Bad input on KioskService: each required field missing and malformed request ids give
INVALID_ARGUMENT with FIELD_INVALID and a violation naming the field, in the error model, and
change nothing (the session is still usable afterwards)."""

from __future__ import annotations

from google.protobuf.message import Message

from conformance.checks.centre.context import CentreContext
from conformance.checks.centre.judge import (
    expect_field_invalid,
    judge_error_model,
    names_field,
)
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.target import attempt, short_text
from konbini.contracts import required_fields
from konbini.kiosk.v1 import kiosk_pb2

BAD_REQUEST_IDS = ("has space", "x" * 65, "日本語", "slash/")


def _without(message: Message, field: str) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    copy.ClearField(field)  # type: ignore[arg-type]
    return copy


@check("MUST.centre.input.invalid_argument",
       covers=("INPUT-INVALID-ARGUMENT", "INPUT-NO-STATE", "ERR-MODEL"))
def invalid_argument(ctx: CentreContext) -> None:
    """Authenticate, RequestIssuance and CompleteIssuance with each required field cleared, and
    CreateSession with malformed request ids, are FIELD_INVALID naming the field; every error
    follows the error model; the session then authenticates and issues as if nothing
    happened, and nothing reached the municipality before that."""
    card = ctx.bound_cards(1)[0]
    created = ctx.create_session()
    auth = ctx.auth_request(card, created.session_id, created.challenge)
    kiosk = ctx.kiosk()
    cases: list[tuple[str, Message, object]] = []
    for fd in required_fields(kiosk_pb2.AuthenticateRequest.DESCRIPTOR):
        cases.append((fd.name, _without(auth, fd.name), kiosk.Authenticate))
    for bad in BAD_REQUEST_IDS:
        cases.append(("request_id", kiosk_pb2.CreateSessionRequest(request_id=bad),
                      kiosk.CreateSession))
    for field, request, method in cases:
        answer = attempt(lambda m=method, r=request: m(r))  # type: ignore[misc, operator]
        judge_error_model(short_text(request), answer)
        expect_field_invalid(short_text(request), answer, field)
    session = ctx.open_session(card, "terminal", "INPUT-NO-STATE")
    issue = ctx.issuance_request(session)
    for fd in required_fields(kiosk_pb2.RequestIssuanceRequest.DESCRIPTOR):
        broken = _without(issue, fd.name)
        answer = ctx.request(session, broken)  # type: ignore[arg-type]
        judge_error_model(short_text(broken), answer)
        expect_field_invalid(short_text(broken), answer, fd.name)
    if ctx.fake.prepares_for(card.serial):
        raise CheckFailed("INPUT-NO-STATE", "RequestIssuance with fields missing",
                          "a PrepareIssuance reached the municipality",
                          "a request refused for bad input was forwarded")
    _, issued = ctx.issue(session, "INPUT-NO-STATE")
    done = kiosk_pb2.CompleteIssuanceRequest(
        request_id=ctx.rid("done"), issuance_id=issued.issuance_id,
        outcome=kiosk_pb2.PRINT_OUTCOME_PRINTED)
    for fd in required_fields(kiosk_pb2.CompleteIssuanceRequest.DESCRIPTOR):
        broken = _without(done, fd.name)
        answer = attempt(lambda b=broken: kiosk.CompleteIssuance(b))  # type: ignore[misc]
        judge_error_model(short_text(broken), answer)
        expect_field_invalid(short_text(broken), answer, fd.name)
    if any(c[0] == "commit" for c in ctx.fake.completions()):
        raise CheckFailed("INPUT-NO-STATE", "CompleteIssuance with fields missing",
                          str(ctx.fake.completions()), "a refused completion was committed")


BAD_CODES = ("19201", "1920155", "192016", "19201a")


@check("MUST.centre.input.municipality_code", covers=("COMMON-MUNICODE",))
def municipality_code(ctx: CentreContext) -> None:
    """An intent naming a municipality code of the wrong length, with a wrong check digit or
    a letter is FIELD_INVALID naming the code field, and reaches no municipality."""
    card = ctx.bound_cards(1)[0]
    session = ctx.open_session(card, "terminal", "COMMON-MUNICODE")
    for bad in BAD_CODES:
        request = ctx.issuance_request(session, code=bad)
        answer = ctx.request(session, request)
        ctx.expect_refused(request, answer, {"FIELD_INVALID"}, "COMMON-MUNICODE",
                           f"municipality code {bad!r}")
        if not names_field(answer, "municipality_code"):
            raise CheckFailed("COMMON-MUNICODE", short_text(request), answer.describe(),
                              "no field violation names the municipality code")
    if ctx.fake.prepares_for(card.serial):
        raise CheckFailed("COMMON-MUNICODE", "RequestIssuance with bad codes",
                          "a PrepareIssuance reached the municipality",
                          "a malformed code was routed")
