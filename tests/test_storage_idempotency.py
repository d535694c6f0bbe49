"""Idempotency records on both backends: replay, reuse detection, exactly one effect."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest
from google.protobuf import struct_pb2

from konbini.errors import KonbiniError
from konbini.storage import Migration, Store, Tx
from konbini.storage.idempotency import (
    REQUEST_ID_REUSED,
    execute_once,
    idempotency_migration,
    lookup,
    purge_before,
    record,
    request_fingerprint,
)

StoreFactory = Callable[[Sequence[Migration]], Store]

MIGRATIONS = [
    Migration(1, "effects", "CREATE TABLE effects (n BIGINT NOT NULL, note TEXT NOT NULL)"),
    idempotency_migration(2),
]
SCOPE = "test.Charge"
NOW = 1_780_000_000_000_000
FP = request_fingerprint(b"charge 500 yen")
WAIT_S = 20.0


def effects(store: Store) -> list[str]:
    rows = store.run(lambda tx: tx.execute("SELECT note FROM effects ORDER BY n").fetchall())
    return [row["note"] for row in rows]


def charge(note: str) -> Callable[[Tx], bytes]:
    def effect(tx: Tx) -> bytes:
        n = tx.execute("SELECT count(*) AS n FROM effects").scalar()
        tx.execute("INSERT INTO effects (n, note) VALUES (?, ?)", (n, note))
        return f"receipt {n} {note}".encode()

    return effect


def once(store: Store, request_id: str, effect: Callable[[Tx], bytes], **kw: object) -> bytes:
    args: dict[str, object] = {"scope": SCOPE, "caller": "terminal-1", "fingerprint": FP}
    args.update(kw)
    return execute_once(store, request_id=request_id, now=NOW, effect=effect, **args)  # type: ignore[arg-type]


def test_replay_returns_the_stored_response(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    first = once(store, "r1", charge("first"))
    again = once(store, "r1", charge("second"))
    assert first == again == b"receipt 0 first"
    assert effects(store) == ["first"]
    # The record survives a restart (a new Store on the same database).
    reopened = store_factory(MIGRATIONS)
    assert once(reopened, "r1", charge("third")) == first
    assert effects(reopened) == ["first"]


def test_reused_request_id_with_other_request_is_refused(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    once(store, "r1", charge("first"))
    with pytest.raises(KonbiniError) as refused:
        once(store, "r1", charge("other"), fingerprint=request_fingerprint(b"charge 900 yen"))
    assert refused.value.reason == REQUEST_ID_REUSED
    assert refused.value.metadata == {"request_id": "r1"}
    assert effects(store) == ["first"]


def test_request_ids_are_per_caller_and_scope(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    once(store, "r1", charge("t1"))
    once(store, "r1", charge("t2"), caller="terminal-2")
    once(store, "r1", charge("refund"), scope="test.Refund")
    assert effects(store) == ["t1", "t2", "refund"]


def test_concurrent_duplicates_make_one_effect(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)
    duplicates = 6
    # PostgreSQL runs the duplicates' transactions side by side: hold every first attempt until
    # all have passed lookup, so that the unique key, not luck, has to pick the single winner.
    # SQLite write transactions take turns, so there the barrier would only wait for nobody.
    racing = store.dialect == "postgresql"
    together = threading.Barrier(duplicates)
    attempts: list[str] = []
    lock = threading.Lock()
    results: list[bytes] = []
    errors: list[BaseException] = []

    def effect(tx: Tx) -> bytes:
        with lock:
            attempts.append(threading.current_thread().name)
            first_round = len(attempts) <= duplicates
        if racing and first_round:
            together.wait(timeout=WAIT_S)
        return charge(threading.current_thread().name)(tx)

    def worker() -> None:
        try:
            results.append(once(store, "dup", effect))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"w{i}") for i in range(duplicates)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 2)
    assert errors == []
    assert len(effects(store)) == 1
    assert results == [results[0]] * duplicates
    if racing:
        assert len(attempts) == duplicates  # all raced; the losers replayed the winner


def test_refusal_is_not_remembered_by_default(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)

    def refuse(tx: Tx) -> bytes:
        charge("partial")(tx)  # a write that the refusal must roll back
        raise KonbiniError("OUTSIDE_SERVICE_HOURS", "closed")

    with pytest.raises(KonbiniError, match="OUTSIDE_SERVICE_HOURS"):
        once(store, "r1", refuse)
    assert effects(store) == []
    assert once(store, "r1", charge("later")) == b"receipt 0 later"


def test_remembered_refusal_is_replayed(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)

    def refuse(tx: Tx) -> bytes:
        raise KonbiniError("NOT_ELIGIBLE", "no record", metadata={"kind": "juminhyo"})

    with pytest.raises(KonbiniError):
        once(store, "r1", refuse, remember_refusals=True)
    with pytest.raises(KonbiniError) as replayed:
        once(store, "r1", charge("never"), remember_refusals=True)
    assert (replayed.value.reason, replayed.value.message, replayed.value.metadata) == (
        "NOT_ELIGIBLE",
        "no record",
        {"kind": "juminhyo"},
    )
    assert effects(store) == []


def test_failed_effect_leaves_no_record(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)

    def crash(tx: Tx) -> bytes:
        charge("half")(tx)
        raise RuntimeError("printer on fire")

    with pytest.raises(RuntimeError):
        once(store, "r1", crash)
    assert store.run(lambda tx: lookup(tx, SCOPE, "terminal-1", "r1", FP)) is None
    assert effects(store) == []


def test_lookup_record_and_purge(store_factory: StoreFactory) -> None:
    store = store_factory(MIGRATIONS)

    def write(tx: Tx) -> None:
        record(tx, SCOPE, "c", "old", FP, now=100, response=b"")
        record(tx, SCOPE, "c", "new", FP, now=200, error=KonbiniError("CARD_REVOKED"))

    store.run(write)
    old = store.run(lambda tx: lookup(tx, SCOPE, "c", "old", FP))
    assert old is not None and old.replay() == b"" and old.created_at == 100
    new = store.run(lambda tx: lookup(tx, SCOPE, "c", "new", FP))
    assert new is not None and new.response is None
    with pytest.raises(KonbiniError, match="CARD_REVOKED"):
        new.replay()
    assert store.run(lambda tx: purge_before(tx, 150)) == 1
    assert store.run(lambda tx: lookup(tx, SCOPE, "c", "old", FP)) is None
    with pytest.raises(ValueError, match="exactly one"):
        store.run(lambda tx: record(tx, SCOPE, "c", "x", FP, now=1))
    with pytest.raises(ValueError, match="non-empty"):
        store.run(lambda tx: lookup(tx, SCOPE, "c", "", FP))


def test_fingerprint_is_canonical_for_messages() -> None:
    first, second = struct_pb2.Struct(), struct_pb2.Struct()
    first.update({"a": 1, "b": "x"})
    second.update({"b": "x", "a": 1})  # map insertion order must not matter
    assert request_fingerprint(first) == request_fingerprint(second)
    assert len(request_fingerprint(first)) == 32
    second.update({"a": 2})
    assert request_fingerprint(first) != request_fingerprint(second)
