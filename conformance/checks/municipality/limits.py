"""Message size limits and identities from certificates only: a 64 MiB request is refused with
RESOURCE_EXHAUSTED and the server keeps serving; an identity claimed in request metadata
(the local-development header) neither admits another role nor changes who the caller is."""

from __future__ import annotations

import grpc

from conformance import fixtures as fx
from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import ISSUING, MunicipalityContext
from conformance.failures import CheckFailed
from conformance.probes import (
    OVERSIZED_BYTES,
    claimed_identity_answer,
    judge_oversized,
    oversized_answer,
)
from conformance.registry import check
from conformance.target import short_text
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2

K = types_pb2
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD
PREPARE = f"/{ISSUING}/PrepareIssuance"
CATALOGUE = f"/{ISSUING}/GetCatalogue"
CLAIM_CENTRE = "urn:konbini:centre:centre"
CLAIM_TERMINAL = "urn:konbini:terminal:seven:T0001"


@check("MUST.municipality.limits.message_size", covers=("LIMIT-SIZE", "INPUT-NO-CRASH"))
def message_size_bounded(ctx: MunicipalityContext) -> None:
    """A PrepareIssuance of over 64 MiB (a huge Origin.issuance_id) is RESOURCE_EXHAUSTED and
    reserves nothing; the same request at its normal size is then issued."""
    data, people = scenarios.population(ctx, 1)
    ctx.load(fx.dataset_of(data))
    request = ctx.prepare_request(people[0].serial, RESIDENCE, fx.request_options(RESIDENCE))
    huge = issuing_pb2.PrepareIssuanceRequest()
    huge.CopyFrom(request)
    huge.origin.issuance_id = "x" * OVERSIZED_BYTES
    sent = (
        f"PrepareIssuance with a {OVERSIZED_BYTES}-byte origin.issuance_id, "
        f"else {short_text(request)}"
    )
    judge_oversized(sent, oversized_answer(ctx.wire, "caller", PREPARE, huge))
    ctx.expect_nothing_reserved(request.request_id, "LIMIT-SIZE", sent)
    answer = ctx.prepare(request)
    if not answer.ok:
        raise CheckFailed(
            "INPUT-NO-CRASH",
            short_text(request),
            answer.describe(),
            "after an oversized request the server no longer issues a normal one",
            expected={"outcome": "ok"},
        )


@check("MUST.municipality.authz.identity_from_certificate", covers=("AUTHZ-IDENTITY",))
def identity_from_certificate(ctx: MunicipalityContext) -> None:
    """GetCatalogue with metadata claiming the centre's identity is still refused for another
    role's certificate and for no certificate; with the centre's certificate and metadata
    claiming a terminal's identity it is answered as for the centre."""
    data, people = scenarios.population(ctx, 1)
    ctx.load(fx.dataset_of(data))
    request = issuing_pb2.GetCatalogueRequest(
        municipality_code=K.MunicipalityCode(value=ctx.code),
        card=issuing_pb2.CardReference(certificate_serial=people[0].serial),
    )
    refused = {
        "wrong_role": (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED),
        "none": (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE),
    }
    for identity, codes in refused.items():
        if not ctx.wire.has_identity(identity):
            continue
        answer = claimed_identity_answer(ctx.wire, identity, CATALOGUE, request, CLAIM_CENTRE)
        if answer.ok or answer.error is None or answer.error.code not in codes:
            raise CheckFailed(
                "AUTHZ-IDENTITY",
                f"GetCatalogue as {identity} with x-konbini-dev-identity: {CLAIM_CENTRE}; "
                f"{short_text(request)}",
                answer.describe(),
                "an identity claimed in request metadata was believed",
                expected={"outcome": "error"},
            )
    answer = claimed_identity_answer(ctx.wire, "caller", CATALOGUE, request, CLAIM_TERMINAL)
    if not answer.ok:
        raise CheckFailed(
            "AUTHZ-IDENTITY",
            f"GetCatalogue with the centre's certificate and x-konbini-dev-identity: "
            f"{CLAIM_TERMINAL}; {short_text(request)}",
            answer.describe(),
            "metadata claiming a terminal overrode the centre's certificate",
            expected={"outcome": "ok"},
        )
