"""What the issuance engine hands the composer: everything printed on one request's copies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2
from municipality.documents.signer import DocumentSigner


@dataclass(frozen=True)
class DocumentRequest:
    """One request's documents. The caller has already decided eligibility and chosen whom to
    print; the composer prints exactly that, in that order."""

    tenant: register_pb2.Tenant
    signer: DocumentSigner
    kind: int  # konbini.common.v1.CertificateKind
    options: types_pb2.CertificateOptions
    # People printed, in order (residence kinds; the holder for seal/tax).
    residents: Sequence[register_pb2.Resident]
    seal: register_pb2.SealRegistration | None
    tax: register_pb2.TaxRecord | None
    family_register: register_pb2.FamilyRegister | None
    # Members printed (family-register kinds).
    register_members: Sequence[register_pb2.RegisterMember]
    issue_numbers: Sequence[str]  # one per copy
    reservation_id: str
    issued_at: datetime  # aware
