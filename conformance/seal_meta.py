"""Small readers of a Document's signed metadata (parsed, not verified)."""

from __future__ import annotations

from collections.abc import Iterable

from konbini.common.v1 import types_pb2


def metadata_of(document: types_pb2.Document) -> types_pb2.DocumentMetadata:
    meta = types_pb2.DocumentMetadata()
    meta.ParseFromString(document.signed_metadata)
    return meta


def issue_numbers(documents: Iterable[types_pb2.Document]) -> list[str]:
    return [metadata_of(d).issue_number for d in documents]


def subject_digests(documents: Iterable[types_pb2.Document]) -> list[bytes]:
    return [metadata_of(d).subject_digest for d in documents]
