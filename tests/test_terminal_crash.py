"""A real `konbini terminal issue` process killed with SIGKILL between payment and completion,
then `konbini terminal recover`: the centre's record and the journal agree on exactly one end,
a committed issuance with the charge kept or a cancellation with the fee refunded
(TERM-JOURNAL, DURABLE-CRASH)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_terminal_support import KOFU, FakeState, make_card, start_fake_centre

from konbini.pki import PkiDir, pki_init
from terminal.journal import Journal

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    root = tmp_path_factory.mktemp("pki")
    pki_init(root)
    return PkiDir(root)


@pytest.fixture
def centre(pki: PkiDir) -> Iterator[tuple[FakeState, int]]:
    state = FakeState(pki)
    server = start_fake_centre(state)
    yield state, server.port
    server.stop()


def _args(action: str, pki: PkiDir, port: int, tmp: Path) -> list[str]:
    return [sys.executable, "-m", "terminal.cli", action, "--centre", f"127.0.0.1:{port}",
            "--pki", str(pki.root), "--terminal", "seven:T0001",
            "--journal", str(tmp / "journal.db"), "--spool", str(tmp / "spool")]


def _issue_args(card: Path) -> list[str]:
    return ["--card", str(card), "--pin", "1234", "--kind", "residence-record", "--copies", "1",
            "--pay", "500"]


def _wait_for_line(proc: subprocess.Popen[str], wanted: str, timeout: float = 60) -> None:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        if not sel.select(end - time.monotonic()):
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.strip() == wanted:
            return
    raise AssertionError(f"no {wanted!r} from the terminal; saw {seen!r}, "
                         f"stderr {proc.stderr.read() if proc.stderr else ''}")


def _kill_at(point: str, pki: PkiDir, port: int, tmp: Path, card: Path) -> None:
    env = {**os.environ, "KONBINI_TERMINAL_PAUSE_AT": point}
    proc = subprocess.Popen([*_args("issue", pki, port, tmp), *_issue_args(card),
                             "--test-hooks"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_line(proc, f"PAUSED {point}")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _recover(pki: PkiDir, port: int, tmp: Path) -> str:
    done = subprocess.run(_args("recover", pki, port, tmp), cwd=ROOT, text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("point", "centre_state", "kept", "refunded", "cause"),
    [("after-payment", "CANCELLED", 200, 200, "TERMINAL_RESTART"),
     ("after-print", "COMMITTED", 200, 0, None)],
)
def test_killed_terminal_is_settled_exactly_once(
    pki: PkiDir, centre: tuple[FakeState, int], tmp_path: Path,
    point: str, centre_state: str, kept: int, refunded: int, cause: str | None,
) -> None:
    state, port = centre
    card, serial = make_card(pki, tmp_path, "resident")
    state.bindings[serial] = KOFU  # type: ignore[index]
    _kill_at(point, pki, port, tmp_path, card)

    [issuance] = state.issuances.values()
    assert issuance.completions == 0  # the kill came before any completion
    journal = Journal.open(tmp_path / "journal.db")
    [open_txn] = journal.unfinished()
    assert open_txn.state == ("PAID" if point == "after-payment" else "PRINTED")
    journal.close()

    out = _recover(pki, port, tmp_path)
    assert f"{centre_state}, charged {kept - refunded} yen, refunded {refunded} yen" in out
    assert (issuance.state, issuance.failure_cause) == (centre_state, cause)
    assert issuance.charged == kept - refunded
    journal = Journal.open(tmp_path / "journal.db")
    [txn] = journal.all()
    journal.close()
    # Never both (a charge and a refund), never neither.
    assert (txn.state, txn.kept, txn.refunded, txn.centre_state) == ("DONE", kept, refunded,
                                                                     centre_state)
    assert (txn.kept - txn.refunded) == issuance.charged
    # Running recovery again changes nothing.
    assert "0 transaction(s) settled; 0 open" in _recover(pki, port, tmp_path)
    assert issuance.completions == 1


def test_issue_prints_where_and_what_it_cost(
    pki: PkiDir, centre: tuple[FakeState, int], tmp_path: Path
) -> None:
    state, port = centre
    card, serial = make_card(pki, tmp_path, "resident")
    state.bindings[serial] = KOFU  # type: ignore[index]
    env = {**os.environ, "KONBINI_TERMINAL_PAUSE_AT": "after-payment"}  # no --test-hooks
    done = subprocess.run([*_args("issue", pki, port, tmp_path), *_issue_args(card)],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "ignored without --test-hooks" in done.stderr
    printed = [line.removeprefix("printed ") for line in done.stdout.splitlines()
               if line.startswith("printed ")]
    assert len(printed) == 1 and Path(printed[0]).read_bytes().startswith(b"%PDF-")
    assert "fee 200 yen, paid 500 yen, change 300 yen" in done.stdout
    [issuance] = state.issuances.values()
    assert issuance.state == "COMMITTED"


def test_issue_reports_a_wrong_pin_without_retrying(
    pki: PkiDir, centre: tuple[FakeState, int], tmp_path: Path
) -> None:
    state, port = centre
    card, serial = make_card(pki, tmp_path, "resident")
    state.bindings[serial] = KOFU  # type: ignore[index]
    args = _issue_args(card)
    args[args.index("1234")] = "4321"
    done = subprocess.run([*_args("issue", pki, port, tmp_path), *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "2 tries left" in done.stderr and "暗証番号が違います" in done.stderr
    assert state.calls == []
