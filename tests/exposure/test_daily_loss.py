"""Issue 8, finding 8: the daily loss is measured from each position's mark at the start of the Johannesburg day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from helios.config import load_settings
from helios.engine import Engine
from helios.exchange.paper import PaperExchange
from helios.journal import Journal
from helios.marketdata import ScriptedMarketData
from helios.models import Side, Signal, TradingState
from helios.orchestrator import paper_exchange_path
from tests.service.conftest import FakeClock, ScriptedStrategy, base_env

D = Decimal
# 23:50 in Johannesburg (UTC+2) on 24 November
EVENING = datetime(2026, 11, 24, 21, 50, tzinfo=UTC)


class Paper:
    def __init__(self, state: Path, path: list[int]) -> None:
        self.settings = load_settings(base_env(state, MAX_DAILY_LOSS_ZAR="50", MAX_POSITION_SIZE_ZAR="1000"))
        self.clock = FakeClock(EVENING)
        self.market = ScriptedMarketData({"BTCZAR": [D(p) for p in path]}, clock=self.clock)
        self.journal = Journal.open(state, self.settings.mode)
        self.exchange = PaperExchange(paper_exchange_path(state), starting_zar=D(10_000), slippage_bps=D(0),
                                      clock=self.clock)
        self.strategy = ScriptedStrategy()
        self.engine = Engine(settings=self.settings, journal=self.journal, client=self.exchange, market=self.market,
                             strategy=self.strategy, clock=self.clock)
        self.engine.start_up()

    def step_at(self, moment: datetime) -> None:
        self.clock.now = moment
        self.engine.step()

    def close(self) -> None:
        self.exchange.close()
        self.journal.close()


@pytest.fixture
def paper(tmp_path: Path) -> Iterator[Paper]:
    rig = Paper(tmp_path / "state", [1_000_000, 985_000, 1_049_440, 1_049_440, 990_000])
    yield rig
    rig.close()


def test_finding8_yesterdays_unrealised_gain_does_not_hide_todays_loss(paper: Paper) -> None:
    paper.strategy.pending.append(Signal(pair="BTCZAR", side=Side.BUY, quantity=D("0.001"), limit_price=D(990_000),
                                         stop_loss=D(900_000), take_profit=D(1_200_000), reason="test"))
    paper.step_at(EVENING)  # 23:50: the BUY rests at 990,000
    paper.step_at(EVENING + timedelta(minutes=1))  # it fills (R990 + R0.99 fee)
    paper.step_at(EVENING + timedelta(minutes=9))  # 23:59: 1,049,440 -> +R58.45 unrealised, yesterday's gain
    assert paper.engine.todays_pnl_zar() == D("58.45")
    paper.step_at(EVENING + timedelta(minutes=10, seconds=30))  # 00:00:30: the day starts at the 1,049,440 mark
    assert paper.engine.todays_pnl_zar() == 0
    paper.step_at(EVENING + timedelta(hours=1, minutes=11))  # 01:01: back to 990,000
    assert paper.engine.unrealised_zar() == D("-0.99"), "since entry: almost flat"
    assert paper.engine.todays_pnl_zar() == D("-59.44"), "since midnight: -59.44"
    assert paper.engine.state is TradingState.REDUCING, "the R50 daily loss limit was reached"


def test_finding8_the_day_start_marks_survive_a_restart(paper: Paper, tmp_path: Path) -> None:
    paper.strategy.pending.append(Signal(pair="BTCZAR", side=Side.BUY, quantity=D("0.001"), limit_price=D(990_000),
                                         stop_loss=D(900_000), take_profit=D(1_200_000), reason="test"))
    for minutes in (0, 1, 9, 10.5):
        paper.step_at(EVENING + timedelta(minutes=minutes))
    paper.close()
    again = Paper(tmp_path / "state", [990_000])
    try:
        again.step_at(EVENING + timedelta(hours=1, minutes=11))
        assert again.engine.todays_pnl_zar() == D("-59.44")
        assert again.engine.state is TradingState.REDUCING
    finally:
        again.close()
