"""Image-only A4 certificate rendering: glyph outlines from HarfBuzz, no fonts or text in the PDF.

High level: :func:`render_certificate` of a :class:`CertificateLayout` made of blocks.
Lower level: :class:`DocumentBuilder` / :class:`Page` to draw, :class:`GlyphFont` to shape,
:func:`find_font` to choose the font. :func:`bench_render` backs ``konbini bench render``.
"""

from municipality.render.bench import bench_render
from municipality.render.errors import FontMissing, GlyphMissing, LayoutError, RenderError
from municipality.render.fonts import FontChoice, find_font
from municipality.render.glyphs import GlyphFont, default_font
from municipality.render.layout import (
    Block,
    CertificateLayout,
    Heading,
    Note,
    PageBreak,
    Paragraph,
    SealImage,
    Spacer,
    Table,
    qr_box,
    render_certificate,
    same_qr,
)
from municipality.render.page import A4_HEIGHT, A4_WIDTH, DocumentBuilder, Page, mm

__all__ = [
    "A4_HEIGHT",
    "A4_WIDTH",
    "Block",
    "CertificateLayout",
    "DocumentBuilder",
    "FontChoice",
    "FontMissing",
    "GlyphFont",
    "GlyphMissing",
    "Heading",
    "LayoutError",
    "Note",
    "Page",
    "PageBreak",
    "Paragraph",
    "RenderError",
    "SealImage",
    "Spacer",
    "Table",
    "bench_render",
    "default_font",
    "find_font",
    "mm",
    "qr_box",
    "render_certificate",
    "same_qr",
]
