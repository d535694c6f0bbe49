"""Line breaking for Japanese text by width, with simple kinsoku rules.

Breaks fall between clusters (a variation sequence is never split), not before closing
punctuation or small kana, not after opening brackets, and not inside a run of ASCII letters or
digits (so "1丁目23番" keeps "23" whole).
"""

from __future__ import annotations

from municipality.render.glyphs import GlyphFont

_NO_LINE_START = frozenset(
    "、。，．,.）)」』】〕〉》］]｝}・：:；;！!？?ー～々ゝゞヽヾぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ"
)
_NO_LINE_END = frozenset("（(「『【〔〈《［[｛{")


def _is_word(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def wrap_text(font: GlyphFont, text: str, size: float, width: float) -> list[str]:
    """Split ``text`` into lines no wider than ``width`` points at ``size`` (a single cluster
    wider than ``width`` still gets a line of its own). ``\\n`` forces a break."""
    lines: list[str] = []
    for para in text.split("\n"):
        lines.extend(_wrap_paragraph(font, para, size, width))
    return lines


def _wrap_paragraph(font: GlyphFont, text: str, size: float, width: float) -> list[str]:
    if not text:
        return [""]
    run = font.shape(text)
    scale = size / font.upem
    limit = width / scale  # compare in font units
    starts = run.cluster_starts
    lines: list[str] = []
    line_start = 0
    used = 0
    last_break = -1  # best code point index to break before, within the current line
    for i in range(len(text)):
        if not starts[i]:
            continue
        adv = run.cluster_advances[i]
        if i > line_start and _can_break_before(text, i):
            last_break = i
        if used + adv > limit and i > line_start:
            cut = last_break if last_break > line_start else i
            lines.append(text[line_start:cut].rstrip(" "))
            line_start = cut
            while line_start < len(text) and text[line_start] == " ":
                line_start += 1
            used = sum(run.cluster_advances[line_start : i + 1])
            last_break = i if i > line_start and _can_break_before(text, i) else -1
            continue
        used += adv
    lines.append(text[line_start:].rstrip(" "))
    return lines


def _can_break_before(text: str, i: int) -> bool:
    prev, cur = text[i - 1], text[i]
    if cur in _NO_LINE_START or prev in _NO_LINE_END:
        return False
    return not (_is_word(prev) and _is_word(cur))
