"""A small drawing API producing image-only A4 PDFs with pikepdf.

No font resource and no text operator ever reaches the PDF: every glyph is a Form XObject holding
its filled outline in font units, written once per document and placed with ``cm`` / ``Do``.

Coordinates are PDF points with the origin at the TOP-LEFT of the page and y growing downward
(layouts flow top to bottom); for text, ``y`` is the baseline.
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass, field

import pikepdf
from PIL import Image

from municipality.render.errors import LayoutError
from municipality.render.glyphs import GlyphFont, default_font
from municipality.render.images import EncodedImage, encode_image
from municipality.render.qr import DEFAULT_MASK, QUIET_ZONE, qr_modules, qr_runs
from municipality.render.wrap import wrap_text

A4_WIDTH = 595.276
A4_HEIGHT = 841.89
MM = 72 / 25.4

# Content streams are large and built per document: level 1 compresses well enough and costs a
# fraction of level 6 (ARCHITECTURE.md: level 6 costs more than drawing the page).
CONTENT_ZLIB_LEVEL = 1
# Raster content (seals) is resampled to at least this resolution where it is placed.
IMAGE_DPI = 300

Colour = tuple[float, float, float]

_FILTER = pikepdf.Name("/Filter")
_FLATE = pikepdf.Name.FlateDecode
_TYPE = pikepdf.Name("/Type")
_XOBJECT = pikepdf.Name.XObject
_SUBTYPE = pikepdf.Name("/Subtype")
_FORM = pikepdf.Name.Form
_BBOX = pikepdf.Name("/BBox")


def mm(value: float) -> float:
    """Millimetres to points."""
    return value * MM


def _f(v: float) -> str:
    """A coordinate: two decimals are 1/7000 in, far below a 300 dpi pixel."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def _colour(c: Colour) -> str:
    return " ".join(_f(v) for v in c)


