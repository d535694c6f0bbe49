"""Concurrent writers (threads and processes) and crash safety, on both backends."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import pytest

from konbini.storage import Migration, Store, TransactionConflict, Tx, open_store

StoreFactory = Callable[[Sequence[Migration]], Store]

COUNTERS = Migration(
    1,
    "counters",
    """
    CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO counters (name, value) VALUES ('hits', 0);
    CREATE TABLE pairs (seq BIGINT NOT NULL, half BIGINT NOT NULL, PRIMARY KEY (seq, half));
    """,
)
SPAWN = multiprocessing.get_context("spawn")  # no inherited locks, pools or sockets
WAIT_S = 20.0  # generous upper bound for a child's answer; normally well under a second


def increment(tx: Tx) -> int:
    """Read, decide in Python, write: loses updates unless the store serializes it."""
    value = tx.execute("SELECT value FROM counters WHERE name = ?", ("hits",)).scalar()
    tx.execute("UPDATE counters SET value = ? WHERE name = ?", (value + 1, "hits"))
    return int(value) + 1


def hits(store: Store) -> int:
    return int(store.run(lambda tx: tx.execute("SELECT value FROM counters").scalar()))


def test_threads_lose_no_update(store_factory: StoreFactory) -> None:
    store = store_factory([COUNTERS])
    threads, rounds = 4, 25
    start = threading.Barrier(threads)
    seen: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait(timeout=WAIT_S)
            for _ in range(rounds):
                seen.append(store.run(increment))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=WAIT_S * 2)
    assert errors == []
    assert hits(store) == threads * rounds
    # Every committed increment saw a distinct value: none was computed from a stale read.
    assert sorted(seen) == list(range(1, threads * rounds + 1))


def _count_in_child(url: str, rounds: int, go: Connection) -> None:
    go.send("loaded")
    go.recv()  # open together: both race to apply the migrations
    store = open_store(url, migrations=[COUNTERS])
    go.send("ready")
    go.recv()  # count together
    for _ in range(rounds):
        store.run(increment)
    store.close()


def test_processes_lose_no_update(store_factory: StoreFactory, store_url: str) -> None:
    rounds = 30
    links, children = [], []
    for _ in range(2):
        parent_end, child_end = SPAWN.Pipe()
        child = SPAWN.Process(target=_count_in_child, args=(store_url, rounds, child_end))
        child.start()
        links.append(parent_end)
        children.append(child)
    for step in ("loaded", "ready"):
        for link in links:
            assert link.poll(WAIT_S) and link.recv() == step
        for link in links:
            link.send("go")
    for child in children:
        child.join(WAIT_S)
        assert child.exitcode == 0
    store = store_factory([COUNTERS])
    assert hits(store) == 2 * rounds
    history = store.run(lambda tx: tx.execute("SELECT version FROM schema_migrations").fetchall())
    assert history == [{"version": 1}]


def _commit_pairs_then_hang(url: str, committed: int, report: Connection) -> None:
    """Commit ``committed`` pairs, then write more inside an open transaction and wait to die."""
    store = open_store(url, migrations=[COUNTERS])
    for seq in range(committed):
        store.run(lambda tx, s=seq: _insert_pair(tx, s))
    report.send(committed)
    with store.transaction() as tx:
        for seq in range(committed, committed + 500):
            _insert_pair(tx, seq)
        tx.execute("UPDATE counters SET value = ? WHERE name = ?", (-1, "hits"))
        report.send("in transaction")
        report.recv()  # never answered: the parent kills us here


def _commit_pairs_forever(url: str, report: Connection) -> None:
    """Commit one pair per transaction, reporting each commit, until killed."""
    store = open_store(url, migrations=[COUNTERS])
    seq = 0
    while True:
        store.run(lambda tx, s=seq: _insert_pair(tx, s))
        report.send(seq)
        seq += 1


def _insert_pair(tx: Tx, seq: int) -> None:
    # Two rows per transaction: finding one without the other would be a torn commit.
    tx.execute("INSERT INTO pairs (seq, half) VALUES (?, 0)", (seq,))
    tx.execute("INSERT INTO pairs (seq, half) VALUES (?, 1)", (seq,))


def _check_consistent(store: Store) -> list[int]:
    """The committed sequence numbers, after checking that no transaction was torn."""
    if store.dialect == "sqlite":
        with store.transaction(write=False) as tx:
            assert tx.execute("PRAGMA integrity_check").scalar() == "ok"
    rows = store.run(
        lambda tx: tx.execute(
            "SELECT seq, count(*) AS halves FROM pairs GROUP BY seq ORDER BY seq"
        ).fetchall(),
        write=False,
    )
    assert all(row["halves"] == 2 for row in rows)
    return [int(row["seq"]) for row in rows]


def test_kill_mid_transaction_keeps_committed_data(store_url: str) -> None:
    parent_end, child_end = SPAWN.Pipe()
    child = SPAWN.Process(target=_commit_pairs_then_hang, args=(store_url, 20, child_end))
    child.start()
    try:
        assert parent_end.poll(WAIT_S) and parent_end.recv() == 20
        assert parent_end.poll(WAIT_S) and parent_end.recv() == "in transaction"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(WAIT_S)
    assert child.exitcode == -signal.SIGKILL

    with open_store(store_url, migrations=[COUNTERS]) as store:
        assert _check_consistent(store) == list(range(20))
        assert hits(store) == 0  # the open transaction's update is gone
        store.run(lambda tx: _insert_pair(tx, 20))  # and its lock with it
        assert _check_consistent(store) == list(range(21))


def test_kill_while_committing_loses_no_commit(store_url: str) -> None:
    parent_end, child_end = SPAWN.Pipe()
    child = SPAWN.Process(target=_commit_pairs_forever, args=(store_url, child_end))
    child.start()
    reported: list[int] = []
    try:
        while len(reported) < 30:
            assert parent_end.poll(WAIT_S), "the child stopped committing"
            reported.append(parent_end.recv())
    finally:
        os.kill(child.pid, signal.SIGKILL)  # likely mid-way through a later commit
        child.join(WAIT_S)
    while parent_end.poll(0):  # reports already sent before the kill
        reported.append(parent_end.recv())

    with open_store(store_url, migrations=[COUNTERS]) as store:
        committed = _check_consistent(store)
    # Everything reported as committed is there; at most the one unreported commit beyond it.
    assert committed[: len(reported)] == reported == list(range(len(reported)))
    assert len(committed) - len(reported) in (0, 1)


def test_run_gives_up_after_its_retries(store_factory: StoreFactory) -> None:
    store = store_factory([COUNTERS])
    calls: list[int] = []

    def always_conflicts(tx: Tx) -> None:
        calls.append(1)
        raise TransactionConflict("simulated")

    for retries in (0, 2):
        calls.clear()
        with pytest.raises(TransactionConflict):
            store.run(always_conflicts, retries=retries)
        assert len(calls) == retries + 1
