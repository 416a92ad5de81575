"""Public REST calls per minute that market data makes at the default settings (VALR allows 30 a minute).

    .venv/bin/python bench/bench_valr_public_calls.py [--minutes 10]

Simulated time (one tick a second, the engine's default), real HTTP to the exchange double. Cases: the trade
WebSocket up, and down (REST fallback only), for 1 pair (the default ``HELIOS_PAIRS``) and 5 pairs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # helios_double is imported from the checkout

from helios.marketdata import MarketDataError, ValrMarketData
from helios_double import ExchangeDouble

FIVE = ["BTCZAR", "ETHZAR", "SOLZAR", "XRPZAR", "USDTZAR"]


def run(pairs: list[str], websocket: bool, minutes: int) -> tuple[float, int]:
    mono = [1000.0]
    wall = [datetime.now(UTC)]
    with ExchangeDouble() as double:
        market = ValrMarketData(double.url, pairs=pairs, use_websocket=websocket, clock=lambda: wall[0],
                                monotonic=lambda: mono[0])
        if websocket:
            market.poll()
            deadline = time.monotonic() + 10
            while not market.streaming and time.monotonic() < deadline:
                time.sleep(0.01)
        calls: list[float] = []
        for second in range(minutes * 60):
            # the double's clock follows the simulated one, so the summaries it creates carry simulated time
            double.set_clock_skew(int((wall[0] - datetime.now(UTC)).total_seconds() * 1000))
            before = len(double.requests("/v1/public"))
            if websocket and second % 5 == 0:  # the market keeps moving: the stream keeps tickers fresh
                for pair in pairs:
                    double.set_price(pair, str(1000 + second))
                settle = time.monotonic() + 2  # wait for the stream to deliver the new summaries
                while time.monotonic() < settle and any(
                    market.ticker(p).last != 1000 + second for p in pairs
                ):
                    time.sleep(0.001)
            for pair in pairs:
                with contextlib.suppress(MarketDataError):
                    market.ticker(pair)
            calls += [mono[0]] * (len(double.requests("/v1/public")) - before)
            mono[0] += 1
            wall[0] += timedelta(seconds=1)
        market.close()
    worst = max((sum(1 for u in calls if t <= u < t + 60) for t in calls), default=0)
    return len(calls) / minutes, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    args = parser.parse_args()
    for pairs in (["BTCZAR"], FIVE):
        for websocket in (True, False):
            per_minute, worst = run(pairs, websocket, args.minutes)
            label = f"{len(pairs)} pair(s), websocket {'up' if websocket else 'down'}"
            print(f"public REST calls: {label:<28} mean {per_minute:6.1f}/min, worst rolling minute {worst:3d} "
                  f"(VALR limit 30)")


if __name__ == "__main__":
    main()
