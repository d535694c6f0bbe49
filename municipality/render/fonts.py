"""Finding the font that draws certificates.

Order: the file named by ``KONBINI_FONT``; IPAmj Mincho (the MJ character set font, so variation
sequences give their registered MJ glyph); any other installed Japanese font, with a warning that
variation sequences may then draw the base glyph. Every step is injectable so tests do not depend
on the machine's fonts.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import uharfbuzz as hb

from municipality.render.errors import FontMissing

log = logging.getLogger(__name__)

ENV_VAR = "KONBINI_FONT"

IPAMJ_PATHS: tuple[Path, ...] = (
    Path("/usr/share/fonts/truetype/ipamj/ipamjm.ttf"),
    Path("/usr/share/fonts/opentype/ipamj/ipamjm.ttf"),
    Path("/usr/local/share/fonts/ipamjm.ttf"),
)

# fontconfig patterns, best first: IPAmj itself, then other Japanese families.
IPAMJ_PATTERN = "IPAmjMincho"
FALLBACK_PATTERNS: tuple[str, ...] = (
    "IPAexMincho",
    "IPAMincho",
    "Noto Serif CJK JP",
    "Noto Sans CJK JP",
    "serif:lang=ja",
    "sans-serif:lang=ja",
)

INSTALL_HINT = (
    "install IPAmj Mincho with `apt-get install fonts-ipamj-mincho` "
    f"(Debian/Ubuntu), or set {ENV_VAR} to the path of a TrueType/OpenType font file"
)

# A few everyday characters a font must draw to count as Japanese.
_JAPANESE_PROBE = "日本語住民票あア"
# DOMAIN.md "Glyphs": in IPAmj Mincho 葛+U+E0102 is mj022335, unlike plain 葛 (mj022336).
_MJ_PROBE = (0x845B, 0xE0102)

FcMatch = Callable[[str], Path | None]


@dataclass(frozen=True)
class FontChoice:
    """The font chosen: its file and whether it resolves MJ variation sequences."""

    path: Path
    resolves_mj_sequences: bool
    source: str  # "env", "ipamj" or "fallback": how it was found, for logs


def fc_match(pattern: str) -> Path | None:
    """Ask fontconfig for the file of ``pattern``; None without fontconfig or on no answer."""
    exe = shutil.which("fc-match")
    if exe is None:
        return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed executable, pattern is ours
            [exe, "--format=%{file}", pattern],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = out.stdout.strip()
    return Path(path) if out.returncode == 0 and path else None


def inspect_font(path: Path) -> tuple[bool, bool]:
    """(draws Japanese, resolves MJ variation sequences) for the font file at ``path``."""
    font = hb.Font(hb.Face(hb.Blob.from_file_path(str(path))))
    japanese = all(font.get_nominal_glyph(ord(c)) for c in _JAPANESE_PROBE)
    base, selector = _MJ_PROBE
    varied = font.get_variation_glyph(base, selector)
    mj = japanese and varied is not None and varied != font.get_nominal_glyph(base)
    return japanese, mj


def find_font(
    *,
    env: Mapping[str, str] | None = None,
    ipamj_paths: Sequence[Path] = IPAMJ_PATHS,
    fc: FcMatch | None = fc_match,
    fallback_patterns: Sequence[str] = FALLBACK_PATTERNS,
    allow_fallback: bool = True,
) -> FontChoice:
    """Choose the certificate font, or raise :class:`FontMissing` saying how to install one.

    A ``KONBINI_FONT`` that names no file, or a font that cannot draw Japanese, is an error rather
    than a silent fall-through: the operator asked for that font.
    """
    environ = os.environ if env is None else env
    configured = environ.get(ENV_VAR, "").strip()
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FontMissing(f"{ENV_VAR}={configured} names no font file; {INSTALL_HINT}")
        return _accept(path, "env", require_mj=False)

    candidates = [p for p in ipamj_paths if p.is_file()]
    if fc is not None and not candidates:
        found = fc(IPAMJ_PATTERN)
        if found is not None and found.is_file():
            candidates.append(found)
    for path in candidates:
        choice = _accept(path, "ipamj", require_mj=True, strict=False)
        if choice is not None:
            return choice

    if allow_fallback and fc is not None:
        for pattern in fallback_patterns:
            found = fc(pattern)
            if found is None or not found.is_file():
                continue
            choice = _accept(found, "fallback", require_mj=False, strict=False)
            if choice is not None:
                return choice
    raise FontMissing(f"no Japanese font found; {INSTALL_HINT}")


def _accept(path: Path, source: str, *, require_mj: bool, strict: bool = True) -> FontChoice | None:
    try:
        japanese, mj = inspect_font(path)
    except Exception as exc:  # any unreadable file counts as "not a usable font"
        if strict:
            raise FontMissing(f"{path} is not a readable font ({exc}); {INSTALL_HINT}") from exc
        return None
    if not japanese or (require_mj and not mj):
        if strict:
            raise FontMissing(f"{path} cannot draw Japanese text; {INSTALL_HINT}")
        return None
    if not mj:
        log.warning(
            "font %s is not IPAmj Mincho: variation sequences may draw the base glyph instead of "
            "their MJ glyph; %s",
            path,
            INSTALL_HINT,
        )
    return FontChoice(path=path, resolves_mj_sequences=mj, source=source)
