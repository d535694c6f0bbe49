"""What the centre adds to documents and publishes: a back page after every front, scrambled
from that front under a current key of the signed trust list."""

from __future__ import annotations

import numpy as np

from conformance.checks.centre.context import CentreContext
from conformance.failures import CheckFailed, CheckSkipped
from conformance.registry import check
from conformance.seal_meta import metadata_of
from conformance.target import short_text
from konbini.docimage.backside import BACK_DPI, check_back
from konbini.docimage.raster import page_count, rasterize_page
from konbini.pki.trustlist import (
    TrustList,
    from_proto,
    scramble_key,
    verify_signed_trust_list_at,
)
from konbini.platform.v1 import platform_pb2


def _trust_list(ctx: CentreContext, requirement: str) -> TrustList:
    if not ctx.docsign_roots:
        raise CheckSkipped("no document-signing CA given (--pki or --docsign-ca)")
    response = ctx.platform().GetTrustList(platform_pb2.GetTrustListRequest())
    try:
        return verify_signed_trust_list_at(from_proto(response.trust_list),
                                           list(ctx.docsign_roots), ctx.now)
    except Exception as error:
        raise CheckFailed(requirement, "GetTrustList", short_text(response),
                          f"the trust list does not verify against the document-signing CA: "
                          f"{error}") from None


@check("MUST.centre.trust.signed", covers=("TRUST-LIST-SIGNED",))
def trust_list_signed(ctx: CentreContext) -> None:
    """GetTrustList answers signed bytes whose signer chains to the document-signing CA, not
    past their next update, listing at least one scramble key current now."""
    trust = _trust_list(ctx, "TRUST-LIST-SIGNED")
    if not any(k.not_before <= ctx.now <= k.not_after for k in trust.scramble_keys):
        raise CheckFailed("TRUST-LIST-SIGNED", "GetTrustList",
                          f"{len(trust.scramble_keys)} scramble keys",
                          "no scramble key is current: back sides cannot be verified")


@check("MUST.centre.documents.back_scramble", covers=("DOC-BACK-SCRAMBLE",))
def back_scramble(ctx: CentreContext) -> None:
    """Two copies: each delivered PDF is its front followed by a back page whose key id is a
    current scramble key of the trust list and which unscrambles to that front; a copy's back
    does not match the other copy's front."""
    trust = _trust_list(ctx, "DOC-BACK-SCRAMBLE")
    card = ctx.bound_cards(1)[0]
    session = ctx.open_session(card, "terminal", "DOC-BACK-SCRAMBLE")
    request, response = ctx.issue(session, "DOC-BACK-SCRAMBLE", copies=2)
    sent = short_text(request)

    def key_for(key_id: str) -> bytes:
        key = scramble_key(trust, key_id)
        if not key.not_before <= ctx.now <= key.not_after:
            raise CheckFailed("DOC-BACK-SCRAMBLE", sent, f"back key {key_id}",
                              "the back was made under a key not current now")
        return key.key

    pages: list[tuple[np.ndarray, np.ndarray]] = []
    for n, document in enumerate(response.documents):
        fronts = metadata_of(document).page_count or 1
        count = page_count(document.pdf)
        if count != 2 * fronts:
            raise CheckFailed("DOC-BACK-SCRAMBLE", sent, f"copy {n + 1}: {count} pages",
                              f"{fronts} front page(s) need as many back pages after them")
        front = rasterize_page(document.pdf, 0, BACK_DPI)
        back = rasterize_page(document.pdf, 1, BACK_DPI)
        try:
            side, comparison = check_back(front, back, key_for)
        except CheckFailed:
            raise
        except Exception as error:
            raise CheckFailed("DOC-BACK-SCRAMBLE", sent, f"copy {n + 1}: {error}",
                              "the back page cannot be read with the trust list") from None
        if not comparison.ok:
            raise CheckFailed("DOC-BACK-SCRAMBLE", sent,
                              f"copy {n + 1}: {len(comparison.changed_blocks)} blocks differ "
                              f"(key {side.key_id})", "the back does not unscramble to its front")
        pages.append((front, back))
    if len(pages) == 2:
        _, swapped = check_back(pages[0][0], pages[1][1], key_for)
        if swapped.ok:
            raise CheckFailed("DOC-BACK-SCRAMBLE", sent, "copy 2's back matches copy 1's front",
                              "the back is not made from its own front")
