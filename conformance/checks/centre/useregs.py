"""Use registrations (利用登録): the centre forwards the card-signed application to the register
municipality with the holder the residence municipality vouches for, shows the decision to the
terminal, and once it is approved lists that municipality's family-register certificates.

Both tenants are served by the fake: the main code is the residence, the other the register
municipality."""

from __future__ import annotations

from conformance.checks.centre.context import FAMILY_REGISTER, CentreContext, Session
from conformance.failures import CheckFailed
from conformance.fakes.documents import holder_of
from conformance.fakes.municipality import HOLDER_BIRTH_DATE
from conformance.registry import check
from conformance.target import Answer, attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2
from konbini.kiosk.v1 import kiosk_pb2

DOMICILE = "山梨県甲府市丸の内一丁目１８番地"  # typed at the kiosk, passed on verbatim
HEAD = "甲府　太郎"
PENDING = kiosk_pb2.USE_REGISTRATION_STATUS_PENDING
APPROVED = kiosk_pb2.USE_REGISTRATION_STATUS_APPROVED


def _register(ctx: CentreContext, session: Session) -> tuple[
    kiosk_pb2.RegisterFamilyRegisterUseRequest, Answer
]:
    request_id = ctx.rid("ureg")
    intent = kiosk_pb2.UseRegistrationIntent(
        session_id=session.session_id, challenge=session.challenge, request_id=request_id,
        register_municipality_code=types_pb2.MunicipalityCode(value=ctx.other_code),
        registered_domicile=DOMICILE, head_of_register=HEAD).SerializeToString()
    request = kiosk_pb2.RegisterFamilyRegisterUseRequest(
        request_id=request_id, session_id=session.session_id, intent=intent,
        signature=session.card.sign(intent))
    return request, attempt(lambda: ctx.kiosk(session.terminal).RegisterFamilyRegisterUse(request))


def _status(ctx: CentreContext, registration_id: str) -> Answer:
    request = kiosk_pb2.GetUseRegistrationRequest(registration_id=registration_id)
    return attempt(lambda: ctx.kiosk().GetUseRegistration(request))


def _forwarded(ctx: CentreContext, session: Session, requirement: str
               ) -> tuple[kiosk_pb2.RegisterFamilyRegisterUseRequest, str]:
    """Apply; the fake must have been asked for the holder (residence) and the link (register)
    with exactly what was typed. Returns (request, registration id)."""
    request, answer = _register(ctx, session)
    sent = short_text(request)
    if not answer.ok or not isinstance(answer.response,
                                       kiosk_pb2.RegisterFamilyRegisterUseResponse) \
            or not answer.response.registration_id:
        raise CheckFailed(requirement, sent, answer.describe(),
                          "a use registration was not accepted", expected={"outcome": "ok"})
    serial = session.card.serial
    holders = [h for h in ctx.fake.holder_calls if h.card.certificate_serial == serial]
    links = [k for k in ctx.fake.link_calls if k.card.certificate_serial == serial]
    if not holders or any(h.municipality_code.value != ctx.code for h in holders):
        raise CheckFailed("USEREG-FORWARD", sent,
                          f"GetCardHolder calls: {[short_text(h) for h in holders]}",
                          f"the residence municipality {ctx.code} was not asked for the holder")
    if len(links) != 1:
        raise CheckFailed("USEREG-FORWARD", sent, f"{len(links)} LinkFamilyRegister calls",
                          "the registration must be forwarded once to the register "
                          "municipality")
    link = links[0]
    name = holder_of(serial)[1]
    wrong = [what for what, ok in (
        ("municipality_code", link.municipality_code.value == ctx.other_code),
        ("registered_domicile", link.registered_domicile == DOMICILE),
        ("head_of_register", link.head_of_register == HEAD),
        ("residence_municipality_code", link.residence_municipality_code.value == ctx.code),
        ("holder_name", link.holder_name == name),
        ("holder_birth_date", link.holder_birth_date == HOLDER_BIRTH_DATE),
    ) if not ok]
    if wrong:
        raise CheckFailed("USEREG-FORWARD", sent, short_text(link),
                          f"the forwarded link differs from what was typed or vouched for: "
                          f"{', '.join(wrong)}")
    return request, answer.response.registration_id


