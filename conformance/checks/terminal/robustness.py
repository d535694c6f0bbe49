"""The driver under bad input: generated junk calls get catalogued errors in the error model and
the kiosk keeps answering; malformed municipality codes on Choose are FIELD_INVALID and reach
no centre; a 64 MiB request is RESOURCE_EXHAUSTED; an identity claimed in request metadata is
never believed."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import strategies as st

from conformance.checks.terminal.context import DRIVER, RESIDENCE, S, TerminalContext, describe
from conformance.failures import CheckFailed
from conformance.fakes.centre import KOFU
from conformance.hypo import run_property
from conformance.probes import (
    OVERSIZED_BYTES,
    claimed_identity_answer,
    judge_error,
    judge_oversized,
    oversized_answer,
)
from conformance.registry import check
from conformance.target import Answer, attempt, short_text
from konbini.common.v1 import types_pb2

K = types_pb2
BAD_CODES = ("19201", "1920155", "192016", "19201a", "１９２０１５", " 192015")
CRASHED = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE,
           grpc.StatusCode.DEADLINE_EXCEEDED)
SHRINK_BUDGET = 10.0
CLAIM_CONFORMANCE = "urn:konbini:conformance:suite"
CLAIM_CENTRE = "urn:konbini:centre:centre"

junk_text = st.text(st.characters(codec="utf-8"), max_size=40)
request_ids = st.one_of(junk_text, st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
options = st.sampled_from([
    K.CertificateOptions(),
    K.CertificateOptions(income_tax=K.IncomeTaxOptions(fiscal_year=-1)),
    K.CertificateOptions(residence_record=K.ResidenceRecordOptions(
        scope=K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, member_refs=["x"] * 30)),
])
junk_calls = st.one_of(
    st.builds(lambda r, c, k, n, o: ("Choose", S.ChooseRequest(
        request_id=r, municipality_code=K.MunicipalityCode(value=c), kind=k, copies=n,
        options=o)), request_ids, st.one_of(junk_text, st.just(KOFU)), st.integers(-5, 40),
        st.integers(0, 2**32 - 1), options),
    st.builds(lambda r, p: ("EnterPin", S.EnterPinRequest(request_id=r, pin=p)),
              request_ids, junk_text),
    st.builds(lambda r, y: ("Pay", S.PayRequest(request_id=r, amount=K.Money(yen=y))),
              request_ids, st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda r, d, p, t: ("InsertCard", S.InsertCardRequest(
        request_id=r, card=S.SoftCardSpec(auth_certificate_der=d, private_key_pkcs8_der=d,
                                          pin=p, pin_tries_left=t))),
              request_ids, st.binary(max_size=64), junk_text, st.integers(0, 2**32 - 1)),
    st.builds(lambda r: ("Cancel", S.CancelRequest(request_id=r)), request_ids),
)


def _healthy(ctx: TerminalContext, after: str) -> None:
    """The driver still answers health checks and GetScreen (INPUT-NO-CRASH)."""
    stub = health_pb2_grpc.HealthStub(ctx.wire.channel("caller"))
    try:
        status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        ctx.screen()
    except grpc.RpcError as error:
        raise CheckFailed("INPUT-NO-CRASH", after, str(error.code()),
                          "the terminal stopped answering") from None
    if status != health_pb2.HealthCheckResponse.SERVING:
        raise CheckFailed("INPUT-NO-CRASH", after, str(status), "the terminal is not SERVING")


@check("MUST.terminal.input.junk_never_crashes",
       covers=("INPUT-NO-CRASH", "ERR-MODEL", "ERR-NO-INTERNALS"))
def junk_never_crashes(ctx: TerminalContext) -> None:
    """Generated sequences of junk driver calls (Choose, EnterPin, Pay, InsertCard with garbage
    cards, Cancel) are answered or refused in the error model — one ErrorInfo, the domain, a
    catalogued reason with its code, no internals — never UNKNOWN/INTERNAL/UNAVAILABLE; the
    kiosk keeps answering afterwards."""

    def property_(calls: list[tuple[str, Message]]) -> None:
        try:
            for method, request in calls:
                answer = attempt(lambda m=method, r=request: getattr(ctx.driver, m)(r))
                sent = f"{method}({short_text(request)})"
                if answer.error is not None and answer.error.code in CRASHED:
                    raise CheckFailed("INPUT-NO-CRASH", sent, answer.describe(),
                                      "junk input was not refused with a catalogued reason")
                judge_error(sent, answer)
        finally:
            attempt(lambda: ctx.driver.Cancel(S.CancelRequest(request_id=ctx.rid("junk-end"),
                                                              remove_card=True)))

    run_property(property_, st.lists(junk_calls, min_size=1, max_size=4), seed=ctx.seed,
                 examples=max(10, ctx.examples), shrink_budget=SHRINK_BUDGET)
    _healthy(ctx, "after the junk driver calls")


def _field_named(answer: Answer, field: str) -> bool:
    return answer.error is not None and any(
        v.field == field or v.field.startswith(field + ".") for v in answer.error.violations)


@check("MUST.terminal.input.municipality_code", covers=("COMMON-MUNICODE", "INPUT-NO-STATE"))
def choose_municipality_code(ctx: TerminalContext) -> None:
    """At the menu, Choose with a municipality code that is not six digits with a valid check
    digit is INVALID_ARGUMENT / FIELD_INVALID naming municipality_code, asks the centre for
    nothing and leaves the menu; the same Choose with the valid code reaches payment."""
    ctx.login()
    for code in BAD_CODES:
        request = S.ChooseRequest(
            request_id=ctx.rid("badcode"), municipality_code=K.MunicipalityCode(value=code),
            kind=RESIDENCE, options=ctx.options(RESIDENCE), copies=1)
        answer = attempt(lambda r=request: ctx.driver.Choose(r))
        error = answer.error
        if error is None or error.code is not grpc.StatusCode.INVALID_ARGUMENT or \
                error.reason != "FIELD_INVALID" or not _field_named(answer, "municipality_code"):
            raise CheckFailed("COMMON-MUNICODE", short_text(request), answer.describe(),
                              f"municipality code {code!r}: expected FIELD_INVALID naming "
                              "municipality_code",
                              expected={"outcome": "error", "reason": "FIELD_INVALID"})
        asked = ctx.centre.received("RequestIssuance")
        screen = ctx.screen()
        if asked or screen.id != S.SCREEN_ID_MENU:
            raise CheckFailed("INPUT-NO-STATE", short_text(request),
                              f"{describe(screen)}; centre asked {len(asked)} time(s)",
                              "a refused Choose changed the kiosk or reached the centre")
    screen, _ = ctx.to_payment(RESIDENCE)  # the twin: the valid code is served
    ctx.cancel(remove_card=True)


@check("MUST.terminal.limits.message_size", covers=("LIMIT-SIZE",))
def message_size_bounded(ctx: TerminalContext) -> None:
    """An InsertCard of over 64 MiB (a huge request_id) is RESOURCE_EXHAUSTED, inserts nothing,
    and the driver keeps answering."""
    card = ctx.new_card()
    request = S.InsertCardRequest(request_id="x" * OVERSIZED_BYTES, card=card.spec)
    sent = f"InsertCard with a {OVERSIZED_BYTES}-byte request_id and a valid card"
    judge_oversized(sent, oversized_answer(ctx.wire, "caller", f"/{DRIVER}/InsertCard", request))
    screen = ctx.screen()
    if screen.id != S.SCREEN_ID_INSERT_CARD:
        raise CheckFailed("LIMIT-SIZE", sent, describe(screen),
                          "the refused oversized InsertCard inserted the card")


@check("MUST.terminal.authz.identity_from_certificate", covers=("AUTHZ-IDENTITY",))
def identity_from_certificate(ctx: TerminalContext) -> None:
    """GetScreen with metadata claiming the conformance identity is still refused for another
    role's certificate and for no certificate; with the conformance certificate and metadata
    claiming the centre it is answered as usual."""
    path = f"/{DRIVER}/GetScreen"
    refused: dict[str, tuple[Any, ...]] = {
        "wrong_role": (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED),
        "none": (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE),
    }
    for identity, codes in refused.items():
        if not ctx.wire.has_identity(identity):
            continue
        answer = claimed_identity_answer(ctx.wire, identity, path, S.GetScreenRequest(),
                                         CLAIM_CONFORMANCE)
        if answer.ok or answer.error is None or answer.error.code not in codes:
            raise CheckFailed("AUTHZ-IDENTITY",
                              f"GetScreen as {identity} with x-konbini-dev-identity: "
                              f"{CLAIM_CONFORMANCE}", answer.describe(),
                              "an identity claimed in request metadata was believed",
                              expected={"outcome": "error"})
    answer = claimed_identity_answer(ctx.wire, "caller", path, S.GetScreenRequest(), CLAIM_CENTRE)
    if not answer.ok:
        raise CheckFailed("AUTHZ-IDENTITY",
                          f"GetScreen with the conformance certificate and "
                          f"x-konbini-dev-identity: {CLAIM_CENTRE}", answer.describe(),
                          "metadata claiming the centre overrode the conformance certificate",
                          expected={"outcome": "ok"})
