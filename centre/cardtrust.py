"""Which JPKI CAs and CRLs the centre trusts for cards, and the CardVerifier built from them.

The configured JPKI CA and its CRL file always count; in test mode the CAs and CRLs that
FixtureService.LoadDataset stored are added (read from the store, so every worker agrees).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from konbini.pki import CardIdentity, CardVerifier, CrlFile
from konbini.storage import AsyncStore, Tx


@dataclass(frozen=True)
class _Combined:
    """A CRL provider: the file's CRL plus fixed extra ones."""

    file: CrlFile
    extra: tuple[x509.CertificateRevocationList, ...]

    def crls(self) -> Sequence[x509.CertificateRevocationList]:
        return (*self.file.crls(), *self.extra)


def fixture_trust(tx: Tx) -> list[tuple[str, bytes]]:
    """(kind, DER) of every CA and CRL loaded in test mode, oldest first."""
    rows = tx.execute("SELECT item_kind, der FROM fixture_trust ORDER BY item_id").fetchall()
    return [(str(r["item_kind"]), bytes(r["der"])) for r in rows]


class CardTrust:
    """Builds the verifier for each check (cheap: parsing a few certificates)."""

    def __init__(
        self,
        jpki_ca_cert: Path,
        crl_path: Path,
        crl_grace: dt.timedelta,
        store: AsyncStore,
        *,
        use_fixtures: bool,
    ) -> None:
        self._ca = x509.load_pem_x509_certificate(jpki_ca_cert.read_bytes())
        self._crl_file = CrlFile(crl_path)
        self._grace = crl_grace
        self._store = store
        self._use_fixtures = use_fixtures
        self._cache: tuple[tuple[tuple[str, bytes], ...], CardVerifier] | None = None

    async def verifier(self) -> CardVerifier:
        """The verifier with every trusted CA and CRL as of now."""
        items: tuple[tuple[str, bytes], ...] = ()
        if self._use_fixtures:
            items = tuple(await self._store.run(fixture_trust, write=False))
        if self._cache is not None and self._cache[0] == items:
            return self._cache[1]
        cas = [self._ca] + [x509.load_der_x509_certificate(d) for k, d in items if k == "CA"]
        crls = tuple(x509.load_der_x509_crl(d) for k, d in items if k == "CRL")
        verifier = CardVerifier(cas, _Combined(self._crl_file, crls), self._grace)
        self._cache = (items, verifier)
        return verifier

    async def verify_at(
        self, now: dt.datetime, cert_der: bytes, signed: bytes, signature: bytes
    ) -> CardIdentity:
        """Check the card and its signature over ``signed``; raises CardRejected."""
        return (await self.verifier()).verify_at(now, cert_der, signed, signature)
