"""住民票の写し and 住民票記載事項証明書: the chosen members with exactly the items asked for.

OPT-APPLIED: an optional item (世帯主・続柄, 本籍・筆頭者, 個人番号, the foreign-resident items) is
printed only when its option is set; nothing else decides it.
"""

from __future__ import annotations

from collections.abc import Sequence

from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2
from municipality.documents.jpformat import individual_number, print_date, sex_label
from municipality.documents.people import former_surname_note
from municipality.render import Block, Spacer, Table, mm

HEAD_OF_HOUSEHOLD = "世帯主"


def _person_rows(
    person: register_pb2.Resident, opts: types_pb2.ResidenceRecordOptions, western: bool
) -> list[tuple[str, str]]:
    rows = [
        ("氏名", person.name),
        ("生年月日", print_date(person.birth_date, western=western)),
        ("性別", sex_label(person.sex)),
    ]
    if opts.show_household_head:
        rows.append(("続柄", person.relationship))
    rows.append(("住所", person.address))
    if opts.show_registered_domicile and person.registered_domicile:
        rows += [("本籍", person.registered_domicile), ("筆頭者", person.head_of_register)]
    if opts.show_individual_number and person.individual_number:
        rows.append(("個人番号", individual_number(person.individual_number)))
    if person.HasField("foreign"):
        foreign = person.foreign
        if opts.show_nationality:
            rows.append(("国籍・地域", foreign.nationality))
        if opts.show_residence_card_number:
            rows.append(("在留カード番号", foreign.residence_card_number))
        if opts.show_residence_status:
            rows.append(("在留資格", foreign.residence_status))
            end = print_date(foreign.period_of_stay_end, western=western)
            if end:
                rows.append(("在留期間等の満了の日", end))
    return rows


def residence_body(
    residents: Sequence[register_pb2.Resident],
    opts: types_pb2.ResidenceRecordOptions,
    *,
    western: bool = False,
) -> list[Block]:
    """One bordered table per printed member, in the given order, each followed by its 旧氏
    annotation when one is registered."""
    body: list[Block] = []
    head = next((r for r in residents if r.relationship == HEAD_OF_HOUSEHOLD), None)
    if opts.show_household_head and head is not None:
        body += [Table([(HEAD_OF_HOUSEHOLD, head.name)]), Spacer(mm(4))]
    for index, person in enumerate(residents):
        if index:
            body.append(Spacer(mm(3)))
        body.append(Table(_person_rows(person, opts, western)))
        body += former_surname_note(person.former_surname)
    return body
