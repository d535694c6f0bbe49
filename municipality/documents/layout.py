"""The pure step: a DocumentRequest becomes a CertificateLayout (no pixels, no keys).

:func:`layout_for` checks that the records of the request name the same people (the seal and tax
records belong to the holder, the members to the register) and builds the kind's body, title,
certification sentence and frame. :func:`subjects_of` gives the (id, name) pairs of the subject
digest, in printed order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from konbini.clock import JST
from konbini.common.v1 import types_pb2
from municipality.documents.errors import ComposeError
from municipality.documents.family import address_history_body, register_body
from municipality.documents.jpformat import era_date, western_date
from municipality.documents.officialseal import generated_seal_png
from municipality.documents.personal import seal_body, tax_body
from municipality.documents.request import DocumentRequest
from municipality.documents.residence import residence_body
from municipality.render import Block, CertificateLayout
from municipality.render.glyphs import default_font

K = types_pb2


@dataclass(frozen=True)
class KindText:
    """The title and the closing certification sentence of a kind."""

    title: str
    certification: str


KIND_TEXT: dict[int, KindText] = {
    K.CERTIFICATE_KIND_RESIDENCE_RECORD: KindText(
        "住民票の写し", "この写しは、住民票の原本と相違ないことを証明する。"
    ),
    K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS: KindText(
        "住民票記載事項証明書", "上記の事項は、住民票に記載されていることを証明する。"
    ),
    K.CERTIFICATE_KIND_SEAL_REGISTRATION: KindText(
        "印鑑登録証明書", "この写しは、登録されている印影と相違ないことを証明する。"
    ),
    K.CERTIFICATE_KIND_INCOME_TAX: KindText(
        "所得・課税証明書", "上記のとおり相違ないことを証明する。"
    ),
    K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL: KindText(
        "戸籍全部事項証明書", "これは、戸籍に記録されている事項の全部を証明した書面である。"
    ),
    K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL: KindText(
        "戸籍個人事項証明書",
        "これは、戸籍中の一部の者について記録されている事項を証明した書面である。",
    ),
    K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY: KindText(
        "戸籍の附票の写し", "この写しは、戸籍の附票の原本と相違ないことを証明する。"
    ),
}
RESIDENCE_KINDS = frozenset(
    {K.CERTIFICATE_KIND_RESIDENCE_RECORD, K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS}
)
HOLDER_KINDS = frozenset({K.CERTIFICATE_KIND_SEAL_REGISTRATION, K.CERTIFICATE_KIND_INCOME_TAX})
REGISTER_KINDS = frozenset(
    {
        K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL,
        K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL,
        K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY,
    }
)


def subjects_of(request: DocumentRequest) -> list[tuple[str, str]]:
    """The people the document is about, in printed order: the residents for residence kinds,
    the holder for seal and tax, the printed register members for family-register kinds."""
    if request.kind in RESIDENCE_KINDS:
        return [(r.id, r.name) for r in request.residents]
    if request.kind in HOLDER_KINDS:
        return [(request.residents[0].id, request.residents[0].name)] if request.residents else []
    if request.kind in REGISTER_KINDS:
        return [(m.id, m.name) for m in request.register_members]
    raise ComposeError(f"unknown certificate kind {request.kind}")


def _body(request: DocumentRequest, western: bool) -> list[Block]:
    kind = request.kind
    if kind in RESIDENCE_KINDS:
        if not request.residents:
            raise ComposeError("a residence record prints at least one resident")
        opts = request.options.residence_record  # unset: every optional item off
        return residence_body(request.residents, opts, western=western)
    if kind in HOLDER_KINDS:
        if len(request.residents) != 1:
            raise ComposeError("seal and tax certificates print exactly one resident")
        holder = request.residents[0]
        if kind == K.CERTIFICATE_KIND_SEAL_REGISTRATION:
            if request.seal is None or request.seal.resident_id != holder.id:
                raise ComposeError("the seal registration is missing or not the holder's")
            return seal_body(holder, request.seal, western=western)
        tax = request.tax
        if tax is None or tax.resident_id != holder.id:
            raise ComposeError("the tax record is missing or not the holder's")
        asked = request.options.income_tax.fiscal_year
        if asked and asked != tax.fiscal_year:
            raise ComposeError("the tax record is not of the fiscal year asked for")
        return tax_body(holder, tax, western=western)
    if kind in REGISTER_KINDS:
        register = request.family_register
        if register is None or not request.register_members:
            raise ComposeError("a family-register certificate needs the register and members")
        known = {m.id for m in register.members}
        if any(m.id not in known for m in request.register_members):
            raise ComposeError("a printed member is not in the register")
        former = {r.id: r.former_surname for r in request.residents if r.former_surname}
        if kind == K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY:
            return address_history_body(
                register, request.register_members, former, western=western
            )
        return register_body(register, request.register_members, former, western=western)
    raise ComposeError(f"unknown certificate kind {kind}")


def issued_on(request: DocumentRequest, *, western: bool = False) -> str:
    """The date of issue as printed (Japan time)."""
    day = request.issued_at.astimezone(JST).date()
    return f"{western_date(day) if western else era_date(day)}"


def official_seal(request: DocumentRequest) -> bytes:
    """The tenant's 公印, or a generated one drawn with the certificate font."""
    if request.tenant.official_seal_png:
        return request.tenant.official_seal_png
    return generated_seal_png(request.tenant.name, default_font().choice.path)


def layout_for(
    request: DocumentRequest,
    copy_index: int = 0,
    *,
    qr_for_page: Callable[[int, int], str] | None = None,
    western_dates: bool = False,
) -> CertificateLayout:
    """The layout of copy ``copy_index`` (0-based; only the issue number differs per copy)."""
    if request.issued_at.tzinfo is None:
        raise ComposeError("issued_at must be timezone-aware")
    if not 0 <= copy_index < len(request.issue_numbers):
        raise ComposeError("no issue number for that copy")
    text = KIND_TEXT.get(request.kind)
    if text is None:
        raise ComposeError(f"unknown certificate kind {request.kind}")
    tenant = request.tenant
    return CertificateLayout(
        title=text.title,
        municipality_name=tenant.name,
        issuer_line=tenant.issuer_line or f"{tenant.name}長",
        issue_number=request.issue_numbers[copy_index],
        issued_on=issued_on(request, western=western_dates),
        body=_body(request, western_dates),
        certification=text.certification,
        municipal_seal=official_seal(request),
        qr_for_page=qr_for_page,
    )