@dataclass
class Page:
    """One A4 page being drawn. Create through :meth:`DocumentBuilder.new_page`."""

    font: GlyphFont
    width: float = A4_WIDTH
    height: float = A4_HEIGHT
    _ops: list[str] = field(default_factory=list)
    glyphs: set[int] = field(default_factory=set)
    images: dict[str, EncodedImage] = field(default_factory=dict)
    multiply: bool = False  # whether the page uses the Multiply blend state

    # -- text -------------------------------------------------------------------------------
    def measure(self, text: str, size: float) -> float:
        """Advance width of ``text`` at ``size`` in points (raises GlyphMissing)."""
        return self.font.shape(text).advance * size / self.font.upem

    def text(
        self, x: float, y: float, size: float, text: str, *, colour: Colour | None = None
    ) -> float:
        """Draw one shaped line starting at ``x`` with its baseline at ``y``; return its width.

        Raises :class:`GlyphMissing` (before drawing anything) for a character the font lacks.
        """
        if "\n" in text:
            raise LayoutError("text() draws one line; use text_wrapped() for several")
        run = self.font.shape(text)
        scale = size / self.font.upem
        parts = ["q"]
        if colour is not None:
            parts.append(f"{_colour(colour)} rg")
        parts.append(f"{scale:.7g} 0 0 {scale:.7g} {_f(x)} {_f(self.height - y)} cm")
        # Glyph placement in font units, relative to the previous glyph: integers, exact.
        last_x = last_y = 0
        outline = self.font.outline
        for gid, (gx, gy) in zip(run.gids, run.positions, strict=True):
            if outline(gid).empty:
                continue
            parts.append(f"1 0 0 1 {gx - last_x} {gy - last_y} cm /G{gid} Do")
            last_x, last_y = gx, gy
            self.glyphs.add(gid)
        parts.append("Q")
        self._ops.append("\n".join(parts))
        return run.advance * scale

    def text_right(self, right: float, y: float, size: float, text: str) -> float:
        """Draw ``text`` ending at ``right``; return its width."""
        return self.text(right - self.measure(text, size), y, size, text)

    def text_centre(self, centre: float, y: float, size: float, text: str) -> float:
        """Draw ``text`` centred on ``centre``; return its width."""
        return self.text(centre - self.measure(text, size) / 2, y, size, text)

    def wrap(self, text: str, size: float, width: float) -> list[str]:
        """Lines of ``text`` no wider than ``width`` (Japanese line-breaking rules)."""
        return wrap_text(self.font, text, size, width)

    def text_wrapped(
        self,
        x: float,
        y: float,
        size: float,
        text: str,
        *,
        width: float,
        leading: float | None = None,
    ) -> float:
        """Draw ``text`` wrapped to ``width`` from baseline ``y``; return the baseline after it."""
        step = leading if leading is not None else size * 1.5
        for line in self.wrap(text, size, width):
            if line:
                self.text(x, y, size, line)
            y += step
        return y

    # -- vector shapes ----------------------------------------------------------------------
    def line(self, x1: float, y1: float, x2: float, y2: float, *, width: float = 0.5) -> None:
        h = self.height
        self._ops.append(f"q {_f(width)} w {_f(x1)} {_f(h - y1)} m {_f(x2)} {_f(h - y2)} l S Q")

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        *,
        stroke: float | None = 0.5,
        fill: Colour | None = None,
    ) -> None:
        """A rectangle with its top-left corner at (x, y); stroked, filled or both."""
        if stroke is None and fill is None:
            return
        ops = ["q"]
        if fill is not None:
            ops.append(f"{_colour(fill)} rg")
        if stroke is not None:
            ops.append(f"{_f(stroke)} w")
        ops.append(f"{_f(x)} {_f(self.height - y - h)} {_f(w)} {_f(h)} re")
        ops.append("B" if fill is not None and stroke is not None else "f" if fill else "S")
        ops.append("Q")
        self._ops.append(" ".join(ops))

    # -- images and codes -------------------------------------------------------------------
    def image(
        self,
        image: Image.Image | bytes,
        x: float,
        y: float,
        w: float,
        h: float,
        *,
        multiply: bool = False,
    ) -> None:
        """Place an image in the box with top-left (x, y). ``multiply`` blends it like ink (white
        leaves what is beneath visible), which is how a seal over the issuer's name looks."""
        # Enough pixels for IMAGE_DPI in the placed box (DOC-RESOLUTION).
        need = (math.ceil(w / 72 * IMAGE_DPI), math.ceil(h / 72 * IMAGE_DPI))
        enc = encode_image(image, need)
        self.images[enc.key] = enc
        gs = ""
        if multiply:
            self.multiply = True
            gs = "/GSmul gs "
        self._ops.append(
            f"q {gs}{_f(w)} 0 0 {_f(h)} {_f(x)} {_f(self.height - y - h)} cm /I{enc.key} Do Q"
        )

    def qr(self, content: str, x: float, y: float, size: float, *, mask: int = DEFAULT_MASK) -> int:
        """Draw ``content`` as a QR code (error correction M) in the square with top-left (x, y)
        and side ``size``; the square includes the 4-module quiet zone, left white. Returns the
        number of modules per side (without the quiet zone)."""
        matrix = qr_modules(content, mask=mask)
        n = len(matrix)
        module = size / (n + 2 * QUIET_ZONE)
        left = x + QUIET_ZONE * module
        top = self.height - y - QUIET_ZONE * module
        parts = ["q 0 g", f"{module:.6g} 0 0 {-module:.6g} {_f(left)} {_f(top)} cm"]
        # Runs in module units under one matrix: integers only, and one fill for all.
        parts.extend(f"{c} {r} {length} 1 re" for r, c, length in qr_runs(matrix))
        parts.append("f Q")
        self._ops.append("\n".join(parts))
        return n

    def content(self) -> bytes:
        return "\n".join(self._ops).encode("ascii")


