"""Fixtures for the LIVE-path tests: a real exchange double on 127.0.0.1 (random free port) and clients for it.

``exchange_double`` is the fixture other suites can copy or import (``from tests.live.conftest import ...`` is not
needed: the double itself is ``helios_double.ExchangeDouble``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helios.exchange.valr import ValrClient
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble

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
