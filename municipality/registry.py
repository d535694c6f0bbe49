"""The register data of one tenant, read and written inside one transaction.

:class:`Registry` is bound to a transaction and to one municipality code; it has no method that
reaches another tenant's rows (AUTHZ-TENANT by construction). Nothing is cached: every issuance
reads the store afresh (FRESH-NEXT).

:func:`load_dataset` / :func:`export_tenant` implement the documented import format: the
protobuf JSON mapping of ``konbini.register.v1.Dataset`` (see docs in that proto).
"""

from __future__ import annotations

from collections.abc import Iterable

from konbini.register.v1 import register_pb2
from konbini.storage import Tx
from municipality.eligibility import CardView, Membership
from municipality.schema import REGISTER_TABLES


class Registry:
    """One tenant's registers in one transaction."""

    def __init__(self, tx: Tx, code: str) -> None:
        self.tx = tx
        self.code = code

    # -- reads -------------------------------------------------------------------------------
    def tenant(self) -> register_pb2.Tenant | None:
        row = self.tx.execute("SELECT data FROM tenants WHERE code = ?", (self.code,)).fetchone()
        return None if row is None else register_pb2.Tenant.FromString(bytes(row["data"]))

    def resident(self, resident_id: str) -> register_pb2.Resident | None:
        row = self.tx.execute(
            "SELECT data FROM residents WHERE tenant = ? AND id = ?", (self.code, resident_id)
        ).fetchone()
        return None if row is None else register_pb2.Resident.FromString(bytes(row["data"]))

    def household(self, household_id: str) -> list[register_pb2.Resident]:
        rows = self.tx.execute(
            "SELECT data FROM residents WHERE tenant = ? AND household_id = ? ORDER BY id",
            (self.code, household_id),
        ).fetchall()
        return [register_pb2.Resident.FromString(bytes(r["data"])) for r in rows]

    def resident_by_card(self, serial: str) -> register_pb2.Resident | None:
        row = self.tx.execute(
            "SELECT r.data FROM card_bindings b JOIN residents r"
            " ON r.tenant = b.tenant AND r.id = b.resident_id"
            " WHERE b.tenant = ? AND b.certificate_serial = ?",
            (self.code, serial),
        ).fetchone()
        return None if row is None else register_pb2.Resident.FromString(bytes(row["data"]))

    def card_bound(self, serial: str) -> bool:
        row = self.tx.execute(
            "SELECT 1 AS one FROM card_bindings WHERE tenant = ? AND certificate_serial = ?"
            " UNION ALL SELECT 1 AS one FROM register_links"
            " WHERE tenant = ? AND certificate_serial = ?",
            (self.code, serial, self.code, serial),
        ).fetchone()
        return row is not None

    def family_register(self, register_id: str) -> register_pb2.FamilyRegister | None:
        row = self.tx.execute(
            "SELECT data FROM family_registers WHERE tenant = ? AND id = ?",
            (self.code, register_id),
        ).fetchone()
        return None if row is None else register_pb2.FamilyRegister.FromString(bytes(row["data"]))

    def memberships(self, serial: str, resident_id: str | None) -> list[Membership]:
        """The registers the card holder is in: through use registrations of the card first,
        then through the holder's own residence record."""
        found: list[Membership] = []
        seen: set[str] = set()
        links = self.tx.execute(
            "SELECT register_id, member_id FROM register_links"
            " WHERE tenant = ? AND certificate_serial = ? ORDER BY register_id",
            (self.code, serial),
        ).fetchall()
        own = [] if not resident_id else self.tx.execute(
            "SELECT register_id, member_id FROM register_members"
            " WHERE tenant = ? AND resident_id = ? ORDER BY register_id",
            (self.code, resident_id),
        ).fetchall()
        for rows, via_link in ((links, True), (own, False)):
            for row in rows:
                register = self.family_register(row["register_id"])
                if register is None or row["register_id"] in seen:
                    continue
                if not any(m.id == row["member_id"] for m in register.members):
                    continue  # a link to a member no longer in the register links nothing
                seen.add(row["register_id"])
                found.append(Membership(register, row["member_id"], via_link))
        return found

    def seals(self, resident_id: str) -> list[register_pb2.SealRegistration]:
        rows = self.tx.execute(
            "SELECT data FROM seals WHERE tenant = ? AND resident_id = ? ORDER BY number",
            (self.code, resident_id),
        ).fetchall()
        return [register_pb2.SealRegistration.FromString(bytes(r["data"])) for r in rows]

    def tax_records(self, resident_id: str) -> list[register_pb2.TaxRecord]:
        rows = self.tx.execute(
            "SELECT data FROM tax_records WHERE tenant = ? AND resident_id = ?"
            " ORDER BY fiscal_year",
            (self.code, resident_id),
        ).fetchall()
        return [register_pb2.TaxRecord.FromString(bytes(r["data"])) for r in rows]

    def registers_at(self, registered_domicile: str) -> list[register_pb2.FamilyRegister]:
        rows = self.tx.execute(
            "SELECT data FROM family_registers WHERE tenant = ? AND registered_domicile = ?"
            " ORDER BY id",
            (self.code, registered_domicile),
        ).fetchall()
        return [register_pb2.FamilyRegister.FromString(bytes(r["data"])) for r in rows]

    def card_view(self, serial: str) -> CardView:
        """Everything eligibility needs about one card, read now (no cache: FRESH-NEXT)."""
        serial = serial.lower()
        tenant = self.tenant()
        holder = self.resident_by_card(serial) if tenant is not None else None
        household = self.household(holder.household_id) if holder is not None else []
        memberships = (
            self.memberships(serial, holder.id if holder else None) if tenant is not None else []
        )
        return CardView(
            code=self.code,
            serial=serial,
            tenant=tenant,
            holder=holder,
            household=tuple(household),
            memberships=tuple(memberships),
            seals=tuple(self.seals(holder.id)) if holder else (),
            tax_records=tuple(self.tax_records(holder.id)) if holder else (),
        )

    def counts(self) -> dict[str, int]:
        """Records held for this tenant, by type (LoadDatasetResponse.counts)."""
        counts = {}
        for table in REGISTER_TABLES:
            column = "code" if table == "tenants" else "tenant"
            row = self.tx.execute(
                f"SELECT count(*) AS n FROM {table} WHERE {column} = ?", (self.code,)  # noqa: S608
            ).fetchone()
            counts[table] = int(row["n"]) if row else 0
        return counts

    # -- writes ------------------------------------------------------------------------------
    def put_tenant(self, tenant: register_pb2.Tenant) -> None:
        self.tx.execute(
            "INSERT INTO tenants (code, data) VALUES (?, ?)"
            " ON CONFLICT (code) DO UPDATE SET data = excluded.data",
            (self.code, tenant.SerializeToString(deterministic=True)),
        )

    def put_resident(self, resident: register_pb2.Resident) -> None:
        self.tx.execute(
            "INSERT INTO residents (tenant, id, household_id, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant, id) DO UPDATE SET household_id = excluded.household_id,"
            " data = excluded.data",
            (self.code, resident.id, resident.household_id,
             resident.SerializeToString(deterministic=True)),
        )

    def put_seal(self, seal: register_pb2.SealRegistration) -> None:
        self.tx.execute(
            "INSERT INTO seals (tenant, number, resident_id, state, data) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant, number) DO UPDATE SET resident_id = excluded.resident_id,"
            " state = excluded.state, data = excluded.data",
            (self.code, seal.number, seal.resident_id, int(seal.state),
             seal.SerializeToString(deterministic=True)),
        )

    def put_tax_record(self, record: register_pb2.TaxRecord) -> None:
        self.tx.execute(
            "INSERT INTO tax_records (tenant, resident_id, fiscal_year, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant, resident_id, fiscal_year) DO UPDATE SET data = excluded.data",
            (self.code, record.resident_id, record.fiscal_year,
             record.SerializeToString(deterministic=True)),
        )

    def put_family_register(self, register: register_pb2.FamilyRegister) -> None:
        self.tx.execute(
            "INSERT INTO family_registers (tenant, id, registered_domicile, head_of_register,"
            " data) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, id) DO UPDATE SET"
            " registered_domicile = excluded.registered_domicile,"
            " head_of_register = excluded.head_of_register, data = excluded.data",
            (self.code, register.id, register.registered_domicile, register.head_of_register,
             register.SerializeToString(deterministic=True)),
        )
        self.tx.execute(
            "DELETE FROM register_members WHERE tenant = ? AND register_id = ?",
            (self.code, register.id),
        )
        for member in register.members:
            self.tx.execute(
                "INSERT INTO register_members (tenant, register_id, member_id, resident_id)"
                " VALUES (?, ?, ?, ?)",
                (self.code, register.id, member.id, member.resident_id),
            )

    def put_card_binding(self, binding: register_pb2.CardBinding) -> None:
        self.tx.execute(
            "INSERT INTO card_bindings (tenant, certificate_serial, resident_id) VALUES (?, ?, ?)"
            " ON CONFLICT (tenant, certificate_serial) DO UPDATE"
            " SET resident_id = excluded.resident_id",
            (self.code, binding.certificate_serial.lower(), binding.resident_id),
        )

    def put_register_link(self, link: register_pb2.RegisterLink) -> None:
        self.tx.execute(
            "INSERT INTO register_links (tenant, certificate_serial, register_id, member_id)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, certificate_serial, register_id)"
            " DO UPDATE SET member_id = excluded.member_id",
            (self.code, link.certificate_serial.lower(), link.register_id, link.member_id),
        )

    def delete_all(self) -> None:
        """Drop every register record of this tenant (not its issue records)."""
        for table in REGISTER_TABLES:
            column = "code" if table == "tenants" else "tenant"
            self.tx.execute(f"DELETE FROM {table} WHERE {column} = ?", (self.code,))  # noqa: S608

    def load(self, data: register_pb2.MunicipalityData) -> None:
        """Insert or replace each record of ``data`` (records not in it are kept)."""
        self.put_tenant(data.tenant)
        for resident in data.residents:
            self.put_resident(resident)
        for seal in data.seals:
            self.put_seal(seal)
        for record in data.tax_records:
            self.put_tax_record(record)
        for register in data.family_registers:
            self.put_family_register(register)
        for binding in data.card_bindings:
            self.put_card_binding(binding)
        for link in data.register_links:
            self.put_register_link(link)

    def export(self) -> register_pb2.MunicipalityData | None:
        """Everything this tenant holds, in the import format (None if no such tenant)."""
        tenant = self.tenant()
        if tenant is None:
            return None
        data = register_pb2.MunicipalityData(tenant=tenant)

        def blobs(sql: str) -> Iterable[bytes]:
            return (bytes(r["data"]) for r in self.tx.execute(sql, (self.code,)).fetchall())

        data.residents.extend(register_pb2.Resident.FromString(b) for b in blobs(
            "SELECT data FROM residents WHERE tenant = ? ORDER BY id"))
        data.seals.extend(register_pb2.SealRegistration.FromString(b) for b in blobs(
            "SELECT data FROM seals WHERE tenant = ? ORDER BY number"))
        data.tax_records.extend(register_pb2.TaxRecord.FromString(b) for b in blobs(
            "SELECT data FROM tax_records WHERE tenant = ? ORDER BY resident_id, fiscal_year"))
        data.family_registers.extend(register_pb2.FamilyRegister.FromString(b) for b in blobs(
            "SELECT data FROM family_registers WHERE tenant = ? ORDER BY id"))
        for row in self.tx.execute(
            "SELECT certificate_serial, resident_id FROM card_bindings WHERE tenant = ?"
            " ORDER BY certificate_serial", (self.code,)
        ).fetchall():
            data.card_bindings.add(
                certificate_serial=row["certificate_serial"], resident_id=row["resident_id"])
        for row in self.tx.execute(
            "SELECT certificate_serial, register_id, member_id FROM register_links"
            " WHERE tenant = ? ORDER BY certificate_serial, register_id", (self.code,)
        ).fetchall():
            data.register_links.add(
                certificate_serial=row["certificate_serial"], register_id=row["register_id"],
                member_id=row["member_id"])
        return data


def load_dataset(tx: Tx, dataset: register_pb2.Dataset, *, replace: bool,
                 replace_codes: Iterable[str] = ()) -> dict[str, dict[str, int]]:
    """Load every municipality of ``dataset``; with ``replace``, first drop the registers of the
    dataset's municipalities and of ``replace_codes``. Returns the counts per code."""
    codes = [m.tenant.code.value for m in dataset.municipalities]
    if replace:
        for code in dict.fromkeys([*codes, *replace_codes]):
            Registry(tx, code).delete_all()
    for data in dataset.municipalities:
        Registry(tx, data.tenant.code.value).load(data)
    return {code: Registry(tx, code).counts() for code in dict.fromkeys(codes)}
