"""Documents: image-only A4 PDFs at ≥ 300 dpi, a visible seal on every page that verifies
against the trust list, signed metadata, the subject digest, copies, 旧氏 and exact glyphs."""

from __future__ import annotations

from typing import Any

from conformance import fixtures as fx
from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.documents import (
    differs_beyond_noise,
    low_resolution,
    metadata_findings,
    pdf_structure_findings,
    read_seals,
)
from conformance.failures import CheckFailed, CheckSkipped
from conformance.registry import check
from conformance.seal_meta import metadata_of
from conformance.target import short_text
from konbini.seal import subject_digest

RESIDENCE = 1
SEAL = 3
TAX = 4
NO_TRUST = "no trust list: pass --trust-list FILE or --pki DIR to verify signatures"


def _sample(ctx: MunicipalityContext) -> list[tuple[str, Any, Any]]:
    """Documents of three kinds for one person (made once per run): [(label, request, doc)]."""
    if "sample" not in ctx.cache:
        data, people = scenarios.population(ctx, 1)
        ctx.load(fx.dataset_of(data))
        person = people[0]
        out = []
        for kind in (RESIDENCE, SEAL, TAX):
            opts = fx.request_options(kind, fiscal_year=fx.fiscal_years_for(ctx.today)[1])
            request = ctx.prepare_request(person.serial, kind, opts)
            response = ctx.expect_issued(
                request, ctx.prepare(request), "DOC-SEAL-QR", "eligible adult"
            )
            out += [(f"kind {kind}", request, d) for d in response.documents]
        ctx.cache["sample"] = (out, person)
    return ctx.cache["sample"][0]


@check("MUST.municipality.documents.image_only", covers=("GLYPH-NO-TEXT",))
def image_only(ctx: MunicipalityContext) -> None:
    """No /Font, no text operators, no annotations or form fields, on any page or form."""
    for label, request, document in _sample(ctx):
        text, _, _ = pdf_structure_findings(document.pdf)
        if text:
            raise CheckFailed(
                "GLYPH-NO-TEXT",
                short_text(request),
                "; ".join(text[:5]),
                f"the {label} document has a text layer",
            )


@check("MUST.municipality.documents.a4", covers=("DOC-A4",))
def a4_portrait(ctx: MunicipalityContext) -> None:
    """Every page is A4 portrait."""
    for label, request, document in _sample(ctx):
        _, sizes, _ = pdf_structure_findings(document.pdf)
        if sizes:
            raise CheckFailed("DOC-A4", short_text(request), "; ".join(sizes), f"{label}: not A4")


@check("MUST.municipality.documents.resolution", covers=("DOC-RESOLUTION",))
def resolution(ctx: MunicipalityContext) -> None:
    """Every raster image is drawn at 300 dpi or more."""
    for label, request, document in _sample(ctx):
        _, _, images = pdf_structure_findings(document.pdf)
        low = low_resolution(images)
        if low:
            raise CheckFailed(
                "DOC-RESOLUTION",
                short_text(request),
                "; ".join(low[:5]),
                f"{label}: raster content below 300 dpi",
            )


@check("MUST.municipality.documents.seal_qr", covers=("DOC-SEAL-QR",))
def seal_qr(ctx: MunicipalityContext) -> None:
    """Every page carries one visible seal that verifies against the trust list, with the
    page numbers, kind, municipality and issue number of its document."""
    if ctx.trust_list is None:
        raise CheckSkipped(NO_TRUST)
    for label, request, document in _sample(ctx):
        reading = read_seals(document.pdf, ctx.trust_list, ctx.verify_at)
        if reading.findings:
            raise CheckFailed(
                "DOC-SEAL-QR",
                short_text(request),
                "; ".join(reading.findings),
                f"{label}: a page's visible seal is missing or does not verify",
            )
        meta = metadata_of(document)
        for n, claims in enumerate(reading.claims, start=1):
            if (claims.municipality_code, claims.kind, claims.issue_number, claims.page_index) != (
                ctx.code,
                meta.kind,
                meta.issue_number,
                n,
            ):
                raise CheckFailed(
                    "DOC-SEAL-QR",
                    short_text(request),
                    str(claims),
                    f"{label}: the seal of page {n} does not match its document",
                )


@check("MUST.municipality.documents.metadata_signed", covers=("DOC-METADATA-SIGNED",))
def metadata_signed(ctx: MunicipalityContext) -> None:
    """Document.signature verifies over signed_metadata with the trust list, and
    front_pdf_sha256 and page_count match the PDF delivered."""
    for label, request, document in _sample(ctx):
        _, findings = metadata_findings(document, ctx.trust_list, ctx.verify_at)
        if findings:
            raise CheckFailed(
                "DOC-METADATA-SIGNED",
                short_text(request),
                "; ".join(findings),
                f"{label}: the signed metadata does not hold",
            )
    if ctx.trust_list is None:
        raise CheckSkipped(NO_TRUST + " (metadata and PDF hash were checked)")


