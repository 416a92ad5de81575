"""Take-profit + stop-loss held on the exchange as ONE conditional order (one-cancels-the-other), LIVE against the
double: the double triggers it when the price set through its admin crosses a trigger (one leg fills, the other is
cancelled); the engine's protection places it when the pair's order types offer it, keeps it in step, and Helios
reconciles the position the exchange closed, P&L exact. Emergency stop with and without ``cancel_protective``.

VALR documents no order-type entry for conditional TP/SL on any pair (tests/contract/test_conditional_examples.py);
here the double is told to list ``OT_OCO`` for BTCZAR (``set_order_types``) to exercise that path. With VALR's
documented list the pair gets the stop-limit (``test_documented_order_types_get_a_stop_limit``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from helios.config import load_settings
from helios.engine import Engine
from helios.exchange.valr import ConditionalRequest, StopLimitRequest, ValrClient
from helios.models import OrderPurpose, OrderStatus, OrderType, Side, TradingState
from helios.protection import OCO_PREFIX, PROTECTIVE_OCO_REASON, PROTECTIVE_PREFIX
from helios.service import build_runtime
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, DoubleVariant, ExchangeDouble
from helios_double.book import DEFAULT_ORDER_TYPES
from tests.live.test_live_engine import live_env
from tests.service.conftest import ScriptedStrategy

D = Decimal
BTC = "BTCZAR"
WITH_OCO = (*DEFAULT_ORDER_TYPES, "OT_OCO")
#: "not found" in both documented forms: the OCO look-up goes through it every tick
UNKNOWN_FORMS = [DoubleVariant(unknown_order="400"), DoubleVariant(unknown_order="404")]


def _double(variant: DoubleVariant | None = None) -> ExchangeDouble:
    return ExchangeDouble(variant=variant or DoubleVariant(), prices={BTC: D(1_000_000)}, balances={"ZAR": D(100_000)})


# ---- the double triggers conditional orders -----------------------------------------------------------------


@pytest.fixture
def double() -> Iterator[ExchangeDouble]:
    with _double() as d:
        yield d


@pytest.fixture
def client(double: ExchangeDouble) -> Iterator[ValrClient]:
    c = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, backoff_base=0.01, sleep=lambda _s: None)
    yield c
    c.close()


def _oco(client: ValrClient, cid: str, qty: str = "0.001") -> str:
    return client.place_conditional(ConditionalRequest(
        cid, BTC, D(qty), take_profit_trigger=D(1_100_000), take_profit_price=D(1_100_000),
        stop_loss_trigger=D(950_000), stop_loss_price=D(940_000)))


def test_double_triggers_the_take_profit_leg_and_cancels_the_stop_loss_leg(
        client: ValrClient, double: ExchangeDouble) -> None:
    double.set_balance("BTC", "0.001")
    order_id = _oco(client, "oco-tp")
    double.set_price(BTC, "1050000")  # between the triggers: nothing
    assert [c["orderId"] for c in double.conditionals()] == [order_id] and double.orders() == []
    double.set_price(BTC, "1100000")  # the take-profit trigger
    assert double.conditionals() == []  # the stop-loss leg went with it (one-cancels-the-other)
    (sold,) = double.orders()
    assert sold.customer_order_id == "oco-tp" and sold.side == "SELL" and sold.status == "Filled"
    assert sold.filled == D("0.001") and sold.price == D(1_100_000)
    (fill,) = client.fills()
    assert fill.customer_order_id == "oco-tp" and fill.price == D(1_100_000)
    double.set_price(BTC, "900000")  # through the old stop-loss: nothing more is sold
    assert len(double.orders()) == 1 and double.balances()["BTC"] == 0
    found = client.get_order(BTC, "oco-tp")
    assert found is not None and found.status is OrderStatus.FILLED
    (row,) = client.conditional_history(BTC)
    assert row.order_id == order_id and row.status == "Triggered"


def test_double_triggers_the_stop_loss_leg_at_its_limit(client: ValrClient, double: ExchangeDouble) -> None:
    double.set_balance("BTC", "0.002")
    _oco(client, "oco-sl")  # 0.001 of the 0.002 held
    double.set_price(BTC, "945000")  # below the 950,000 trigger; the leg's 940,000 limit crosses the bid
    (sold,) = double.orders()
    assert sold.customer_order_id == "oco-sl" and sold.filled == D("0.001") and sold.status == "Filled"
    assert double.conditionals() == [] and double.balances()["BTC"] == D("0.001")
    double.set_price(BTC, "1200000")  # the take-profit leg was cancelled: nothing happens
    assert len(double.orders()) == 1


def test_double_conditional_waiting_is_open_then_cancelled_by_customer_order_id(client: ValrClient) -> None:
    _oco(client, "hp-oco-x")
    waiting = client.get_order(BTC, "hp-oco-x")
    assert waiting is not None and waiting.status is OrderStatus.OPEN
    client.cancel_conditional(BTC, customer_order_id="hp-oco-x")
    gone = client.get_order(BTC, "hp-oco-x")
    assert gone is not None and gone.status is OrderStatus.CANCELLED
    assert client.conditional_orders() == []


def test_stop_limit_orders_are_triggered_by_the_admin_price(double: ExchangeDouble) -> None:
    """Through the HTTP admin endpoint, as the deploy test and the demo drive it."""
    double.set_balance("BTC", "0.001")
    c = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)
    c.place_stop_limit(StopLimitRequest("sl-admin", BTC, Side.SELL, D("0.001"), D(940_000), D(950_000)))
    _oco(c, "oco-admin", qty="0.001")
    requests.post(f"{double.url}/_double/price", json={"pair": BTC, "price": "945000"}, timeout=5).raise_for_status()
    sold = {o.customer_order_id: o for o in double.orders()}
    assert sold["sl-admin"].status == "Filled"
    # the OCO's stop-loss leg triggered too but found nothing left to sell (the stop-limit held it): no order
    assert "oco-admin" not in sold and double.conditionals() == []
    c.close()


# ---- a LIVE engine ---------------------------------------------------------------------------------------------


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[[ExchangeDouble], Engine]]:
    made: list[tuple[Engine, object]] = []

    def make(double: ExchangeDouble) -> Engine:
        env = live_env(double, tmp_path / f"state{len(made)}", MAX_POSITION_SIZE_ZAR="100000",
                       MAX_PORTFOLIO_RISK_PCT="100", MAX_OPEN_POSITIONS="3", HELIOS_MAX_ORDERS_PER_MINUTE="1000")
        runtime = build_runtime(load_settings(env), strategy=ScriptedStrategy())
        e = runtime.engine
        e.record_starting_balances(e.clock())
        e.start_up()
        e.step()
        made.append((e, runtime.journal))
        return e

    yield make
    for e, journal in made:
        e.alerter.close()
        e.client.close()
        e.market.close()
        journal.close()  # type: ignore[attr-defined]


def _enter(engine: Engine, qty: str = "0.0002") -> None:
    engine.submit_order(pair=BTC, side=Side.BUY, order_type=OrderType.MARKET, quantity=D(qty), price=None,
                        purpose=OrderPurpose.ENTRY, stop_loss=D(950_000), take_profit=D(1_200_000), reason="oco")
    engine.step()


def _wait_for_bid(engine: Engine, price: str) -> None:
    deadline = time.monotonic() + 10
    while engine.market.ticker(BTC).bid != D(price):
        assert time.monotonic() < deadline, "the market data never showed the price"
        time.sleep(0.01)


def _zar(double: ExchangeDouble) -> Decimal:
    return double.balances()["ZAR"]


def _protective_regular_orders(double: ExchangeDouble) -> list[str]:
    return [o.customer_order_id or "" for o in double.open_orders()
            if (o.customer_order_id or "").startswith(PROTECTIVE_PREFIX)]


@pytest.mark.parametrize("variant", UNKNOWN_FORMS, ids=lambda v: f"unknown{v.unknown_order}")
@pytest.mark.parametrize("leg", ["take_profit", "stop_loss"])
def test_live_position_closed_by_the_exchange_held_oco(
        make_engine: Callable[[ExchangeDouble], Engine], variant: DoubleVariant, leg: str) -> None:
    with _double(variant) as double:
        double.set_order_types(BTC, WITH_OCO)
        engine = make_engine(double)
        zar_before = _zar(double)
        _enter(engine)
        engine.step()
        position = engine.positions[BTC]
        sellable = engine._sellable(BTC, position.quantity)[0]
        (oco,) = double.conditionals()
        assert oco["conditionalType"] == "OT_OCO" and oco["customerOrderId"].startswith(OCO_PREFIX)
        assert D(oco["quantity"]) == sellable
        assert D(oco["takeProfitTriggerPrice"]) == D(1_200_000) and D(oco["stopLossTriggerPrice"]) == D(950_000)
        assert _protective_regular_orders(double) == []  # no stop-limit besides it
        record = engine.journal.get_order(oco["customerOrderId"])
        assert record is not None and record.reason == PROTECTIVE_OCO_REASON and record.status is OrderStatus.OPEN
        engine.step()  # a waiting conditional stays OPEN through the engine's order sync (never "lost")
        assert engine.journal.get_order(oco["customerOrderId"]).status is OrderStatus.OPEN  # type: ignore[union-attr]
        assert engine.protection.protected(BTC)

        price = "1210000" if leg == "take_profit" else "945000"
        double.set_price(BTC, price)  # the exchange triggers one leg; the other is cancelled
        assert double.conditionals() == []
        _wait_for_bid(engine, price)
        engine.step()
        engine.step()
        assert BTC not in engine.positions
        sells = [o for o in double.orders() if o.side == "SELL"]
        assert [(o.customer_order_id, o.filled) for o in sells] == [(oco["customerOrderId"], sellable)]
        # no software exit was needed, nothing else was sold, nothing is left on the exchange
        exits = [o for o in engine.journal.orders(limit=100) if o.purpose is OrderPurpose.EXIT]
        assert [o.customer_order_id for o in exits] == [oco["customerOrderId"]]
        assert exits[0].status is OrderStatus.FILLED
        assert double.open_orders() == [] and double.conditionals() == []
        # P&L exact: what Helios realised is what the exchange account gained or lost, to the cent
        (trade,) = engine.journal.all_trades()
        assert trade["exit_reason"] == PROTECTIVE_OCO_REASON
        assert engine.journal.realised_total() == _zar(double) - zar_before == D(trade["realised_pnl_zar"])
        assert (_zar(double) > zar_before) is (leg == "take_profit")
        assert double.balances()["BTC"] == 0


def test_live_oco_follows_a_partial_entry_fill(make_engine: Callable[[ExchangeDouble], Engine]) -> None:
    """A partly filled entry gets an OCO for what is held; the next fill replaces it (cancel + place) for the new
    quantity: never two, never more than held."""
    with _double() as double:
        double.set_order_types(BTC, WITH_OCO)
        double.set_fill_ratio("0.5")
        engine = make_engine(double)
        engine.submit_order(pair=BTC, side=Side.BUY, order_type=OrderType.LIMIT, quantity=D("0.0004"),
                            price=D(1_000_000), purpose=OrderPurpose.ENTRY, stop_loss=D(950_000),
                            take_profit=D(1_200_000), reason="partial")
        engine.step()
        engine.step()
        (first,) = double.conditionals()
        assert D(first["quantity"]) == engine._sellable(BTC, engine.positions[BTC].quantity)[0]
        double.step(BTC)  # the rest of the entry fills
        engine.step()  # the fill is applied; the OCO is now too small: cancelled
        engine.step()  # and re-placed for the whole position
        engine.step()
        (second,) = double.conditionals()
        assert second["orderId"] != first["orderId"]
        assert D(second["quantity"]) == engine._sellable(BTC, engine.positions[BTC].quantity)[0]
        statuses = {o.customer_order_id: o.status for o in engine.journal.orders(limit=100)}
        assert statuses[first["customerOrderId"]] is OrderStatus.CANCELLED


def test_documented_order_types_get_a_stop_limit(make_engine: Callable[[ExchangeDouble], Engine]) -> None:
    """VALR's documented order types for a ZAR pair have no conditional entry: the stop-limit protects."""
    with _double() as double:
        engine = make_engine(double)
        _enter(engine)
        engine.step()
        assert double.conditionals() == []
        (stop,) = _protective_regular_orders(double)
        assert not stop.startswith(OCO_PREFIX)
        assert "/v1/orders/conditionals" not in {r.path for r in double.requests(method="POST")}


