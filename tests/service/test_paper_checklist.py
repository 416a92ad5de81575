"""The operator plan's PAPER testing checklist (live-mode-plan.md, Tests 1-5), driven over scripted price paths
through the real engine, the real paper exchange and real SQLite journals."""

from __future__ import annotations

from decimal import Decimal

from helios import views
from helios.models import OrderStatus, Side, Signal, TradingState

from .conftest import RigFactory

D = Decimal


def buy(price: int, qty: str = "0.0005", stop: int = 970_000, take: int = 1_010_000, pair: str = "BTCZAR") -> Signal:
    return Signal(pair=pair, side=Side.BUY, quantity=D(qty), limit_price=D(price), stop_loss=D(stop),
                  take_profit=D(take), reason="test signal")


def open_position_at_990k(rig_factory: RigFactory, path: list[int], **env: str):  # type: ignore[no-untyped-def]
    rig = rig_factory({"BTCZAR": path}, **env)
    rig.strategy.pending.append(buy(990_000))
    rig.step()  # price 1,000,000: signal -> limit BUY 990,000 rests
    rig.step()  # price 985,000: the BUY fills at its limit, the fill reaches the position
    return rig


# --- Test 1: order execution flow ---------------------------------------------------------------------------
def test_1_order_execution_flow_buy_signal_to_position_and_pnl(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 995_000]})
    rig.strategy.pending.append(buy(990_000))

    rig.step()  # BUY signal generated and routed
    orders = rig.journal.orders()
    assert len(orders) == 1, "order created"
    order = orders[0]
    assert order.status is OrderStatus.OPEN, "submitted and resting on the exchange"
    assert order.side is Side.BUY and order.price == D(990_000) and order.quantity == D("0.0005")
    on_exchange = rig.exchange.get_order("BTCZAR", order.customer_order_id)
    assert on_exchange is not None and on_exchange.status is OrderStatus.OPEN
    assert rig.engine.positions == {}

    rig.step()  # price drops to 985,000: the limit fills
    assert rig.journal.get_order(order.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    position = rig.engine.positions["BTCZAR"]
    assert position.quantity == D("0.0005")
    assert position.avg_entry_price == D(990_000)
    assert position.stop_loss == D(970_000) and position.take_profit == D(1_010_000)
    assert rig.journal.positions()["BTCZAR"].quantity == D("0.0005"), "position is durable"

    rig.step()  # 995,000: mark-to-market
    fee = D("0.50")  # 0.1% maker fee on R495, to the cent
    assert position.entry_fees_zar == fee
    assert rig.engine.unrealised_zar() == (D(995_000) - D(990_000)) * D("0.0005") - fee
    pnl = views.pnl_json(rig.engine)
    assert D(pnl["unrealised_zar"]) == D("2.00")
    assert D(pnl["today_realised_zar"]) == 0


# --- Test 2: stop-loss --------------------------------------------------------------------------------------
def test_2_stop_loss_closes_position_and_records_pnl(make_rig: RigFactory) -> None:
    rig = open_position_at_990k(make_rig, [1_000_000, 985_000, 980_000, 960_000, 960_000])
    assert "BTCZAR" in rig.engine.positions
    rig.step()  # 980,000: above the stop
    assert "BTCZAR" in rig.engine.positions
    rig.step()  # 960,000 <= stop 970,000: market SELL sent
    exits = [o for o in rig.journal.orders() if o.side is Side.SELL]
    assert len(exits) == 1 and exits[0].reason == "stop_loss"
    rig.step()  # the exit fill closes the position
    assert rig.engine.positions == {}
    assert rig.journal.positions() == {}
    trades = rig.journal.trades()
    assert len(trades) == 1
    trade = trades[0]
    assert trade["exit_reason"] == "stop_loss"
    # (960,000 - 990,000) x 0.0005 = -15; fees: 0.50 entry (maker) + 0.48 exit (taker)
    assert D(trade["realised_pnl_zar"]) == D("-15.98")
    assert D(views.pnl_json(rig.engine)["today_realised_zar"]) == D("-15.98")


# --- Test 3: take-profit ------------------------------------------------------------------------------------
def test_3_take_profit_closes_position_and_records_pnl(make_rig: RigFactory) -> None:
    rig = open_position_at_990k(make_rig, [1_000_000, 985_000, 1_005_000, 1_012_000, 1_012_000])
    rig.step()  # 1,005,000: below the take-profit
    assert "BTCZAR" in rig.engine.positions
    rig.step()  # 1,012,000 >= 1,010,000: exit
    rig.step()
    assert rig.engine.positions == {}
    trade = rig.journal.trades()[0]
    assert trade["exit_reason"] == "take_profit"
    # (1,012,000 - 990,000) x 0.0005 = 11; fees 0.50 + 0.51 (0.1% of 506, to the cent)
    assert D(trade["realised_pnl_zar"]) == D("11") - D("0.50") - D("0.51")


# --- Test 4: risk limits ------------------------------------------------------------------------------------
def _rejected_by(rig, gate: str) -> None:  # type: ignore[no-untyped-def]
    order = rig.journal.orders()[0]
    assert order.status is OrderStatus.REJECTED
    assert order.error.startswith(gate + ":"), order.error
    assert rig.journal.rejection_counts().get(gate) == 1
    assert rig.engine.rejection_counts.get(gate) == 1
    assert rig.exchange.get_order("BTCZAR", order.customer_order_id) is None, "nothing reached the exchange"


def test_4a_max_position_size_rejects_the_trade(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]}, MAX_POSITION_SIZE_ZAR="1000")
    rig.strategy.pending.append(buy(1_000_000, qty="0.0015"))  # R1,500
    rig.step()
    _rejected_by(rig, "order_size")


