"""Pre-trade safety gates: pure functions, each returning ``None`` (pass) or a named ``Rejection``.

``evaluate`` runs them in order and returns the first rejection. They see only a ``ProposedOrder`` and a
``GateContext`` snapshot built by the engine, so every gate can be tested (and property-tested) without I/O.

Entries (orders that add risk) face every gate. Exits (stop-loss / take-profit) face only the gates that must also
stop an exit: HALTED, an unintended LIVE client and a disconnected exchange. Blocking an exit for size, daily loss,
open positions, risk or order rate would leave more money at risk, not less.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from helios import stages
from helios.models import OrderPurpose, Side, TradingState


@dataclass(frozen=True)
class ProposedOrder:
    pair: str
    side: Side
    purpose: OrderPurpose
    quantity: Decimal  # base currency
    price: Decimal  # ZAR per unit used to value the order (limit price, or the ask/bid for a market order)
    stop_loss: Decimal | None = None

    @property
    def notional_zar(self) -> Decimal:
        return self.quantity * self.price

    @property
    def risk_zar(self) -> Decimal:
        if self.stop_loss is None:
            return self.notional_zar  # no stop: the whole order is at risk
        return max(Decimal(0), self.price - self.stop_loss) * self.quantity


@dataclass(frozen=True)
class GateContext:
    """Everything the gates need, as plain values. Money in ZAR."""

    trading_state: TradingState
    client_is_live: bool
    live_explicitly_enabled: bool
    exchange_connected: bool
    ticker_age_seconds: float | None  # None: no price yet
    max_ticker_age_seconds: float
    orders_last_minute: int
    max_orders_per_minute: int
    max_position_size_zar: Decimal
    pair_exposure_zar: Decimal  # open position + pending entries in this pair
    todays_loss_zar: Decimal  # realised + unrealised loss today (positive number = loss)
    max_daily_loss_zar: Decimal
    open_positions: int  # pairs with a position or a pending entry
    pair_has_exposure: bool
    max_open_positions: int
    portfolio_risk_zar: Decimal  # sum of distance-to-stop x size over positions and pending entries
    equity_zar: Decimal
    max_portfolio_risk_pct: Decimal
    unresolved_orders: int  # orders whose outcome is unknown
    min_entry_quantity: Decimal = Decimal(0)  # smallest entry whose remainder after a BUY fee can still be sold
    # capital stage (helios.stages): LIVE always (no stage recorded: the first configured stage); PAPER only when
    # a stage was recorded. Positions at market and pending entries as (quantity, price) pairs.
    stage_applies: bool = False
    stage_limit_zar: Decimal | None = None
    positions_at_market: tuple[tuple[Decimal, Decimal], ...] = ()
    pending_entries: tuple[tuple[Decimal, Decimal], ...] = ()


@dataclass(frozen=True)
class Rejection:
    gate: str
    detail: str


Gate = Callable[[ProposedOrder, GateContext], Rejection | None]


def trading_state(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if ctx.trading_state is TradingState.HALTED:
        return Rejection("trading_state", "trading is HALTED (emergency stop): nothing new is sent")
    if ctx.trading_state is TradingState.REDUCING and order.purpose is OrderPurpose.ENTRY:
        return Rejection("trading_state", "trading is REDUCING: no new entries, exits only")
    return None


def live_intent(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if ctx.client_is_live and not ctx.live_explicitly_enabled:
        return Rejection("live_intent", "a LIVE exchange client without an explicit LIVE configuration")
    return None


def exchange_connected(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if not ctx.exchange_connected:
        return Rejection("exchange_connected", "the exchange is not reachable")
    return None


def market_data_fresh(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if order.purpose is OrderPurpose.EXIT:
        return None
    if ctx.ticker_age_seconds is None:
        return Rejection("market_data_fresh", f"no price for {order.pair} yet")
    if ctx.ticker_age_seconds > ctx.max_ticker_age_seconds:
        return Rejection(
            "market_data_fresh",
            f"{order.pair} price is {ctx.ticker_age_seconds:.1f}s old (limit {ctx.max_ticker_age_seconds:g}s)",
        )
    return None


def unresolved_orders(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if order.purpose is OrderPurpose.ENTRY and ctx.unresolved_orders > 0:
        return Rejection("unresolved_orders", f"{ctx.unresolved_orders} order(s) with unknown outcome")
    return None


def order_rate(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if order.purpose is OrderPurpose.ENTRY and ctx.orders_last_minute >= ctx.max_orders_per_minute:
        return Rejection("order_rate", f"{ctx.orders_last_minute} orders in the last minute "
                                       f"(limit {ctx.max_orders_per_minute})")
    return None


def order_size(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if order.purpose is OrderPurpose.EXIT:
        return None
    if order.quantity <= 0 or order.price <= 0:
        return Rejection("order_size", "quantity and price must be positive")
    after = ctx.pair_exposure_zar + order.notional_zar
    if after > ctx.max_position_size_zar:
        return Rejection(
            "order_size",
            f"R{order.notional_zar:.2f} would make the {order.pair} position R{after:.2f} "
            f"(limit MAX_POSITION_SIZE_ZAR=R{ctx.max_position_size_zar})",
        )
    return None


def sellable_size(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    """An entry so small that what is left after the fee (taken in the coin) is below the pair's minimum could
    never be sold again: refuse it rather than make dust."""
    if order.purpose is OrderPurpose.ENTRY and order.quantity < ctx.min_entry_quantity:
        return Rejection("sellable_size", f"{order.quantity} {order.pair} is below {ctx.min_entry_quantity}, the "
                                          "smallest entry whose remainder after the fee can be sold")
    return None


def daily_loss(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if order.purpose is OrderPurpose.ENTRY and ctx.todays_loss_zar >= ctx.max_daily_loss_zar:
        return Rejection(
            "daily_loss",
            f"today's loss R{ctx.todays_loss_zar:.2f} reached MAX_DAILY_LOSS_ZAR=R{ctx.max_daily_loss_zar}",
        )
    return None


def open_positions(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if order.purpose is OrderPurpose.ENTRY and not ctx.pair_has_exposure \
            and ctx.open_positions >= ctx.max_open_positions:
        return Rejection(
            "open_positions",
            f"{ctx.open_positions} open position(s) (limit MAX_OPEN_POSITIONS={ctx.max_open_positions})",
        )
    return None


def portfolio_risk(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    if order.purpose is OrderPurpose.EXIT:
        return None
    if ctx.equity_zar <= 0:
        return Rejection("portfolio_risk", "equity is zero or negative")
    risk_pct = (ctx.portfolio_risk_zar + order.risk_zar) / ctx.equity_zar * 100
    if risk_pct > ctx.max_portfolio_risk_pct:
        return Rejection(
            "portfolio_risk",
            f"risk to stops would be {risk_pct:.2f}% of equity R{ctx.equity_zar:.2f} "
            f"(limit MAX_PORTFOLIO_RISK_PCT={ctx.max_portfolio_risk_pct}%)",
        )
    return None


def capital_stage(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    """Capital at risk (positions at market + pending entries + this entry) stays within the current capital
    stage (``helios ramp``): the rule is ``stages.capital_at_risk_gate``."""
    if order.purpose is OrderPurpose.EXIT or not ctx.stage_applies:
        return None
    refused = stages.capital_at_risk_gate(stage_limit_zar=ctx.stage_limit_zar, positions=ctx.positions_at_market,
                                          pending_entries=ctx.pending_entries, order_value_zar=order.notional_zar)
    return None if refused is None else Rejection(refused.gate, refused.detail)


#: Order matters only for which reason is reported first; every gate must pass.
GATES: tuple[Gate, ...] = (
    trading_state,
    live_intent,
    exchange_connected,
    market_data_fresh,
    unresolved_orders,
    order_rate,
    order_size,
    sellable_size,
    daily_loss,
    open_positions,
    portfolio_risk,
    capital_stage,
)

GATE_NAMES: tuple[str, ...] = tuple(g.__name__ for g in GATES)


def evaluate(order: ProposedOrder, ctx: GateContext) -> Rejection | None:
    for gate in GATES:
        rejection = gate(order, ctx)
        if rejection is not None:
            return rejection
    return None
