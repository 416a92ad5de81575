"""The durable journal: one SQLite database per mode in ``HELIOS_STATE_DIR`` (WAL).

Everything that matters is written here before (intents) and after (results) it happens: orders, fills, positions,
closed trades, gate rejections, trading-state changes and events. The trading state itself lives here, so a
restart, crash, deploy or rollback comes back in the state it left.

Schema evolution rule (rollback depends on it): migrations only *add* (tables, nullable columns, indexes). Each
migration declares the oldest schema version whose code can still read and write the result
(``min_reader_version``). A release whose ``SCHEMA_VERSION`` is below a journal's ``min_reader_version`` refuses to
open it; any other combination works.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from helios.models import (
    ExchangeOrder,
    Fill,
    Mode,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TradingState,
)
from helios.sqlite import BUSY_TIMEOUT_MS, connect, transaction

SCHEMA_VERSION = 4

# version -> (min_reader_version, statements)
MIGRATIONS: dict[int, tuple[int, tuple[str, ...]]] = {
    1: (
        1,
        (
            """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
            """CREATE TABLE orders (
                customer_order_id TEXT PRIMARY KEY,
                exchange_order_id TEXT,
                pair TEXT NOT NULL,
                side TEXT NOT NULL,
                order_type TEXT NOT NULL,
                purpose TEXT NOT NULL,
                quantity TEXT NOT NULL,
                price TEXT,
                reference_price TEXT NOT NULL,
                stop_loss TEXT,
                take_profit TEXT,
                status TEXT NOT NULL,
                filled_quantity TEXT NOT NULL DEFAULT '0',
                average_price TEXT,
                fee_total TEXT NOT NULL DEFAULT '0',
                reason TEXT NOT NULL DEFAULT '',
                error TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX orders_status ON orders(status)",
            "CREATE INDEX orders_exchange_id ON orders(exchange_order_id)",
            """CREATE TABLE fills (
                trade_id TEXT PRIMARY KEY,
                customer_order_id TEXT,
                exchange_order_id TEXT,
                pair TEXT NOT NULL,
                side TEXT NOT NULL,
                price TEXT NOT NULL,
                quantity TEXT NOT NULL,
                fee TEXT NOT NULL,
                fee_currency TEXT NOT NULL,
                fee_zar TEXT NOT NULL,
                realised_pnl_zar TEXT NOT NULL DEFAULT '0',
                traded_at TEXT NOT NULL,
                recorded_at TEXT NOT NULL
            )""",
            "CREATE INDEX fills_traded_at ON fills(traded_at)",
            """CREATE TABLE positions (
                pair TEXT PRIMARY KEY,
                quantity TEXT NOT NULL,
                avg_entry_price TEXT NOT NULL,
                entry_fees_zar TEXT NOT NULL,
                stop_loss TEXT NOT NULL,
                take_profit TEXT NOT NULL,
                opened_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE trades (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                pair TEXT NOT NULL,
                quantity TEXT NOT NULL,
                entry_price TEXT NOT NULL,
                exit_price TEXT NOT NULL,
                fees_zar TEXT NOT NULL,
                realised_pnl_zar TEXT NOT NULL,
                exit_reason TEXT NOT NULL,
                opened_at TEXT NOT NULL,
                closed_at TEXT NOT NULL
            )""",
            """CREATE TABLE gate_rejections (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                customer_order_id TEXT NOT NULL,
                gate TEXT NOT NULL,
                detail TEXT NOT NULL,
                at TEXT NOT NULL
            )""",
            """CREATE TABLE state_changes (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                state TEXT NOT NULL,
                previous TEXT,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                at TEXT NOT NULL
            )""",
            """CREATE TABLE events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                detail TEXT NOT NULL,
                at TEXT NOT NULL
            )""",
            "CREATE INDEX events_kind ON events(kind)",
        ),
    ),
    # 3: the capital baseline's inputs. Older releases ignore both tables (min reader 1).
    3: (
        1,
        (
            """CREATE TABLE foreign_fills (
                trade_id TEXT PRIMARY KEY,
                exchange_order_id TEXT,
                pair TEXT NOT NULL,
                side TEXT NOT NULL,
                price TEXT NOT NULL,
                quantity TEXT NOT NULL,
                fee TEXT NOT NULL,
                fee_currency TEXT NOT NULL,
                traded_at TEXT NOT NULL,
                recorded_at TEXT NOT NULL,
                classification TEXT,
                reason TEXT,
                classified_at TEXT
            )""",
            """CREATE TABLE capital_flows (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                amount TEXT NOT NULL,
                currency TEXT NOT NULL,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                at TEXT NOT NULL
            )""",
        ),
    ),
    # --- rollout (issue 12): heartbeat history, marked-equity curve, capital stages, sign-offs -------------------
    4: (
        1,  # only new tables: releases reading v1 still read and write everything they know
        (
            "CREATE TABLE heartbeats (minute TEXT PRIMARY KEY)",  # UTC minute with at least one engine heartbeat
            """CREATE TABLE equity_snapshots (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at TEXT NOT NULL,
                capital_zar TEXT NOT NULL,
                pnl_zar TEXT NOT NULL
            )""",
            "CREATE INDEX equity_snapshots_at ON equity_snapshots(at)",
            """CREATE TABLE capital_stages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                limit_zar TEXT NOT NULL,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                at TEXT NOT NULL
            )""",
            """CREATE TABLE signoffs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                item TEXT NOT NULL,
                by TEXT NOT NULL,
                note TEXT NOT NULL,
                at TEXT NOT NULL
            )""",
            "CREATE INDEX signoffs_item ON signoffs(item)",
        ),
    ),
}

BASELINE_AT_KEY = "capital_baseline_at"
STARTING_BALANCES_KEY = "starting_balances"


class JournalError(Exception):
    """The journal cannot be opened or written (one line)."""


def journal_path(state_dir: Path, mode: Mode) -> Path:
    return state_dir / f"journal-{mode.value.lower()}.sqlite"


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@dataclass
class OrderRecord:
    """One journaled order (the journal's row, typed)."""

    customer_order_id: str
    exchange_order_id: str | None
    pair: str
    side: Side
    order_type: OrderType
    purpose: OrderPurpose
    quantity: Decimal
    price: Decimal | None
    reference_price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    status: OrderStatus
    filled_quantity: Decimal
    average_price: Decimal | None
    fee_total: Decimal
    reason: str
    error: str | None
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_order_id": self.customer_order_id,
            "exchange_order_id": self.exchange_order_id,
            "pair": self.pair,
            "side": self.side.value,
            "type": self.order_type.value,
            "purpose": self.purpose.value,
            "quantity": str(self.quantity),
            "price": None if self.price is None else str(self.price),
            "status": self.status.value,
            "filled_quantity": str(self.filled_quantity),
            "average_price": None if self.average_price is None else str(self.average_price),
            "fee_total": str(self.fee_total),
            "stop_loss": None if self.stop_loss is None else str(self.stop_loss),
            "take_profit": None if self.take_profit is None else str(self.take_profit),
            "reason": self.reason,
            "error": self.error,
            "created_at": _ts(self.created_at),
            "updated_at": _ts(self.updated_at),
        }


