"""The paper shadow: beside LIVE, a PAPER book that receives the same strategy signals at the same prices.

The operator plan asks to "Compare LIVE vs PAPER performance". The shadow is the existing ``PaperExchange`` on its
own SQLite file, ``shadow-paper.sqlite`` in the state directory, journaled apart from the LIVE journal: its orders
and fills are the paper exchange's tables, and the stop-loss / take-profit / reference price of each shadow order
are kept beside them in ``shadow_orders`` (same file). Nothing in it can reach VALR or the LIVE journal.

* ``ShadowTee`` wraps the engine's strategy: every signal the strategy emits for LIVE is also booked on the shadow,
  at the same tick's prices (whatever LIVE's gates then decide).
* ``ShadowBook.tick`` feeds the shadow each tick's prices (its resting limits fill like PAPER's) and runs its own
  stop-loss / take-profit exits from those prices, as the engine does for LIVE.
* ``ShadowBook.summary`` replays its fills through ``helios.portfolio`` (the one module that turns fills into
  positions and P&L): fills, fees, slippage against the reference price, realised P&L for a window.
  ``helios report --compare`` sets it against LIVE's journal (``helios.report.compare_with_shadow``).

The shadow never stops or delays the real book: an error in it is logged and the tick goes on.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from helios import portfolio
from helios.config import Settings
from helios.exchange.errors import ExchangeError
from helios.exchange.paper import PaperExchange
from helios.metrics import FillCost, slippage_zar
from helios.models import Clock, Fill, OrderRequest, OrderStatus, OrderType, Position, Side, Signal, Ticker, utcnow
from helios.sqlite import connect, transaction
from helios.strategy import Strategy, StrategyContext

log = logging.getLogger("helios.shadow")

SHADOW_FILE = "shadow-paper.sqlite"
SCHEMA = """CREATE TABLE IF NOT EXISTS shadow_orders (
    customer_order_id TEXT PRIMARY KEY,
    pair TEXT NOT NULL,
    purpose TEXT NOT NULL,
    stop_loss TEXT,
    take_profit TEXT,
    reference_price TEXT NOT NULL,
    created_at TEXT NOT NULL
)"""


def shadow_path(state_dir: Path) -> Path:
    return state_dir / SHADOW_FILE


@dataclass(frozen=True)
class BookSummary:
    """One book over a window: fills, fees and slippage in ZAR, realised P&L (net of fees)."""

    fills: int
    fees_zar: Decimal
    slippage_zar: Decimal
    realised_pnl_zar: Decimal

    def to_json(self) -> dict[str, Any]:
        return {"fills": self.fills, "fees_zar": str(round(self.fees_zar, 2)),
                "slippage_zar": str(round(self.slippage_zar, 2)),
                "realised_pnl_zar": str(round(self.realised_pnl_zar, 2))}


@dataclass(frozen=True)
class _OrderInfo:
    stop_loss: Decimal | None
    take_profit: Decimal | None
    reference_price: Decimal


class ShadowBook:
    def __init__(self, exchange: PaperExchange, *, clock: Clock = utcnow) -> None:
        self.exchange = exchange
        self.clock = clock
        self._lock = threading.RLock()
        self._conn = connect(exchange.path)
        with transaction(self._conn, self._lock) as cur:
            cur.execute(SCHEMA)
        positions, effects = self._replay()  # from its own fills: a restart comes back with the same book
        self._positions = positions
        self._seen = {fill.trade_id for fill, _, _ in effects}
        self._cursor: datetime | None = effects[-1][0].traded_at if effects else None

    @classmethod
    def open(cls, settings: Settings, *, starting_zar: Decimal, clock: Clock = utcnow) -> ShadowBook:
        """The shadow of this state directory, with the paper exchange's configured fees, slippage and fills."""
        exchange = PaperExchange(
            shadow_path(settings.helios_state_dir), starting_zar=starting_zar,
            maker_fee_pct=settings.helios_paper_maker_fee_pct, taker_fee_pct=settings.helios_paper_taker_fee_pct,
            slippage_bps=settings.helios_paper_slippage_bps, fill_pct=settings.helios_paper_fill_pct, clock=clock,
        )
        return cls(exchange, clock=clock)

    def close(self) -> None:
        self._conn.close()
        self.exchange.close()

    # --- feeding ------------------------------------------------------------------------------------------------
    def on_signal(self, signal: Signal, ticker: Ticker) -> None:
        """Book the strategy's entry on the shadow, as the engine routes it for LIVE (limit, or market)."""
        reference = signal.limit_price if signal.limit_price is not None else (
            ticker.ask if signal.side is Side.BUY else ticker.bid)
        order_type = OrderType.LIMIT if signal.limit_price is not None else OrderType.MARKET
        self._place(signal.pair, signal.side, order_type, signal.quantity, signal.limit_price, "entry",
                    signal.stop_loss, signal.take_profit, reference)

    def tick(self, tickers: dict[str, Ticker]) -> None:
        """This tick's prices (resting shadow limits fill), then the shadow's own stop-loss / take-profit exits."""
        for ticker in list(tickers.values()):
            self.exchange.on_market_price(ticker)
        self._apply_new_fills()
        open_exits = {o.pair for o in self.exchange.open_orders() if o.side is Side.SELL}
        for pair, position in list(self._positions.items()):
            mark = tickers.get(pair)
            if mark is None or pair in open_exits:
                continue
            hit_stop = mark.bid <= position.stop_loss
            hit_take = position.take_profit > 0 and mark.bid >= position.take_profit
            if hit_stop or hit_take:
                self._place(pair, Side.SELL, OrderType.MARKET, position.quantity, None,
                            "stop_loss" if hit_stop else "take_profit", None, None, mark.bid)

    def _place(self, pair: str, side: Side, order_type: OrderType, quantity: Decimal, price: Decimal | None,
               purpose: str, stop_loss: Decimal | None, take_profit: Decimal | None, reference: Decimal) -> None:
        cid = f"sh-{uuid.uuid4().hex}"
        with transaction(self._conn, self._lock) as cur:  # the shadow's intent is journaled before it is placed
            cur.execute("INSERT INTO shadow_orders VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (cid, pair, purpose, None if stop_loss is None else str(stop_loss),
                         None if take_profit is None else str(take_profit), str(reference),
                         self.clock().astimezone(UTC).isoformat()))
        try:
            placed = self.exchange.place_order(OrderRequest(cid, pair, side, order_type, quantity, price))
        except ExchangeError as exc:
            log.warning("shadow order refused: %s", exc.message, extra={"customer_order_id": cid})
            return
        if placed.status is OrderStatus.FAILED:
            log.warning("shadow order failed", extra={"customer_order_id": cid})

    # --- reading ------------------------------------------------------------------------------------------------
    def _orders(self) -> dict[str, _OrderInfo]:
        rows = self._conn.execute(
            "SELECT customer_order_id, stop_loss, take_profit, reference_price FROM shadow_orders").fetchall()
        return {str(r[0]): _OrderInfo(None if r[1] is None else Decimal(r[1]),
                                      None if r[2] is None else Decimal(r[2]), Decimal(r[3])) for r in rows}

    def _replay(self) -> tuple[dict[str, Position], list[tuple[Fill, portfolio.FillEffect, _OrderInfo | None]]]:
        orders = self._orders()
        positions: dict[str, Position] = {}
        effects = []
        for fill in self.exchange.fills(None):
            info = orders.get(fill.customer_order_id or "")
            effect = portfolio.apply_fill(positions.get(fill.pair), fill,
                                          stop_loss=None if info is None else info.stop_loss,
                                          take_profit=None if info is None else info.take_profit,
                                          exit_quantity=fill.quantity)
            if effect.position is None:
                positions.pop(fill.pair, None)
            else:
                positions[fill.pair] = effect.position
            effects.append((fill, effect, info))
        return positions, effects

    def _apply_new_fills(self) -> None:
        """Only the fills since the last one applied (by trade id), in the order the exchange lists them."""
        orders: dict[str, _OrderInfo] | None = None
        for fill in self.exchange.fills(self._cursor):
            if fill.trade_id in self._seen:
                continue
            orders = orders if orders is not None else self._orders()
            info = orders.get(fill.customer_order_id or "")
            effect = portfolio.apply_fill(self._positions.get(fill.pair), fill,
                                          stop_loss=None if info is None else info.stop_loss,
                                          take_profit=None if info is None else info.take_profit,
                                          exit_quantity=fill.quantity)
            if effect.position is None:
                self._positions.pop(fill.pair, None)
            else:
                self._positions[fill.pair] = effect.position
            self._seen.add(fill.trade_id)
            self._cursor = fill.traded_at

    def positions(self) -> dict[str, Position]:
        self._apply_new_fills()
        return dict(self._positions)

    def summary(self, since: datetime, until: datetime) -> BookSummary:
        _, effects = self._replay()
        inside = [(f, e, i) for f, e, i in effects if since <= f.traded_at < until]
        costs = [FillCost(f.side.value, f.price, f.quantity, f.price if i is None else i.reference_price, e.fee_zar)
                 for f, e, i in inside]
        return BookSummary(fills=len(inside), fees_zar=sum((e.fee_zar for _, e, _ in inside), Decimal(0)),
                           slippage_zar=slippage_zar(costs),
                           realised_pnl_zar=sum((e.realised_zar for _, e, _ in inside), Decimal(0)))


class ShadowTee:
    """The engine's strategy, unchanged for LIVE; each signal it emits is also booked on the shadow."""

    def __init__(self, inner: Strategy, shadow: ShadowBook) -> None:
        self.inner = inner
        self.shadow = shadow
        self.name = inner.name

    def on_tick(self, ticker: Ticker, ctx: StrategyContext) -> Signal | None:
        signal = self.inner.on_tick(ticker, ctx)
        if signal is not None:
            try:
                self.shadow.on_signal(signal, ticker)
            except Exception:  # the shadow never stops the real book
                log.exception("shadow: booking the signal failed")
        return signal
