"""Protection held on the exchange (stop-limit, conditional TP/SL) and the account guards, client vs double."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from helios.exchange.errors import OrderRejected
from helios.exchange.valr import ConditionalRequest, StopLimitRequest, ValrClient
from helios.models import OrderRequest, OrderStatus, OrderType, Side
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble

BTC = "BTCZAR"


@pytest.fixture
def double() -> Iterator[ExchangeDouble]:
    with ExchangeDouble() as server:
        yield server


@pytest.fixture
def client(double: ExchangeDouble) -> Iterator[ValrClient]:
    c = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, backoff_base=0.01, sleep=lambda _s: None)
    yield c
    c.close()


def _stop(cid: str, stop: str, price: str, kind: str = "STOP_LOSS_LIMIT", qty: str = "0.01") -> StopLimitRequest:
    return StopLimitRequest(cid, BTC, Side.SELL, Decimal(qty), Decimal(price), Decimal(stop), kind)


def test_pair_supports_stop_limits(client: ValrClient) -> None:
    assert {"STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"} <= client.order_types(BTC)


def test_stop_loss_waits_active_then_closes_the_position_when_the_price_falls(
    client: ValrClient, double: ExchangeDouble
) -> None:
    btc_before = double.balances()["BTC"]
    placed = client.place_stop_limit(_stop("sl-1", stop="1100000", price="1090000"))
    assert placed.status is OrderStatus.OPEN and placed.order_id  # "Active": waiting for its trigger
    assert [o.customer_order_id for o in client.open_orders()] == ["sl-1"]
    double.set_price(BTC, "1150000")  # above the stop: nothing happens
    assert client.get_order(BTC, "sl-1").status is OrderStatus.OPEN  # type: ignore[union-attr]
    double.set_price(BTC, "1095000")  # through the stop: triggered; its 1,090,000 limit crosses the bid: taker
    done = client.get_order(BTC, "sl-1")
    assert done is not None and done.status is OrderStatus.FILLED and done.filled_quantity == Decimal("0.01")
    assert done.average_price == Decimal("1095000") and done.fee_currency == "ZAR"  # a taker SELL pays ZAR
    assert double.balances()["BTC"] == btc_before - Decimal("0.01")
    (fill,) = client.fills()
    assert fill.customer_order_id == "sl-1" and fill.side is Side.SELL


def test_take_profit_triggers_when_the_price_rises(client: ValrClient, double: ExchangeDouble) -> None:
    client.place_stop_limit(_stop("tp-1", stop="1300000", price="1290000", kind="TAKE_PROFIT_LIMIT"))
    double.set_price(BTC, "1250000")
    assert client.get_order(BTC, "tp-1").status is OrderStatus.OPEN  # type: ignore[union-attr]
    double.set_price(BTC, "1310000")
    assert client.get_order(BTC, "tp-1").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_stop_that_would_trigger_at_once_fails_as_documented(client: ValrClient) -> None:
    with pytest.raises(OrderRejected) as info:  # API collection: "Stop order failed as it would have been ..."
        client.place_stop_limit(_stop("sl-now", stop="1250000", price="1240000"))
    assert info.value.order_id


def test_cancel_a_stop_and_cancel_everything_covers_conditionals(client: ValrClient, double: ExchangeDouble) -> None:
    client.place_stop_limit(_stop("sl-2", stop="1100000", price="1090000", qty="0.001"))
    client.cancel_order(BTC, "sl-2")
    assert client.open_orders() == []
    client.place_stop_limit(_stop("sl-3", stop="1100000", price="1090000", qty="0.001"))
    client.place_order(OrderRequest("buy-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1000000")))
    cid = client.place_conditional(
        ConditionalRequest("oco-1", BTC, Decimal("0.001"), take_profit_trigger=Decimal("1300000"),
                           stop_loss_trigger=Decimal("1100000"))
    )
    (row,) = client.conditional_orders()
    assert row.order_id == cid and row.conditional_type == "OT_OCO" and row.customer_order_id == "oco-1"
    client.cancel_all_orders()  # VALR: DELETE /v1/orders does NOT cancel conditional orders
    assert client.open_orders() == [] and len(client.conditional_orders()) == 1
    client.cancel_everything()
    assert client.conditional_orders() == []


def test_emergency_cancel_can_keep_protective_stops(client: ValrClient) -> None:
    client.place_stop_limit(_stop("prot-1", stop="1100000", price="1090000", qty="0.001"))
    client.place_order(OrderRequest("entry-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1000000")))
    asked = client.cancel_open_orders_except(lambda o: (o.customer_order_id or "").startswith("prot-"))
    assert [o.customer_order_id for o in asked] == ["entry-1"]
    assert [o.customer_order_id for o in client.open_orders()] == ["prot-1"]


def test_account_guards_report_margin_futures_and_borrowing(client: ValrClient, double: ExchangeDouble) -> None:
    assert client.account_guards() == [] and client.margin_status().spot_only
    double.book.margin_enabled = True
    double.book.borrowed["ZAR"] = Decimal("30.5")
    problems = client.account_guards()
    assert "margin trading is enabled on the account" in problems
    assert any(p.startswith("ZAR has a borrowed amount of 30.5") for p in problems)


def test_subaccount_header_only_when_a_main_key_acts_for_a_subaccount(double: ExchangeDouble) -> None:
    main = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)
    assert main.account_identity().kind == "main-account"
    assert double.requests("/v1/account/api-keys")[-1].customer_order_id is None
    via_main = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, subaccount_id="12345")
    identity = via_main.account_identity()
    assert identity.kind == "subaccount-via-main-key" and identity.subaccount_id == "12345"
    double.add_key("sub-key", "sub-secret", is_sub_account=True)
    sub = ValrClient("sub-key", "sub-secret", base_url=double.url)
    assert sub.account_identity().kind == "subaccount-key"
    wrong = ValrClient("sub-key", "sub-secret", base_url=double.url, subaccount_id="12345")
    with pytest.raises(Exception, match="must not send X-VALR-SUB-ACCOUNT-ID"):
        wrong.account_identity()
    for c in (main, via_main, sub, wrong):
        c.close()


def test_allow_margin_is_never_sent(client: ValrClient, double: ExchangeDouble) -> None:
    client.place_order(OrderRequest("m-1", BTC, Side.BUY, OrderType.MARKET, Decimal("0.001")))
    client.place_order(OrderRequest("l-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1000000")))
    client.place_stop_limit(_stop("s-1", stop="1100000", price="1090000", qty="0.001"))
    bodies = [r.body for r in double.order_placements()]
    assert len(bodies) == 3 and all("allowMargin" not in b for b in bodies)
