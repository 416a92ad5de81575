"""PAPER exchange: simulated fills on real (or simulated) prices, persisted so a restart loses nothing.

It behaves like VALR where that matters to Helios: orders are identified by ``customerOrderId``, limit orders rest
and can fill partially, market orders fill at once (or end FAILED for lack of balance), fees follow VALR's
maker/taker model, balances are reserved while an order rests. Its state is its own SQLite file
(``paper-exchange.sqlite``) beside the PAPER journal: the exchange's book, not Helios' journal.

Fill model, per price update for a resting limit order:
* BUY fills when the ask is at or below the limit; SELL when the bid is at or above it.
* At most ``fill_pct`` % of the original quantity fills per update (partial fills), at the limit price, maker fee.
Market orders fill the whole quantity at the ask (BUY) or bid (SELL) moved by ``slippage_bps`` against us, taker fee.
Fees are charged in ZAR.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from helios.exchange.errors import OrderRejected
from helios.models import (
    Balance,
    Clock,
    ExchangeOrder,
    FeeRates,
    Fill,
    KeyInfo,
    Mode,
    OrderRequest,
    OrderStatus,
    OrderType,
    PairInfo,
    Side,
    Ticker,
    utcnow,
)
from helios.sqlite import connect, transaction

QUOTE = "ZAR"
QTY_PLACES = Decimal("0.00000001")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS orders (
        customer_order_id TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, pair TEXT NOT NULL,
        side TEXT NOT NULL, order_type TEXT NOT NULL, price TEXT, quantity TEXT NOT NULL,
        filled TEXT NOT NULL, avg_price TEXT, fee_total TEXT NOT NULL, status TEXT NOT NULL,
        failed_reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS fills (
        trade_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, customer_order_id TEXT NOT NULL, pair TEXT NOT NULL,
        side TEXT NOT NULL, price TEXT NOT NULL, quantity TEXT NOT NULL, fee TEXT NOT NULL, traded_at TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS balances (currency TEXT PRIMARY KEY, total TEXT NOT NULL)",
)

OPEN_STATUSES = (OrderStatus.OPEN.value, OrderStatus.PARTIALLY_FILLED.value)


def base_currency(pair: str) -> str:
    return pair.removesuffix(QUOTE)


class PaperExchange:
    """An ``ExchangeClient`` that never leaves this machine."""

    mode = Mode.PAPER

    def __init__(
        self,
        path: Path,
        *,
        starting_zar: Decimal,
        maker_fee_pct: Decimal = Decimal("0.1"),
        taker_fee_pct: Decimal = Decimal("0.1"),
        slippage_bps: Decimal = Decimal(5),
        fill_pct: Decimal = Decimal(100),
        clock: Clock = utcnow,
    ) -> None:
        self.path = path
        self._fees = FeeRates(maker_pct=maker_fee_pct, taker_pct=taker_fee_pct)
        self._slippage = slippage_bps / Decimal(10000)
        self._fill_fraction = fill_pct / Decimal(100)
        self._clock = clock
        self._lock = threading.RLock()
        self._prices: dict[str, Ticker] = {}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._conn = connect(path)
        with self._tx() as cur:
            for statement in SCHEMA:
                cur.execute(statement)
            if cur.execute("SELECT COUNT(*) FROM balances").fetchone()[0] == 0:
                cur.execute("INSERT INTO balances(currency, total) VALUES (?, ?)", (QUOTE, str(starting_zar)))

    def _tx(self) -> AbstractContextManager[sqlite3.Cursor]:
        return transaction(self._conn, self._lock)

    def _now(self) -> str:
        return self._clock().astimezone(UTC).isoformat(timespec="microseconds")

    # --- balances -------------------------------------------------------------------------------------------
    def _total(self, cur: sqlite3.Cursor, currency: str) -> Decimal:
        row = cur.execute("SELECT total FROM balances WHERE currency=?", (currency,)).fetchone()
        return Decimal(row["total"]) if row else Decimal(0)

    def _add(self, cur: sqlite3.Cursor, currency: str, amount: Decimal) -> None:
        total = self._total(cur, currency) + amount
        cur.execute("INSERT OR REPLACE INTO balances(currency, total) VALUES (?, ?)", (currency, str(total)))

    def _reserved(self, cur: sqlite3.Cursor) -> dict[str, Decimal]:
        reserved: dict[str, Decimal] = {}
        rows = cur.execute(
            "SELECT * FROM orders WHERE status IN (?, ?)", OPEN_STATUSES
        ).fetchall()
        for row in rows:
            remaining = Decimal(row["quantity"]) - Decimal(row["filled"])
            if row["side"] == Side.BUY.value:
                if row["price"] is None:
                    continue  # a market BUY being filled right now: it has no price and never rests
                cost = remaining * Decimal(row["price"]) * (1 + self._fees.maker_pct / 100)
                reserved[QUOTE] = reserved.get(QUOTE, Decimal(0)) + cost
            else:
                cur_name = base_currency(row["pair"])
                reserved[cur_name] = reserved.get(cur_name, Decimal(0)) + remaining
        return reserved

    def balances(self) -> list[Balance]:
        with self._tx() as cur:
            reserved = self._reserved(cur)
            rows = cur.execute("SELECT currency, total FROM balances ORDER BY currency").fetchall()
            out = []
            for row in rows:
                total = Decimal(row["total"])
                res = reserved.get(row["currency"], Decimal(0))
                out.append(Balance(row["currency"], total - res, res, total))
            return out

    # --- orders ---------------------------------------------------------------------------------------------
    def place_order(self, request: OrderRequest) -> ExchangeOrder:
        if request.quantity <= 0:
            raise OrderRejected("quantity must be positive", code=-11)
        with self._tx() as cur:
            if cur.execute(
                "SELECT 1 FROM orders WHERE customer_order_id=?", (request.customer_order_id,)
            ).fetchone():
                raise OrderRejected("customerOrderId already used", code=-12005)
            order_id = str(uuid.uuid4())
            now = self._now()
            cur.execute(
                "INSERT INTO orders(customer_order_id, order_id, pair, side, order_type, price, quantity, filled,"
                " avg_price, fee_total, status, failed_reason, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,'0',NULL,'0',?,NULL,?,?)",
                (
                    request.customer_order_id, order_id, request.pair, request.side.value,
                    request.order_type.value, None if request.price is None else str(request.price),
                    str(request.quantity), OrderStatus.OPEN.value, now, now,
                ),
            )
            if request.order_type is OrderType.MARKET:
                self._fill_market(cur, request.customer_order_id)
            else:
                if request.price is None or request.price <= 0:
                    raise OrderRejected("a limit order needs a positive price", code=-11)
                if not self._can_afford(cur, request.pair, request.side, request.quantity, request.price):
                    raise OrderRejected("Insufficient Balance", code=-6)
                ticker = self._prices.get(request.pair)
                if ticker is not None:
                    self._match_order(cur, request.customer_order_id, ticker)
            return self._order(cur, request.customer_order_id)

    def _can_afford(self, cur: sqlite3.Cursor, pair: str, side: Side, qty: Decimal, price: Decimal) -> bool:
        reserved = self._reserved(cur)
        if side is Side.BUY:
            need = qty * price * (1 + self._fees.maker_pct / 100)
            # the order itself is already inserted and counted in reserved
            return self._total(cur, QUOTE) - reserved.get(QUOTE, Decimal(0)) >= 0 and need > 0
        base = base_currency(pair)
        return self._total(cur, base) - reserved.get(base, Decimal(0)) >= 0

    def _fill_market(self, cur: sqlite3.Cursor, cid: str) -> None:
        row = cur.execute("SELECT * FROM orders WHERE customer_order_id=?", (cid,)).fetchone()
        ticker = self._prices.get(row["pair"])
        side = Side(row["side"])
        qty = Decimal(row["quantity"])
        if ticker is None:
            self._fail(cur, cid, "no market price")
            return
        if side is Side.BUY:
            price = ticker.ask * (1 + self._slippage)
            fee = qty * price * self._fees.taker_pct / 100
            if self._total(cur, QUOTE) - self._reserved(cur).get(QUOTE, Decimal(0)) < qty * price + fee:
                self._fail(cur, cid, "Insufficient Balance")
                return
        else:
            price = ticker.bid * (1 - self._slippage)
            base = base_currency(row["pair"])
            # the order is OPEN while we check, so it counts itself in reserved
            if self._total(cur, base) - self._reserved(cur).get(base, Decimal(0)) < 0:
                self._fail(cur, cid, "Insufficient Balance")
                return
        self._apply_fill(cur, row, qty, price, self._fees.taker_pct)

    def _fail(self, cur: sqlite3.Cursor, cid: str, reason: str) -> None:
        cur.execute(
            "UPDATE orders SET status=?, failed_reason=?, updated_at=? WHERE customer_order_id=?",
            (OrderStatus.FAILED.value, reason, self._now(), cid),
        )

    def _apply_fill(self, cur: sqlite3.Cursor, row: sqlite3.Row, qty: Decimal, price: Decimal,
                    fee_pct: Decimal) -> None:
        side = Side(row["side"])
        base = base_currency(row["pair"])
        value = qty * price
        fee = (value * fee_pct / 100).quantize(Decimal("0.01"))
        if side is Side.BUY:
            self._add(cur, QUOTE, -(value + fee))
            self._add(cur, base, qty)
        else:
            self._add(cur, base, -qty)
            self._add(cur, QUOTE, value - fee)
        filled_before = Decimal(row["filled"])
        filled = filled_before + qty
        avg_before = Decimal(row["avg_price"]) if row["avg_price"] else Decimal(0)
        avg = (avg_before * filled_before + price * qty) / filled
        status = OrderStatus.FILLED if filled >= Decimal(row["quantity"]) else OrderStatus.PARTIALLY_FILLED
        now = self._now()
        cur.execute(
            "UPDATE orders SET filled=?, avg_price=?, fee_total=?, status=?, updated_at=? WHERE customer_order_id=?",
            (str(filled), str(avg), str(Decimal(row["fee_total"]) + fee), status.value, now,
             row["customer_order_id"]),
        )
        cur.execute(
            "INSERT INTO fills(trade_id, order_id, customer_order_id, pair, side, price, quantity, fee, traded_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (str(uuid.uuid4()), row["order_id"], row["customer_order_id"], row["pair"], side.value, str(price),
             str(qty), str(fee), now),
        )

    def _match_order(self, cur: sqlite3.Cursor, cid: str, ticker: Ticker) -> None:
        row = cur.execute("SELECT * FROM orders WHERE customer_order_id=?", (cid,)).fetchone()
        if row["status"] not in OPEN_STATUSES or row["order_type"] != OrderType.LIMIT.value:
            return
        limit = Decimal(row["price"])
        side = Side(row["side"])
        crosses = ticker.ask <= limit if side is Side.BUY else ticker.bid >= limit
        if not crosses:
            return
        original = Decimal(row["quantity"])
        remaining = original - Decimal(row["filled"])
        step = (original * self._fill_fraction).quantize(QTY_PLACES, rounding=ROUND_DOWN)
        qty = min(remaining, step) if step > 0 else remaining
        self._apply_fill(cur, row, qty, limit, self._fees.maker_pct)

    def on_market_price(self, ticker: Ticker) -> None:
        with self._tx() as cur:
            self._prices[ticker.pair] = ticker
            rows = cur.execute(
                "SELECT customer_order_id FROM orders WHERE pair=? AND status IN (?, ?) ORDER BY created_at",
                (ticker.pair, *OPEN_STATUSES),
            ).fetchall()
            for row in rows:
                self._match_order(cur, row["customer_order_id"], ticker)

    def _order(self, cur: sqlite3.Cursor, cid: str) -> ExchangeOrder:
        row = cur.execute("SELECT * FROM orders WHERE customer_order_id=?", (cid,)).fetchone()
        return ExchangeOrder(
            customer_order_id=row["customer_order_id"],
            order_id=row["order_id"],
            pair=row["pair"],
            side=Side(row["side"]),
            order_type=OrderType(row["order_type"]),
            status=OrderStatus(row["status"]),
            price=Decimal(row["price"]) if row["price"] else None,
            original_quantity=Decimal(row["quantity"]),
            filled_quantity=Decimal(row["filled"]),
            average_price=Decimal(row["avg_price"]) if row["avg_price"] else None,
            total_fee=Decimal(row["fee_total"]),
            fee_currency=QUOTE,
            failed_reason=row["failed_reason"],
            updated_at=datetime.fromisoformat(row["updated_at"]),
        )

    def get_order(self, pair: str, customer_order_id: str) -> ExchangeOrder | None:
        with self._tx() as cur:
            if not cur.execute(
                "SELECT 1 FROM orders WHERE customer_order_id=?", (customer_order_id,)
            ).fetchone():
                return None
            return self._order(cur, customer_order_id)

    def open_orders(self) -> list[ExchangeOrder]:
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT customer_order_id FROM orders WHERE status IN (?, ?) ORDER BY created_at", OPEN_STATUSES
            ).fetchall()
            return [self._order(cur, r["customer_order_id"]) for r in rows]

    def cancel_order(self, pair: str, customer_order_id: str) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE orders SET status=?, updated_at=? WHERE customer_order_id=? AND status IN (?, ?)",
                (OrderStatus.CANCELLED.value, self._now(), customer_order_id, *OPEN_STATUSES),
            )

    def cancel_all_orders(self) -> list[str]:
        with self._tx() as cur:
            rows = cur.execute("SELECT order_id FROM orders WHERE status IN (?, ?)", OPEN_STATUSES).fetchall()
            cur.execute(
                "UPDATE orders SET status=?, updated_at=? WHERE status IN (?, ?)",
                (OrderStatus.CANCELLED.value, self._now(), *OPEN_STATUSES),
            )
            return [r["order_id"] for r in rows]

    def fills(self, since: datetime | None = None) -> list[Fill]:
        with self._tx() as cur:
            if since is None:
                rows = cur.execute("SELECT * FROM fills ORDER BY traded_at, rowid").fetchall()
            else:
                rows = cur.execute(
                    "SELECT * FROM fills WHERE traded_at >= ? ORDER BY traded_at, rowid",
                    (since.astimezone(UTC).isoformat(timespec="microseconds"),),
                ).fetchall()
            return [
                Fill(
                    trade_id=r["trade_id"], order_id=r["order_id"], customer_order_id=r["customer_order_id"],
                    pair=r["pair"], side=Side(r["side"]), price=Decimal(r["price"]),
                    quantity=Decimal(r["quantity"]), fee=Decimal(r["fee"]), fee_currency=QUOTE,
                    traded_at=datetime.fromisoformat(r["traded_at"]),
                )
                for r in rows
            ]

    # --- reference data -------------------------------------------------------------------------------------
    def fee_rates(self, pair: str) -> FeeRates:
        return self._fees

    def pair_info(self, pair: str) -> PairInfo:
        return PairInfo(
            symbol=pair, base_currency=base_currency(pair), quote_currency=QUOTE,
            min_base_amount=Decimal("0.00000001"), max_base_amount=Decimal(1000000),
            min_quote_amount=Decimal(0), max_quote_amount=Decimal(100000000),
            tick_size=Decimal(1), base_decimal_places=8,
        )

    def key_info(self) -> KeyInfo:
        return KeyInfo(label="paper", permissions=("View", "Trade"), is_sub_account=False)

    def is_connected(self) -> bool:
        return True

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()
