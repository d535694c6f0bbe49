"""Rendering benchmark behind ``konbini bench render``: median milliseconds per page.

A page holds about 800 Japanese characters in a bordered table (like a residence record), the
frame, the municipal seal and a QR code of a 300-character base45 payload. "cold" clears the
process's glyph and image caches before every run (the first page a process renders); "warm"
renders once first and then measures.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from PIL import Image, ImageDraw

from municipality.render import images
from municipality.render.glyphs import GlyphFont, default_font
from municipality.render.layout import (
    Block,
    CertificateLayout,
    Heading,
    Note,
    PageBreak,
    Table,
    render_certificate,
    same_qr,
)

# Varied everyday text, so a page needs a realistic number of distinct glyphs (~300).
_SAMPLE = (
    "山梨県甲府市丸の内一丁目十八番一号に住所を有する世帯主及び世帯員の氏名生年月日性別続柄"
    "住民となった年月日住所を定めた年月日前住所本籍筆頭者個人番号住民票コード旧氏記載事項証明"
    "令和五年四月一日転入届出昭和平成西暦男女長男長女妻夫子孫父母祖国籍在留資格期間満了日通称"
    "印鑑登録番号課税所得金額納税義務者市町村民税県民税均等割所得割非課税扶養控除配偶者社会保険"
    "戸籍全部事項証明書個人事項婚姻出生死亡養子縁組離婚認知分籍転籍届出日受理者従前戸籍附票異動"
    "葛飾区辻堂高橋髙橋斉藤齋藤渡邊渡部渡辺吉田𠮷田柳瀬澤邉濱崎峯岸嶋田塚本德永廣瀬眞鍋"
)
_QR_PAYLOAD = ("6BFOXN%TS3DH0YOJ58S S-W5HDC *M0II5XHC9B5G2+$N IOP-IA%CV.1" * 6)[:300]


def _line(seed: int, length: int) -> str:
    n = len(_SAMPLE)
    return "".join(_SAMPLE[(seed * 7 + i * 13) % n] for i in range(length))


def bench_layout(pages: int) -> CertificateLayout:
    """A layout of ``pages`` pages of about 800 characters each (for benchmarks and tests)."""
    body: list[Block] = []
    for p in range(pages):
        if p:
            body.append(PageBreak())
        body.append(Heading(f"記載事項 {p + 1}"))
        rows = [(_line(p * 20 + r, 6), _line(p * 20 + r + 1, 40)) for r in range(16)]
        body.append(Table(rows))
        body.append(Note("旧氏 " + _line(p, 8)))
    return CertificateLayout(
        title="住民票の写し",
        municipality_name="山梨県甲府市",
        issuer_line="甲府市長 山田 太郎",
        issue_number="19201-2025-000001",
        issued_on="令和7年4月1日",
        body=body,
        certification="この写しは、住民票の原本と相違ないことを証明する。",
        municipal_seal=_bench_seal(),
        qr_for_page=same_qr(_QR_PAYLOAD),
    )


def _bench_seal() -> Image.Image:
    img = Image.new("RGBA", (240, 240), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rectangle((8, 8, 231, 231), outline=(200, 30, 30, 230), width=14)
    draw.rectangle((60, 60, 180, 180), fill=(200, 30, 30, 200))
    return img


def bench_render(
    pages: int = 1,
    warm: bool = True,
    *,
    runs: int = 15,
    font: GlyphFont | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float | int | bool]:
    """Median (and min/max) milliseconds per page over ``runs`` renders of a ``pages``-page
    document; also the characters per page and the PDF size."""
    if pages < 1 or runs < 1:
        raise ValueError("pages and runs must be at least 1")
    glyph_font = font if font is not None else default_font()
    layout = bench_layout(pages)
    if warm:
        render_certificate(layout, font=glyph_font)
    per_page: list[float] = []
    size = 0
    for _ in range(runs):
        if not warm:
            glyph_font.clear_cache()
            images.clear_cache()
        start = clock()
        pdf = render_certificate(layout, font=glyph_font)
        per_page.append((clock() - start) * 1000 / pages)
        size = len(pdf)
    chars = sum(
        len(label) + len(value)
        for block in layout.body
        if isinstance(block, Table)
        for label, value in block.rows
    )
    return {
        "pages": pages,
        "warm": warm,
        "runs": runs,
        "median_ms_per_page": round(statistics.median(per_page), 2),
        "min_ms_per_page": round(min(per_page), 2),
        "max_ms_per_page": round(max(per_page), 2),
        "chars_per_page": chars // pages,
        "pdf_bytes": size,
    }