@check("MUST.municipality.documents.subject_digest", covers=("DOC-SUBJECT-DIGEST",))
def subject_digest_matches(ctx: MunicipalityContext) -> None:
    """Metadata and seal subject digests are the SubjectDigest of the person asked for (a name
    with a variation sequence, so a normalised name would not match)."""
    data = scenarios.new_tenant(ctx)
    person = scenarios.add_person(ctx, data, 1, name=f"{fx.TSUJI_IVS}本 {fx.GIVEN_NAMES[0]}")
    ctx.load(fx.dataset_of(data))
    request = ctx.prepare_request(person.serial, RESIDENCE, fx.request_options(RESIDENCE))
    response = ctx.expect_issued(request, ctx.prepare(request), "DOC-SUBJECT-DIGEST", "adult")
    want = subject_digest(ctx.code, [(person.id, person.name)])
    for document in response.documents:
        got = [metadata_of(document).subject_digest]
        got += [c.subject_digest for c in read_seals(document.pdf, None, ctx.verify_at).claims]
        if any(g != want for g in got):
            raise CheckFailed(
                "DOC-SUBJECT-DIGEST",
                short_text(request),
                f"digests {[g.hex() for g in got]}",
                f"expected SubjectDigest {want.hex()} of {person.id}",
                expected={"outcome": "ok", "subject_digest": want.hex()},
            )


@check("MUST.municipality.documents.copies", covers=("OPT-COPIES",))
def copies_are_documents(ctx: MunicipalityContext) -> None:
    """Three copies are three signed documents, copy 1..3 of 3, each its own issue number."""
    data, people = scenarios.population(ctx, 1)
    ctx.load(fx.dataset_of(data))
    request = ctx.prepare_request(
        people[0].serial, RESIDENCE, fx.request_options(RESIDENCE), copies=3
    )
    response = ctx.expect_issued(request, ctx.prepare(request), "OPT-COPIES", "3 copies")
    metas = [metadata_of(d) for d in response.documents]
    if (
        len(metas) != 3
        or sorted(m.copy_index for m in metas) != [1, 2, 3]
        or len({m.issue_number for m in metas}) != 3
        or any(m.copy_count != 3 for m in metas)
    ):
        raise CheckFailed(
            "OPT-COPIES",
            short_text(request),
            str([(m.copy_index, m.copy_count, m.issue_number) for m in metas]),
            "copies are not separate documents with their own issue numbers",
        )


def _twin_documents(
    ctx: MunicipalityContext, flagged_fields: dict[str, Any], plain_fields: dict[str, Any]
) -> tuple[bytes, bytes, bytes]:
    """(plain, plain again, flagged) front PDFs of two residents alike but for some fields."""
    data = scenarios.new_tenant(ctx)
    plain = scenarios.add_person(ctx, data, 1, **plain_fields)
    flagged = scenarios.add_person(ctx, data, 2, **flagged_fields)
    # Same birth date, household kind and address: only the fields under test differ.
    flagged.resident.birth_date.CopyFrom(plain.resident.birth_date)
    ctx.load(fx.dataset_of(data))
    pdfs = []
    for person in (plain, plain, flagged):
        request = ctx.prepare_request(person.serial, RESIDENCE, fx.request_options(RESIDENCE))
        pdfs.append(
            ctx.expect_issued(request, ctx.prepare(request), "DOC-FORMER-NAME", "eligible adult")
            .documents[0]
            .pdf
        )
    return pdfs[0], pdfs[1], pdfs[2]


@check("MUST.municipality.documents.former_surname", covers=("DOC-FORMER-NAME",))
def former_surname_annotated(ctx: MunicipalityContext) -> None:
    """A resident with a registered 旧氏 gets a front that differs from a twin without one
    beyond issuance noise (the annotation is drawn; its words cannot be read from an image)."""
    name = f"佐藤 {fx.GIVEN_NAMES[1]}"
    a, b, c = _twin_documents(ctx, {"name": name, "former_surname": "髙橋"}, {"name": name})
    if not differs_beyond_noise(a, b, c):
        raise CheckFailed(
            "DOC-FORMER-NAME",
            "PrepareIssuance for twins with and without 旧氏",
            "identical fronts (beyond issue number, time and QR)",
            "the 旧氏 annotation is missing",
        )


@check("MUST.municipality.documents.glyph_variation", covers=("GLYPH-EXACT",))
def glyph_variation_drawn(ctx: MunicipalityContext) -> None:
    """A name with 葛+U+E0102 (mj022335) is drawn differently from the same name with plain 葛
    (mj022336): the variation sequence is not dropped."""
    given = fx.GIVEN_NAMES[2]
    a, b, c = _twin_documents(ctx, {"name": f"{fx.KATSU_IVS}西 {given}"}, {"name": f"葛西 {given}"})
    if not differs_beyond_noise(a, b, c):
        raise CheckFailed(
            "GLYPH-EXACT",
            "PrepareIssuance for 葛西 and 葛\\U000E0102西",
            "identical fronts",
            "the variation sequence was drawn as the base glyph",
        )
