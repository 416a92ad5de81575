"""LIVE engine + the exchange double over HTTP (as tests/live does), with two pairs and a movable engine clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from helios.config import Settings, load_settings
from helios.engine import Engine
from helios.journal import Journal, OrderRecord
from helios.models import OrderPurpose, OrderType, Side, utcnow
from helios.service import build_runtime
from helios_double import ExchangeDouble
from tests.live.test_live_engine import live_env
from tests.service.conftest import ScriptedStrategy

D = Decimal
PRICES = {"BTCZAR": D(1_000_000), "ETHZAR": D(40_000)}


@dataclass
class ShiftedClock:
    """Real time plus an offset the test moves (the double keeps real time)."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class Rig:
    double: ExchangeDouble
    settings: Settings
    engine: Engine
    journal: Journal
    clock: ShiftedClock
    state_dir: Path

    def entry(self, pair: str = "BTCZAR", qty: str = "0.00011", price: int | None = None,
              stop: int | None = None) -> OrderRecord:
        """A BUY entry: a market order when ``price`` is None (it fills at placement on the double)."""
        mark = PRICES[pair]
        return self.engine.submit_order(
            pair=pair, side=Side.BUY, order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
            quantity=D(qty), price=None if price is None else D(price), purpose=OrderPurpose.ENTRY,
            stop_loss=D(stop) if stop is not None else mark * D("0.9"), take_profit=mark * 2, reason="test",
        )

    def alerts(self) -> list[str]:
        self.engine.alerter.close()
        path = self.state_dir / "alerts.jsonl"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def double() -> Iterator[ExchangeDouble]:
    d = ExchangeDouble(port=0, prices=dict(PRICES), balances={"ZAR": D(1000)}).start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def make_rig(double: ExchangeDouble, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def factory(**overrides: str) -> Rig:
        state = tmp_path / "state"
        env: dict[str, Any] = live_env(double, state, HELIOS_PAIRS="BTCZAR,ETHZAR", **overrides)
        settings = load_settings(env)
        runtime = build_runtime(settings, strategy=ScriptedStrategy())
        clock = ShiftedClock()
        runtime.engine.clock = clock
        rig = Rig(double, settings, runtime.engine, runtime.journal, clock, state)
        made.append(rig)
        rig.engine.record_starting_balances(clock())
        rig.engine.start_up()
        rig.engine.step()
        return rig

    yield factory
    for rig in made:
        rig.engine.alerter.close()
        rig.engine.client.close()
        rig.journal.close()
