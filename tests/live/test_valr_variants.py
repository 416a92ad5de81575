"""The client against every variant the double can serve where VALR's sources disagree (docs/valr-contract.md)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from helios.exchange.errors import ExchangeReadOnly, OrderRejected, OutcomeUnknown, PlacementRateLimited
from helios.exchange.valr import ValrClient
from helios.models import OrderRequest, OrderStatus, OrderType, Side, TimeInForce
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, VARIANTS, DoubleVariant, ExchangeDouble

BTC = "BTCZAR"


@pytest.fixture(params=VARIANTS, ids=[v.name for v in VARIANTS])
def variant(request: pytest.FixtureRequest) -> DoubleVariant:
    value: DoubleVariant = request.param
    return value


@pytest.fixture
def double(variant: DoubleVariant) -> Iterator[ExchangeDouble]:
    with ExchangeDouble(variant=variant) as server:
        yield server


@pytest.fixture
def client(double: ExchangeDouble) -> Iterator[ValrClient]:
    c = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, backoff_base=0.01, backoff_max=0.02,
                   sleep=lambda _s: None)
    c.pair_info(BTC)
    yield c
    c.close()


def test_unknown_order_is_none(client: ValrClient) -> None:
    assert client.get_order(BTC, "never-seen") is None


def test_failed_placement_is_rejected_with_its_order_id(client: ValrClient, double: ExchangeDouble) -> None:
    double.set_balance("ZAR", "5")
    with pytest.raises(OrderRejected) as info:
        client.place_order(OrderRequest("poor-1", BTC, Side.BUY, OrderType.MARKET, Decimal("0.01")))
    assert info.value.order_id and info.value.code == -6
    found = client.get_order(BTC, "poor-1")
    assert found is not None and found.status is OrderStatus.FAILED


@pytest.mark.parametrize("kind", [OrderType.MARKET, OrderType.LIMIT])
def test_429_on_placement_leaves_exactly_what_the_exchange_did(
    client: ValrClient, double: ExchangeDouble, variant: DoubleVariant, kind: OrderType
) -> None:
    double.rate_limit_next(1, path_prefix="/v2/orders")
    price = None if kind is OrderType.MARKET else Decimal("1250000")  # marketable: would trade twice if re-sent
    with pytest.raises(PlacementRateLimited):
        client.place_order(OrderRequest("r-1", BTC, Side.BUY, kind, Decimal("0.001"), price))
    assert len(double.order_placements()) == 1
    found = client.get_order(BTC, "r-1")  # what the caller does next: look it up, never re-send
    if variant.placement_429 == "processed":
        assert found is not None and found.status is OrderStatus.FILLED
        assert len(double.orders()) == 1 and len(double.book.trades) == 1
    else:
        assert found is None and double.orders() == []


def test_read_only_mode_is_typed_for_reads_and_placements(client: ValrClient, double: ExchangeDouble) -> None:
    double.set_exchange_status("read-only")
    assert client.ping() is False and client.read_only  # the status call alone shows the mode
    with pytest.raises(ExchangeReadOnly):
        client.balances()
    with pytest.raises(ExchangeReadOnly):
        client.place_order(OrderRequest("ro-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1e6")))
    assert client.read_only and double.orders() == []
    double.set_exchange_status("online")
    assert client.balances() and not client.read_only


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Partially Filled Due To Slippage", OrderStatus.CANCELLED),
        ("Partially Filled and Cancelled Due To Slippage", OrderStatus.CANCELLED),
        ("Order Modified", OrderStatus.OPEN),
        ("Repriced Due To Slippage", OrderStatus.OPEN),
    ],
)
def test_slippage_and_modify_statuses(
    client: ValrClient, double: ExchangeDouble, status: str, expected: OrderStatus
) -> None:
    if "Partially" in status:  # an IOC order that VALR cut after a partial fill
        double.set_fill_ratio("0.5")
        request = OrderRequest("s-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.002"), Decimal("1200000"),
                               time_in_force=TimeInForce.IOC)
    else:  # a resting order
        request = OrderRequest("s-1", BTC, Side.SELL, OrderType.LIMIT, Decimal("0.002"), Decimal("1300000"))
    client.place_order(request)
    double.force_status("s-1", status)
    found = client.get_order(BTC, "s-1")
    assert found is not None and found.status is expected


def test_lost_answer_is_unknown_then_found(client: ValrClient, double: ExchangeDouble) -> None:
    double.drop_response_after_accept(1)
    with pytest.raises(OutcomeUnknown):
        client.place_order(OrderRequest("l-1", BTC, Side.BUY, OrderType.MARKET, Decimal("0.001")))
    found = client.get_order(BTC, "l-1")
    assert found is not None and found.status is OrderStatus.FILLED and len(double.order_placements()) == 1
