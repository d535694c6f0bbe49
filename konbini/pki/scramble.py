"""The centre's scramble-key set: 32-byte keys with ids and validity, rotated by adding keys.

Stored as a small JSON file (0600, it is secret):
``{"keys": [{"key_id", "key" (base64), "not_before", "not_after"}]}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from konbini.pki.files import SECRET_MODE, write_atomic

KEY_LENGTH = 32


class NoScrambleKey(LookupError):
    """No key of the set is valid at the asked time, or the key id is unknown."""


@dataclass(frozen=True)
class ScrambleKey:
    """One scramble key; ``key_id`` is printed on the back of the paper."""

    key_id: str
    key: bytes
    not_before: dt.datetime
    not_after: dt.datetime

    def valid_at(self, at: dt.datetime) -> bool:
        """True if ``not_before <= at < not_after``."""
        return self.not_before <= at < self.not_after


@dataclass(frozen=True)
class ScrambleKeySet:
    """An immutable set of scramble keys; :meth:`with_new_key` returns a rotated set."""

    keys: tuple[ScrambleKey, ...]

    def current_key_at(self, at: dt.datetime) -> ScrambleKey:
        """The newest key (latest not_before) valid at ``at``."""
        valid = [k for k in self.keys if k.valid_at(at)]
        if not valid:
            raise NoScrambleKey(f"no scramble key valid at {at.isoformat()}")
        return max(valid, key=lambda k: k.not_before)

    def key(self, key_id: str) -> ScrambleKey:
        """The key named ``key_id`` (to unscramble paper printed under an older key)."""
        for k in self.keys:
            if k.key_id == key_id:
                return k
        raise NoScrambleKey(f"unknown scramble key id {key_id!r}")

    def with_new_key(
        self,
        not_before: dt.datetime,
        valid_for: dt.timedelta,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> ScrambleKeySet:
        """This set plus a new key valid from ``not_before`` (rotation: old keys stay for
        verification of paper printed under them)."""
        key = random_bytes(KEY_LENGTH)
        if len(key) != KEY_LENGTH:
            raise ValueError("random_bytes returned the wrong length")
        key_id = f"sk{len(self.keys) + 1:04d}"
        new = ScrambleKey(key_id, key, not_before, not_before + valid_for)
        return ScrambleKeySet((*self.keys, new))

    def to_json(self) -> bytes:
        """The JSON file content."""
        return json.dumps(
            {
                "keys": [
                    {
                        "key_id": k.key_id,
                        "key": base64.b64encode(k.key).decode(),
                        "not_before": k.not_before.isoformat(),
                        "not_after": k.not_after.isoformat(),
                    }
                    for k in self.keys
                ]
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ScrambleKeySet:
        """Parse the JSON file content."""
        raw = json.loads(data)
        keys: Sequence[ScrambleKey] = [
            ScrambleKey(
                key_id=k["key_id"],
                key=base64.b64decode(k["key"], validate=True),
                not_before=dt.datetime.fromisoformat(k["not_before"]),
                not_after=dt.datetime.fromisoformat(k["not_after"]),
            )
            for k in raw["keys"]
        ]
        for k in keys:
            if len(k.key) != KEY_LENGTH:
                raise ValueError(f"scramble key {k.key_id} is not {KEY_LENGTH} bytes")
        return cls(tuple(keys))

    @classmethod
    def load(cls, path: Path) -> ScrambleKeySet:
        """Read a key-set file."""
        return cls.from_json(path.read_bytes())

    def save(self, path: Path) -> None:
        """Write the key-set file atomically with mode 0600."""
        write_atomic(path, self.to_json(), SECRET_MODE)
