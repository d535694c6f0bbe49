"""Printers: a spool directory (default), CUPS ``lp``, and a scripted printer for tests.

A job is named by an opaque job id (random, never a name or number of the resident), so the
spool directory and the CUPS queue carry no personal data. Each copy is written as its own
file, atomically, so a half-written file never looks like a printed certificate.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from konbini.pki.files import write_atomic

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class PrintFailed(Exception):
    """The printer could not finish the job (jam, out of paper, spooler error)."""


@dataclass(frozen=True)
class PrintedJob:
    """What came out of the printer for one job."""

    job_id: str
    pdfs: tuple[bytes, ...]
    printed_at: dt.datetime
    paths: tuple[Path, ...] = ()


class Printer(Protocol):
    """What the flow needs from a printer."""

    def print_job(self, job_id: str, pdfs: Sequence[bytes]) -> PrintedJob:
        """Print every document; raise PrintFailed if any page did not come out."""
        ...

    def job_printed(self, job_id: str) -> bool | None:
        """After a restart: did the job finish? None when the printer cannot tell."""
        ...


def _check_job_id(job_id: str) -> None:
    if not _JOB_ID.match(job_id):
        raise ValueError("a job id is 1-64 of [A-Za-z0-9_-]")


class SpoolPrinter:
    """Writes each copy as ``<job>-<n>.pdf`` into a spool directory (mode 0600 files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, job_id: str, index: int) -> Path:
        return self.directory / f"{job_id}-{index:02d}.pdf"

    def print_job(self, job_id: str, pdfs: Sequence[bytes]) -> PrintedJob:
        """Write the copies; the marker file ``<job>.done`` is written last."""
        _check_job_id(job_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            paths = []
            for index, pdf in enumerate(pdfs, start=1):
                path = self._path(job_id, index)
                write_atomic(path, pdf, 0o600)
                paths.append(path)
            write_atomic(self.directory / f"{job_id}.done", b"", 0o600)
        except OSError as exc:
            raise PrintFailed(f"spool write failed: {exc.strerror}") from None
        return PrintedJob(job_id, tuple(pdfs), dt.datetime.now(dt.UTC), tuple(paths))

    def job_printed(self, job_id: str) -> bool | None:
        """True once the job's marker exists (every copy was written before it)."""
        _check_job_id(job_id)
        return (self.directory / f"{job_id}.done").exists()


class LpPrinter:
    """Prints through CUPS ``lp`` (optionally to a named destination)."""

    def __init__(self, destination: str | None = None, lp: str = "lp") -> None:
        self._destination = destination
        self._lp = lp

    def print_job(self, job_id: str, pdfs: Sequence[bytes]) -> PrintedJob:
        """Submit each copy as one CUPS job titled with the opaque job id."""
        _check_job_id(job_id)
        exe = shutil.which(self._lp)
        if exe is None:
            raise PrintFailed("CUPS lp is not installed")
        with tempfile.TemporaryDirectory(prefix="konbini-print-") as tmp:
            for index, pdf in enumerate(pdfs, start=1):
                path = Path(tmp) / f"{job_id}-{index:02d}.pdf"
                path.write_bytes(pdf)
                cmd = [exe, "-t", f"{job_id}-{index:02d}"]
                if self._destination:
                    cmd += ["-d", self._destination]
                result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                    [*cmd, str(path)], capture_output=True, timeout=60, check=False
                )
                if result.returncode != 0:
                    raise PrintFailed(f"lp exited with {result.returncode}")
        return PrintedJob(job_id, tuple(pdfs), dt.datetime.now(dt.UTC))

    def job_printed(self, job_id: str) -> bool | None:
        """CUPS does not tell this reliably after a restart."""
        return None


@dataclass
class ScriptedPrinter:
    """A printer whose next job can be told to jam; keeps every job it printed (the tray).

    Wraps a real printer (``inner``, e.g. the spool) so the documents also land somewhere.
    """

    inner: Printer | None = None
    jam_next: bool = False
    tray: list[PrintedJob] = field(default_factory=list)
    attempts: int = 0

    def print_job(self, job_id: str, pdfs: Sequence[bytes]) -> PrintedJob:
        """Jam on the first page if told to; otherwise print (through ``inner`` if any)."""
        self.attempts += 1
        if self.jam_next:
            self.jam_next = False
            raise PrintFailed("paper jam on page 1")
        job = (self.inner.print_job(job_id, pdfs) if self.inner is not None
               else PrintedJob(job_id, tuple(pdfs), dt.datetime.now(dt.UTC)))
        self.tray.append(job)
        return job

    def job_printed(self, job_id: str) -> bool | None:
        """Whether a job with this id is in the tray (or the inner printer knows it)."""
        if any(j.job_id == job_id for j in self.tray):
            return True
        return self.inner.job_printed(job_id) if self.inner is not None else False


def default_spool_dir() -> Path:
    """``$KONBINI_SPOOL`` or ``./konbini-spool``."""
    return Path(os.environ.get("KONBINI_SPOOL", "konbini-spool"))
