"""Protection held on the exchange (issue 11): the LIVE engine places each position's stop-loss on VALR (the
double), keeps it in step with the position, and the emergency stop leaves it in place unless asked."""

from __future__ import annotations

from collections.abc import Callable

from helios import views
from helios.models import OrderStatus, TradingState
from helios.protection import PROTECTIVE_PREFIX

from .conftest import D, SafetyRig, wait_for_price

RigFactory = Callable[..., SafetyRig]


def _protective(rig: SafetyRig) -> list[object]:
    return [o for o in rig.double.open_orders() if (o.customer_order_id or "").startswith(PROTECTIVE_PREFIX)]


def _filled_entry(rig: SafetyRig, qty: str = "0.0002") -> None:
    entry = rig.buy(990_000, qty=qty, stop=950_000)
    rig.double.set_price("BTCZAR", "985000")  # crosses: the entry fills
    wait_for_price(rig, "BTCZAR", 985_000)
    rig.engine.step()
    assert rig.journal.get_order(entry.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_a_filled_entry_gets_its_stop_loss_held_on_the_exchange_for_the_whole_position(
    make_safety_rig: RigFactory,
) -> None:
    rig = make_safety_rig()
    _filled_entry(rig)
    held = rig.engine.positions["BTCZAR"].quantity
    [stop] = _protective(rig)
    assert stop.side == "SELL" and stop.status == "Active"  # type: ignore[attr-defined]
    assert stop.stop_price == D(950_000) and stop.quantity == held  # type: ignore[attr-defined]
    rig.engine.step()
    assert len(_protective(rig)) == 1, "kept, not re-placed every tick"
    [shown] = views.positions_json(rig.engine)
    assert shown["protected_on_exchange"] is True and shown["exit_pending"] is False


def test_the_exchange_held_stop_closes_the_position_while_helios_is_down_and_is_reconciled_on_start(
    make_safety_rig: RigFactory,
) -> None:
    rig = make_safety_rig()
    _filled_entry(rig)
    assert len(_protective(rig)) == 1
    # Helios dies (no shutdown: nothing is cancelled, nothing is journaled) ...
    rig.engine.market.close()
    rig.engine.client.close()
    rig.journal.close()
    # ... the price falls through the stop: the exchange-held order sells the position.
    rig.double.set_price("BTCZAR", "945000")  # through the 950,000 stop; above its 940,500 limit
    assert _protective(rig) == []
    sells = [o for o in rig.double.orders() if o.side == "SELL"]
    assert len(sells) == 1 and sells[0].filled > 0
    # Helios starts again on the same state: it reconciles the exit fill, the position is closed, nothing is sold twice.
    again = make_safety_rig()
    again.engine.step()
    assert "BTCZAR" not in again.engine.positions
    exits = [f for f in again.journal.fills_since(None) if f["side"] == "SELL"]
    assert len(exits) >= 1 and sum(D(f["quantity"]) for f in exits) == sells[0].filled
    assert len([o for o in rig.double.orders() if o.side == "SELL"]) == 1, "no duplicate sell"


def test_emergency_stop_keeps_the_protective_exit_and_cancels_everything_that_adds_exposure(
    make_safety_rig: RigFactory,
) -> None:
    rig = make_safety_rig()
    _filled_entry(rig)
    resting = rig.buy(900_000, qty="0.00011")
    assert resting.status is OrderStatus.OPEN

    report = rig.engine.emergency_stop("drill", "pytest")

    assert report["zero_open_orders_confirmed"] is True, report
    assert report["open_orders_remaining"] == 0
    assert [o["side"] for o in report["protective_exits_left"]] == ["SELL"]
    assert [o.customer_order_id for o in rig.double.open_orders()] == [
        o["customer_order_id"] for o in report["protective_exits_left"]]
    rig.engine.step()  # the while-HALTED sweep leaves it alone too
    assert rig.engine.state is TradingState.HALTED
    assert len(_protective(rig)) == 1


def test_emergency_stop_with_cancel_protective_cancels_the_protective_exit_too(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    _filled_entry(rig)
    rig.buy(900_000, qty="0.00011")

    report = rig.engine.emergency_stop("drill", "pytest", cancel_protective=True)

    assert report["zero_open_orders_confirmed"] is True, report
    assert report["protective_exits_left"] == [] and report["cancel_protective"] is True
    assert rig.double.open_orders() == []
    rig.engine.step()
    assert rig.double.open_orders() == [], "nothing new is placed while HALTED"


def test_direct_stop_keeps_the_protective_exit_unless_cancel_protective(make_safety_rig: RigFactory) -> None:
    from helios.cli import direct_emergency_stop

    rig = make_safety_rig()
    _filled_entry(rig)
    rig.buy(900_000, qty="0.00011")

    kept = direct_emergency_stop(rig.settings, "drill", "ops")

    assert kept["zero_open_orders_confirmed"] is True and kept["cancel_protective"] is False
    assert len(kept["protective_exits_left"]) == 1 and len(_protective(rig)) == 1
    assert [o.customer_order_id for o in rig.double.open_orders()] == [
        kept["protective_exits_left"][0]["customer_order_id"]]

    removed = direct_emergency_stop(rig.settings, "drill: flat", "ops", cancel_protective=True)

    assert removed["zero_open_orders_confirmed"] is True and removed["protective_exits_left"] == []
    assert rig.double.open_orders() == []


def test_the_exchange_held_stop_follows_partial_fills_and_an_exit(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    rig.double.set_fill_ratio("0.5")
    entry = rig.buy(990_000, qty="0.0004", stop=950_000)
    rig.double.set_price("BTCZAR", "985000")  # half the entry fills
    wait_for_price(rig, "BTCZAR", 985_000)
    rig.engine.step()
    half = rig.engine.positions["BTCZAR"].quantity
    assert 0 < half < D("0.0004")
    [first] = _protective(rig)
    assert first.quantity == half  # type: ignore[attr-defined]
    rig.double.set_fill_ratio("1")
    rig.double.set_price("BTCZAR", "984000")  # the rest fills
    wait_for_price(rig, "BTCZAR", 984_000)
    for _ in range(3):  # fill applied -> old stop cancelled -> its cancel seen, new stop placed
        rig.engine.step()
    assert rig.journal.get_order(entry.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    [second] = _protective(rig)
    assert second.quantity == rig.engine.positions["BTCZAR"].quantity == D("0.0004")  # type: ignore[attr-defined]
    assert second.customer_order_id != first.customer_order_id  # type: ignore[attr-defined]


def test_api_emergency_stop_body_cancel_protective(double: object, tmp_path: object) -> None:
    """POST /api/emergency-stop: default keeps the protective exit (listed); {"cancel_protective": true} cancels it."""
    from pathlib import Path

    import requests

    from helios.config import load_settings
    from helios.models import OrderPurpose, OrderType, Side
    from helios.service import ApiServer, bind_socket, build_runtime
    from helios_double import ExchangeDouble
    from tests.service.conftest import ScriptedStrategy

    from .conftest import TOKEN, live_env

    assert isinstance(double, ExchangeDouble)
    runtime = build_runtime(load_settings(live_env(double, Path(str(tmp_path)) / "api")), strategy=ScriptedStrategy())
    engine = runtime.engine
    sock = bind_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/emergency-stop"
    api = ApiServer(runtime, sock)
    try:
        engine.record_starting_balances(engine.clock())
        engine.start_up()
        engine.step()
        engine.submit_order(pair="BTCZAR", side=Side.BUY, order_type=OrderType.MARKET, quantity=D("0.0002"),
                            price=None, purpose=OrderPurpose.ENTRY, stop_loss=D(950_000), take_profit=D(1_200_000))
        engine.step()
        engine.step()
        protective = [o for o in double.open_orders() if (o.customer_order_id or "").startswith(PROTECTIVE_PREFIX)]
        assert len(protective) == 1
        api.start()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        kept = requests.post(url, json={"reason": "drill"}, headers=auth, timeout=30).json()
        assert kept["zero_open_orders_confirmed"] is True
        assert [o["customer_order_id"] for o in kept["protective_exits_left"]] == [protective[0].customer_order_id]
        assert len(double.open_orders()) == 1
        gone = requests.post(url, json={"reason": "flat", "cancel_protective": True}, headers=auth, timeout=30).json()
        assert gone["zero_open_orders_confirmed"] is True and gone["protective_exits_left"] == []
        assert double.open_orders() == []
    finally:
        api.stop()
        engine.alerter.close()
        engine.client.close()
        engine.market.close()
        runtime.journal.close()


def test_take_profit_still_sells_while_a_stop_loss_is_held_on_the_exchange(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    _filled_entry(rig)
    assert len(_protective(rig)) == 1
    rig.double.set_price("BTCZAR", "1250000")  # above the 1,200,000 take-profit
    wait_for_price(rig, "BTCZAR", 1_250_000)
    for _ in range(3):  # the stop-limit is cancelled (it holds the coins), then the software take-profit sells
        rig.engine.step()
    assert "BTCZAR" not in rig.engine.positions
    assert _protective(rig) == []
    exits = [o for o in rig.journal.orders() if o.reason == "take_profit"]
    assert [o.status for o in exits] == [OrderStatus.FILLED]
