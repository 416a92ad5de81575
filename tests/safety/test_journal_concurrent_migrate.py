"""Two processes opening a brand-new journal at the same moment (e.g. the service starting while an operator runs
``helios emergency-stop --direct``) must both get a working journal: the schema check and each migration happen
under the write lock, so the second finds the work done instead of failing with "table meta already exists"."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from helios.exchange.paper import PaperExchange
from helios.journal import SCHEMA_VERSION, Journal, journal_path, read_schema_info
from helios.models import Mode

ROUNDS = 25


def _open_at_once(kind: str, dirs: list[str], barrier: Barrier, results: Any) -> None:
    """In a child process: for each fresh state directory, wait until the other process is ready too, then open."""
    for state_dir in dirs:
        barrier.wait(timeout=60)
        try:
            if kind == "journal":
                journal = Journal.open(Path(state_dir), Mode.PAPER)
                journal.record_event("opened", {}, datetime.now(UTC))  # and it can be written
                journal.close()
            else:
                PaperExchange(Path(state_dir) / "paper-exchange.sqlite", starting_zar=Decimal(1000))
            results.put((state_dir, "ok"))
        except Exception as exc:
            results.put((state_dir, f"{type(exc).__name__}: {exc}"))


def _race(kind: str, tmp_path: Path) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    dirs = [str(tmp_path / f"state-{i}") for i in range(ROUNDS)]
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [ctx.Process(target=_open_at_once, args=(kind, dirs, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(2 * ROUNDS)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    failures = [o for o in outcomes if o[1] != "ok"]
    assert not failures, f"{len(failures)} of {2 * ROUNDS} opens failed, e.g. {failures[0]}"
    return dirs


def test_two_processes_opening_a_new_journal_at_the_same_moment_both_succeed(tmp_path: Path) -> None:
    dirs = _race("journal", tmp_path)
    for state_dir in dirs:
        path = journal_path(Path(state_dir), Mode.PAPER)
        assert read_schema_info(path)["schema_version"] == SCHEMA_VERSION


def test_two_processes_opening_a_new_paper_exchange_at_the_same_moment_both_succeed(tmp_path: Path) -> None:
    """The paper exchange's own SQLite file has the same brand-new-file WAL race (both go through sqlite.connect)."""
    _race("paper", tmp_path)
