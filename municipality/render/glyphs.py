"""Shaping with HarfBuzz and glyph outlines as PDF path operators.

HarfBuzz resolves Ideographic Variation Sequences through the font's cmap format 14, so
葛+U+E0102 shapes to its own MJ glyph. Outlines come from HarfBuzz's draw API and are kept, per
process, as ready-to-embed PDF path bytes (in font units), so each glyph is extracted once.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import uharfbuzz as hb

from municipality.render.errors import GlyphMissing
from municipality.render.fonts import FontChoice, find_font, inspect_font

# Glyph form streams are small and fetched from the cache on every document: compress once.
_GLYPH_ZLIB_LEVEL = 6
_SHAPE_CACHE_SIZE = 4096


@dataclass(frozen=True)
class GlyphOutline:
    """One glyph as a filled PDF path in font units; ``data`` is Flate-compressed."""

    gid: int
    data: bytes
    bbox: tuple[int, int, int, int]  # llx, lly, urx, ury in font units

    @property
    def empty(self) -> bool:
        return not self.data


@dataclass(frozen=True)
class ShapedRun:
    """A shaped line of text: glyph ids, pen offsets and advances, all in font units."""

    gids: tuple[int, ...]
    # x, y of each glyph relative to the start of the run (pen position plus HarfBuzz offset)
    positions: tuple[tuple[int, int], ...]
    advance: int
    # per input code point index: the advance of the cluster starting there (0 inside a cluster)
    cluster_advances: tuple[int, ...]
    # per input code point index: whether a cluster starts there (a line may break before it)
    cluster_starts: tuple[bool, ...]


class _PathPen:
    """Collects HarfBuzz draw callbacks as PDF path operators; quadratics become cubics."""

    __slots__ = ("cx", "cy", "parts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.cx = self.cy = 0.0


# Hot in a cold cache (one call per outline point): one f-string each, ``:g`` keeps integers short.
def _move(x: float, y: float, pen: _PathPen) -> None:
    pen.parts.append(f"{x:g} {y:g} m")
    pen.cx, pen.cy = x, y


def _line(x: float, y: float, pen: _PathPen) -> None:
    pen.parts.append(f"{x:g} {y:g} l")
    pen.cx, pen.cy = x, y


def _quad(qx: float, qy: float, x: float, y: float, pen: _PathPen) -> None:
    # Exact degree elevation: the cubic's control points sit 2/3 of the way to the quadratic's.
    cx, cy = pen.cx, pen.cy
    pen.parts.append(
        f"{cx + (qx - cx) * 2 / 3:.1f} {cy + (qy - cy) * 2 / 3:.1f} "
        f"{x + (qx - x) * 2 / 3:.1f} {y + (qy - y) * 2 / 3:.1f} {x:g} {y:g} c"
    )
    pen.cx, pen.cy = x, y


def _cubic(  # noqa: PLR0917 - HarfBuzz's callback signature
    ax: float, ay: float, bx: float, by: float, x: float, y: float, pen: _PathPen
) -> None:
    pen.parts.append(f"{ax:g} {ay:g} {bx:g} {by:g} {x:g} {y:g} c")
    pen.cx, pen.cy = x, y


def _close(pen: _PathPen) -> None:
    pen.parts.append("h")


def _draw_funcs() -> hb.DrawFuncs:
    funcs = hb.DrawFuncs()
    funcs.set_move_to_func(_move)
    funcs.set_line_to_func(_line)
    funcs.set_quadratic_to_func(_quad)
    funcs.set_cubic_to_func(_cubic)
    funcs.set_close_path_func(_close)
    return funcs


class GlyphFont:
    """A font ready for certificates: shaping, missing-glyph checks and a glyph outline cache.

    One instance per font per process is the intended use (see :func:`default_font`): its cache
    makes every page after the first cheap. Thread-safe: a race only computes an outline twice.
    """

    def __init__(self, choice: FontChoice) -> None:
        self.choice = choice
        self._face = hb.Face(hb.Blob.from_file_path(str(choice.path)))
        self._font = hb.Font(self._face)
        self.upem: int = self._face.upem
        self._funcs = _draw_funcs()
        self._outlines: dict[int, GlyphOutline] = {}
        self._shaped: dict[str, ShapedRun] = {}
        # Identifies the font in PDF resource names, so two fonts never share a name.
        self.key = f"{choice.path.name}:{self._face.glyph_count}"

    @classmethod
    def from_path(cls, path: str | Path) -> GlyphFont:
        """Low level: a font from a file, without discovery (tests, benchmarks)."""
        p = Path(path)
        _, mj = inspect_font(p)
        return cls(FontChoice(path=p, resolves_mj_sequences=mj, source="path"))

    def shape(self, text: str) -> ShapedRun:
        """Shape one line. Raises :class:`GlyphMissing` for a character the font lacks."""
        # Lines are shaped when wrapped and again when drawn, and labels recur in every document.
        cached = self._shaped.get(text)
        if cached is not None:
            return cached
        run = self._shape(text)
        if len(self._shaped) >= _SHAPE_CACHE_SIZE:
            self._shaped.clear()  # crude but bounded; refills with what is in use
        self._shaped[text] = run
        return run

    def _shape(self, text: str) -> ShapedRun:
        buf = hb.Buffer()
        buf.add_str(text)
        buf.guess_segment_properties()
        hb.shape(self._font, buf, {})
        infos = buf.glyph_infos
        positions = buf.glyph_positions
        gids: list[int] = []
        placed: list[tuple[int, int]] = []
        cluster_adv = [0] * len(text)
        starts = [False] * len(text)
        pen_x = pen_y = 0
        for info, pos in zip(infos, positions, strict=True):
            if info.codepoint == 0:
                raise GlyphMissing(_cluster_text(text, info.cluster, infos))
            gids.append(info.codepoint)
            placed.append((pen_x + pos.x_offset, pen_y + pos.y_offset))
            if info.cluster < len(cluster_adv):
                cluster_adv[info.cluster] += pos.x_advance
                starts[info.cluster] = True
            pen_x += pos.x_advance
            pen_y += pos.y_advance
        return ShapedRun(tuple(gids), tuple(placed), pen_x, tuple(cluster_adv), tuple(starts))

    def outline(self, gid: int) -> GlyphOutline:
        """The glyph's outline, extracted on first use and cached for the process."""
        cached = self._outlines.get(gid)
        if cached is not None:
            return cached
        pen = _PathPen()
        self._font.draw_glyph(gid, self._funcs, pen)
        if pen.parts:
            body = (" ".join(pen.parts) + " f").encode("ascii")
            data = zlib.compress(body, _GLYPH_ZLIB_LEVEL)
            ext = self._font.get_glyph_extents(gid)
            # The glyph header's box; a margin keeps antialiased edges inside the form's clip.
            bbox = (
                ext.x_bearing - 2,
                ext.y_bearing + ext.height - 2,
                ext.x_bearing + ext.width + 2,
                ext.y_bearing + 2,
            )
        else:
            data, bbox = b"", (0, 0, 0, 0)
        out = GlyphOutline(gid=gid, data=data, bbox=bbox)
        self._outlines[gid] = out
        return out

    def glyph_name(self, gid: int) -> str:
        """The glyph's name in the font (mj022335 in IPAmj Mincho); for tests and diagnostics."""
        return self._font.get_glyph_name(gid) or str(gid)

    def clear_cache(self) -> None:
        """Forget every extracted outline and shaped line (cold-cache benchmarks)."""
        self._outlines.clear()
        self._shaped.clear()

    @property
    def cached_glyphs(self) -> int:
        return len(self._outlines)


def _cluster_text(text: str, cluster: int, infos: list[hb.GlyphInfo]) -> str:
    later = sorted({i.cluster for i in infos if i.cluster > cluster})
    end = later[0] if later else len(text)
    return text[cluster:end]


_default: GlyphFont | None = None
_default_lock = threading.Lock()


def default_font() -> GlyphFont:
    """The process-wide font found by :func:`find_font` (raises FontMissing), created once."""
    global _default  # noqa: PLW0603 - one cache per process is the point
    with _default_lock:
        if _default is None:
            _default = GlyphFont(find_font())
        return _default