def _order_from_row(row: sqlite3.Row) -> OrderRecord:
    return OrderRecord(
        customer_order_id=row["customer_order_id"],
        exchange_order_id=row["exchange_order_id"],
        pair=row["pair"],
        side=Side(row["side"]),
        order_type=OrderType(row["order_type"]),
        purpose=OrderPurpose(row["purpose"]),
        quantity=Decimal(row["quantity"]),
        price=_dec(row["price"]),
        reference_price=Decimal(row["reference_price"]),
        stop_loss=_dec(row["stop_loss"]),
        take_profit=_dec(row["take_profit"]),
        status=OrderStatus(row["status"]),
        filled_quantity=Decimal(row["filled_quantity"]),
        average_price=_dec(row["average_price"]),
        fee_total=Decimal(row["fee_total"]),
        reason=row["reason"],
        error=row["error"],
        created_at=_parse_ts(row["created_at"]),
        updated_at=_parse_ts(row["updated_at"]),
    )


def _position_from_row(row: sqlite3.Row) -> Position:
    return Position(
        pair=row["pair"],
        quantity=Decimal(row["quantity"]),
        avg_entry_price=Decimal(row["avg_entry_price"]),
        entry_fees_zar=Decimal(row["entry_fees_zar"]),
        stop_loss=Decimal(row["stop_loss"]),
        take_profit=Decimal(row["take_profit"]),
        opened_at=_parse_ts(row["opened_at"]),
    )


