"""The client reads every documented example of VALR's API collection that it has a call for (replayed verbatim)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from helios.exchange.errors import AuthenticationFailed, OrderRejected
from helios.exchange.valr import ConditionalRequest, StopLimitRequest, ValrClient
from helios.models import OrderRequest, OrderStatus, OrderType, Side
from helios_double import DEFAULT_KEY, DEFAULT_SECRET
from tests.contract.replay import Answer, Replay
from tests.contract.valr_sources import COLLECTION, example

STATUS_EXAMPLES = [e["id"] for e in COLLECTION if e["id"].startswith("order-status-") and e["status"] == 200]
EXPECTED = {
    "Placed": OrderStatus.OPEN,
    "Active": OrderStatus.OPEN,
    "Partially Filled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELLED,
    "Failed": OrderStatus.FAILED,
}


def _client(url: str) -> ValrClient:
    return ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=url, auto_clock_sync=False, confirm_placement=False,
                      max_attempts=1, max_placement_attempts=1)


def _answer(example_id: str) -> Answer:
    row = example(example_id)
    return Answer(int(row["status"]), row["body"])


@pytest.mark.parametrize("example_id", STATUS_EXAMPLES)
def test_every_order_status_example(replay: Replay, example_id: str) -> None:
    row: dict[str, Any] = example(example_id)["body"]
    replay.on("GET", f"/v1/orders/{row['currencyPair']}/customerorderid/X", Answer(200, row))
    invalid = _answer("order-status-customerorderid-invalid-order")
    replay.on("GET", "/v1/orders/history/summary/customerorderid/X", invalid)
    found = _client(replay.url).get_order(row["currencyPair"], "X")
    assert found is not None and found.status is EXPECTED[row["orderStatusType"]]
    assert found.original_quantity == Decimal(row["originalQuantity"])


def test_public_examples(replay: Replay) -> None:
    replay.on("GET", "/v1/public/pairs", _answer("currency-pairs-currency-pairs"))
    replay.on("GET", "/v1/public/BTCUSDT/marketsummary",
              _answer("market-summary-for-a-currency-pair-market-summary-for-a-currency-pair"))
    replay.on("GET", "/v1/public/BTCZAR/ordertypes",
              _answer("order-types-for-a-currency-pair-order-types-for-a-currency-pair"))
    replay.on("GET", "/v1/public/time", _answer("server-time-server-time"))
    replay.on("GET", "/v1/public/status", _answer("valr-status-read-only"))
    client = _client(replay.url)
    pairs = client.pairs()
    assert pairs["ETHZAR"].tick_size == Decimal(1) and pairs["ETHZAR"].base_decimal_places == 8
    assert pairs["LTCBTC"].active is False
    ticker = client.ticker("BTCUSDT")
    assert ticker.ask == Decimal("93129") and ticker.bid == Decimal("81400")
    assert "STOP_LOSS_LIMIT" in client.order_types("BTCZAR")
    assert client.server_time().year == 2025
    assert client.status() == "read-only"


def test_account_examples(replay: Replay) -> None:
    replay.on("GET", "/v1/account/balances", _answer("balances-balances"))
    replay.on("GET", "/v1/account/tradehistory", _answer("trade-history-trade-history-with-starttime-and-endtime"))
    replay.on("GET", "/v1/account/fees/trade", _answer("trade-fees-trade-fees"))
    replay.on("GET", "/v1/account/api-keys/current", _answer("current-api-key-info-current-api-key-info"))
    replay.on("GET", "/v1/margin/account/status", _answer("account-margin-status-account-margin-status"))
    replay.on("GET", "/v1/orders/open", _answer("all-open-orders-active-and-triggered-open-stop-orders"))
    replay.on("GET", "/v1/orders/conditionals", _answer("all-conditional-orders-all-conditional-orders"))
    client = _client(replay.url)
    btc = {b.currency: b for b in client.balance_details()}["BTC"]
    assert btc.total == Decimal("-0.00101056") and btc.borrowed == Decimal("0.00101056")
    fills = client.fills()
    assert [f.fee_currency for f in fills] == ["BTC", "XRP"]  # oldest first
    assert client.fee_rates("BTCUSDT").maker_pct == Decimal("0.08")
    key = client.key_info()
    assert key.allowed_ip_cidr == "41.157.66.231/32" and "Withdraw" in key.permissions
    margin = client.margin_status()
    assert margin.margin_enabled and margin.futures_enabled and not margin.spot_only
    problems = client.account_guards()
    assert any("borrowed" in p for p in problems) and any("negative" in p for p in problems)
    stops = client.open_orders()
    assert [o.status for o in stops] == [OrderStatus.OPEN, OrderStatus.OPEN]
    conditionals = client.conditional_orders()
    assert len(conditionals) == len(example("all-conditional-orders-all-conditional-orders")["body"])
    assert [c.conditional_type for c in conditionals] == ["TAKE_PROFIT"] * 4 + ["OT_OCO"]
    assert conditionals[-1].stop_loss_trigger == Decimal("30.1") and all(c.order_id for c in conditionals)


def test_order_examples(replay: Replay) -> None:
    replay.on("GET", "/v1/public/pairs", _answer("currency-pairs-currency-pairs"))
    replay.on("POST", "/v2/orders/limit", _answer("limit-order-v2-limit-order-placed-successfully"),
              _answer("limit-order-v2-limit-order-placed-unsuccessfully-on-exchange"))
    replay.on("POST", "/v2/orders/market", _answer("market-order-v2-market-order-placed-successfully"))
    replay.on("POST", "/v2/orders/stop/limit", _answer("stop-limit-order-v2-stop-limit-order-placed-successfully"))
    replay.on("POST", "/v1/orders/conditionals",
              _answer("conditional-order-conditional-by-last-traded-successfully-placed"),
              _answer("conditional-order-conditional-order-unsuccessful"))
    replay.on("DELETE", "/v2/orders/order", _answer("cancel-order-v2-cancelled-order-by-customerorderid"))
    replay.on("DELETE", "/v1/orders", _answer("all-orders-all-orders"))
    replay.on("DELETE", "/v1/orders/conditionals", _answer("all-conditionals-deleted-all-conditionals"))
    replay.on("DELETE", "/v1/orders/conditionals/conditional",
              _answer("conditional-by-id-delete-conditional-by-ordeid"))
    client = _client(replay.url)
    limit = OrderRequest("MyLimit1234", "ETHZAR", Side.SELL, OrderType.LIMIT, Decimal("0.02"), Decimal("40000"))
    assert client.place_order(limit).order_id == "14ed7fbc-272e-4bac-a4f9-7ec8df36df34"
    with pytest.raises(OrderRejected) as info:
        client.place_order(limit)
    assert info.value.code == -6 and info.value.order_id == "99ded62e-26ff-407c-98d5-cd24b4e56179"
    market = client.place_order(OrderRequest("BUY12", "ETHZAR", Side.BUY, OrderType.MARKET, Decimal("0.01")))
    assert market.order_id == "fd7c947c-9022-4457-a1a8-2ecc7e3d5518"
    stop = client.place_stop_limit(StopLimitRequest("556789", "ETHZAR", Side.SELL, Decimal("0.01"), Decimal("39000"),
                                                    Decimal("39500")))
    assert stop.order_id == "95603118-2f14-4da3-93c4-2b8c25850d8d"
    oco = ConditionalRequest("ConditionalByLast", "ETHZAR", Decimal("0.01"), take_profit_trigger=Decimal("45000"))
    assert client.place_conditional(oco) == "7a19f5a1-afad-4138-bb9a-65a136e6c507"
    with pytest.raises(OrderRejected) as refused:
        client.place_conditional(oco)
    assert refused.value.code == -21403
    client.cancel_order("ETHZAR", "customId12345")
    assert client.cancel_everything() == [
        "c66a13ec-2ac6-4a52-9eca-608e4480194f",
        "53485e46-ca8e-46c6-a784-0c175bbcd554",
        "13ae156c-8c18-4e7a-9a43-2e2891221a53",
        "1554825d-dd3c-4fe1-9471-52ff6e2aab56",
        "c0358c7d-10fd-4b60-8193-769a53da712e",
    ]
    client.cancel_conditional("ETHZAR", order_id="d1469f6e-774f-422b-877a-fa7ae6a03dfe")
    assert "allowMargin" not in b"".join(raw for _, _, raw in replay.received).decode()


def test_ip_not_whitelisted_example_is_an_authentication_failure(replay: Replay) -> None:
    replay.on("GET", "/v1/account/api-keys/current", _answer("current-api-key-info-ip-address-not-whitelisted"))
    with pytest.raises(AuthenticationFailed) as info:
        _client(replay.url).key_info()
    assert info.value.code == -11272
