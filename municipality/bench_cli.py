"""`konbini bench render`: the rendering engine warm and cold, and each kind composed."""

from __future__ import annotations

from konbini.bench import Measurement, report
from konbini.common.v1 import types_pb2
from municipality.documents.bench import bench_compose
from municipality.documents.samples import ALL_KINDS
from municipality.render import bench_render


def measure(runs: int) -> list[Measurement]:
    rows = []
    for warm in (True, False):
        result = bench_render(1, warm, runs=runs)
        rows.append(Measurement(
            f"engine, 1 page, {'warm' if warm else 'cold'} glyph cache",
            float(result["median_ms_per_page"]), "page", runs,
            f"{result['chars_per_page']} characters"))
    for kind in ALL_KINDS:
        result = bench_compose(kind, runs=max(1, runs // 3))
        name = types_pb2.CertificateKind.Name(kind).removeprefix("CERTIFICATE_KIND_").lower()
        rows.append(Measurement(
            f"compose {name}", float(result["median_ms_per_page"]), "page",
            int(result["runs"]),  # type: ignore[arg-type]
            f"{result['pages']} page(s); render x2, rasterize, fingerprint, sign"))
    return rows


def measure_and_report(runs: int) -> str:
    rows = measure(runs)
    return report(
        "konbini bench render",
        rows,
        [("cold / warm engine", rows[1].name, rows[0].name),
         ("compose (residence record) / warm engine", rows[2].name, rows[0].name)],
    )
