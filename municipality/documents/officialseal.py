"""A plausible municipal seal (公印) for a tenant that registered no image of its own.

Square red stamp with the office name ("甲府市長之印") in columns read top to bottom, right to
left, as official seals are cut. Drawn once per name and font and cached.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SEAL_PX = 240
_BORDER = 14
_INK = (200, 32, 38, 255)
_OFFICE_SUFFIX = {"市": "長", "町": "長", "村": "長", "区": "長"}


def seal_text(municipality_name: str) -> str:
    """The legend of the mayor's seal: 甲府市 → 甲府市長之印."""
    name = municipality_name.strip()
    return f"{name}{_OFFICE_SUFFIX.get(name[-1:], '')}之印"


@functools.lru_cache(maxsize=32)
def generated_seal_png(municipality_name: str, font_path: Path) -> bytes:
    """The generated seal of ``municipality_name`` as PNG (transparent background)."""
    text = seal_text(municipality_name)
    columns = max(1, math.ceil(math.sqrt(len(text))))
    rows = math.ceil(len(text) / columns)
    inner = SEAL_PX - 2 * (_BORDER + 10)
    cell_w, cell_h = inner / columns, inner / rows
    size = int(min(cell_w, cell_h) * 0.95)
    font = ImageFont.truetype(str(font_path), size)
    image = Image.new("RGBA", (SEAL_PX, SEAL_PX), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((3, 3, SEAL_PX - 4, SEAL_PX - 4), outline=_INK, width=_BORDER)
    origin = _BORDER + 10
    for i, char in enumerate(text):
        column, row = divmod(i, rows)
        x = origin + inner - (column + 0.5) * cell_w  # first column on the right
        y = origin + (row + 0.5) * cell_h
        draw.text((x, y), char, font=font, fill=_INK, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()
