"""ValrClient against the exchange double over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest

from helios.exchange.base import ExchangeClient
from helios.exchange.errors import AuthenticationFailed, ExchangeReadOnly, OrderRejected
from helios.exchange.valr import ValrClient, key_has_permission
from helios.models import Mode, OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from helios_double import DEFAULT_SECRET, ExchangeDouble

ClientFactory = Callable[..., ValrClient]

BTC = "BTCZAR"


def limit(cid: str, side: Side, qty: str, price: str, **kw: object) -> OrderRequest:
    return OrderRequest(cid, BTC, side, OrderType.LIMIT, Decimal(qty), Decimal(price), **kw)  # type: ignore[arg-type]


def market(cid: str, side: Side, qty: str) -> OrderRequest:
    return OrderRequest(cid, BTC, side, OrderType.MARKET, Decimal(qty))


def test_implements_the_protocol(valr_client: ValrClient) -> None:
    assert isinstance(valr_client, ExchangeClient)
    assert valr_client.mode is Mode.LIVE


def test_repr_reveals_neither_key_nor_secret(valr_client: ValrClient) -> None:
    text = repr(valr_client)
    assert "helios-double-key" not in text and DEFAULT_SECRET not in text
    assert DEFAULT_SECRET not in repr(vars(valr_client))


def test_public_and_account_reads_are_decimal(valr_client: ValrClient) -> None:
    ticker = valr_client.ticker("btczar")
    assert ticker.pair == BTC and ticker.bid == Decimal("1200000") and isinstance(ticker.ask, Decimal)
    balances = {b.currency: b for b in valr_client.balances()}
    assert balances["ZAR"].available == Decimal("100000") and isinstance(balances["BTC"].total, Decimal)
    info = valr_client.pair_info(BTC)
    assert info.tick_size == Decimal(1) and info.min_base_amount == Decimal("0.0001")
    assert info.base_decimal_places == 8
    fees = valr_client.fee_rates(BTC)
    assert fees.maker_pct == Decimal("0.05") and fees.taker_pct == Decimal("0.1")
    assert valr_client.status() == "online"


def test_pairs_are_cached(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    valr_client.pair_info(BTC)
    valr_client.pair_info("ETHZAR")
    valr_client.pair_info(BTC)
    assert len(exchange_double.requests("/v1/public/pairs")) == 1


def test_wrong_secret_is_rejected(make_client: ClientFactory) -> None:
    client = make_client(api_secret="not-the-secret")
    with pytest.raises(AuthenticationFailed) as info:
        client.balances()
    assert info.value.http_status == 401
    assert "not-the-secret" not in str(info.value)


def test_unknown_key_is_rejected(make_client: ClientFactory) -> None:
    with pytest.raises(AuthenticationFailed):
        make_client(api_key="nobody").key_info()


def test_key_info_permissions_case_insensitive(make_client: ClientFactory, exchange_double: ExchangeDouble) -> None:
    exchange_double.add_key("k2", "s2", ("VIEW ACCESS", "trade"), label="bot", allowed_ip_cidr="10.0.0.0/8")
    info = make_client(api_key="k2", api_secret="s2").key_info()
    assert info.label == "bot" and info.allowed_ip_cidr == "10.0.0.0/8" and not info.is_sub_account
    assert key_has_permission(info, "View") and key_has_permission(info, "Trade")
    assert not key_has_permission(info, "Withdraw")


def test_view_only_key_cannot_trade(make_client: ClientFactory, exchange_double: ExchangeDouble) -> None:
    exchange_double.add_key("viewer", "s3", ("View",))
    client = make_client(api_key="viewer", api_secret="s3")
    assert client.balances()
    with pytest.raises(AuthenticationFailed) as info:
        client.place_order(limit("v-1", Side.BUY, "0.001", "1000000"))
    assert info.value.http_status == 403
    assert exchange_double.open_orders() == []


def test_limit_order_open_partial_fill_then_filled(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    placed = valr_client.place_order(limit("life-1", Side.BUY, "0.002", "1100000"))
    assert placed.status is OrderStatus.OPEN and placed.order_id
    assert [o.customer_order_id for o in valr_client.open_orders()] == ["life-1"]
    zar = {b.currency: b for b in valr_client.balances()}["ZAR"]
    assert zar.reserved == Decimal("2200")

    exchange_double.set_fill_ratio("0.5")
    exchange_double.set_price(BTC, "1099000")  # ask below our limit: half fills at our price (maker)
    partial = valr_client.get_order(BTC, "life-1")
    assert partial is not None and partial.status is OrderStatus.PARTIALLY_FILLED
    assert partial.filled_quantity == Decimal("0.001") and partial.remaining_quantity == Decimal("0.001")
    (row,) = valr_client.open_orders()
    assert row.status is OrderStatus.PARTIALLY_FILLED and row.filled_quantity == Decimal("0.001")

    exchange_double.step(BTC)
    done = valr_client.get_order(BTC, "life-1")  # 404 on the open endpoint -> history summary
    assert done is not None and done.status is OrderStatus.FILLED
    assert done.filled_quantity == Decimal("0.002") and done.average_price == Decimal("1100000")
    # VALR: a maker pays its fee in the currency it pays - a maker BUY pays ZAR (0.05% of R2,200).
    assert done.total_fee == Decimal("1.1") and done.fee_currency == "ZAR"
    assert valr_client.open_orders() == []

    fills = valr_client.fills()
    assert [f.quantity for f in fills] == [Decimal("0.001"), Decimal("0.001")]
    assert all(f.customer_order_id == "life-1" and f.price == Decimal("1100000") for f in fills)
    assert all(f.fee == Decimal("0.55") and f.fee_currency == "ZAR" for f in fills)  # maker BUY pays ZAR
    assert fills[0].traded_at <= fills[1].traded_at
    assert valr_client.fills(since=fills[1].traded_at + timedelta(seconds=1)) == []


def test_limit_order_open_then_cancel(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    valr_client.place_order(limit("cx-1", Side.SELL, "0.01", "1300000"))
    valr_client.cancel_order(BTC, "cx-1")
    order = valr_client.get_order(BTC, "cx-1")
    assert order is not None and order.status is OrderStatus.CANCELLED and order.filled_quantity == 0
    assert valr_client.open_orders() == []
    btc = {b.currency: b for b in valr_client.balances()}["BTC"]
    assert btc.reserved == 0 and btc.available == Decimal("0.05")
    with pytest.raises(OrderRejected):
        valr_client.cancel_order(BTC, "cx-1")


def test_crossing_limit_fills_as_taker_at_the_ask(valr_client: ValrClient) -> None:
    order = valr_client.place_order(limit("take-1", Side.BUY, "0.001", "1250000"))
    assert order.status is OrderStatus.FILLED and order.average_price == Decimal("1200000")
    assert order.total_fee == Decimal("0.000001")  # taker 0.1 % of 0.001 BTC


def test_ioc_remainder_is_cancelled(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    exchange_double.set_fill_ratio("0.25")
    order = valr_client.place_order(limit("ioc-1", Side.BUY, "0.004", "1200000", time_in_force=TimeInForce.IOC))
    assert order.status is OrderStatus.CANCELLED and order.filled_quantity == Decimal("0.001")


def test_post_only_that_would_cross_fails(valr_client: ValrClient) -> None:
    with pytest.raises(OrderRejected) as info:  # VALR: {orderId, code, message} for a placement that failed
        valr_client.place_order(limit("po-1", Side.BUY, "0.001", "1200000", post_only=True))
    assert info.value.order_id
    order = valr_client.get_order(BTC, "po-1")
    assert order is not None and order.status is OrderStatus.FAILED and order.failed_reason


def test_market_orders_fill_or_fail(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    bought = valr_client.place_order(market("mk-1", Side.BUY, "0.01"))
    assert bought.status is OrderStatus.FILLED and bought.average_price == Decimal("1200000")
    sold = valr_client.place_order(market("mk-2", Side.SELL, "0.01"))
    assert sold.status is OrderStatus.FILLED and sold.fee_currency == "ZAR" and sold.total_fee == Decimal("12")
    exchange_double.set_balance("ZAR", "5")
    with pytest.raises(OrderRejected) as info:
        valr_client.place_order(market("mk-3", Side.BUY, "0.01"))
    assert info.value.code == -6 and info.value.order_id  # API collection: Market Order V2 / unsuccessful
    failed = valr_client.get_order(BTC, "mk-3")
    assert failed is not None and failed.status is OrderStatus.FAILED and failed.failed_reason == "Insufficient Balance"


def test_duplicate_open_customer_order_id_is_rejected(valr_client: ValrClient) -> None:
    valr_client.place_order(limit("dup-1", Side.BUY, "0.001", "1000000"))
    with pytest.raises(OrderRejected) as info:
        valr_client.place_order(limit("dup-1", Side.BUY, "0.001", "1000000"))
    assert info.value.code is not None and info.value.http_status == 400
    valr_client.cancel_order(BTC, "dup-1")
    again = valr_client.place_order(limit("dup-1", Side.BUY, "0.001", "1000000"))  # unique among OPEN only
    assert again.status is OrderStatus.OPEN


def test_exchange_minimum_is_a_typed_rejection(make_client: ClientFactory, exchange_double: ExchangeDouble) -> None:
    """Even if local rules are stale, VALR's -12007 comes back as OrderRejected with its code."""
    client = make_client()
    client.pair_info(BTC)
    from dataclasses import replace

    stale = replace(client.pairs()[BTC], min_base_amount=Decimal("0.00000001"), min_quote_amount=Decimal(0))
    client._pairs[BTC] = stale
    with pytest.raises(OrderRejected) as info:
        client.place_order(limit("small-1", Side.BUY, "0.00001", "1000000"))
    assert info.value.code == -12007


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (limit("r-1", Side.BUY, "0.00001", "1000000"), "minBaseAmount"),
        (limit("r-2", Side.BUY, "6", "1000000"), "maxBaseAmount"),
        (limit("r-3", Side.BUY, "0.001", "1000000.5"), "tickSize"),
        (limit("r-4", Side.BUY, "0.000123456", "1000000"), "decimal places"),
        (limit("r-5", Side.BUY, "0.0001", "50000"), "minQuoteAmount"),
        (limit("bad id!", Side.BUY, "0.001", "1000000"), "customerOrderId"),
        (limit("x" * 51, Side.BUY, "0.001", "1000000"), "customerOrderId"),
        (OrderRequest("r-6", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001")), "price"),
        (OrderRequest("r-7", "DOGEZAR", Side.BUY, OrderType.MARKET, Decimal("1")), "DOGEZAR"),
    ],
)
def test_pair_rules_rejected_locally_nothing_sent(
    valr_client: ValrClient, exchange_double: ExchangeDouble, request_: OrderRequest, reason: str
) -> None:
    with pytest.raises(OrderRejected) as info:
        valr_client.place_order(request_)
    assert reason in str(info.value)
    assert exchange_double.order_placements() == []
    assert exchange_double.orders() == []


