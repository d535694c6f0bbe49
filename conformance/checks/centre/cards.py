"""Card checks on Authenticate: chain, validity, revocation, CRL freshness, signature, binding.
Each refused card has a twin that the same centre accepts, so a check cannot pass by refusing
everything."""

from __future__ import annotations

import datetime as dt

from conformance.checks.centre.context import CentreContext
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.target import short_text


def _accepts_twin(ctx: CentreContext, requirement: str) -> None:
    """A good card bound to the main tenant authenticates (the refusal was about the card)."""
    twin = ctx.cache["twin"]
    request, answer, _ = ctx.authenticate(twin)
    if not answer.ok:
        raise CheckFailed(requirement, short_text(request), answer.describe(),
                          "a valid bound card was refused too: the refusal proves nothing",
                          expected={"outcome": "ok"})


def _load_with_twin(ctx: CentreContext, bindings: dict[str, str], **load: object) -> None:
    twin = ctx.card()
    ctx.cache["twin"] = twin
    ctx.load({**bindings, twin.serial: ctx.code}, **load)  # type: ignore[arg-type]


@check("MUST.centre.cards.unknown_issuer", covers=("CARD-CHAIN",))
def unknown_issuer(ctx: CentreContext) -> None:
    """A card from a JPKI-looking CA the centre was never given (same issuer name, other key)
    is refused with CARD_UNKNOWN_ISSUER."""
    card = ctx.stranger.card(ctx.now)
    _load_with_twin(ctx, {card.serial: ctx.code})
    request, answer, _ = ctx.authenticate(card)
    ctx.expect_refused(request, answer, {"CARD_UNKNOWN_ISSUER"}, "CARD-CHAIN",
                       "issued by an untrusted CA")
    _accepts_twin(ctx, "CARD-CHAIN")


@check("MUST.centre.cards.validity", covers=("CARD-VALIDITY",))
def validity(ctx: CentreContext) -> None:
    """A card expired yesterday is refused with CARD_EXPIRED (CARD_NOT_YET_VALID accepted for
    neither); one valid from tomorrow with CARD_NOT_YET_VALID or CARD_EXPIRED."""
    expired = ctx.card(expired=True)
    early = ctx.card(not_yet_valid=True)
    _load_with_twin(ctx, {expired.serial: ctx.code, early.serial: ctx.code})
    request, answer, _ = ctx.authenticate(expired)
    ctx.expect_refused(request, answer, {"CARD_EXPIRED"}, "CARD-VALIDITY", "expired card")
    request, answer, _ = ctx.authenticate(early)
    ctx.expect_refused(request, answer, {"CARD_NOT_YET_VALID", "CARD_EXPIRED"}, "CARD-VALIDITY",
                       "card valid only from tomorrow")
    _accepts_twin(ctx, "CARD-VALIDITY")


@check("MUST.centre.cards.revoked", covers=("CARD-REVOCATION",))
def revoked(ctx: CentreContext) -> None:
    """A card listed on the newest CRL is refused with CARD_REVOKED; its unlisted twin from the
    same CA is accepted."""
    card = ctx.card()
    _load_with_twin(ctx, {card.serial: ctx.code}, revoked=[card.serial_int])
    request, answer, _ = ctx.authenticate(card)
    ctx.expect_refused(request, answer, {"CARD_REVOKED"}, "CARD-REVOCATION", "revoked card")
    _accepts_twin(ctx, "CARD-REVOCATION")


@check("MUST.centre.cards.crl_stale", covers=("CARD-CRL-FRESH",))
def crl_stale(ctx: CentreContext) -> None:
    """A card of a CA whose only CRL is 20 days past its next update (beyond any sane grace)
    is refused with CRL_STALE: the check fails closed."""
    authority = ctx.make_authority()
    card = authority.card(ctx.now)
    stale = authority.crl_der(ctx.now - dt.timedelta(days=30), ctx.now - dt.timedelta(days=20))
    _load_with_twin(ctx, {card.serial: ctx.code},
                    extra_trust=[(authority.certificate_der, stale)])
    request, answer, _ = ctx.authenticate(card)
    ctx.expect_refused(request, answer, {"CRL_STALE"}, "CARD-CRL-FRESH",
                       "the issuer's newest CRL is stale")
    _accepts_twin(ctx, "CARD-CRL-FRESH")


@check("MUST.centre.cards.signature", covers=("CARD-SIGNATURE",))
def signature(ctx: CentreContext) -> None:
    """An intent whose card signature has one bit flipped, and one signed by another card than
    the certificate sent, are refused with CARD_SIGNATURE_INVALID."""
    card, other = ctx.card(), ctx.card()
    _load_with_twin(ctx, {card.serial: ctx.code, other.serial: ctx.code})
    request, answer, _ = ctx.authenticate(card, tamper=True)
    ctx.expect_refused(request, answer, {"CARD_SIGNATURE_INVALID"}, "CARD-SIGNATURE",
                       "signature bit flipped")
    request, answer, _ = ctx.authenticate(other, certificate=card.certificate_der)
    ctx.expect_refused(request, answer, {"CARD_SIGNATURE_INVALID"}, "CARD-SIGNATURE",
                       "signed by another card")
    _accepts_twin(ctx, "CARD-SIGNATURE")


@check("MUST.centre.cards.unbound", covers=("CARD-BINDING",))
def unbound(ctx: CentreContext) -> None:
    """A valid card no municipality bound is refused with CARD_NOT_BOUND; a bound one is told
    its residence municipality from the binding."""
    card = ctx.card()
    _load_with_twin(ctx, {})
    request, answer, _ = ctx.authenticate(card)
    ctx.expect_refused(request, answer, {"CARD_NOT_BOUND"}, "CARD-BINDING", "unbound card")
    twin = ctx.cache["twin"]
    request, answer, _ = ctx.authenticate(twin)
    got = getattr(answer.response, "residence_municipality_code", None)
    if not answer.ok or got is None or got.value != ctx.code:
        raise CheckFailed("CARD-BINDING", short_text(request), answer.describe(),
                          f"a card bound to {ctx.code} was not given that residence",
                          expected={"outcome": "ok"})


@check("MUST.centre.cards.profile", covers=("CARD-PROFILE",))
def profile(ctx: CentreContext) -> None:
    """A certificate from the trusted CA without the user-authentication policy is refused
    with CARD_PROFILE_INVALID."""
    card = ctx.card(auth_profile=False)
    _load_with_twin(ctx, {card.serial: ctx.code})
    request, answer, _ = ctx.authenticate(card)
    ctx.expect_refused(request, answer, {"CARD_PROFILE_INVALID"}, "CARD-PROFILE",
                       "no user-authentication policy")
    _accepts_twin(ctx, "CARD-PROFILE")