def read_schema_info(path: Path) -> dict[str, int]:
    """Schema version and min reader version of an existing journal file, read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path}: cannot read schema ({exc})") from None
    finally:
        conn.close()
    return {
        "schema_version": int(rows.get("schema_version", 0)),
        "min_reader_version": int(rows.get("min_reader_version", 0)),
    }


class Journal:
    """Thread-safe access to one journal file. Every public write is one transaction."""

    def __init__(self, conn: sqlite3.Connection, path: Path, mode: Mode) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self.mode = mode
        self._touches = 0

    # --- opening and migrations -----------------------------------------------------------------------------
    @classmethod
    def open(cls, state_dir: Path, mode: Mode, *, now: datetime | None = None) -> Journal:
        path = journal_path(state_dir, mode)
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = connect(path)
            conn.execute("PRAGMA foreign_keys=ON")
            # Checkpoints run from the engine's heartbeat (``touch``), never inside an order's journal write.
            conn.execute("PRAGMA wal_autocheckpoint=0")
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"journal {path}: cannot open ({exc})") from None
        journal = cls(conn, path, mode)
        journal._migrate(now or datetime.now(UTC))
        return journal

    def _migrate(self, now: datetime) -> None:
        """Bring the schema to SCHEMA_VERSION. An up-to-date journal is only read (no write lock: a journal another
        process holds locked still opens). Each pending migration is applied in its own ``BEGIN IMMEDIATE``
        transaction that re-reads the version under the write lock, so two processes opening a brand-new journal at
        the same moment apply each migration once (the second finds it done)."""
        with self._lock:
            current, min_reader = self._schema_version()
            if not any(v > current for v in MIGRATIONS):
                return
            while True:
                with self._tx() as cur:
                    current, min_reader = self._schema_version()  # another process may have migrated meanwhile
                    pending = sorted(v for v in MIGRATIONS if v > current)
                    if not pending:
                        return
                    version = pending[0]
                    reader, statements = MIGRATIONS[version]
                    for statement in statements:
                        cur.execute(statement)
                    cur.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?),"
                        " ('min_reader_version', ?)",
                        (str(version), str(max(reader, min_reader))),
                    )
                    if version == 1:
                        cur.execute(
                            "INSERT OR REPLACE INTO meta(key, value) VALUES ('mode', ?), ('created_at', ?)",
                            (self.mode.value, _ts(now)),
                        )

    def _schema_version(self) -> tuple[int, int]:
        """(schema_version, min_reader_version) of this file; refuses another mode's journal or one too new."""
        has_meta = self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        current = 0
        min_reader = 0
        if has_meta:
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
            current = int(meta.get("schema_version", 0))
            min_reader = int(meta.get("min_reader_version", 0))
            stored_mode = meta.get("mode")
            if stored_mode and stored_mode != self.mode.value:
                raise JournalError(
                    f"journal {self.path}: holds {stored_mode} history, refusing to use it for {self.mode.value}"
                )
        if min_reader > SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path}: schema v{current} needs a release that reads v{min_reader} or newer; "
                f"this release reads up to v{SCHEMA_VERSION} (restore a backup or deploy a newer release)"
            )
        return current, min_reader

    def _tx(self) -> AbstractContextManager[sqlite3.Cursor]:
        return transaction(self._conn, self._lock)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            with suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

    def touch(self, now: datetime) -> None:
        """A tiny write: proves the journal is writable (health) and records the last heartbeat."""
        with self._tx() as cur:
            cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('heartbeat', ?)", (_ts(now),))
        self._touches += 1
        if self._touches % 30 == 0:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the WAL back into the database file (off the order path)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # --- trading state --------------------------------------------------------------------------------------
    def read_state(self) -> TradingState:
        return self.read_state_version()[0]

    def read_state_version(self) -> tuple[TradingState, int]:
        """The durable trading state and its version (the id of the last state change; 0 before any)."""
        rows = self._query("SELECT id, state FROM state_changes ORDER BY id DESC LIMIT 1")
        return (TradingState(rows[0]["state"]), int(rows[0]["id"])) if rows else (TradingState.ACTIVE, 0)

    def last_state_change(self) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM state_changes ORDER BY id DESC LIMIT 1")
        return dict(rows[0]) if rows else None

    def compare_and_set_state(
        self,
        decide: Callable[[TradingState, int], bool],
        state: TradingState,
        reason: str,
        actor: str,
        now: datetime,
        *,
        busy_timeout_s: float = 10.0,
    ) -> tuple[TradingState, int, bool]:
        """The storage half of ``helios.trading_state.transition`` (call that, never this): inside one
        ``BEGIN IMMEDIATE`` transaction read the durable (state, version), let ``decide`` refuse (raise) or say
        whether to write, write, and commit with ``synchronous=FULL`` (fsync). Returns (previous, version, changed).
        """
        with self._lock:
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA busy_timeout={max(0, int(busy_timeout_s * 1000))}")
            try:
                with self._tx() as cur:
                    row = cur.execute("SELECT id, state FROM state_changes ORDER BY id DESC LIMIT 1").fetchone()
                    previous = TradingState(row["state"]) if row else TradingState.ACTIVE
                    version = int(row["id"]) if row else 0
                    if not decide(previous, version):
                        return previous, version, False
                    cur.execute(
                        "INSERT INTO state_changes(state, previous, reason, actor, at) VALUES (?, ?, ?, ?, ?)",
                        (state.value, previous.value, reason, actor, _ts(now)),
                    )
                    new_version = int(cur.lastrowid or 0)
                    cur.execute(
                        "INSERT INTO events(kind, detail, at) VALUES ('state_change', ?, ?)",
                        (json.dumps({"state": state.value, "previous": previous.value, "reason": reason,
                                     "actor": actor, "version": new_version}), _ts(now)),
                    )
                return previous, new_version, True
            finally:
                with suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA synchronous=NORMAL")
                    self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    # --- orders ---------------------------------------------------------------------------------------------
    def record_order(self, order: OrderRecord, rejection: tuple[str, str] | None = None) -> None:
        """Journal a new order intent (status SUBMITTING, or REJECTED with the gate and its detail)."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO orders(customer_order_id, exchange_order_id, pair, side, order_type, purpose, quantity,"
                " price, reference_price, stop_loss, take_profit, status, filled_quantity, average_price, fee_total,"
                " reason, error, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    order.customer_order_id, order.exchange_order_id, order.pair, order.side.value,
                    order.order_type.value, order.purpose.value, str(order.quantity),
                    None if order.price is None else str(order.price), str(order.reference_price),
                    None if order.stop_loss is None else str(order.stop_loss),
                    None if order.take_profit is None else str(order.take_profit),
                    order.status.value, str(order.filled_quantity),
                    None if order.average_price is None else str(order.average_price), str(order.fee_total),
                    order.reason, order.error, _ts(order.created_at), _ts(order.updated_at),
                ),
            )
            if rejection is not None:
                cur.execute(
                    "INSERT INTO gate_rejections(customer_order_id, gate, detail, at) VALUES (?, ?, ?, ?)",
                    (order.customer_order_id, rejection[0], rejection[1], _ts(order.created_at)),
                )

    def update_order(
        self,
        customer_order_id: str,
        *,
        status: OrderStatus,
        now: datetime,
        exchange_order_id: str | None = None,
        filled_quantity: Decimal | None = None,
        average_price: Decimal | None = None,
        fee_total: Decimal | None = None,
        error: str | None = None,
    ) -> bool:
        """Move an order forward. A terminal order never changes again; returns whether a row changed."""
        terminal = tuple(s.value for s in OrderStatus if s.is_terminal)
        assert len(terminal) == 4
        sql = (
            "UPDATE orders SET status=?, updated_at=?, exchange_order_id=COALESCE(?, exchange_order_id),"
            " filled_quantity=COALESCE(?, filled_quantity), average_price=COALESCE(?, average_price),"
            " fee_total=COALESCE(?, fee_total), error=COALESCE(?, error)"
            " WHERE customer_order_id=? AND status NOT IN (?, ?, ?, ?)"
        )
        with self._tx() as cur:
            cur.execute(
                sql,
                (
                    status.value, _ts(now), exchange_order_id,
                    None if filled_quantity is None else str(filled_quantity),
                    None if average_price is None else str(average_price),
                    None if fee_total is None else str(fee_total),
                    error, customer_order_id, *terminal,
                ),
            )
            return bool(cur.rowcount > 0)

    def update_from_exchange(self, eo: ExchangeOrder, now: datetime) -> bool:
        assert eo.customer_order_id is not None
        return self.update_order(
            eo.customer_order_id,
            status=eo.status,
            now=now,
            exchange_order_id=eo.order_id,
            filled_quantity=eo.filled_quantity,
            average_price=eo.average_price,
            fee_total=eo.total_fee,
            error=eo.failed_reason,
        )

    def get_order(self, customer_order_id: str) -> OrderRecord | None:
        rows = self._query("SELECT * FROM orders WHERE customer_order_id=?", (customer_order_id,))
        return _order_from_row(rows[0]) if rows else None

    def find_order_by_exchange_id(self, exchange_order_id: str) -> OrderRecord | None:
        rows = self._query("SELECT * FROM orders WHERE exchange_order_id=?", (exchange_order_id,))
        return _order_from_row(rows[0]) if rows else None

    def active_orders(self) -> list[OrderRecord]:
        """Orders that may still be working on the exchange (or whose fate is unknown)."""
        live = tuple(s.value for s in OrderStatus if s.is_live_on_exchange)
        rows = self._query(
            f"SELECT * FROM orders WHERE status IN ({','.join('?' * len(live))}) ORDER BY created_at",  # noqa: S608
            live,
        )
        return [_order_from_row(r) for r in rows]

    def orders_with_unapplied_fills(self) -> list[OrderRecord]:
        """Ended orders whose answer showed more filled quantity than the journal holds fills for."""
        applied = self.fill_quantities(None)
        rows = self._query("SELECT * FROM orders WHERE status IN (?, ?, ?) AND filled_quantity NOT IN ('0', '0E-8')",
                           (OrderStatus.FILLED.value, OrderStatus.CANCELLED.value, OrderStatus.FAILED.value))
        records = [_order_from_row(r) for r in rows]
        return [r for r in records if r.filled_quantity > applied.get(r.customer_order_id, Decimal(0))]

    def fill_quantities(self, customer_order_ids: list[str] | None) -> dict[str, Decimal]:
        """Journaled fill quantity per order (all orders when ``customer_order_ids`` is None)."""
        totals: dict[str, Decimal] = {}
        wanted = None if customer_order_ids is None else set(customer_order_ids)
        for row in self._query("SELECT customer_order_id, quantity FROM fills WHERE customer_order_id IS NOT NULL"):
            cid = row[0]
            if wanted is None or cid in wanted:
                totals[cid] = totals.get(cid, Decimal(0)) + Decimal(row[1])
        return totals

    def orders(self, limit: int = 100, active_only: bool = False) -> list[OrderRecord]:
        if active_only:
            return self.active_orders()[-limit:]
        rows = self._query("SELECT * FROM orders ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_order_from_row(r) for r in rows]

    def order_counts(self) -> dict[str, int]:
        return {r["status"]: int(r["n"]) for r in self._query(
            "SELECT status, COUNT(*) AS n FROM orders GROUP BY status")}

    def rejection_counts(self) -> dict[str, int]:
        return {r["gate"]: int(r["n"]) for r in self._query(
            "SELECT gate, COUNT(*) AS n FROM gate_rejections GROUP BY gate")}

    # --- fills, positions, trades ---------------------------------------------------------------------------
    def has_fill(self, trade_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM fills WHERE trade_id=?", (trade_id,)))

    def last_fill_time(self) -> datetime | None:
        rows = self._query("SELECT MAX(traded_at) FROM fills")
        return _parse_ts(rows[0][0]) if rows and rows[0][0] else None

    def record_fill(
        self,
        fill: Fill,
        *,
        customer_order_id: str | None,
        fee_zar: Decimal,
        realised_pnl_zar: Decimal,
        position: Position | None,
        position_pair: str,
        closed_trade: dict[str, Any] | None,
        now: datetime,
    ) -> bool:
        """Apply one fill atomically: the fill row, the new position (or its removal) and a closed trade.

        Returns False (and changes nothing) when the fill was already journaled.
        """
        with self._tx() as cur:
            if cur.execute("SELECT 1 FROM fills WHERE trade_id=?", (fill.trade_id,)).fetchone():
                return False
            cur.execute(
                "INSERT INTO fills(trade_id, customer_order_id, exchange_order_id, pair, side, price, quantity, fee,"
                " fee_currency, fee_zar, realised_pnl_zar, traded_at, recorded_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    fill.trade_id, customer_order_id, fill.order_id, fill.pair, fill.side.value, str(fill.price),
                    str(fill.quantity), str(fill.fee), fill.fee_currency, str(fee_zar), str(realised_pnl_zar),
                    _ts(fill.traded_at), _ts(now),
                ),
            )
            if position is None:
                cur.execute("DELETE FROM positions WHERE pair=?", (position_pair,))
            else:
                cur.execute(
                    "INSERT OR REPLACE INTO positions(pair, quantity, avg_entry_price, entry_fees_zar, stop_loss,"
                    " take_profit, opened_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        position.pair, str(position.quantity), str(position.avg_entry_price),
                        str(position.entry_fees_zar), str(position.stop_loss), str(position.take_profit),
                        _ts(position.opened_at), _ts(now),
                    ),
                )
            if closed_trade is not None:
                cur.execute(
                    "INSERT INTO trades(pair, quantity, entry_price, exit_price, fees_zar, realised_pnl_zar,"
                    " exit_reason, opened_at, closed_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        closed_trade["pair"], str(closed_trade["quantity"]), str(closed_trade["entry_price"]),
                        str(closed_trade["exit_price"]), str(closed_trade["fees_zar"]),
                        str(closed_trade["realised_pnl_zar"]), closed_trade["exit_reason"],
                        _ts(closed_trade["opened_at"]), _ts(closed_trade["closed_at"]),
                    ),
                )
        return True

    def all_fills(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM fills ORDER BY traded_at, trade_id")]

    def order_ids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT customer_order_id FROM orders")}

    def positions(self) -> dict[str, Position]:
        return {r["pair"]: _position_from_row(r) for r in self._query("SELECT * FROM positions ORDER BY pair")}

    def trades(self, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM trades ORDER BY id DESC LIMIT ?", (limit,))]

    def all_trades(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM trades ORDER BY id")]

    def realised_since(self, since: datetime) -> Decimal:
        """Realised P&L (net of every fee) of fills at or after ``since``."""
        total = Decimal(0)
        for row in self._query(
            "SELECT realised_pnl_zar FROM fills WHERE traded_at >= ?", (_ts(since),)
        ):
            total += Decimal(row[0])
        return total

    def realised_total(self) -> Decimal:
        total = Decimal(0)
        for row in self._query("SELECT realised_pnl_zar FROM fills"):
            total += Decimal(row[0])
        return total

    def pair_fill_totals(self, pair: str, since: datetime) -> tuple[Decimal, Decimal]:
        """(realised P&L, fees) in ZAR of ``pair``'s fills at or after ``since``."""
        realised = Decimal(0)
        fees = Decimal(0)
        for row in self._query(
            "SELECT realised_pnl_zar, fee_zar FROM fills WHERE pair=? AND traded_at >= ?", (pair, _ts(since))
        ):
            realised += Decimal(row[0])
            fees += Decimal(row[1])
        return realised, fees

    def fees_total(self) -> Decimal:
        total = Decimal(0)
        for row in self._query("SELECT fee_zar FROM fills"):
            total += Decimal(row[0])
        return total

    # --- capital baseline: starting balances, deposits/withdrawals, fills that are not ours ------------------
    def record_baseline(self, encoded_balances: str, now: datetime) -> None:
        """Re-baseline balance reconciliation: these balances at ``now``; only later fills and flows count."""
        with self._tx() as cur:
            cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?), (?, ?)",
                        (STARTING_BALANCES_KEY, encoded_balances, BASELINE_AT_KEY, _ts(now)))

    def baseline_at(self) -> datetime | None:
        raw = self.get_meta(BASELINE_AT_KEY)
        return None if raw is None else _parse_ts(raw)

    def fills_since(self, since: datetime | None) -> list[dict[str, Any]]:
        if since is None:
            return self.all_fills()
        return [dict(r) for r in self._query("SELECT * FROM fills WHERE traded_at >= ? ORDER BY traded_at, trade_id",
                                             (_ts(since),))]

    def record_capital_flow(self, kind: str, amount: Decimal, currency: str, reason: str, actor: str,
                            now: datetime) -> None:
        """A deposit or withdrawal the operator made (balance reconciliation counts it after the baseline)."""
        with self._tx() as cur:
            cur.execute("INSERT INTO capital_flows(kind, amount, currency, reason, actor, at) VALUES (?,?,?,?,?,?)",
                        (kind, str(amount), currency, reason, actor, _ts(now)))
            cur.execute("INSERT INTO events(kind, detail, at) VALUES ('capital_flow', ?, ?)",
                        (json.dumps({"kind": kind, "amount": str(amount), "currency": currency, "reason": reason,
                                     "actor": actor}), _ts(now)))

    def capital_flows(self, since: datetime | None) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM capital_flows WHERE at >= ? ORDER BY id",
                           ("" if since is None else _ts(since),))
        return [dict(r) for r in rows]

    def record_foreign_fill(self, fill: Fill, now: datetime) -> bool:
        """A fill on the account that is not ours, once per trade id; returns whether it was new."""
        with self._tx() as cur:
            cur.execute(
                "INSERT OR IGNORE INTO foreign_fills(trade_id, exchange_order_id, pair, side, price, quantity, fee,"
                " fee_currency, traded_at, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (fill.trade_id, fill.order_id, fill.pair, fill.side.value, str(fill.price), str(fill.quantity),
                 str(fill.fee), fill.fee_currency, _ts(fill.traded_at), _ts(now)),
            )
            return bool(cur.rowcount > 0)

    def unclassified_foreign_fills(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM foreign_fills WHERE classification IS NULL")[0][0])

    def classify_foreign_fills(self, classification: str, reason: str, before: datetime, now: datetime) -> int:
        """Classify (once) every unclassified foreign fill traded before ``before``; returns how many."""
        with self._tx() as cur:
            cur.execute("UPDATE foreign_fills SET classification=?, reason=?, classified_at=?"
                        " WHERE classification IS NULL AND traded_at < ?",
                        (classification, reason, _ts(now), _ts(before)))
            count = int(cur.rowcount)
            cur.execute("INSERT INTO events(kind, detail, at) VALUES ('history_classified', ?, ?)",
                        (json.dumps({"classification": classification, "reason": reason, "fills": count,
                                     "before": _ts(before)}), _ts(now)))
        return count

    # --- events ---------------------------------------------------------------------------------------------
    def record_event(self, kind: str, detail: dict[str, Any], now: datetime) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO events(kind, detail, at) VALUES (?, ?, ?)",
                (kind, json.dumps(detail, default=str, sort_keys=True), _ts(now)),
            )

    def events(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if kind is None:
            rows = self._query("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._query("SELECT * FROM events WHERE kind=? ORDER BY id DESC LIMIT ?", (kind, limit))
        out = []
        for r in rows:
            item = dict(r)
            item["detail"] = json.loads(item["detail"])
            out.append(item)
        return out

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as cur:
            cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # === rollout (issue 12, migration 4): heartbeat history, equity curve, capital stages, sign-offs ============
    def record_heartbeat(self, now: datetime) -> None:
        """Mark ``now``'s UTC minute as having a heartbeat (idempotent: one row per minute)."""
        minute = now.astimezone(UTC).replace(second=0, microsecond=0)
        with self._tx() as cur:
            cur.execute("INSERT OR IGNORE INTO heartbeats(minute) VALUES (?)", (_ts(minute),))

    def heartbeat_minutes(self, since: datetime, until: datetime) -> set[datetime]:
        rows = self._query("SELECT minute FROM heartbeats WHERE minute >= ? AND minute < ?", (_ts(since), _ts(until)))
        return {_parse_ts(r[0]) for r in rows}

    def record_equity(self, now: datetime, capital_zar: Decimal, pnl_zar: Decimal) -> None:
        """One point of the marked-equity curve: capital baseline and realised + unrealised P&L (net of fees)."""
        with self._tx() as cur:
            cur.execute("INSERT INTO equity_snapshots(at, capital_zar, pnl_zar) VALUES (?, ?, ?)",
                        (_ts(now), str(capital_zar), str(pnl_zar)))

    def equity_snapshots(self, since: datetime, until: datetime) -> list[tuple[datetime, Decimal, Decimal]]:
        """(at, capital_zar, pnl_zar) in time order, ``since`` <= at < ``until``."""
        rows = self._query("SELECT at, capital_zar, pnl_zar FROM equity_snapshots WHERE at >= ? AND at < ?"
                           " ORDER BY at, id", (_ts(since), _ts(until)))
        return [(_parse_ts(r[0]), Decimal(r[1]), Decimal(r[2])) for r in rows]

    def record_stage(self, limit_zar: Decimal, reason: str, actor: str, now: datetime) -> None:
        with self._tx() as cur:
            cur.execute("INSERT INTO capital_stages(limit_zar, reason, actor, at) VALUES (?, ?, ?, ?)",
                        (str(limit_zar), reason, actor, _ts(now)))
            cur.execute("INSERT INTO events(kind, detail, at) VALUES ('capital_stage', ?, ?)",
                        (json.dumps({"limit_zar": str(limit_zar), "reason": reason, "actor": actor}), _ts(now)))

    def capital_stages(self) -> list[tuple[Decimal, datetime, str, str]]:
        """Every stage entered, oldest first: (limit_zar, entered_at, reason, actor)."""
        rows = self._query("SELECT limit_zar, at, reason, actor FROM capital_stages ORDER BY id")
        return [(Decimal(r[0]), _parse_ts(r[1]), str(r[2]), str(r[3])) for r in rows]

    def record_signoff(self, item: str, by: str, note: str, now: datetime) -> None:
        with self._tx() as cur:
            cur.execute("INSERT INTO signoffs(item, by, note, at) VALUES (?, ?, ?, ?)", (item, by, note, _ts(now)))

    def signoffs(self) -> list[tuple[str, str, str, datetime]]:
        """Every sign-off, oldest first: (item, by, note, at)."""
        rows = self._query("SELECT item, by, note, at FROM signoffs ORDER BY id")
        return [(str(r[0]), str(r[1]), str(r[2]), _parse_ts(r[3])) for r in rows]

    def events_between(self, kinds: tuple[str, ...], since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Events of the given kinds with ``since`` <= at < ``until``, oldest first, detail decoded."""
        marks = ",".join("?" * len(kinds))
        rows = self._query(f"SELECT * FROM events WHERE kind IN ({marks}) AND at >= ? AND at < ?"  # noqa: S608
                           " ORDER BY id", (*kinds, _ts(since), _ts(until)))
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]
    def foreign_fill_ids_traded_before(self, at: datetime) -> set[str]:
        """Trade ids of foreign fills traded before ``at`` (history from before go-live, not a red flag)."""
        return {str(r[0]) for r in self._query("SELECT trade_id FROM foreign_fills WHERE traded_at < ?", (_ts(at),))}
    # === end rollout block =======================================================================================