def test_4b_max_portfolio_risk_rejects_the_trade(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]}, MAX_PORTFOLIO_RISK_PCT="1")  # 1% of R10,000 = R100 at risk
    rig.strategy.pending.append(buy(1_000_000, qty="0.0009", stop=800_000))  # R180 to the stop
    rig.step()
    _rejected_by(rig, "portfolio_risk")


def test_4c_max_daily_loss_moves_to_reducing_and_rejects_entries(make_rig: RigFactory) -> None:
    rig = open_position_at_990k(make_rig, [1_000_000, 985_000, 960_000, 960_000, 1_000_000],
                                MAX_DAILY_LOSS_ZAR="10")
    rig.step()  # stop-loss exit
    rig.step()  # closed: -15.98 today
    assert rig.engine.state is TradingState.REDUCING
    assert "daily loss" in rig.journal.last_state_change()["reason"]  # type: ignore[index]
    rig.step()
    blocked = rig.engine.submit_signal(buy(1_000_000))
    assert blocked.status is OrderStatus.REJECTED
    assert blocked.error is not None and blocked.error.startswith("trading_state:"), "no new entry while REDUCING"
    # Even after an operator resume, the daily-loss gate itself refuses the next entry today.
    rig.engine.resume("operator checked", "test")
    record = rig.engine.submit_signal(buy(1_000_000))
    assert record.status is OrderStatus.REJECTED
    assert record.error is not None and record.error.startswith("daily_loss:")


def test_4d_max_open_positions_rejects_the_trade(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000], "ETHZAR": [40_000]}, MAX_OPEN_POSITIONS="1",
                   HELIOS_PAIRS="BTCZAR,ETHZAR")
    rig.strategy.pending.append(buy(1_000_000))
    rig.step()  # fills at once (ask == limit): one open position
    rig.step()
    assert list(rig.engine.positions) == ["BTCZAR"]
    record = rig.engine.submit_signal(Signal("ETHZAR", Side.BUY, D("0.01"), D(40_000), D(39_000), D(41_000)))
    assert record.status is OrderStatus.REJECTED
    assert record.error is not None and record.error.startswith("open_positions:")


def test_4e_order_rate_limit_rejects_the_trade(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]}, HELIOS_MAX_ORDERS_PER_MINUTE="2", MAX_POSITION_SIZE_ZAR="5000")
    rig.step()
    results = [rig.engine.submit_signal(buy(900_000, qty="0.0001")) for _ in range(3)]
    assert [r.status for r in results] == [OrderStatus.OPEN, OrderStatus.OPEN, OrderStatus.REJECTED]
    assert results[2].error is not None and results[2].error.startswith("order_rate:")


def test_4f_stale_market_data_rejects_the_trade(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]}, HELIOS_MAX_TICKER_AGE_SECONDS="10")
    rig.step()
    rig.market.stall()
    rig.clock.advance(30)
    record = rig.engine.submit_signal(buy(1_000_000))
    assert record.status is OrderStatus.REJECTED
    assert record.error is not None and record.error.startswith("market_data_fresh:")


