"""戸籍全部事項証明書, 戸籍個人事項証明書 and 戸籍の附票の写し: the register and its members."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from konbini.register.v1 import register_pb2
from municipality.documents.jpformat import print_date
from municipality.documents.people import former_surname_note
from municipality.render import Block, Heading, Note, Spacer, Table, mm

MEMBER_HEADING = "戸籍に記録されている者"
REMOVED_MARK = "除籍"


def _register_rows(register: register_pb2.FamilyRegister) -> Table:
    return Table([("本籍", register.registered_domicile), ("筆頭者", register.head_of_register)])


def register_body(
    register: register_pb2.FamilyRegister,
    members: Sequence[register_pb2.RegisterMember],
    former_surnames: Mapping[str, str],
    *,
    western: bool = False,
) -> list[Block]:
    """The register's domicile and head, then each printed member with their events.
    ``former_surnames`` maps a member's resident id to a registered 旧氏."""
    body: list[Block] = [_register_rows(register)]
    for member in members:
        body.append(Heading(MEMBER_HEADING))
        rows = [
            ("氏名", member.name),
            ("生年月日", print_date(member.birth_date, western=western)),
            ("父", member.father),
            ("母", member.mother),
            ("続柄", member.relationship),
        ]
        for event in member.events:
            when = print_date(event.date, western=western)
            rows.append((f"【{event.kind}】", f"{when}　{event.text}".strip()))
        body.append(Table([(label, value) for label, value in rows if value]))
        if member.removed:
            body.append(Note(REMOVED_MARK))
        body += former_surname_note(former_surnames.get(member.resident_id, ""))
    return body


def address_history_body(
    register: register_pb2.FamilyRegister,
    members: Sequence[register_pb2.RegisterMember],
    former_surnames: Mapping[str, str],
    *,
    western: bool = False,
) -> list[Block]:
    """For each printed member, the addresses of the register's 附票 in order."""
    body: list[Block] = [_register_rows(register)]
    for member in members:
        body += [Spacer(mm(3)), Heading(member.name)]
        body += former_surname_note(former_surnames.get(member.resident_id, ""))
        rows = [("住所を定めた年月日", "住所")]
        for entry in register.address_history:
            if entry.member_id != member.id:
                continue
            since = print_date(entry.from_date, western=western)
            until = print_date(entry.to_date, western=western)
            rows.append((f"{since}から{until}まで" if until else since, entry.address))
        if len(rows) == 1:
            rows.append(("", "記録なし"))
        body.append(Table(rows))
    return body
