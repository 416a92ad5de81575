"""A LIVE engine (the service's own wiring) against the exchange double on 127.0.0.1, with a VALR client whose
timeouts a test can choose, and a helper that holds the journal's write lock from another connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from helios.config import Settings, load_settings
from helios.engine import Engine
from helios.exchange.valr import ValrClient
from helios.journal import Journal, OrderRecord, journal_path
from helios.models import Mode, OrderPurpose, OrderType, Side
from helios.service import build_runtime
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from tests.service.conftest import ScriptedStrategy

TOKEN = "safety-token-0123456789abcdef"
D = Decimal


def live_env(double: ExchangeDouble, state_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        "TRADING_MODE": "LIVE", "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": DEFAULT_KEY,
        "VALR_API_SECRET": DEFAULT_SECRET, "VALR_BASE_URL": double.url, "HELIOS_API_TOKEN": TOKEN,
        "HELIOS_STATE_DIR": str(state_dir), "MAX_POSITION_SIZE_ZAR": "100000", "MAX_PORTFOLIO_RISK_PCT": "100",
        "MAX_DAILY_LOSS_ZAR": "500", "MAX_OPEN_POSITIONS": "3", "HELIOS_MAX_ORDERS_PER_MINUTE": "1000",
    }
    env.update(overrides)
    return env


@dataclass
class SafetyRig:
    double: ExchangeDouble
    settings: Settings
    engine: Engine
    journal: Journal

    def buy(self, price: int, qty: str = "0.00011", stop: int = 900_000) -> OrderRecord:
        return self.engine.submit_order(pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT,
                                        quantity=D(qty), price=D(price), purpose=OrderPurpose.ENTRY,
                                        stop_loss=D(stop), take_profit=D(1_200_000), reason="test")

    @property
    def journal_path(self) -> Path:
        return journal_path(self.settings.helios_state_dir, Mode.LIVE)


@pytest.fixture
def double() -> Iterator[ExchangeDouble]:
    d = ExchangeDouble(port=0, prices={"BTCZAR": D(1_000_000)}, balances={"ZAR": D(100_000)}).start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def make_safety_rig(double: ExchangeDouble, tmp_path: Path) -> Iterator[Callable[..., SafetyRig]]:
    made: list[SafetyRig] = []

    def factory(*, read_timeout: float = 2.0, **overrides: str) -> SafetyRig:
        settings = load_settings(live_env(double, tmp_path / "state", **overrides))
        client = ValrClient(api_key=DEFAULT_KEY, api_secret=DEFAULT_SECRET, base_url=double.url,
                            connect_timeout=1.0, read_timeout=read_timeout, backoff_base=0.01, backoff_max=0.05)
        runtime = build_runtime(settings, strategy=ScriptedStrategy(), client=client)
        rig = SafetyRig(double, settings, runtime.engine, runtime.journal)
        made.append(rig)
        rig.engine.record_starting_balances(rig.engine.clock())
        rig.engine.start_up()
        rig.engine.step()
        return rig

    yield factory
    for rig in made:
        rig.engine._closing = True  # ends a background HALTED-journal retry
        rig.engine.alerter.close()
        rig.engine.client.close()
        rig.journal.close()


class WriteLockHolder:
    """Another connection (as another process would) holding the journal's write lock until released."""

    def __init__(self, path: Path) -> None:
        self.conn: sqlite3.Connection | None = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


@pytest.fixture
def hold_write_lock() -> Iterator[Callable[[Path], WriteLockHolder]]:
    held: list[WriteLockHolder] = []

    def hold(path: Path) -> WriteLockHolder:
        holder = WriteLockHolder(path)
        held.append(holder)
        return holder

    yield hold
    for holder in held:
        holder.release()


def open_orders(rig: SafetyRig) -> list[Any]:
    return rig.double.open_orders()


def wait_for_price(rig: SafetyRig, pair: str, price: int, within_s: float = 10.0) -> None:
    """Wait until the engine's market data has seen ``price`` (the trade WebSocket delivers it asynchronously):
    the next tick then acts on it. Synchronises on the ticker itself, not on a sleep."""
    import time

    deadline = time.monotonic() + within_s
    while rig.engine.market.ticker(pair).bid != D(price):
        if time.monotonic() > deadline:
            raise AssertionError(f"the engine's market data never showed {pair} at {price}")
        time.sleep(0.01)