@pytest.mark.parametrize("cancel_protective", [False, True])
def test_emergency_stop_and_the_halted_sweep_with_an_oco(
        make_engine: Callable[[ExchangeDouble], Engine], cancel_protective: bool) -> None:
    with _double() as double:
        double.set_order_types(BTC, WITH_OCO)
        engine = make_engine(double)
        _enter(engine)
        engine.step()
        (oco,) = double.conditionals()
        double.seed_order(BTC, "BUY", "0.0002", "900000")  # an order that could add exposure
        report = engine.emergency_stop("test", "pytest", cancel_protective=cancel_protective)
        assert report["trading_state"] == "HALTED" and report["zero_open_orders_confirmed"]
        assert double.open_orders() == []  # the BUY is gone either way
        if cancel_protective:
            assert double.conditionals() == [] and report["protective_exits_left"] == []
        else:
            assert [c["orderId"] for c in double.conditionals()] == [oco["orderId"]]
            assert {"conditional_order_id": oco["orderId"]} in report["protective_exits_left"]
        for _ in range(3):  # the while-HALTED sweep runs every tick
            engine.step()
        assert engine.state is TradingState.HALTED
        left = [c["orderId"] for c in double.conditionals()]
        assert left == ([] if cancel_protective else [oco["orderId"]])
        status = engine.journal.get_order(oco["customerOrderId"]).status  # type: ignore[union-attr]
        assert status is (OrderStatus.CANCELLED if cancel_protective else OrderStatus.OPEN)
        if not cancel_protective:  # still protected while HALTED: the exchange closes the position
            double.set_price(BTC, "945000")
            _wait_for_bid(engine, "945000")
            engine.step()
            engine.step()
            assert BTC not in engine.positions