def _catalogue(ctx: CentreContext, session: Session) -> list[types_pb2.CatalogueEntry]:
    request = kiosk_pb2.GetCatalogueRequest(session_id=session.session_id)
    answer = attempt(lambda: ctx.kiosk().GetCatalogue(request))
    if not answer.ok or not isinstance(answer.response, kiosk_pb2.GetCatalogueResponse):
        raise CheckFailed("USEREG-CATALOGUE", short_text(request), answer.describe(),
                          "GetCatalogue failed for an authenticated session",
                          expected={"outcome": "ok"})
    return list(answer.response.entries)


def _register_entries(ctx: CentreContext, entries: list[types_pb2.CatalogueEntry]) -> list[
    types_pb2.CatalogueEntry
]:
    return [e for e in entries if e.municipality_code.value == ctx.other_code]


@check("MUST.centre.userreg.forward", covers=("USEREG-FORWARD",))
def forward(ctx: CentreContext) -> None:
    """RegisterFamilyRegisterUse reaches the register municipality as one LinkFamilyRegister
    with the card, the typed 本籍 and 筆頭者 verbatim, and the holder the residence municipality
    gave (GetCardHolder); the register answers PENDING, which the terminal sees, then LINKED,
    which GetUseRegistration shows as APPROVED."""
    card = ctx.bound_cards(1)[0]
    session = ctx.open_session(card, "terminal", "USEREG-FORWARD")
    ctx.fake.link_decision = issuing_pb2.LINK_DECISION_PENDING
    request, registration_id = _forwarded(ctx, session, "USEREG-FORWARD")
    sent = short_text(request)
    answer = _status(ctx, registration_id)
    if not answer.ok or answer.response.status != PENDING:  # type: ignore[union-attr]
        raise CheckFailed("USEREG-FORWARD", f"GetUseRegistration({registration_id})",
                          answer.describe(), "the register municipality's PENDING is not shown",
                          expected={"outcome": "ok"})
    ctx.fake.link_decision = issuing_pb2.LINK_DECISION_LINKED
    last: list[Answer] = []

    def approved() -> bool:
        last[:] = [_status(ctx, registration_id)]
        return last[0].ok and last[0].response.status == APPROVED  # type: ignore[union-attr]

    if not ctx.wait_until(approved, ctx.relay_wait):
        raise CheckFailed("USEREG-FORWARD", sent, last[0].describe() if last else "",
                          f"the register municipality's LINKED was not shown as APPROVED in "
                          f"{ctx.relay_wait} s")


@check("MUST.centre.userreg.catalogue", covers=("USEREG-CATALOGUE",))
def catalogue(ctx: CentreContext) -> None:
    """Before any registration the catalogue lists nothing of the register municipality; after
    it LINKED the registration, its family-register certificate is listed, and a request for it
    reaches that municipality and is issued."""
    card = ctx.bound_cards(1)[0]
    session = ctx.open_session(card, "terminal", "USEREG-CATALOGUE")
    before = _register_entries(ctx, _catalogue(ctx, session))
    if before:
        raise CheckFailed("USEREG-CATALOGUE", "GetCatalogue before any use registration",
                          str([short_text(e) for e in before]),
                          "the register municipality is listed without a registration")
    ctx.fake.link_decision = issuing_pb2.LINK_DECISION_LINKED
    _, registration_id = _forwarded(ctx, session, "USEREG-CATALOGUE")
    ctx.wait_until(lambda: _status(ctx, registration_id).ok and _status(
        ctx, registration_id).response.status == APPROVED, ctx.relay_wait)  # type: ignore[union-attr]
    after = _register_entries(ctx, _catalogue(ctx, session))
    if not any(e.kind == FAMILY_REGISTER for e in after):
        raise CheckFailed("USEREG-CATALOGUE", "GetCatalogue after the registration was LINKED",
                          str([short_text(e) for e in after]),
                          f"no family-register entry of {ctx.other_code} is listed")
    request, issued = ctx.issue(session, "USEREG-CATALOGUE", code=ctx.other_code,
                                kind=FAMILY_REGISTER, options=types_pb2.CertificateOptions(
                                    family_register=types_pb2.FamilyRegisterOptions()))
    if not any(p.municipality_code.value == ctx.other_code
               for p in ctx.fake.prepares_for(card.serial)):
        raise CheckFailed("USEREG-CATALOGUE", short_text(request), short_text(issued),
                          "the family register was not asked of the register municipality")
