"""Bad input: each required field missing, malformed codes and request ids, copies out of
range — INVALID_ARGUMENT, FIELD_INVALID, a violation naming the field, and nothing changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import strategies as st

from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.failures import CheckFailed
from conformance.fixtures import dataset_of, request_options
from conformance.hypo import run_property
from conformance.registry import check
from conformance.target import Answer, attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.contracts import reasons, required_fields
from konbini.issuing.v1 import issuing_pb2

K = types_pb2
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD
BAD_CODES = ("19201", "1920155", "192016", "19201a", "１９２０１５", " 192015")
BAD_REQUEST_IDS = ("has space", "x" * 65, "日本語", "semi;colon", "slash/")


def _violation_names(answer: Answer, field: str) -> bool:
    """True when one of the answer's field violations names ``field`` (its last component)."""
    if answer.error is None:
        return False
    leaf = field.rsplit(".", maxsplit=1)[-1]
    return any(
        v.field == field
        or v.field.endswith("." + leaf)
        or v.field == leaf
        or v.field.startswith(field + ".")
        or field.startswith(v.field + ".")
        for v in answer.error.violations
    )


def expect_field_invalid(request: Message, answer: Answer, field: str, requirement: str) -> None:
    expected = {"outcome": "error", "reason": "FIELD_INVALID"}
    if answer.error is None:
        raise CheckFailed(
            requirement,
            short_text(request),
            answer.describe(),
            f"{field} bad: expected INVALID_ARGUMENT, got an answer",
            expected=expected,
        )
    if (
        answer.error.code is not grpc.StatusCode.INVALID_ARGUMENT
        or answer.error.reason != "FIELD_INVALID"
    ):
        raise CheckFailed(
            requirement,
            short_text(request),
            answer.describe(),
            f"{field} bad: expected INVALID_ARGUMENT FIELD_INVALID",
            expected=expected,
        )
    if not _violation_names(answer, field):
        got = [v.field for v in answer.error.violations]
        raise CheckFailed(
            requirement,
            short_text(request),
            answer.describe(),
            f"{field} bad: no BadRequest field violation names it (got {got})",
            expected=expected,
        )


def _without(message: Message, path: list[str]) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    target = copy
    for name in path[:-1]:
        target = getattr(target, name)
    target.ClearField(path[-1])
    return copy


def required_paths(message: Message, prefix: str = "") -> Iterator[str]:
    """Dotted paths of the required fields, nested required fields included."""
    for field in required_fields(message.DESCRIPTOR):
        path = f"{prefix}{field.name}"
        yield path
        if field.message_type is not None and not field.is_repeated:
            yield from required_paths(getattr(message, field.name), path + ".")


def missing_variants(message: Message) -> Iterator[tuple[str, Message]]:
    """(field path, the message without it) for each required field, nested ones included."""
    for path in required_paths(message):
        yield path, _without(message, path.split("."))


def _setup(ctx: MunicipalityContext) -> scenarios.Person:
    data, people = scenarios.population(ctx, 1)
    ctx.load(dataset_of(data))
    return people[0]


def _requests(
    ctx: MunicipalityContext, person: scenarios.Person
) -> list[tuple[Message, Callable[[Message], Message]]]:
    prepare = ctx.prepare_request(person.serial, RESIDENCE, request_options(RESIDENCE))
    code = K.MunicipalityCode(value=ctx.code)
    commit = issuing_pb2.CommitIssuanceRequest(
        request_id=ctx.rid(), municipality_code=code, reservation_id="r-unknown"
    )
    cancel = issuing_pb2.CancelIssuanceRequest(
        request_id=ctx.rid(), municipality_code=code, reservation_id="r-unknown"
    )
    records = issuing_pb2.ListIssueRecordsRequest(
        municipality_code=code,
        day=K.Date(year=ctx.today.year, month=ctx.today.month, day=ctx.today.day),
    )
    catalogue = issuing_pb2.GetCatalogueRequest(
        municipality_code=code, card=issuing_pb2.CardReference(certificate_serial=person.serial)
    )
    s = ctx.issuing
    return [
        (prepare, s.PrepareIssuance),
        (commit, s.CommitIssuance),
        (cancel, s.CancelIssuance),
        (records, s.ListIssueRecords),
        (catalogue, s.GetCatalogue),
    ]


@check(
    "MUST.municipality.input.required_fields", covers=("INPUT-INVALID-ARGUMENT", "INPUT-NO-STATE")
)
def required_fields_missing(ctx: MunicipalityContext) -> None:
    """Each required field of each IssuingService request, left out, is FIELD_INVALID naming
    it, and no reservation or issue record appears."""
    person = _setup(ctx)
    for request, invoke in _requests(ctx, person):
        for path, bad in missing_variants(request):
            expect_field_invalid(
                bad, attempt(lambda b=bad, i=invoke: i(b)), path, "INPUT-INVALID-ARGUMENT"
            )
    prepare = _requests(ctx, person)[0][0]
    for path, bad in missing_variants(prepare):
        if path != "request_id":
            ctx.expect_nothing_reserved(bad.request_id, "INPUT-NO-STATE", short_text(bad))


