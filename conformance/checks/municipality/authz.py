"""Authorization: no client certificate, another role's certificate, another tenant's data,
and test-mode services for the conformance role only."""

from __future__ import annotations

import grpc

from conformance import fixtures as fx
from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import FIXTURE, ISSUING, MunicipalityContext
from conformance.failures import CheckFailed, CheckSkipped
from conformance.registry import check
from conformance.target import attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2
from konbini.testing.v1 import testing_pb2

K = types_pb2
RESIDENCE = 1


def _loaded_person(ctx: MunicipalityContext) -> scenarios.Person:
    data, people = scenarios.population(ctx, 1)
    ctx.load(fx.dataset_of(data))
    return people[0]


@check("MUST.municipality.authz.no_certificate", covers=("AUTHZ-NO-CERT",))
def no_certificate(ctx: MunicipalityContext) -> None:
    """A call without a client certificate gets no answer: UNAUTHENTICATED (or the TLS
    handshake is refused, which the client sees as UNAVAILABLE)."""
    person = _loaded_person(ctx)
    if not ctx.wire.has_identity("none"):
        raise CheckSkipped("no CA configured for an anonymous TLS client")
    request = ctx.prepare_request(person.serial, RESIDENCE, fx.request_options(RESIDENCE))
    answer = attempt(lambda: ctx.wire.service("none", ISSUING).PrepareIssuance(request, timeout=10))
    if (
        answer.ok
        or answer.error is None
        or answer.error.code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)
    ):
        raise CheckFailed(
            "AUTHZ-NO-CERT",
            short_text(request),
            answer.describe(),
            "a call without a client certificate was not refused",
            expected={"outcome": "error"},
        )


@check("MUST.municipality.authz.wrong_role", covers=("AUTHZ-ROLE",))
def wrong_role(ctx: MunicipalityContext) -> None:
    """IssuingService refuses a terminal's and the conformance suite's certificates with
    PERMISSION_DENIED."""
    person = _loaded_person(ctx)
    request = ctx.prepare_request(person.serial, RESIDENCE, fx.request_options(RESIDENCE))
    identities = ["fixture"] + (["wrong_role"] if ctx.wire.has_identity("wrong_role") else [])
    for identity in identities:
        answer = attempt(lambda i=identity: ctx.wire.service(i, ISSUING).PrepareIssuance(request))
        if (
            answer.ok
            or answer.error is None
            or answer.error.code is not grpc.StatusCode.PERMISSION_DENIED
        ):
            raise CheckFailed(
                "AUTHZ-ROLE",
                f"{short_text(request)} as {identity}",
                answer.describe(),
                f"IssuingService accepted the {identity} certificate (only the centre may call it)",
                expected={"outcome": "error", "reason": "CALLER_NOT_ALLOWED"},
            )


@check("MUST.municipality.authz.test_mode_role", covers=("TEST-MODE-ONLY",))
def fixture_for_conformance_only(ctx: MunicipalityContext) -> None:
    """FixtureService refuses the centre's certificate with PERMISSION_DENIED."""
    answer = attempt(
        lambda: ctx.wire.service("caller", FIXTURE).Reset(
            testing_pb2.ResetRequest(request_id=ctx.rid("reset"))
        )
    )
    if (
        answer.ok
        or answer.error is None
        or answer.error.code is not grpc.StatusCode.PERMISSION_DENIED
    ):
        raise CheckFailed(
            "TEST-MODE-ONLY",
            "FixtureService.Reset as the centre",
            answer.describe(),
            "a test-mode service accepted a non-conformance certificate",
            expected={"outcome": "error", "reason": "CALLER_NOT_ALLOWED"},
        )


@check("MUST.municipality.authz.tenant_isolation", covers=("AUTHZ-TENANT",))
def tenant_isolation(ctx: MunicipalityContext) -> None:
    """A resident of tenant A asked for through tenant B's code is refused with no document;
    A's reservation is invisible and uncommittable through B; B's card holder lookup does not
    find A's card."""
    code_b = ctx.second_code()
    data_a, people_a = scenarios.population(ctx, 2, ctx.code)
    data_b, _ = scenarios.population(ctx, 1, code_b, start=10)
    ctx.load(fx.dataset_of(data_a, data_b))
    person = people_a[0]
    cross = ctx.prepare_request(
        person.serial, RESIDENCE, fx.request_options(RESIDENCE), code=code_b
    )
    answer = ctx.prepare(cross)
    if answer.ok:
        raise CheckFailed(
            "AUTHZ-TENANT",
            short_text(cross),
            answer.describe(),
            f"tenant {code_b} issued a document about a resident of {ctx.code}",
            expected={"outcome": "error"},
        )
    own = ctx.prepare_request(person.serial, RESIDENCE, fx.request_options(RESIDENCE))
    prepared = ctx.expect_issued(own, ctx.prepare(own), "AUTHZ-TENANT", "own tenant")
    seen = ctx.reservation(reservation_id=prepared.reservation_id, code=code_b)
    if seen.ok:
        raise CheckFailed(
            "AUTHZ-TENANT",
            f"GetReservation({prepared.reservation_id}) via {code_b}",
            seen.describe(),
            "another tenant's reservation is visible",
            expected={"outcome": "error"},
        )
    committed = ctx.commit(prepared.reservation_id, code=code_b)
    if committed.ok:
        raise CheckFailed(
            "AUTHZ-TENANT",
            f"CommitIssuance({prepared.reservation_id}) via {code_b}",
            committed.describe(),
            "another tenant's reservation was committed",
            expected={"outcome": "error"},
        )
    holder = attempt(
        lambda: ctx.issuing.GetCardHolder(
            issuing_pb2.GetCardHolderRequest(
                municipality_code=K.MunicipalityCode(value=code_b),
                card=issuing_pb2.CardReference(certificate_serial=person.serial),
            )
        )
    )
    if holder.ok and getattr(holder.response, "name", ""):
        raise CheckFailed(
            "AUTHZ-TENANT",
            f"GetCardHolder({person.serial}) via {code_b}",
            holder.describe(),
            "another tenant's card holder was returned",
            expected={"outcome": "error"},
        )
