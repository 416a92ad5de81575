"""The journal: WAL SQLite per mode, schema versions readable by the previous release, terminal orders final."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from helios import journal as journal_mod
from helios.journal import Journal, JournalError, OrderRecord, journal_path, read_schema_info
from helios.models import Mode, OrderPurpose, OrderStatus, OrderType, Side, TradingState

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def record(cid: str = "hl-1") -> OrderRecord:
    return OrderRecord(cid, None, "BTCZAR", Side.BUY, OrderType.LIMIT, OrderPurpose.ENTRY, Decimal("0.001"),
                       Decimal(900000), Decimal(900000), Decimal(880000), Decimal(950000), OrderStatus.SUBMITTING,
                       Decimal(0), None, Decimal(0), "test", None, NOW, NOW)


def test_one_wal_database_per_mode_and_modes_never_mix(tmp_path: Path) -> None:
    paper = Journal.open(tmp_path, Mode.PAPER)
    live = Journal.open(tmp_path, Mode.LIVE)
    paper.record_order(record())
    assert live.orders() == []
    assert journal_path(tmp_path, Mode.PAPER).name == "journal-paper.sqlite"
    with sqlite3.connect(journal_path(tmp_path, Mode.PAPER)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    paper.close()
    live.close()
    journal_path(tmp_path, Mode.LIVE).unlink()
    journal_path(tmp_path, Mode.PAPER).rename(journal_path(tmp_path, Mode.LIVE))
    with pytest.raises(JournalError, match="holds PAPER history"):
        Journal.open(tmp_path, Mode.LIVE)


def test_terminal_orders_never_change_again(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, Mode.PAPER)
    journal.record_order(record())
    assert journal.update_order("hl-1", status=OrderStatus.CANCELLED, now=NOW)
    assert not journal.update_order("hl-1", status=OrderStatus.OPEN, now=NOW), "a late OPEN snapshot is ignored"
    assert journal.get_order("hl-1").status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    journal.close()


def test_state_is_durable_and_each_change_is_recorded(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, Mode.PAPER)
    assert journal.read_state() is TradingState.ACTIVE
    assert journal.record_state(TradingState.HALTED, "drill", "ops", NOW) is TradingState.ACTIVE
    journal.close()
    again = Journal.open(tmp_path, Mode.PAPER)
    assert again.read_state() is TradingState.HALTED
    change = again.last_state_change()
    assert change is not None and (change["reason"], change["actor"]) == ("drill", "ops")
    again.close()


def test_a_newer_additive_schema_stays_readable_and_an_incompatible_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Journal.open(tmp_path, Mode.PAPER).close()
    # A future release adds a column (additive: min reader stays 1) ...
    future = dict(journal_mod.MIGRATIONS)
    next_version = max(future) + 1
    future[next_version] = (1, ("ALTER TABLE orders ADD COLUMN venue TEXT",))
    monkeypatch.setattr(journal_mod, "MIGRATIONS", future)
    monkeypatch.setattr(journal_mod, "SCHEMA_VERSION", next_version)
    Journal.open(tmp_path, Mode.PAPER).close()
    assert read_schema_info(journal_path(tmp_path, Mode.PAPER)) == {"schema_version": next_version,
                                                                    "min_reader_version": 1}
    # ... and the previous release (reads v1) can still open and write it.
    monkeypatch.setattr(journal_mod, "MIGRATIONS", {1: journal_mod.MIGRATIONS[1]})
    monkeypatch.setattr(journal_mod, "SCHEMA_VERSION", 1)
    old = Journal.open(tmp_path, Mode.PAPER)
    old.record_order(record())
    old.close()
    # A breaking migration raises the minimum reader: the previous release refuses instead of corrupting.
    with sqlite3.connect(journal_path(tmp_path, Mode.PAPER)) as conn:
        conn.execute("UPDATE meta SET value='99' WHERE key='min_reader_version'")
    with pytest.raises(JournalError, match="needs a release that reads v99"):
        Journal.open(tmp_path, Mode.PAPER)


def test_an_unwritable_journal_is_a_clear_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    with pytest.raises(JournalError, match="cannot open"):
        Journal.open(blocked / "state", Mode.PAPER)
