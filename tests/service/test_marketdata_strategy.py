"""Market data sources and the default strategy."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from helios.marketdata import MarketDataError, SimMarketData, ValrMarketData
from helios.models import Side
from helios.strategy import SmaCrossover, StrategyContext
from helios_double import ExchangeDouble

from .conftest import RigFactory


def test_sim_prices_are_deterministic_per_seed() -> None:
    def path(seed: int) -> list[Decimal]:
        sim = SimMarketData(["BTCZAR", "ETHZAR"], seed=seed)
        out = []
        for _ in range(50):
            sim.poll()
            out.append(sim.ticker("BTCZAR").bid)
        return out

    assert path(7) == path(7)
    assert path(7) != path(8)
    ticker = SimMarketData(["BTCZAR"]).ticker("BTCZAR")
    assert ticker.bid < ticker.ask


def test_valr_ticker_from_the_double_and_a_clear_error_when_down() -> None:
    with ExchangeDouble(port=0, prices={"BTCZAR": Decimal(1_234_000)}) as double:
        ticker = ValrMarketData(double.url).ticker("BTCZAR")
        assert ticker.pair == "BTCZAR" and ticker.bid <= Decimal(1_234_000) <= ticker.ask
        double.go_down()
        with pytest.raises(MarketDataError, match="BTCZAR ticker"):
            ValrMarketData(double.url, timeout=0.5).ticker("BTCZAR")


def test_default_strategy_emits_a_long_entry_with_stop_and_take_profit() -> None:
    strategy = SmaCrossover(fast=2, slow=4)
    ctx = StrategyContext(False, False, Decimal(500), Decimal("1.5"), Decimal(2))
    sim = SimMarketData(["BTCZAR"])
    signals = []
    prices = [100, 99, 98, 97, 96, 99, 103]
    for price in prices:
        t = sim.ticker("BTCZAR")
        tick = type(t)("BTCZAR", Decimal(price), Decimal(price), Decimal(price), t.timestamp)
        signal = strategy.on_tick(tick, ctx)
        if signal:
            signals.append(signal)
    assert len(signals) == 1
    signal = signals[0]
    assert signal.side is Side.BUY and signal.stop_loss < signal.limit_price < signal.take_profit  # type: ignore[operator]
    assert signal.quantity * signal.limit_price <= Decimal(500)  # type: ignore[operator]
    held = StrategyContext(True, False, Decimal(500), Decimal("1.5"), Decimal(2))
    assert all(SmaCrossover(2, 4).on_tick(tick, held) is None for _ in range(3))


def test_report_counts_trades_and_red_flags(make_rig: RigFactory, tmp_path: Path) -> None:
    from helios.models import Signal

    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 960_000, 960_000]})
    rig.strategy.pending.append(Signal("BTCZAR", Side.BUY, Decimal("0.0005"), Decimal(990_000), Decimal(970_000),
                                       Decimal(1_010_000)))
    rig.step(4)
    result = subprocess.run([sys.executable, "-m", "helios.cli", "report", "--json",
                             "--until", (rig.clock.now + timedelta(minutes=1)).isoformat()],
                            capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(rig.settings.helios_state_dir),
                                 "HELIOS_PAPER_STARTING_ZAR": "10000"}, check=False, timeout=60)
    assert result.returncode == 1, result.stderr  # issue 12: a failed threshold (win rate 0% < 60%) exits non-zero
    report = json.loads(result.stdout)
    assert report["passed"] is False and {"name": "win_rate", "outcome": "fail",
                                          "detail": "0.00% (needs >= 60%)"} in report["checks"]
    assert report["trades"] == 1 and report["wins"] == 0 and report["win_rate_pct"] == "0.0"
    assert report["realised_total_zar"] == "-15.98"
    assert Decimal(report["max_drawdown_pct"]) > 0
