"""Issue 11, finding 3: public calls stay under VALR's 30 a minute over a simulated 10-minute run (imports only
names that exist on b61261d, so the test fails there on its own terms)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from helios.marketdata import MarketDataError, ValrMarketData
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


def test_a_live_engine_run_of_10_simulated_minutes_never_makes_more_than_30_public_calls_in_any_minute(
    double: ExchangeDouble, tmp_path: object
) -> None:
    """The whole LIVE engine at the default tick (1 s), the trade WebSocket down (worst case): the client's public
    calls and the market data's REST fallback share ONE pacer, as the service wires them."""
    from pathlib import Path

    from helios.config import load_settings
    from helios.exchange.valr import ValrClient
    from helios.marketdata import MARKET_DATA_PUBLIC_BUDGET, PublicCallPacer
    from helios.service import build_runtime
    from helios_double import DEFAULT_KEY, DEFAULT_SECRET
    from tests.service.conftest import ScriptedStrategy

    sim = SimClock()
    settings = load_settings({
        "TRADING_MODE": "LIVE", "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": DEFAULT_KEY,
        "VALR_API_SECRET": DEFAULT_SECRET, "VALR_BASE_URL": double.url, "HELIOS_API_TOKEN": "t" * 24,
        "HELIOS_STATE_DIR": str(Path(str(tmp_path)) / "state"), "HELIOS_PAIRS": "BTCZAR,ETHZAR",
        "MAX_POSITION_SIZE_ZAR": "300"})
    assert settings.helios_tick_seconds == 1
    pacer = PublicCallPacer(MARKET_DATA_PUBLIC_BUDGET, 60.0, monotonic=sim.monotonic)
    client = ValrClient(api_key=DEFAULT_KEY, api_secret=DEFAULT_SECRET, base_url=double.url, public_pacer=pacer)
    market = ValrMarketData(double.url, clock=sim.now, monotonic=sim.monotonic, use_websocket=False, pacer=pacer,
                            pairs=settings.pairs)
    runtime = build_runtime(settings, clock=sim.now, market=market, client=client, strategy=ScriptedStrategy())
    call_times: list[float] = []
    try:
        runtime.engine.record_starting_balances(sim.now())
        runtime.engine.start_up()
        for _ in range(600):
            before = len(double.requests("/v1/public"))
            runtime.engine.step()
            call_times += [sim.mono] * (len(double.requests("/v1/public")) - before)
            sim.advance(float(settings.helios_tick_seconds))
    finally:
        runtime.engine.alerter.close()
        client.close()
        market.close()
        runtime.journal.close()
    assert _max_in_any_window(call_times) <= 30, _max_in_any_window(call_times)
    assert len(call_times) >= 100, "prices are still refreshed through the fallback"
