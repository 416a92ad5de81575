"""Issue 11, finding 3: public calls stay under VALR's 30 a minute over a simulated 10-minute run (imports only
names that exist on b61261d, so the test fails there on its own terms)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from helios.exchange.double import ExchangeDouble
from helios.marketdata import MarketDataError, ValrMarketData

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


def test_finding3_public_calls_never_above_30_in_any_minute_over_10_minutes(double: ExchangeDouble) -> None:
    """Five pairs, one tick a second for a simulated 10 minutes, the WebSocket down: REST stays under VALR's 30."""
    sim = SimClock()
    market = ValrMarketData(double.url, clock=sim.now, monotonic=sim.monotonic, use_websocket=False)
    call_times: list[float] = []
    try:
        for _ in range(600):
            before = len(double.requests("/v1/public"))
            market.poll()
            for pair in PAIRS:
                with contextlib.suppress(MarketDataError):  # a pair without budget yet: no price
                    market.ticker(pair)
            call_times += [sim.mono] * (len(double.requests("/v1/public")) - before)
            sim.advance(1.0)
    finally:
        market.close()
    assert _max_in_any_window(call_times) <= 30
    assert len(call_times) >= 200, "the fallback still refreshes prices (about 25 a minute)"
