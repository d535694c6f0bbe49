"""SQL text rewriting so side code writes every statement once.

Side SQL uses ``?`` positional placeholders (SQLite's native style). For psycopg they become
``%s`` and a literal ``%`` becomes ``%%``. ``?`` inside string literals, quoted identifiers and
comments is left alone. In migrations for PostgreSQL the type name ``BLOB`` becomes ``BYTEA``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from functools import lru_cache

# One token of SQL: a string literal, a quoted identifier, a comment, or a run of other text.
_TOKEN = re.compile(
    r"""
      (?P<literal>'(?:[^']|'')*'?)
    | (?P<ident>"(?:[^"]|"")*"?)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<code>[^'"\-/]+|[\-/])
    """,
    re.VERBOSE | re.DOTALL,
)
_BLOB = re.compile(r"\bBLOB\b", re.IGNORECASE)


def _tokens(sql: str) -> Iterator[tuple[str, str]]:
    """Yield ``(kind, text)`` pairs covering ``sql`` exactly."""
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        assert kind is not None
        yield kind, match.group()


@lru_cache(maxsize=1024)
def to_psycopg(sql: str) -> str:
    """Rewrite ``?`` placeholders as ``%s`` and escape ``%`` for psycopg's parser.

    psycopg scans the whole text for ``%``, literals included, so every ``%`` is doubled.
    """
    out: list[str] = []
    for kind, text in _tokens(sql):
        escaped = text.replace("%", "%%")
        out.append(escaped.replace("?", "%s") if kind == "code" else escaped)
    return "".join(out)


def ddl_for_postgresql(sql: str) -> str:
    """Translate the portable DDL subset to PostgreSQL (``BLOB`` → ``BYTEA``) outside literals."""
    return "".join(
        _BLOB.sub("BYTEA", text) if kind == "code" else text for kind, text in _tokens(sql)
    )


def split_sqlite_script(sql: str) -> list[str]:
    """Split a script into complete statements, keeping ``;`` inside literals and triggers.

    ``sqlite3.executescript`` would commit the surrounding transaction first, so migrations run
    statement by statement instead.
    """
    statements: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _has_code(pending):
                statements.append(pending.strip())
            pending = ""
    if _has_code(pending.rstrip(";")):
        raise ValueError("migration SQL ends with an incomplete statement")
    return statements


def _has_code(sql: str) -> bool:
    """True if ``sql`` holds anything but whitespace, comments and semicolons."""
    return any(kind != "comment" and text.strip(" \t\r\n;") for kind, text in _tokens(sql))
