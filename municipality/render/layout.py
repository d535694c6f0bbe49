"""A generic certificate layout with automatic pagination.

Kind-specific layouts (residence record, seal certificate, …) build a :class:`CertificateLayout`
from domain objects; this module turns it into pages. Every page carries the title, the
municipality and issue number, "page i / n" and the QR code at the bottom right; the last page
ends with the date of issue and the issuer line with the municipal seal (公印) over it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from municipality.render.errors import LayoutError
from municipality.render.glyphs import GlyphFont, default_font
from municipality.render.images import encode_image
from municipality.render.page import A4_HEIGHT, A4_WIDTH, DocumentBuilder, Page, mm
from municipality.render.wrap import wrap_text

ImageInput = Image.Image | bytes

# Page geometry (points). The bottom band holds the footer and the QR code.
MARGIN_X = mm(20)
TOP = mm(18)
TITLE_SIZE = 18.0
BODY_TOP = TOP + mm(22)
QR_SIZE = mm(32)  # includes the QR quiet zone
QR_X = A4_WIDTH - MARGIN_X - QR_SIZE + mm(4)  # quiet zone may reach into the margin
QR_Y = A4_HEIGHT - mm(8) - QR_SIZE
BODY_BOTTOM = QR_Y - mm(2)
CONTENT_WIDTH = A4_WIDTH - 2 * MARGIN_X

BODY_SIZE = 10.5
NOTE_SIZE = 8.0
HEADING_SIZE = 12.0
FOOTER_SIZE = 8.0
LEADING = 1.6  # line pitch as a multiple of the size
CELL_PAD = 3.0
SEAL_SIZE = mm(21)
CLOSING_HEIGHT = mm(34)  # date, issuer line and seal on the last page


def qr_box() -> tuple[float, float, float, float]:
    """(x, y, width, height) of the QR square on every page, top-left origin in points: what a
    verifier masks when it compares a front image rendered before the QR was known."""
    return (QR_X, QR_Y, QR_SIZE, QR_SIZE)


# -- blocks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    """A section heading; never left alone at the bottom of a page."""

    text: str


@dataclass(frozen=True)
class Table:
    """Label/value rows with borders. ``column_widths`` in points (default 30 % / 70 % of the
    content width); long values wrap and a row taller than the space left continues overleaf."""

    rows: Sequence[tuple[str, str]]
    column_widths: tuple[float, float] | None = None


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """A small annotation, such as a maiden-name (旧氏) line under a table."""

    text: str


@dataclass(frozen=True)
class SealImage:
    """An image in the body, such as a registered seal impression; width in points, height from
    the image's aspect ratio unless given."""

    image: ImageInput
    width: float = mm(30)
    height: float | None = None


@dataclass(frozen=True)
class Spacer:
    height: float


@dataclass(frozen=True)
class PageBreak:
    """Start a new page."""


Block = Heading | Table | Paragraph | Note | SealImage | Spacer | PageBreak


@dataclass(frozen=True)
class CertificateLayout:
    """Everything printed on a certificate, kind-independent.

    ``qr_for_page(page_index, page_count)`` gives the QR content of each page (0-based index), so
    a signed per-page payload is possible; use :func:`same_qr` for one content on every page.
    ``None`` draws no QR (for a first pass whose image is digested before the payload exists).
    ``municipal_seal`` is the 公印 image (transparent or white background; blended like ink).
    """

    title: str
    municipality_name: str
    issuer_line: str
    issue_number: str
    issued_on: str
    body: Sequence[Block]
    certification: str = ""  # closing statement, e.g. "これは、住民票の写しである。"
    municipal_seal: ImageInput | None = None
    qr_for_page: Callable[[int, int], str] | None = None


def same_qr(content: str) -> Callable[[int, int], str]:
    """A ``qr_for_page`` giving ``content`` on every page."""
    return lambda _index, _count: content


# -- pagination ------------------------------------------------------------------------------
Draw = Callable[[Page], None]


