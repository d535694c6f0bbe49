"""FixtureService of the centre (test mode only; the server's contract layer answers
TEST_MODE_DISABLED otherwise): routes, card bindings, extra JPKI trust, reset and clock."""

from __future__ import annotations

import datetime as dt

import grpc.aio
from cryptography import x509
from google.protobuf.timestamp_pb2 import Timestamp

from centre.bindings import bind, unbind
from centre.context import Centre
from centre.routing import Route, store_route
from centre.timesource import write_offset
from konbini.errors import FieldViolation, invalid
from konbini.pki.mtls import peer_identity
from konbini.storage import Tx, to_micros
from konbini.storage.idempotency import lookup, record, request_fingerprint
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc

# Tables whose rows Reset drops (the audit log and trust-list editions are append-only and
# stay). card_bindings belongs to centre.bindings; Reset is the one place that empties it.
_RESET_TABLES = ("sessions", "ledger", "outbox", "use_registrations", "fixture_routes",
                 "fixture_trust", "fixture_bindings", "idempotency_records", "clock_offset",
                 "card_bindings")


def _check_dataset(dataset: testing_pb2.CentreDataset) -> None:
    problems = []
    for i, der in enumerate(dataset.jpki_ca_certificates_der):
        try:
            x509.load_der_x509_certificate(der)
        except ValueError:
            problems.append(FieldViolation(f"centre.jpki_ca_certificates_der[{i}]",
                                           "not a DER certificate"))
    for i, der in enumerate(dataset.crls_der):
        try:
            x509.load_der_x509_crl(der)
        except ValueError:
            problems.append(FieldViolation(f"centre.crls_der[{i}]", "not a DER CRL"))
    for i, route in enumerate(dataset.routes):
        for j, endpoint in enumerate(route.endpoints):
            if ":" not in endpoint:
                problems.append(FieldViolation(f"centre.routes[{i}].endpoints[{j}]",
                                               "host:port"))
    if problems:
        raise invalid(problems)


class CentreFixtureServicer(testing_pb2_grpc.FixtureServiceServicer):
    """Provisioning for the conformance suite."""

    def __init__(self, centre: Centre) -> None:
        self._centre = centre

    async def LoadDataset(
        self, request: testing_pb2.LoadDatasetRequest, context: grpc.aio.ServicerContext
    ) -> testing_pb2.LoadDatasetResponse:
        if request.WhichOneof("dataset") != "centre":
            raise invalid([FieldViolation("centre", "a centre takes a CentreDataset")])
        dataset = request.centre
        _check_dataset(dataset)
        caller = peer_identity(context).uri
        now_us = to_micros(await self._centre.time.now())
        fingerprint = request_fingerprint(request)
        ids = [self._centre.new_id() for _ in range(len(dataset.jpki_ca_certificates_der)
                                                    + len(dataset.crls_der))]

        def load(tx: Tx) -> bytes:
            stored = lookup(tx, "centre.LoadDataset", caller, request.request_id, fingerprint)
            if stored is not None:
                return stored.replay()
            if request.replace:
                _clear_fixtures(tx)
            for route in dataset.routes:
                store_route(tx, Route(route.code.value, route.name, tuple(route.endpoints),
                                      route.tls_server_name))
            for binding in dataset.card_bindings:
                serial = binding.certificate_serial.lower()
                bind(tx, serial, binding.municipality_code.value, now_us)
                tx.execute("INSERT INTO fixture_bindings (serial, municipality_code)"
                           " VALUES (?, ?) ON CONFLICT (serial) DO UPDATE SET"
                           " municipality_code = excluded.municipality_code",
                           (serial, binding.municipality_code.value))
            items = [("CA", d) for d in dataset.jpki_ca_certificates_der]
            items += [("CRL", d) for d in dataset.crls_der]
            for item_id, (kind, der) in zip(ids, items, strict=True):
                # Ids sort by time of loading (fixture_trust is read oldest first).
                tx.execute("INSERT INTO fixture_trust (item_id, item_kind, der) VALUES (?, ?, ?)",
                           (f"{now_us:020d}-{item_id}", kind, der))
            counts = {
                "routes": _count(tx, "fixture_routes"),
                "card_bindings": _count(tx, "fixture_bindings"),
                "jpki_trust": _count(tx, "fixture_trust"),
            }
            response = testing_pb2.LoadDatasetResponse(counts=counts).SerializeToString()
            record(tx, "centre.LoadDataset", caller, request.request_id, fingerprint,
                   now=now_us, response=response)
            return response

        return testing_pb2.LoadDatasetResponse.FromString(await self._centre.store.run(load))

    async def Reset(
        self, request: testing_pb2.ResetRequest, context: grpc.aio.ServicerContext
    ) -> testing_pb2.ResetResponse:
        def reset(tx: Tx) -> None:
            for table in _RESET_TABLES:
                tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

        await self._centre.store.run(reset)
        self._centre.time.set_offset(0)
        return testing_pb2.ResetResponse()

    async def SetClock(
        self, request: testing_pb2.SetClockRequest, context: grpc.aio.ServicerContext
    ) -> testing_pb2.SetClockResponse:
        time = self._centre.time
        offset_us = 0
        if request.HasField("now"):
            target = request.now.ToDatetime(tzinfo=dt.UTC)
            offset_us = to_micros(target) - to_micros(time.base_now())
        await self._centre.store.run(lambda tx: write_offset(tx, offset_us))
        time.set_offset(offset_us)
        now = Timestamp()
        now.FromDatetime(time.cached_now())
        return testing_pb2.SetClockResponse(now=now)


def _count(tx: Tx, table: str) -> int:
    row = tx.execute(f"SELECT count(*) AS n FROM {table}").fetchone()  # noqa: S608
    return int(row["n"]) if row else 0


def _clear_fixtures(tx: Tx) -> None:
    for row in tx.execute("SELECT serial, municipality_code FROM fixture_bindings").fetchall():
        unbind(tx, str(row["serial"]), str(row["municipality_code"]))
    for table in ("fixture_routes", "fixture_trust", "fixture_bindings"):
        tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
