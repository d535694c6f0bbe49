"""Base45 (RFC 9285): bytes as text in the QR alphanumeric alphabet.

Decoding is strict: a character outside the alphabet, a dangling single character or a group
whose value does not fit its bytes raises ``ValueError`` (never a silently wrong payload).
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    """Encode ``data``: every 2 bytes become 3 characters, a trailing byte becomes 2."""
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = n % 45, n // 45
        d, e = n % 45, n // 45
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        c, d = data[-1] % 45, data[-1] // 45
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode base45 ``text``; raises ``ValueError`` on any malformed input."""
    if len(text) % 3 == 1:
        raise ValueError("base45 text length leaves a single dangling character")
    try:
        values = [_VALUE[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in the base45 alphabet") from None
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i : i + 3]
        if len(group) == 3:
            n = group[0] + group[1] * 45 + group[2] * 45 * 45
            if n > 0xFFFF:
                raise ValueError(f"base45 group at {i} exceeds two bytes")
            out += n.to_bytes(2, "big")
        else:
            n = group[0] + group[1] * 45
            if n > 0xFF:
                raise ValueError(f"base45 group at {i} exceeds one byte")
            out.append(n)
    return bytes(out)