def test_cancel_all_with_fifty_open_orders(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    for i in range(50):
        exchange_double.seed_order(BTC, "BUY", "0.001", str(900000 + i), f"many-{i}")
    assert len(valr_client.open_orders()) == 50
    cancelled = valr_client.cancel_all_orders()
    assert len(cancelled) == 50
    assert valr_client.open_orders() == []
    assert {b.currency: b for b in valr_client.balances()}["ZAR"].reserved == 0


def test_unjournaled_seeded_orders_are_visible(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    exchange_double.seed_order(BTC, "SELL", "0.002", "1500000")  # no customerOrderId at all
    exchange_double.seed_order(BTC, "BUY", "0.001", "1000000", "someone-else")
    rows = valr_client.open_orders()
    assert sorted(str(r.customer_order_id) for r in rows) == ["None", "someone-else"]
    assert {r.side for r in rows} == {Side.BUY, Side.SELL}


def test_get_order_unknown_is_none(valr_client: ValrClient) -> None:
    assert valr_client.get_order(BTC, "never-sent-1") is None


def test_fills_paginate_past_one_hundred(make_client: ClientFactory, exchange_double: ExchangeDouble) -> None:
    client = make_client(confirm_placement=False)
    exchange_double.set_balance("ZAR", "10000000")
    for i in range(105):
        client.place_order(market(f"p-{i}", Side.BUY, "0.0001"))
    fills = client.fills()
    assert len(fills) == 105
    assert [f.customer_order_id for f in fills] == [f"p-{i}" for i in range(105)]
    assert len(exchange_double.requests("/v1/account/tradehistory")) == 2


def test_read_only_exchange_refuses_orders(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    exchange_double.set_exchange_status("read-only")
    assert valr_client.ping() is False
    with pytest.raises(ExchangeReadOnly):
        valr_client.place_order(limit("ro-1", Side.BUY, "0.001", "1000000"))
    assert valr_client.read_only
    exchange_double.set_exchange_status("online")
    assert valr_client.balances() and not valr_client.read_only


def test_cancel_of_unknown_order_is_rejected(valr_client: ValrClient) -> None:
    with pytest.raises(OrderRejected) as info:
        valr_client.cancel_order(BTC, "no-such-order")
    assert info.value.code is not None


def test_rate_limit_per_ip_applies_to_public_calls(make_client: ClientFactory) -> None:
    double = ExchangeDouble(rate_limit_per_ip=2, rate_limit_window=30).start()
    try:
        client = make_client(base_url=double.url, max_attempts=1)
        client.status()
        client.status()
        from helios.exchange.errors import RateLimited

        with pytest.raises(RateLimited):
            client.status()
    finally:
        double.stop()
