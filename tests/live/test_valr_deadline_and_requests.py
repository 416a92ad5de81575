"""Every client call accepts an overall deadline; the double reports every request it receives."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import requests

from helios.exchange.errors import DeadlineExceeded, ExchangeUnavailable, OutcomeUnknown
from helios.exchange.valr import ValrClient
from helios.marketdata import PublicCallPacer
from helios.models import OrderRequest, OrderType, Side
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble

BTC = "BTCZAR"


def test_deadline_bounds_reads_and_placements() -> None:
    with ExchangeDouble() as double:
        client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, read_timeout=30, max_attempts=10)
        client.pair_info(BTC)
        assert client.balances()  # (measures the clock offset first)
        double.inject_latency(3000)
        started = time.monotonic()
        with pytest.raises(ExchangeUnavailable), client.deadline(0.3):
            client.balances()
        with pytest.raises(OutcomeUnknown):  # the placement may have landed: unknown, not "nothing happened"
            client.place_order(OrderRequest("dl-1", BTC, Side.BUY, OrderType.MARKET, Decimal("0.001")), deadline=0.3)
        assert time.monotonic() - started < 2.5  # well under one injected latency per call
        double.inject_latency(0)
        with pytest.raises(DeadlineExceeded), client.deadline(0):
            client.balances()  # an expired deadline sends nothing
        assert client.balances()
        client.close()


def test_double_reports_each_request_as_it_arrives() -> None:
    with ExchangeDouble() as double:
        client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)
        client.pair_info(BTC)
        double.inject_latency(200, "/v2/orders")  # the answer is still on its way when we are told
        seen: list[int] = []

        def watcher() -> None:
            record = double.wait_for_request(method="POST", path_prefix="/v2/orders", customer_order_id="rq-1")
            seen.append(record.seq)

        thread = threading.Thread(target=watcher)
        thread.start()
        client.place_order(OrderRequest("rq-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1e6")))
        thread.join(timeout=10)
        assert seen and seen[0] > 0
        rows = requests.get(f"{double.url}/_double/requests", params={"method": "POST"}, timeout=5).json()
        assert [(r["method"], r["path"], r["customer_order_id"]) for r in rows] == [
            ("POST", "/v2/orders/limit", "rq-1")
        ]
        later = requests.get(f"{double.url}/_double/requests", params={"after": rows[0]["seq"]}, timeout=5).json()
        assert all(r["seq"] > rows[0]["seq"] for r in later)
        client.close()


def test_client_public_calls_count_against_the_shared_budget() -> None:
    with ExchangeDouble() as double:
        pacer = PublicCallPacer(limit=30)
        client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, public_pacer=pacer, auto_clock_sync=False)
        client.pairs()
        client.server_time()
        assert pacer.used() == 2
        client.balances()  # private calls do not count
        assert pacer.used() == 2
        client.close()
