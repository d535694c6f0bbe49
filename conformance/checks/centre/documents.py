"""What the centre adds to documents and publishes: a back page after every front, scrambled
from that front under a current key of the signed trust list, with a copy-void background;
and what it delivers stays image-only A4 at print resolution."""

from __future__ import annotations

import io

import numpy as np
import pikepdf

from conformance.checks.centre.context import CentreContext
from conformance.documents import low_resolution, pdf_structure_findings
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


def _delivered(ctx: CentreContext, requirement: str) -> tuple[str, list[bytes]]:
    card = ctx.bound_cards(1)[0]
    session = ctx.open_session(card, "terminal", requirement)
    request, response = ctx.issue(session, requirement, copies=2)
    return short_text(request), [d.pdf for d in response.documents]


@check("MUST.centre.documents.pages", covers=("GLYPH-NO-TEXT", "DOC-A4", "DOC-RESOLUTION"))
def delivered_pages(ctx: CentreContext) -> None:
    """Each delivered PDF (the municipality's vector front plus the centre's back) has no font,
    text operator, annotation or form; every page is A4 portrait; every raster image is drawn
    at 300 dpi or more."""
    sent, pdfs = _delivered(ctx, "DOC-A4")
    for n, pdf in enumerate(pdfs, start=1):
        text, sizes, images = pdf_structure_findings(pdf)
        if text:
            raise CheckFailed("GLYPH-NO-TEXT", sent, f"copy {n}: {'; '.join(text[:5])}",
                              "a delivered document carries text")
        if sizes:
            raise CheckFailed("DOC-A4", sent, f"copy {n}: {'; '.join(sizes[:5])}",
                              "every page must be A4 portrait")
        low = low_resolution(images)
        if low:
            raise CheckFailed("DOC-RESOLUTION", sent, f"copy {n}: {'; '.join(low[:5])}",
                              "raster content must be drawn at 300 dpi or more")


def _back_image(pdf: bytes, index: int) -> np.ndarray | None:
    """The largest image drawn on page ``index``, at its own resolution (gray)."""
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        page = doc.pages[index]
        best = None
        for _, xobj in page.get_images().items():
            image = pikepdf.PdfImage(xobj)
            if best is None or image.width * image.height > best.width * best.height:
                best = image
        return None if best is None else np.asarray(best.as_pil_image().convert("L"))


def copy_void_findings(image: np.ndarray) -> str:
    """'' when the left margin of a back page (beside the scramble area: columns 1-5 %, rows
    12-95 % of the page) holds a copy-void screen: ink on 1/32 to 1/6 of it, at least a quarter
    of the ink in single isolated dots (the fine screen a copier drops, see
    konbini.docimage.backside); else what was found."""
    rows, cols = image.shape
    band = image[int(rows * 0.12):int(rows * 0.95), int(cols * 0.01):int(cols * 0.05)] < 128
    if band.size == 0:
        return "the back image is too small"
    coverage = float(band.mean())
    padded = np.pad(band, 1)
    neighbours = (padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:])
    isolated = float((band & ~neighbours).sum()) / max(int(band.sum()), 1)
    if not 1 / 32 <= coverage <= 1 / 6 or isolated < 0.25:
        return (f"margin ink {coverage:.1%} (want 3.1-16.7 %), isolated dots {isolated:.0%} of "
                f"the ink (want >= 25 %)")
    return ""


@check("MUST.centre.documents.copy_void", covers=("DOC-COPY-VOID",))
def copy_void(ctx: CentreContext) -> None:
    """Every back page carries a copy-void background: beside the scramble area its image holds
    a fine dot screen (see :func:`copy_void_findings`)."""
    sent, pdfs = _delivered(ctx, "DOC-COPY-VOID")
    for n, pdf in enumerate(pdfs, start=1):
        pages = page_count(pdf)
        for index in range(pages // 2, pages):
            image = _back_image(pdf, index)
            found = "no image on the back page" if image is None else copy_void_findings(image)
            if found:
                raise CheckFailed("DOC-COPY-VOID", sent, f"copy {n}, page {index + 1}: {found}",
                                  "back pages must carry a copy-void background pattern")