class DocumentBuilder:
    """Collects pages and writes one deterministic PDF: the same drawing gives the same bytes
    (the file ID derives from the content; no dates or producer)."""

    def __init__(self, font: GlyphFont | None = None) -> None:
        self.font = font if font is not None else default_font()
        self.pages: list[Page] = []

    def new_page(self) -> Page:
        page = Page(font=self.font)
        self.pages.append(page)
        return page

    def build(self) -> bytes:
        if not self.pages:
            raise LayoutError("a document needs at least one page")
        pdf = pikepdf.new()
        glyph_objs: dict[int, pikepdf.Object] = {}
        image_objs: dict[str, pikepdf.Object] = {}
        multiply_gs = pdf.make_indirect(
            pikepdf.Dictionary(Type=pikepdf.Name.ExtGState, BM=pikepdf.Name.Multiply)
        )
        for page in self.pages:
            xobjects = pikepdf.Dictionary()
            for gid in sorted(page.glyphs):
                obj = glyph_objs.get(gid)
                if obj is None:
                    obj = glyph_objs[gid] = self._glyph_object(pdf, gid)
                xobjects[f"/G{gid}"] = obj
            for key in sorted(page.images):
                obj = image_objs.get(key)
                if obj is None:
                    obj = image_objs[key] = _image_object(pdf, page.images[key])
                xobjects[f"/I{key}"] = obj
            resources = pikepdf.Dictionary(XObject=xobjects)
            if page.multiply:
                resources.ExtGState = pikepdf.Dictionary(GSmul=multiply_gs)
            contents = pikepdf.Stream(pdf, b"")
            contents.write(
                zlib.compress(page.content(), CONTENT_ZLIB_LEVEL), filter=pikepdf.Name.FlateDecode
            )
            pdf.pages.append(
                pikepdf.Page(
                    pikepdf.Dictionary(
                        Type=pikepdf.Name.Page,
                        MediaBox=[0, 0, page.width, page.height],
                        Resources=resources,
                        Contents=contents,
                    )
                )
            )
        out = io.BytesIO()
        # Streams are compressed above; qpdf must neither decode nor recompress them.
        pdf.save(
            out,
            deterministic_id=True,
            compress_streams=False,
            stream_decode_level=pikepdf.StreamDecodeLevel.none,
            object_stream_mode=pikepdf.ObjectStreamMode.generate,
        )
        return out.getvalue()

    def _glyph_object(self, pdf: pikepdf.Pdf, gid: int) -> pikepdf.Object:
        # Hot path (hundreds per document): raw encoded data plus keys set one by one is about
        # 3x cheaper than Stream.write() with a filter and keyword dictionaries.
        outline = self.font.outline(gid)
        stream = pikepdf.Stream(pdf, outline.data)
        stream[_FILTER] = _FLATE
        stream[_TYPE] = _XOBJECT
        stream[_SUBTYPE] = _FORM
        stream[_BBOX] = pikepdf.Array(outline.bbox)
        return stream


def _image_object(pdf: pikepdf.Pdf, enc: EncodedImage) -> pikepdf.Object:
    stream = pikepdf.Stream(pdf, b"")
    stream.write(enc.data, filter=pikepdf.Name.FlateDecode)
    stream.Type = pikepdf.Name.XObject
    stream.Subtype = pikepdf.Name.Image
    stream.Width = enc.width
    stream.Height = enc.height
    stream.ColorSpace = pikepdf.Name("/" + enc.colour_space)
    stream.BitsPerComponent = enc.bits
    if enc.alpha is not None:
        mask = pikepdf.Stream(pdf, b"")
        mask.write(enc.alpha, filter=pikepdf.Name.FlateDecode)
        mask.Type = pikepdf.Name.XObject
        mask.Subtype = pikepdf.Name.Image
        mask.Width = enc.width
        mask.Height = enc.height
        mask.ColorSpace = pikepdf.Name.DeviceGray
        mask.BitsPerComponent = 8
        stream.SMask = mask
    return stream
