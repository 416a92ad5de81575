"""A stop-loss market exit that VALR cuts at its slippage limit, LIVE against the double in every variant.

VALR documents the statuses: "Partially Filled and Cancelled Due To Slippage" (a market order cut part-way) and a
market order that ends Failed "Order cancelled as it would have matched outside of slippage price band" (API
collection, Order History Detail (orderId); docs/valr-contract.md). The engine must not raise, must book the part
that filled, keep the rest of the position tracked, retry the software exit (with back-off after an exit that
filled nothing), and re-place the exchange-held stop for the remainder once the price allows one; P&L exact.
"""

from __future__ import annotations

from decimal import Decimal

from helios.engine import Engine
from helios.models import OrderPurpose, OrderStatus, OrderType, Side
from helios.protection import PROTECTIVE_PREFIX
from helios_double import ExchangeDouble, Order
from tests.live.test_live_protection_oco import _wait_for_bid

D = Decimal
BTC = "BTCZAR"
CUT = "Partially Filled and Cancelled Due To Slippage"


def _protective(double: ExchangeDouble) -> list[Decimal]:
    return [o.remaining for o in double.open_orders() if (o.customer_order_id or "").startswith(PROTECTIVE_PREFIX)]


def _market_sells(double: ExchangeDouble) -> list[Order]:
    return [o for o in double.orders() if o.side == "SELL" and o.kind == "market"]


def _software_exits(engine: Engine) -> list[tuple[OrderStatus, Decimal]]:
    rows = [o for o in engine.journal.orders(limit=100)
            if o.purpose is OrderPurpose.EXIT and not o.customer_order_id.startswith(PROTECTIVE_PREFIX)]
    return [(o.status, o.filled_quantity) for o in sorted(rows, key=lambda o: o.created_at)]


def test_slippage_cut_stop_loss_exit_is_booked_and_the_rest_stays_protected(
        variant_engine: Engine, variant_double: ExchangeDouble) -> None:
    engine, double = variant_engine, variant_double
    zar_before = double.balances()["ZAR"]
    engine.submit_order(pair=BTC, side=Side.BUY, order_type=OrderType.MARKET, quantity=D("0.0004"), price=None,
                        purpose=OrderPurpose.ENTRY, stop_loss=D(950_000), take_profit=D(1_200_000), reason="slip")
    engine.step()
    engine.step()
    held = engine.positions[BTC].quantity
    assert _protective(double) == [held]  # the exchange-held stop-limit

    # The price gaps below the stop's limit: the stop is cancelled, the software exit sells at market and VALR
    # cuts it at its slippage limit half-way.
    double.set_slippage_cut(1, "0.5")
    double.set_price(BTC, "930000")
    _wait_for_bid(engine, "930000")
    for _ in range(5):
        engine.step()  # no exception
        if _market_sells(double):
            break
    (cut,) = _market_sells(double)
    assert cut.status == CUT and cut.filled == held / 2
    # The next attempt is cut before anything fills (Failed, "outside of slippage price band").
    double.set_slippage_cut(1, "0")
    engine.step()  # the cut exit's fill is booked; a partial cut made progress: the exit is retried at once
    assert engine.positions[BTC].quantity == held - held / 2  # booked; the rest is still tracked
    assert _software_exits(engine) == [(OrderStatus.CANCELLED, held / 2), (OrderStatus.FAILED, D(0))]
    placements = len(double.order_placements())
    for _ in range(3):
        engine.step()
    assert len(double.order_placements()) == placements  # an exit that filled nothing: back-off, nothing re-sent
    assert [e["kind"] for e in engine.journal.events(kind="exit_failed")] == ["exit_failed"]

    # The price recovers above the stop: the exchange-held stop is re-placed for what is left.
    double.set_price(BTC, "960000")
    _wait_for_bid(engine, "960000")
    engine.step()
    engine.step()
    remainder = engine.positions[BTC].quantity
    assert _protective(double) == [engine._sellable(BTC, remainder)[0]] == [held / 2]

    # Through the stop again: the exchange-held stop sells the rest; Helios reconciles it, P&L exact.
    double.set_price(BTC, "945000")
    _wait_for_bid(engine, "945000")
    engine.step()
    engine.step()
    assert BTC not in engine.positions and double.balances()["BTC"] == 0
    sold = sum((o.filled for o in double.orders() if o.side == "SELL"), D(0))
    assert sold == held
    realised = engine.journal.realised_total()
    assert realised == double.balances()["ZAR"] - zar_before
    (trade,) = engine.journal.all_trades()
    assert D(trade["realised_pnl_zar"]) == realised  # the whole round trip, both exits
