"""Market data within VALR's limits: WebSocket first, REST paced under 30 public calls a minute (issue 11,
finding 3), and a stale ticker still looks stale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from helios.marketdata import MarketDataError, PublicCallPacer, ValrMarketData
from helios_double import ExchangeDouble

PAIRS = ["BTCZAR", "ETHZAR", "SOLZAR", "XRPZAR", "USDTZAR"]


class SimClock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall


@pytest.fixture
def double() -> Iterator[ExchangeDouble]:
    with ExchangeDouble() as server:
        yield server


def _max_in_any_window(times: list[float], window: float = 60.0) -> int:
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


def test_stale_ticker_still_looks_stale_when_the_budget_is_spent(double: ExchangeDouble) -> None:
    sim = SimClock()
    pacer = PublicCallPacer(limit=2, window=60.0, monotonic=sim.monotonic)
    market = ValrMarketData(double.url, clock=sim.now, monotonic=sim.monotonic, use_websocket=False, pacer=pacer,
                            rest_min_interval=1.0)
    try:
        first = market.ticker("BTCZAR")
        sim.advance(2)
        market.ticker("BTCZAR")  # the second and last call of this minute
        sim.advance(30)
        double.set_price("BTCZAR", "1300000")
        late = market.ticker("BTCZAR")  # no budget: the old price, with its old timestamp
        assert late.last == first.last
        assert (sim.now() - late.timestamp).total_seconds() > 10  # the staleness gate will see it
        assert len(double.requests("/v1/public")) == 2
        sim.advance(60)
        assert market.ticker("BTCZAR").last == Decimal("1300000")  # budget back: fresh again
    finally:
        market.close()


def test_no_price_at_all_is_an_error(double: ExchangeDouble) -> None:
    sim = SimClock()
    pacer = PublicCallPacer(limit=1, window=60.0, monotonic=sim.monotonic)
    market = ValrMarketData(double.url, clock=sim.now, monotonic=sim.monotonic, use_websocket=False, pacer=pacer)
    try:
        market.ticker("BTCZAR")
        with pytest.raises(MarketDataError, match="budget"):
            market.ticker("ETHZAR")
    finally:
        market.close()


def test_websocket_prices_cost_no_public_rest_calls(double: ExchangeDouble) -> None:
    market = ValrMarketData(double.url, pairs=["BTCZAR"])
    try:
        market.poll()
        deadline = time.monotonic() + 10
        while not market.streaming:
            assert time.monotonic() < deadline, "trade stream did not connect"
            time.sleep(0.002)
        double.wait_ws_connections(1, "/ws/trade")
        double.set_price("BTCZAR", "1234000")
        while market.ticker("BTCZAR").last != Decimal("1234000"):  # (before the stream's first message, a
            assert time.monotonic() < deadline, "the stream's price never arrived"  # REST fallback may run once)
            time.sleep(0.002)
        rest_before = market.rest_calls
        double.set_price("BTCZAR", "1235000")
        while market.ticker("BTCZAR").last != Decimal("1235000"):
            assert time.monotonic() < deadline, "the stream's price never arrived"
            time.sleep(0.002)
        for _ in range(50):
            market.ticker("BTCZAR")
        assert market.rest_calls == rest_before
    finally:
        market.close()