@dataclass
class _Flow:
    """Places blocks top to bottom, opening pages as needed; drawing happens later, once the
    page count (printed in every footer) is known."""

    font: GlyphFont
    pages: list[list[Draw]] = field(default_factory=lambda: [[]])
    y: float = BODY_TOP

    @property
    def room(self) -> float:
        return BODY_BOTTOM - self.y

    def new_page(self) -> None:
        self.pages.append([])
        self.y = BODY_TOP

    def ensure(self, height: float) -> None:
        """Open a new page unless ``height`` fits (a fresh page always accepts)."""
        if height > self.room and self.y > BODY_TOP:
            self.new_page()

    def add(self, draw: Draw) -> None:
        self.pages[-1].append(draw)

    def wrap(self, text: str, size: float, width: float) -> list[str]:
        return wrap_text(self.font, text, size, width)

    # blocks
    def lines(
        self, text: str, size: float, x: float = MARGIN_X, width: float = CONTENT_WIDTH
    ) -> None:
        pitch = size * LEADING
        for line in self.wrap(text, size, width):
            self.ensure(pitch)
            baseline = self.y + size
            if line:
                self.add(lambda p, ln=line, b=baseline: p.text(x, b, size, ln))
            self.y += pitch

    def heading(self, block: Heading) -> None:
        self.ensure(HEADING_SIZE * LEADING + BODY_SIZE * LEADING * 2)
        self.y += HEADING_SIZE * 0.3
        self.lines(block.text, HEADING_SIZE)

    def table(self, block: Table) -> None:
        label_w, value_w = block.column_widths or (CONTENT_WIDTH * 0.3, CONTENT_WIDTH * 0.7)
        if label_w <= 2 * CELL_PAD or value_w <= 2 * CELL_PAD:
            raise LayoutError("table columns must be wider than their padding")
        if label_w + value_w > CONTENT_WIDTH + 0.01:
            raise LayoutError(
                f"table is {label_w + value_w:.1f} pt wide; at most {CONTENT_WIDTH:.1f}"
            )
        pitch = BODY_SIZE * LEADING
        for label, value in block.rows:
            left = self.wrap(label, BODY_SIZE, label_w - 2 * CELL_PAD)
            right = self.wrap(value, BODY_SIZE, value_w - 2 * CELL_PAD)
            count = max(len(left), len(right))
            done = 0
            while done < count:
                full = count - done
                fits = math.floor((self.room - 2 * CELL_PAD) / pitch)
                # Move the row overleaf when it would fit whole there (or nothing fits here);
                # only a row taller than a whole page is split across pages.
                if (
                    fits < full
                    and self.y > BODY_TOP
                    and (fits < 1 or self._row_fits_fresh(full, pitch))
                ):
                    self.new_page()
                    continue
                take = min(full, max(fits, 1))
                self._row(left[done : done + take], right[done : done + take], label_w, value_w)
                done += take

    @staticmethod
    def _row_fits_fresh(lines: int, pitch: float) -> bool:
        return lines * pitch + 2 * CELL_PAD <= BODY_BOTTOM - BODY_TOP

    def _row(self, left: list[str], right: list[str], label_w: float, value_w: float) -> None:
        pitch = BODY_SIZE * LEADING
        top = self.y
        height = max(len(left), len(right)) * pitch + 2 * CELL_PAD
        first = top + CELL_PAD + BODY_SIZE * 1.1  # first baseline inside the cell

        def draw(p: Page) -> None:
            p.rect(MARGIN_X, top, label_w, height, fill=(0.93, 0.93, 0.93))
            p.rect(MARGIN_X + label_w, top, value_w, height)
            for i, text in enumerate(left):
                if text:
                    p.text(MARGIN_X + CELL_PAD, first + i * pitch, BODY_SIZE, text)
            for i, text in enumerate(right):
                if text:
                    p.text(MARGIN_X + label_w + CELL_PAD, first + i * pitch, BODY_SIZE, text)

        self.add(draw)
        self.y += height

    def image(self, block: SealImage) -> None:
        enc = encode_image(block.image)  # also validates the image before any drawing
        height = block.height if block.height is not None else block.width * enc.height / enc.width
        if height > BODY_BOTTOM - BODY_TOP or block.width > CONTENT_WIDTH:
            raise LayoutError("image larger than the printable area")
        self.ensure(height + mm(2))
        top = self.y + mm(1)
        self.add(lambda p: p.image(block.image, MARGIN_X, top, block.width, height))
        self.y += height + mm(2)

    def spacer(self, block: Spacer) -> None:
        if block.height >= self.room:
            self.new_page()
        else:
            self.y += block.height

    def place(self, block: Block) -> None:
        match block:
            case Heading():
                self.heading(block)
            case Table():
                self.table(block)
            case Paragraph():
                self.lines(block.text, BODY_SIZE)
            case Note():
                self.lines(block.text, NOTE_SIZE, x=MARGIN_X + mm(3), width=CONTENT_WIDTH - mm(3))
            case SealImage():
                self.image(block)
            case Spacer():
                self.spacer(block)
            case PageBreak():
                self.new_page()
            case _:
                raise LayoutError(f"unknown block type {type(block).__name__}")


