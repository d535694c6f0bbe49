"""The issuing server's storage on both backends: import/export round trip, tenant-bound reads,
and the issuance engine with an injected composer (concurrent duplicates, expiry sweep)."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format

from konbini.clock import JST, FixedClock
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.issuing.v1 import issuing_pb2
from konbini.register.v1 import register_pb2
from konbini.storage import Store, open_store
from municipality import cli
from municipality.documents import DocumentRequest, DocumentSigner
from municipality.issuance import Issuer
from municipality.registry import Registry, load_dataset
from municipality.sample import CHIYODA, KOFU, demo_dataset, demo_dataset_json
from municipality.schema import MIGRATIONS

K = types_pb2
TODAY = dt.date(2026, 5, 13)
NOON = dt.datetime(2026, 5, 13, 12, tzinfo=JST)
CALLER = "urn:konbini:centre:centre"


@pytest.fixture
def store(store_url: str) -> Store:
    opened = open_store(store_url, migrations=MIGRATIONS)
    opened.run(lambda tx: load_dataset(tx, demo_dataset(TODAY), replace=True))
    yield opened  # type: ignore[misc]
    opened.close()


class CountingComposer:
    """Stands in for the real composer: one tiny document per copy naming the subjects."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: DocumentRequest) -> list[types_pb2.Document]:
        with self.lock:
            self.calls += 1
        subjects = [r.id for r in request.residents] or [m.id for m in request.register_members]
        return [
            types_pb2.Document(pdf=f"{number}|{','.join(subjects)}".encode(),
                               signed_metadata=request.reservation_id.encode())
            for number in request.issue_numbers
        ]


def issuer(store: Store, clock: FixedClock, composer: CountingComposer) -> Issuer:
    signer = DocumentSigner("test-key", ec.generate_private_key(ec.SECP256R1()))
    return Issuer(store, composer=composer, signers={KOFU: signer, CHIYODA: signer},
                  clock=clock, person_secret=b"k" * 32)


def prepare_request(request_id: str, serial: str = "a1",
                    copies: int = 1) -> issuing_pb2.PrepareIssuanceRequest:
    return issuing_pb2.PrepareIssuanceRequest(
        request_id=request_id, municipality_code=K.MunicipalityCode(value=KOFU),
        card=issuing_pb2.CardReference(certificate_serial=serial),
        kind=K.CERTIFICATE_KIND_RESIDENCE_RECORD, copies=copies)


def count(store: Store, table: str) -> int:
    return int(store.run(lambda tx: tx.execute(
        f"SELECT count(*) AS n FROM {table}").fetchone()["n"], write=False))


def test_registry_is_bound_to_its_tenant(store: Store) -> None:
    def read(tx: object) -> tuple[object, object, object]:
        kofu, chiyoda = Registry(tx, KOFU), Registry(tx, CHIYODA)  # type: ignore[arg-type]
        return (kofu.resident_by_card("z1"), chiyoda.resident_by_card("z1"),
                chiyoda.resident("r-hanako"))

    from_kofu, from_chiyoda, hanako_in_chiyoda = store.run(read, write=False)
    assert from_kofu is None and hanako_in_chiyoda is None
    assert from_chiyoda is not None and from_chiyoda.name == "千代田 太郎"  # type: ignore[attr-defined]


def test_import_export_round_trip_through_the_cli(store_url: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "municipality.toml"
    config.write_text(
        f'[pki]\nserver_name = "kofu"\n[store]\nurl = "{store_url}"\n'
        f'[tenants]\ncodes = ["{KOFU}", "{CHIYODA}"]\n', encoding="utf-8")
    data = tmp_path / "dataset.json"
    data.write_text(demo_dataset_json(TODAY), encoding="utf-8")
    assert cli.main(["import", "--config", str(config), str(data), "--replace"]) == 0
    capsys.readouterr()
    assert cli.main(["export", "--config", str(config), "--municipality", KOFU]) == 0
    exported = json_format.Parse(capsys.readouterr().out, register_pb2.Dataset())
    original = demo_dataset(TODAY).municipalities[0]
    assert canonical(exported.municipalities[0]) == canonical(original)
    assert len(exported.municipalities[0].residents) == len(original.residents)
    assert cli.main(["export", "--config", str(config), "--municipality", "131041"]) == 2


def canonical(data: register_pb2.MunicipalityData) -> register_pb2.MunicipalityData:
    """The same records in the export's order (by key), to compare record sets."""
    out = register_pb2.MunicipalityData(tenant=data.tenant)
    out.residents.extend(sorted(data.residents, key=lambda r: r.id))
    out.seals.extend(sorted(data.seals, key=lambda s: s.number))
    out.tax_records.extend(sorted(data.tax_records, key=lambda t: (t.resident_id, t.fiscal_year)))
    out.family_registers.extend(sorted(data.family_registers, key=lambda r: r.id))
    out.card_bindings.extend(sorted(data.card_bindings, key=lambda b: b.certificate_serial))
    out.register_links.extend(sorted(data.register_links,
                                     key=lambda x: (x.certificate_serial, x.register_id)))
    return out


def test_concurrent_duplicates_make_one_reservation(store: Store) -> None:
    composer = CountingComposer()
    engine = issuer(store, FixedClock(NOON), composer)
    request = prepare_request("dup-1", copies=2)
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda _: engine.prepare(KOFU, CALLER, request), range(6)))
    assert len({r.SerializeToString() for r in replies}) == 1
    assert count(store, "reservations") == 1
    assert len(replies[0].documents) == 2
    again = engine.prepare(KOFU, CALLER, request)
    assert again == replies[0]
    assert composer.calls <= 6  # the retry after the race rendered nothing


def test_refusal_stores_nothing_and_issue_numbers_are_unique(store: Store) -> None:
    engine = issuer(store, FixedClock(NOON), CountingComposer())
    with pytest.raises(KonbiniError) as info:
        engine.prepare(KOFU, CALLER, prepare_request("minor", serial="a3"))
    assert info.value.reason == "UNDER_15"
    assert count(store, "reservations") == 0 and count(store, "idempotency_records") == 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(lambda i: engine.prepare(KOFU, CALLER, prepare_request(
            f"r-{i}", copies=3)), range(8)))
    numbers = [d.pdf.split(b"|")[0] for r in replies for d in r.documents]
    assert len(numbers) == len(set(numbers)) == 24


def test_sweeper_expires_only_what_is_past_its_expiry(store: Store) -> None:
    clock = FixedClock(NOON)
    engine = issuer(store, clock, CountingComposer())
    old = engine.prepare(KOFU, CALLER, prepare_request("old"))
    clock.advance(dt.timedelta(minutes=5))
    young = engine.prepare(KOFU, CALLER, prepare_request("young"))
    clock.advance(dt.timedelta(minutes=6))
    assert engine.sweep() == 1
    states = {r.reservation_id: engine.get_reservation(KOFU, CALLER, r.reservation_id, "").state
              for r in (old, young)}
    assert states == {old.reservation_id: K.ISSUANCE_STATE_EXPIRED,
                      young.reservation_id: K.ISSUANCE_STATE_RESERVED}
    with pytest.raises(KonbiniError) as info:
        engine.commit(KOFU, CALLER, issuing_pb2.CommitIssuanceRequest(
            request_id="c", municipality_code=K.MunicipalityCode(value=KOFU),
            reservation_id=old.reservation_id))
    assert info.value.reason == "RESERVATION_EXPIRED"
