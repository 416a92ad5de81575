"""Fixtures for the service tests: real SQLite files in tmp dirs, a controllable clock, scripted prices, and a
real ``helios run`` process (real uvicorn) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from helios.config import Settings, load_settings
from helios.engine import Engine
from helios.exchange.paper import PaperExchange
from helios.journal import Journal
from helios.marketdata import ScriptedMarketData
from helios.models import Signal, Ticker
from helios.orchestrator import paper_exchange_path
from helios.strategy import StrategyContext

TOKEN = "test-token-0123456789abcdef"


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 24, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class ScriptedStrategy:
    """Emits the given signals at the given engine steps (index = market step)."""

    name = "scripted"

    def __init__(self) -> None:
        self.pending: list[Signal] = []

    def on_tick(self, ticker: Ticker, ctx: StrategyContext) -> Signal | None:
        for i, signal_ in enumerate(self.pending):
            if signal_.pair == ticker.pair:
                return self.pending.pop(i)
        return None


def base_env(state_dir: Path, **overrides: Any) -> dict[str, str]:
    env = {
        "TRADING_MODE": "PAPER",
        "ENABLE_PAPER_TRADING": "true",
        "HELIOS_STATE_DIR": str(state_dir),
        "HELIOS_MARKET_DATA": "sim",
        "HELIOS_API_TOKEN": TOKEN,
        "HELIOS_PAPER_FILL_PCT": "100",
        "HELIOS_PAPER_SLIPPAGE_BPS": "0",
        "HELIOS_PAPER_STARTING_ZAR": "10000",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@dataclass
class Rig:
    """An engine on a PAPER exchange with scripted prices and a fake clock, all on real SQLite files."""

    settings: Settings
    journal: Journal
    exchange: PaperExchange
    market: ScriptedMarketData
    strategy: ScriptedStrategy
    clock: FakeClock
    engine: Engine
    closed: list[Any] = field(default_factory=list)

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.clock.advance(1)
            self.engine.step()

    def close(self) -> None:
        self.exchange.close()
        self.journal.close()


RigFactory = Callable[..., Rig]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[RigFactory]:
    rigs: list[Rig] = []

    def factory(prices: Mapping[str, Sequence[Decimal | int | str]] | None = None, *,
                state_dir: Path | None = None, spread: Decimal = Decimal(0), **env: Any) -> Rig:
        state = state_dir or tmp_path / "state"
        settings = load_settings(base_env(state, **env))
        clock = FakeClock()
        paths = {pair: [Decimal(str(p)) for p in path]
                 for pair, path in (prices or {"BTCZAR": [1_000_000]}).items()}
        market = ScriptedMarketData(paths, clock=clock, spread=spread)
        journal = Journal.open(state, settings.mode)
        exchange = PaperExchange(
            paper_exchange_path(state), starting_zar=settings.helios_paper_starting_zar,
            maker_fee_pct=settings.helios_paper_maker_fee_pct, taker_fee_pct=settings.helios_paper_taker_fee_pct,
            slippage_bps=settings.helios_paper_slippage_bps, fill_pct=settings.helios_paper_fill_pct, clock=clock,
        )
        strategy = ScriptedStrategy()
        engine = Engine(settings=settings, journal=journal, client=exchange, market=market, strategy=strategy,
                        clock=clock)
        engine.start_up()
        rig = Rig(settings, journal, exchange, market, strategy, clock, engine)
        rigs.append(rig)
        return rig

    yield factory
    for rig in rigs:
        rig.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    proc: subprocess.Popen[bytes]
    url: str
    state_dir: Path
    env: dict[str, str]
    log_path: Path

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, token: str | None = TOKEN, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(self.url + path, headers=headers, timeout=30, **kw)

    def wait_healthy(self, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"helios exited {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                response = self.get("/api/health")
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    return body
                last = response.text
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"not healthy in {timeout}s: {last}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"helios did not stop within {timeout}s") from None
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""


def start_service(state_dir: Path, log_path: Path, extra_env: Mapping[str, str] | None = None,
                  **overrides: Any) -> ServiceProcess:
    port = free_port()
    env = base_env(state_dir, HELIOS_API_PORT=port, HELIOS_TICK_SECONDS="0.2", **overrides)
    env.update(extra_env or {})
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HELIOS_", "VALR_", "TRADING_", "MAX_"))}
    full_env.pop("NOTIFY_SOCKET", None)
    full_env.update(env)
    handle = log_path.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "helios.cli", "run"], env=full_env, stdout=handle,
                            stderr=subprocess.STDOUT)
    handle.close()
    return ServiceProcess(proc, f"http://127.0.0.1:{port}", state_dir, env, log_path)


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def factory(state_dir: Path | None = None, **overrides: Any) -> ServiceProcess:
        service = start_service(state_dir or tmp_path / "state", tmp_path / f"helios-{len(started)}.log",
                                **overrides)
        started.append(service)
        return service

    yield factory
    for service in started:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()
