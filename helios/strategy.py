"""Strategies: a small plug-in interface and one default strategy.

A strategy sees one ticker at a time and may return one ``Signal`` to open a long position, always with a
stop-loss and a take-profit. It never places orders, sizes against limits or handles exits: the engine and the
safety gates do. Strategy quality is not the point of this module; the plumbing is.

Write your own by implementing ``Strategy`` and registering it in ``STRATEGIES``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from helios.models import Side, Signal, Ticker


@dataclass(frozen=True)
class StrategyContext:
    has_position: bool
    has_pending_entry: bool
    order_size_zar: Decimal
    stop_loss_pct: Decimal
    take_profit_pct: Decimal


class Strategy(Protocol):
    name: str

    def on_tick(self, ticker: Ticker, ctx: StrategyContext) -> Signal | None: ...


def long_signal(ticker: Ticker, ctx: StrategyContext, reason: str) -> Signal:
    """A limit BUY at the bid sized to ``order_size_zar``, with stop/take levels as percentages of the entry."""
    price = ticker.bid
    quantity = (ctx.order_size_zar / price).quantize(Decimal("0.00000001"), rounding=ROUND_DOWN)
    return Signal(
        pair=ticker.pair,
        side=Side.BUY,
        quantity=quantity,
        limit_price=price,
        stop_loss=price * (1 - ctx.stop_loss_pct / 100),
        take_profit=price * (1 + ctx.take_profit_pct / 100),
        reason=reason,
    )


class SmaCrossover:
    """Default strategy: go long when the fast moving average of mid prices crosses above the slow one.

    One position per pair; no new signal while a position or an entry order exists.
    """

    name = "sma_crossover"

    def __init__(self, fast: int = 5, slow: int = 20) -> None:
        if not 0 < fast < slow:
            raise ValueError("need 0 < fast < slow")
        self.fast = fast
        self.slow = slow
        self._history: dict[str, deque[Decimal]] = {}
        self._was_above: dict[str, bool] = {}

    def on_tick(self, ticker: Ticker, ctx: StrategyContext) -> Signal | None:
        history = self._history.setdefault(ticker.pair, deque(maxlen=self.slow))
        history.append(ticker.mid)
        if len(history) < self.slow:
            return None
        prices = list(history)
        fast = sum(prices[-self.fast:]) / self.fast
        slow = sum(prices) / self.slow
        above = fast > slow
        crossed = above and not self._was_above.get(ticker.pair, True)
        self._was_above[ticker.pair] = above
        if not crossed or ctx.has_position or ctx.has_pending_entry:
            return None
        return long_signal(ticker, ctx, f"sma{self.fast} crossed above sma{self.slow}")


STRATEGIES: dict[str, type[SmaCrossover]] = {"sma_crossover": SmaCrossover}
