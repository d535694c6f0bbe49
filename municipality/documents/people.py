"""Blocks shared by the kinds: a person's identity rows and the 旧氏 annotation."""

from __future__ import annotations

from municipality.render import Note

FORMER_SURNAME_LABEL = "旧氏"


def former_surname_note(former_surname: str) -> list[Note]:
    """The 旧氏 annotation printed under a person whose former surname is registered."""
    surname = former_surname.strip()
    return [Note(f"{FORMER_SURNAME_LABEL}　{surname}")] if surname else []