def _closing(flow: _Flow, layout: CertificateLayout) -> None:
    """Certification statement, date and issuer with the seal: kept together on the last page."""
    statement = (
        flow.wrap(layout.certification, BODY_SIZE, CONTENT_WIDTH) if layout.certification else []
    )
    flow.ensure(CLOSING_HEIGHT + len(statement) * BODY_SIZE * LEADING)
    flow.y += mm(4)
    for line in statement:
        baseline = flow.y + BODY_SIZE
        flow.add(lambda p, ln=line, b=baseline: p.text(MARGIN_X + BODY_SIZE, b, BODY_SIZE, ln))
        flow.y += BODY_SIZE * LEADING
    date_baseline = flow.y + mm(4) + BODY_SIZE
    issuer_baseline = date_baseline + mm(12)
    right = A4_WIDTH - MARGIN_X - SEAL_SIZE * 0.6
    seal = layout.municipal_seal
    flow.add(lambda p: p.text(MARGIN_X + BODY_SIZE, date_baseline, BODY_SIZE, layout.issued_on))
    flow.add(lambda p: p.text_right(right, issuer_baseline, 12.0, layout.issuer_line))
    if seal is not None:
        # The seal overlaps the last characters of the issuer's name, as stamped by hand.
        seal_x = right - SEAL_SIZE * 0.55
        seal_y = issuer_baseline - 12.0 * 0.4 - SEAL_SIZE / 2
        flow.add(lambda p: p.image(seal, seal_x, seal_y, SEAL_SIZE, SEAL_SIZE, multiply=True))
    flow.y = issuer_baseline + mm(8)


def _frame(page: Page, layout: CertificateLayout, index: int, count: int) -> None:
    """What every page carries: title, issuer identity, issue number, page count and QR."""
    page.text_centre(A4_WIDTH / 2, TOP + TITLE_SIZE, TITLE_SIZE, layout.title)
    page.line(MARGIN_X, TOP + mm(15), A4_WIDTH - MARGIN_X, TOP + mm(15), width=0.8)
    footer = QR_Y + QR_SIZE - mm(6)
    page.text(MARGIN_X, footer - FOOTER_SIZE * LEADING, FOOTER_SIZE, layout.municipality_name)
    page.text(MARGIN_X, footer, FOOTER_SIZE, f"発行番号 {layout.issue_number}")
    page.text_centre(A4_WIDTH / 2, footer, FOOTER_SIZE, f"{index + 1} / {count}")
    if layout.qr_for_page is not None:
        page.qr(layout.qr_for_page(index, count), QR_X, QR_Y, QR_SIZE)


def render_certificate(layout: CertificateLayout, *, font: GlyphFont | None = None) -> bytes:
    """Render ``layout`` to an image-only A4 PDF.

    Raises :class:`GlyphMissing` for a character the font cannot draw (before any output),
    :class:`FontMissing` when no font is installed, :class:`LayoutError` for impossible layouts.
    """
    glyph_font = font if font is not None else default_font()
    flow = _Flow(glyph_font)
    for block in layout.body:
        flow.place(block)
    _closing(flow, layout)
    doc = DocumentBuilder(glyph_font)
    count = len(flow.pages)
    for index, draws in enumerate(flow.pages):
        page = doc.new_page()
        _frame(page, layout, index, count)
        for draw in draws:
            draw(page)
    return doc.build()