@check("MUST.municipality.input.municipality_code", covers=("COMMON-MUNICODE", "INPUT-NO-STATE"))
def malformed_municipality_code(ctx: MunicipalityContext) -> None:
    """A municipality code that is not six digits with a valid check digit is FIELD_INVALID."""
    person = _setup(ctx)
    for code in BAD_CODES:
        request = ctx.prepare_request(person.serial, RESIDENCE, request_options(RESIDENCE))
        request.municipality_code.value = code
        expect_field_invalid(request, ctx.prepare(request), "municipality_code", "COMMON-MUNICODE")
        ctx.expect_nothing_reserved(request.request_id, "INPUT-NO-STATE", short_text(request))


@check("MUST.municipality.input.request_id", covers=("INPUT-INVALID-ARGUMENT",))
def malformed_request_id(ctx: MunicipalityContext) -> None:
    """A request_id outside 1-64 of [A-Za-z0-9_-] is FIELD_INVALID naming request_id."""
    person = _setup(ctx)
    for bad in BAD_REQUEST_IDS:
        request = ctx.prepare_request(
            person.serial, RESIDENCE, request_options(RESIDENCE), request_id=bad
        )
        expect_field_invalid(request, ctx.prepare(request), "request_id", "INPUT-INVALID-ARGUMENT")
    if ctx.issue_records():
        raise CheckFailed(
            "INPUT-NO-STATE",
            "requests with bad request ids",
            "issue records",
            "bad input left issue records",
        )


@check("MUST.municipality.input.copies", covers=("OPT-COPIES", "INPUT-NO-STATE"))
def copies_out_of_range(ctx: MunicipalityContext) -> None:
    """Copies 0 is FIELD_INVALID naming copies; more than max_copies is refused as bad input."""
    person = _setup(ctx)
    zero = ctx.prepare_request(person.serial, RESIDENCE, request_options(RESIDENCE), copies=0)
    expect_field_invalid(zero, ctx.prepare(zero), "copies", "OPT-COPIES")
    ctx.expect_nothing_reserved(zero.request_id, "INPUT-NO-STATE", short_text(zero))
    many = ctx.prepare_request(person.serial, RESIDENCE, request_options(RESIDENCE), copies=4)
    ctx.expect_refused(
        many,
        ctx.prepare(many),
        {"FIELD_INVALID", "TOO_MANY_COPIES"},
        "OPT-COPIES",
        "the tenant's max_copies is 3",
    )
    ctx.expect_nothing_reserved(many.request_id, "INPUT-NO-STATE", short_text(many))


junk_text = st.text(st.characters(codec="utf-8"), max_size=70)


@st.composite
def junk_prepare(draw: st.DrawFn) -> issuing_pb2.PrepareIssuanceRequest:
    return issuing_pb2.PrepareIssuanceRequest(
        request_id=draw(
            st.one_of(junk_text, st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
        ),
        municipality_code=K.MunicipalityCode(value=draw(st.one_of(junk_text, st.just("192015")))),
        card=issuing_pb2.CardReference(certificate_serial=draw(junk_text)),
        kind=draw(st.integers(-5, 40)),
        copies=draw(st.integers(0, 2**32 - 1)),
        options=draw(
            st.sampled_from(
                [
                    K.CertificateOptions(),
                    K.CertificateOptions(income_tax=K.IncomeTaxOptions(fiscal_year=-1)),
                    K.CertificateOptions(
                        residence_record=K.ResidenceRecordOptions(
                            scope=K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, member_refs=["x"] * 30
                        )
                    ),
                ]
            )
        ),
    )


@check("MUST.municipality.input.no_crash", covers=("INPUT-NO-CRASH", "ERR-MODEL"))
def junk_never_crashes(ctx: MunicipalityContext) -> None:
    """Generated junk requests get catalogued errors (never INTERNAL, UNKNOWN or a dropped
    connection) and the server keeps serving (health SERVING)."""
    _setup(ctx)
    catalogue = reasons()

    def property_(request: issuing_pb2.PrepareIssuanceRequest) -> None:
        answer = ctx.prepare(request)
        if answer.error is None:
            return
        e = answer.error
        if (
            e.reason not in catalogue
            or e.reason == "INTERNAL"
            or e.code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE)
        ):
            raise CheckFailed(
                "INPUT-NO-CRASH",
                short_text(request),
                answer.describe(),
                "junk input was not refused with a catalogued reason",
            )

    run_property(
        property_,
        junk_prepare(),
        seed=ctx.seed,
        examples=max(10, ctx.examples),
        shrink_budget=ctx.shrink_budget,
    )
    stub = health_pb2_grpc.HealthStub(ctx.wire.channel("caller"))
    try:
        status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    except grpc.RpcError as error:
        raise CheckFailed(
            "INPUT-NO-CRASH",
            "grpc.health.v1.Health/Check",
            str(error.code()),
            "the server stopped answering health checks after junk input",
        ) from None
    if status != health_pb2.HealthCheckResponse.SERVING:
        raise CheckFailed(
            "INPUT-NO-CRASH",
            "grpc.health.v1.Health/Check",
            str(status),
            "the server is no longer SERVING after junk input",
        )
