"""Fixtures for the LIVE-path tests: a real exchange double on 127.0.0.1 (random free port) and clients for it.

``exchange_double`` is the fixture other suites can copy or import (``from tests.live.conftest import ...`` is not
needed: the double itself is ``helios_double.ExchangeDouble``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from helios.config import load_settings
from helios.engine import Engine
from helios.exchange.valr import ValrClient
from helios.service import build_runtime
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, VARIANTS, ExchangeDouble

ClientFactory = Callable[..., ValrClient]


@pytest.fixture
def exchange_double() -> Iterator[ExchangeDouble]:
    double = ExchangeDouble(port=0).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def make_client(exchange_double: ExchangeDouble) -> Iterator[ClientFactory]:
    """Build ValrClients for the double with fast, bounded backoff (override any constructor argument)."""
    clients: list[ValrClient] = []

    def factory(**overrides: Any) -> ValrClient:
        kwargs: dict[str, Any] = {
            "api_key": DEFAULT_KEY,
            "api_secret": DEFAULT_SECRET,
            "base_url": exchange_double.url,
            "connect_timeout": 1.0,
            "read_timeout": 2.0,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "max_retry_after": 2.0,
        }
        kwargs.update(overrides)
        client = ValrClient(**kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.fixture
def valr_client(make_client: ClientFactory) -> ValrClient:
    return make_client()


@pytest.fixture(params=VARIANTS, ids=[v.name for v in VARIANTS])
def variant_double(request: pytest.FixtureRequest) -> Iterator[ExchangeDouble]:
    """The double in each documented variant, BTCZAR at 1,000,000, R100,000 on the account."""
    with ExchangeDouble(variant=request.param, prices={"BTCZAR": Decimal(1_000_000)},
                        balances={"ZAR": Decimal(100_000)}) as d:
        yield d


@pytest.fixture
def variant_engine(variant_double: ExchangeDouble, tmp_path: Path) -> Iterator[Engine]:
    """A LIVE engine (real runtime, scripted strategy) against ``variant_double``, started and one tick in."""
    from tests.live.test_live_engine import live_env
    from tests.service.conftest import ScriptedStrategy

    env = live_env(variant_double, tmp_path / "state", MAX_POSITION_SIZE_ZAR="100000", MAX_PORTFOLIO_RISK_PCT="100",
                   MAX_OPEN_POSITIONS="3", HELIOS_MAX_ORDERS_PER_MINUTE="1000",
                   # failed and lost placements are injected on purpose: the orders_not_executing red flag
                   # (which would HALT after 3) is tested in tests/rollout, not here
                   HELIOS_REDFLAG_FAILED_ORDERS="1000")
    runtime = build_runtime(load_settings(env), strategy=ScriptedStrategy())
    e = runtime.engine
    e.record_starting_balances(e.clock())
    e.start_up()
    e.step()
    try:
        yield e
    finally:
        e.alerter.close()
        e.client.close()
        e.market.close()
        runtime.journal.close()
