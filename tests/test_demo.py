"""The README's first command: `konbini demo` runs the whole network and every scenario passes;
`konbini up` keeps the same network running until it is told to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from konbini.docimage import page_count


def test_demo_issues_and_verifies_every_kind(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    result = subprocess.run(
        [sys.executable, "-m", "konbini.cli", "demo", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "16 of 16 scenarios as expected" in result.stdout
    printed = sorted((out / "printed").glob("*.pdf"))
    assert len(printed) == 10
    for pdf in printed:
        assert page_count(pdf.read_bytes()) % 2 == 0  # each front page with its back
    # Nothing personal in the printed file names (they go to a shared spool).
    assert all("葛" not in p.name and "K-" not in p.name for p in printed)
    # The servers were stopped: nothing listens on their logs any more.
    assert "FAIL" not in result.stdout


def test_up_prints_endpoints_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "konbini.cli", "up", "--out", str(tmp_path / "net")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        text = "".join(lines)
        assert "centre (mTLS)" in text and "municipality tokyo-cloud" in text, text
        assert "operator CA" in text
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("konbini up did not stop on SIGTERM")
    assert proc.returncode == 0
