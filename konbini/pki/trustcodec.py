"""Wire encoding of the trust list: the ``konbini.common.v1.TrustList`` message.

The centre signs the bytes this produces; verifiers decode exactly the signed bytes, so the
encoding never needs to be canonical across languages.
"""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError

from konbini.common.v1 import trust_pb2
from konbini.pki.trustmodel import DocumentSigner, TrustList, TrustListScrambleKey


def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


def _time(ts: timestamp_pb2.Timestamp) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.UTC)


def encode_trust_list(tl: TrustList) -> bytes:
    """The bytes to sign."""
    message = trust_pb2.TrustList(
        sequence=tl.sequence,
        issued_at=_ts(tl.issued_at),
        next_update=_ts(tl.next_update),
        document_signers=[
            trust_pb2.DocumentSigner(
                municipality_code=s.municipality_code,
                key_id=s.key_id,
                certificate_der=s.certificate_der,
                not_before=_ts(s.not_before),
                not_after=_ts(s.not_after),
            )
            for s in tl.document_signers
        ],
        scramble_keys=[
            trust_pb2.ScrambleKey(
                key_id=k.key_id,
                key=k.key,
                not_before=_ts(k.not_before),
                not_after=_ts(k.not_after),
            )
            for k in tl.scramble_keys
        ],
    )
    return message.SerializeToString()


def decode_trust_list(data: bytes) -> TrustList:
    """Parse signed bytes; ValueError if malformed."""
    try:
        message = trust_pb2.TrustList.FromString(data)
    except DecodeError as exc:
        raise ValueError(f"malformed trust list: {exc}") from None
    return TrustList(
        sequence=message.sequence,
        issued_at=_time(message.issued_at),
        next_update=_time(message.next_update),
        document_signers=tuple(
            DocumentSigner(
                municipality_code=s.municipality_code,
                key_id=s.key_id,
                certificate_der=s.certificate_der,
                not_before=_time(s.not_before),
                not_after=_time(s.not_after),
            )
            for s in message.document_signers
        ),
        scramble_keys=tuple(
            TrustListScrambleKey(
                key_id=k.key_id,
                key=k.key,
                not_before=_time(k.not_before),
                not_after=_time(k.not_after),
            )
            for k in message.scramble_keys
        ),
    )
