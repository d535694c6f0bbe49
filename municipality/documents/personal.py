"""印鑑登録証明書 and 所得・課税証明書: one person, the holder."""

from __future__ import annotations

from konbini.register.v1 import register_pb2
from municipality.documents.jpformat import (
    fiscal_year_label,
    income_year_label,
    print_date,
    sex_label,
    yen,
)
from municipality.documents.people import former_surname_note
from municipality.render import Block, Heading, SealImage, Spacer, Table, mm

SEAL_IMPRESSION_WIDTH = mm(30)


def seal_body(
    holder: register_pb2.Resident, seal: register_pb2.SealRegistration, *, western: bool = False
) -> list[Block]:
    """The registered impression, then who registered it."""
    body: list[Block] = [Heading("印影")]
    if seal.seal_png:
        body.append(SealImage(seal.seal_png, width=SEAL_IMPRESSION_WIDTH))
    body += [
        Spacer(mm(2)),
        Table(
            [
                ("登録番号", seal.number),
                ("氏名", holder.name),
                ("生年月日", print_date(holder.birth_date, western=western)),
                ("性別", sex_label(holder.sex)),
                ("住所", holder.address),
            ]
        ),
    ]
    body += former_surname_note(holder.former_surname)
    return body


def tax_body(
    holder: register_pb2.Resident, tax: register_pb2.TaxRecord, *, western: bool = False
) -> list[Block]:
    """The taxpayer, the income of the preceding year and the inhabitant taxes of the year."""
    total_tax = tax.municipal_tax.yen + tax.prefectural_tax.yen
    body: list[Block] = [
        Table(
            [
                ("年度", fiscal_year_label(tax.fiscal_year)),
                ("所得の年", income_year_label(tax.fiscal_year - 1)),
                ("住所", holder.address),
                ("氏名", holder.name),
                ("生年月日", print_date(holder.birth_date, western=western)),
            ]
        ),
    ]
    body += former_surname_note(holder.former_surname)
    body += [
        Heading("所得"),
        Table([("総所得金額", yen(tax.total_income))]),
        Heading("課税"),
        Table(
            [
                ("市町村民税", yen(tax.municipal_tax)),
                ("道府県民税", yen(tax.prefectural_tax)),
                ("合計", f"{total_tax:,}円"),
                ("扶養親族数", f"{tax.dependants}人"),
            ]
        ),
    ]
    return body