# --- Test 5: emergency stop ---------------------------------------------------------------------------------
def test_5_emergency_stop_cancels_everything_places_nothing_and_survives_restart(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]}, MAX_POSITION_SIZE_ZAR="5000", HELIOS_MAX_ORDERS_PER_MINUTE="100")
    rig.step()
    for i in range(5):
        rig.engine.submit_signal(buy(900_000 + i, qty="0.0001"))  # far below the market: they rest
    assert len(rig.exchange.open_orders()) == 5

    report = rig.engine.emergency_stop("test kill switch", "pytest")

    assert report["trading_state"] == "HALTED"
    assert report["zero_open_orders_confirmed"] is True
    assert report["open_orders_remaining"] == 0
    assert report["orders_cancelled"] == 5
    assert rig.exchange.open_orders() == []
    rig.step()  # the journal learns each order's final status by customerOrderId on the next tick
    assert all(o.status is OrderStatus.CANCELLED for o in rig.journal.orders())
    assert rig.engine.active == {}

    # Nothing new is placed afterwards: not a signal, not a direct order.
    orders_before = len(rig.journal.orders())
    rig.strategy.pending.append(buy(1_000_000))
    rig.step(3)
    record = rig.engine.submit_signal(buy(1_000_000))
    assert record.status is OrderStatus.REJECTED and record.error.startswith("trading_state:")  # type: ignore[union-attr]
    assert rig.exchange.open_orders() == []
    assert all(o.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED) for o in rig.journal.orders())
    assert len(rig.journal.orders()) <= orders_before + 2

    # A restart (new engine on the same journal) comes back HALTED.
    state_dir = rig.settings.helios_state_dir
    rig.close()
    again = make_rig({"BTCZAR": [1_000_000]}, state_dir=state_dir)
    assert again.engine.state is TradingState.HALTED
    again.step()
    assert again.engine.state is TradingState.HALTED
    again.engine.resume("tested; resuming", "pytest")
    assert again.journal.read_state() is TradingState.ACTIVE


def test_5b_stop_loss_exit_runs_while_reducing_but_not_when_halted(make_rig: RigFactory) -> None:
    rig = open_position_at_990k(make_rig, [1_000_000, 985_000, 960_000, 960_000])
    rig.engine.set_state(TradingState.HALTED, "test", "pytest")
    rig.step(2)
    assert "BTCZAR" in rig.engine.positions, "HALTED sends nothing, not even an exit"
    rig.engine.resume("test", "pytest")  # nothing but a resume leaves HALTED
    rig.engine.set_state(TradingState.REDUCING, "test", "pytest")
    rig.step(2)
    assert rig.engine.positions == {}, "REDUCING still runs the stop-loss"


def test_a_stale_entry_order_expires_and_frees_the_pair(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]}, HELIOS_ENTRY_ORDER_TTL_SECONDS="30")
    rig.strategy.pending.append(buy(900_000))
    rig.step()
    record = rig.journal.orders()[0]
    assert record.status is OrderStatus.OPEN
    rig.step(29)
    assert rig.journal.get_order(record.customer_order_id).status is OrderStatus.OPEN  # type: ignore[union-attr]
    rig.step(2)
    assert rig.journal.get_order(record.customer_order_id).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert rig.exchange.open_orders() == [] and rig.engine.active == {}
    assert rig.journal.events("entry_expired")


# --- issue 8 ------------------------------------------------------------------------------------------------
def test_finding10_paper_market_buy_fills_instead_of_raising(make_rig: RigFactory) -> None:
    """Every PAPER market BUY used to raise TypeError (the just-inserted market order has no price)."""
    rig = make_rig({"BTCZAR": [1_000_000]})
    rig.step()
    signal = Signal(pair="BTCZAR", side=Side.BUY, quantity=D("0.0005"), limit_price=None, stop_loss=D(970_000),
                    take_profit=D(1_010_000), reason="market entry")
    record = rig.engine.submit_signal(signal)
    assert record.status is OrderStatus.FILLED, rig.journal.get_order(record.customer_order_id)
    assert rig.journal.events("order_unknown") == []
    rig.step()
    assert rig.engine.positions["BTCZAR"].quantity == D("0.0005")
