"""Issue 11's findings, each a named test against VALR's documented answers (replayed verbatim) or the double.

Every test here fails on b61261d and passes on the valr branch (checked by running this file there).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from helios.exchange.errors import ExchangeError, OrderRejected, OutcomeUnknown
from helios.exchange.valr import ValrClient
from helios.models import OrderRequest, OrderStatus, OrderType, Side
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from tests.contract.replay import Answer, Replay, replay_server
from tests.contract.valr_sources import (
    READ_ONLY_503,
    STATUS_VALUES,
    UNKNOWN_ORDER_404,
    body,
    example,
    failed_placement_201,
    maker_reward_trade_row,
    status_row,
)

BTC = "BTCZAR"
STATUS_PATH = "/v1/orders/ETHBTC/customerorderid/LimitSell"
SUMMARY_PATH = "/v1/orders/history/summary/customerorderid/LimitSell"


def _client(url: str, **kw: Any) -> ValrClient:
    args: dict[str, Any] = {
        "base_url": url,
        "auto_clock_sync": False,
        "confirm_placement": False,
        "max_attempts": 1,
        "max_placement_attempts": 1,
        "read_timeout": 2.0,
    }
    args.update(kw)
    return ValrClient(DEFAULT_KEY, DEFAULT_SECRET, **args)


@pytest.fixture
def replay() -> Iterator[Replay]:
    with replay_server(Replay()) as server:
        yield server


def _pairs_answer() -> Answer:
    return Answer(200, body("currency-pairs-currency-pairs"))


# ---- finding 1: an order VALR never saw


def test_finding1_unknown_order_400_code_minus_1_is_not_found(replay: Replay) -> None:
    invalid = example("order-status-customerorderid-invalid-order")
    assert invalid["status"] == 400 and invalid["body"]["code"] == -1
    replay.on("GET", STATUS_PATH, Answer(400, invalid["body"])).on("GET", SUMMARY_PATH, Answer(400, invalid["body"]))
    assert _client(replay.url).get_order("ETHBTC", "LimitSell") is None


def test_finding1_unknown_order_404_is_not_found(replay: Replay) -> None:
    status, answer = UNKNOWN_ORDER_404
    replay.on("GET", STATUS_PATH, Answer(status, answer)).on("GET", SUMMARY_PATH, Answer(status, answer))
    assert _client(replay.url).get_order("ETHBTC", "LimitSell") is None


def test_finding1_finished_order_answers_200_with_its_final_status(replay: Replay) -> None:
    replay.on("GET", STATUS_PATH, Answer(200, body("order-status-customerorderid-order-filled")))
    summary = body("order-history-summary-customerorderid-order-history-summary-customerorderid")
    replay.on("GET", SUMMARY_PATH, Answer(200, summary))
    found = _client(replay.url).get_order("ETHBTC", "LimitSell")
    assert found is not None and found.status is OrderStatus.FILLED
    assert found.total_fee == Decimal("0.000000799992") and found.fee_currency == "BTC"  # fee total surfaced


def test_an_order_landing_between_the_status_and_summary_calls_is_not_called_cancelled(replay: Replay) -> None:
    """A placement still in flight: the status call says "not found", then the order lands; the summary says
    Placed. The order is working, not finished (this race made a resting order look CANCELLED)."""
    invalid = body("order-status-customerorderid-invalid-order")
    placed = body("order-status-customerorderid-order-placed")
    replay.on("GET", STATUS_PATH, Answer(400, invalid), Answer(200, placed))
    replay.on("GET", SUMMARY_PATH, Answer(200, {**placed, "totalExecutedQuantity": "0", "totalFee": "0"}))
    found = _client(replay.url).get_order("ETHBTC", "LimitSell")
    assert found is not None and found.status is OrderStatus.OPEN


# ---- finding 2: every documented status


@pytest.mark.parametrize("status", STATUS_VALUES)
def test_finding2_every_documented_status_maps_without_raising(replay: Replay, status: str) -> None:
    replay.on("GET", STATUS_PATH, Answer(200, status_row(status, order_type="limit", time_in_force="GTC")))
    replay.on("GET", SUMMARY_PATH, Answer(400, body("order-status-customerorderid-invalid-order")))
    found = _client(replay.url).get_order("ETHBTC", "LimitSell")
    assert found is not None and found.status is not OrderStatus.UNKNOWN


@pytest.mark.parametrize(
    "status", ["Partially Filled Due To Slippage", "Partially Filled and Cancelled Due To Slippage"]
)
def test_finding2_slippage_cut_market_exit_is_finished_with_its_fill(replay: Replay, status: str) -> None:
    replay.on("GET", STATUS_PATH, Answer(200, status_row(status)))  # a market order cut at VALR's slippage limit
    replay.on("GET", SUMMARY_PATH, Answer(400, body("order-status-customerorderid-invalid-order")))
    found = _client(replay.url).get_order("ETHBTC", "LimitSell")
    assert found is not None and found.status is OrderStatus.CANCELLED  # terminal: the exit is not left pending
    assert found.filled_quantity == Decimal("0.01")


# ---- finding 4: a 429 on a placement is never re-sent


@pytest.mark.parametrize("kind", [OrderType.MARKET, OrderType.LIMIT])
def test_finding4_429_on_placement_is_never_resent(kind: OrderType) -> None:
    with ExchangeDouble() as double:
        client = _client(double.url, max_attempts=4, max_placement_attempts=4, sleep=lambda _s: None)
        client.pair_info(BTC)
        double.rate_limit_next(1, path_prefix="/v2/orders")
        price = None if kind is OrderType.MARKET else Decimal("1250000")  # a marketable limit: trades at once
        with pytest.raises(OutcomeUnknown):
            client.place_order(OrderRequest("r429-1", BTC, Side.BUY, kind, Decimal("0.001"), price))
        assert len(double.order_placements()) == 1, "a placement 429 must never be re-sent blind"
        client.close()


# ---- finding 5: failed placements, read-only, maker fees and rebates


def test_finding5_failed_placement_201_with_error_body_is_rejected(replay: Replay) -> None:
    status, answer = failed_placement_201()
    replay.on("GET", "/v1/public/pairs", _pairs_answer()).on("POST", "/v2/orders/limit", Answer(status, answer))
    client = _client(replay.url)
    with pytest.raises(OrderRejected) as info:
        client.place_order(OrderRequest("f201", "ETHZAR", Side.BUY, OrderType.LIMIT, Decimal("0.01"), Decimal("40000")))
    assert info.value.code == -6 and "Insufficient Balance" in info.value.message


def test_finding5_read_only_503_is_a_typed_state(replay: Replay) -> None:
    status, answer = READ_ONLY_503
    replay.on("GET", "/v1/account/balances", Answer(status, answer))
    replay.on("GET", "/v1/public/status", Answer(200, body("valr-status-read-only")))
    client = _client(replay.url)
    with pytest.raises(ExchangeError) as info:
        client.balances()
    assert type(info.value).__name__ == "ExchangeReadOnly" and "read-only" in info.value.message
    assert getattr(client, "read_only", False) is True


def test_finding5_maker_reward_is_a_negative_fee_in_its_currency(replay: Replay) -> None:
    replay.on("GET", "/v1/account/tradehistory", Answer(200, [maker_reward_trade_row()]))
    (fill,) = _client(replay.url).fills()
    assert fill.fee == Decimal("-0.0049889") and fill.fee_currency == "ZAR"


def test_finding5_maker_buy_pays_its_fee_in_zar_on_the_double() -> None:
    with ExchangeDouble() as double:
        client = _client(double.url, max_attempts=3)
        client.place_order(OrderRequest("mb-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1100000")))
        double.set_price(BTC, "1099000")  # our resting BUY fills as maker
        (fill,) = client.fills()
        assert fill.fee_currency == "ZAR" and fill.fee == Decimal("0.55")  # 0.05% of R1,100
        client.close()


# ---- finding 6: pair rules are not fetched before each placement


def test_finding6_pair_rules_are_not_fetched_before_each_placement() -> None:
    with ExchangeDouble() as double:
        # pairs_ttl=0: the cached rules are always "old"; a placement must still not spend the public quota.
        client = _client(double.url, pairs_ttl=0.0, max_attempts=2, sleep=lambda _s: None)
        for i in range(5):
            if i == 2:
                double.rate_limit_next(100, path_prefix="/v1/public")  # ticker polling spent the public quota
            client.place_order(
                OrderRequest(f"p6-{i}", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1000000"))
            )
        assert len(double.requests("/v1/public/pairs")) == 1
        assert len(double.open_orders()) == 5
        client.close()
