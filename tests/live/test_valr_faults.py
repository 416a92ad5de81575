"""Failure handling: lost answers, 429 storms, 5xx, resets, the exchange going down, clock skew, secrets in logs."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests

from helios.exchange.errors import (
    AuthenticationFailed,
    ExchangeError,
    ExchangeUnavailable,
    OutcomeUnknown,
    RateLimited,
)
from helios.exchange.valr import ValrClient
from helios.models import OrderRequest, OrderStatus, OrderType, Side
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble

ClientFactory = Callable[..., ValrClient]
BTC = "BTCZAR"


def buy(cid: str, price: str = "1100000", qty: str = "0.001") -> OrderRequest:
    return OrderRequest(cid, BTC, Side.BUY, OrderType.LIMIT, Decimal(qty), Decimal(price))


def test_response_dropped_after_acceptance_is_outcome_unknown(
    valr_client: ValrClient, exchange_double: ExchangeDouble
) -> None:
    valr_client.pair_info(BTC)
    exchange_double.drop_response_after_accept(1)
    with pytest.raises(OutcomeUnknown):
        valr_client.place_order(buy("lost-1"))
    assert len(exchange_double.order_placements()) == 1  # never re-sent blind
    found = valr_client.get_order(BTC, "lost-1")
    assert found is not None and found.status is OrderStatus.OPEN
    assert [o.customer_order_id for o in exchange_double.orders()] == ["lost-1"]
    assert [o.customer_order_id for o in valr_client.open_orders()] == ["lost-1"]


def test_dropped_market_order_is_found_in_history(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    valr_client.pair_info(BTC)
    exchange_double.drop_response_after_accept(1)
    with pytest.raises(OutcomeUnknown):
        valr_client.place_order(OrderRequest("lost-m", BTC, Side.BUY, OrderType.MARKET, Decimal("0.001")))
    found = valr_client.get_order(BTC, "lost-m")
    assert found is not None and found.status is OrderStatus.FILLED
    assert len(exchange_double.orders()) == 1


def test_reset_before_processing_is_outcome_unknown_and_nothing_exists(
    valr_client: ValrClient, exchange_double: ExchangeDouble
) -> None:
    valr_client.pair_info(BTC)
    exchange_double.reset_next(1, "/v2/orders")
    with pytest.raises(OutcomeUnknown):
        valr_client.place_order(buy("rst-1"))
    assert valr_client.get_order(BTC, "rst-1") is None
    assert exchange_double.orders() == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_on_placement_is_outcome_unknown(
    valr_client: ValrClient, exchange_double: ExchangeDouble, status: int
) -> None:
    valr_client.pair_info(BTC)
    exchange_double.fail_next(1, status, "/v2/orders")
    with pytest.raises(OutcomeUnknown) as info:
        valr_client.place_order(buy("five-1"))
    assert info.value.http_status == status
    assert len(exchange_double.order_placements()) == 1


def test_5xx_and_resets_on_reads_are_retried(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    exchange_double.fail_next(2, 503, "/v1/account/balances")
    exchange_double.reset_next(1, "/v1/account/balances")
    assert valr_client.balances()
    assert len(exchange_double.requests("/v1/account/balances")) == 4
    assert valr_client.is_connected()


def test_read_timeout_on_placement_is_outcome_unknown(
    make_client: ClientFactory, exchange_double: ExchangeDouble
) -> None:
    client = make_client(read_timeout=0.2)
    client.pair_info(BTC)
    exchange_double.inject_latency(600, "/v2/orders")
    with pytest.raises(OutcomeUnknown):
        client.place_order(buy("slow-1"))
    # The request is still in flight on the exchange: "not found" right now is not proof it never lands.
    exchange_double.wait_for_request("/v2/orders", "POST", answered=True)
    found = client.get_order(BTC, "slow-1")
    assert found is not None and found.status is OrderStatus.OPEN
    assert len(exchange_double.order_placements()) == 1


def test_429_storm_backs_off_then_succeeds_without_duplicates(
    make_client: ClientFactory, exchange_double: ExchangeDouble
) -> None:
    sleeps: list[float] = []
    client = make_client(sleep=sleeps.append, max_attempts=5, max_placement_attempts=5)
    client.pair_info(BTC)
    exchange_double.rate_limit_next(3)  # no Retry-After: exponential backoff with jitter
    assert client.balances()
    assert len(sleeps) == 3 and all(0 < s <= 0.05 for s in sleeps)
    assert sleeps[2] >= 0.02  # 0.01 * 2**2 halved at most

    sleeps.clear()
    exchange_double.rate_limit_next(2, retry_after=1, path_prefix="/v1/account")
    assert client.balances()
    assert sleeps == [1.0, 1.0]  # Retry-After honoured on reads
    # A placement 429 is never re-sent (finding 4): outcome unknown, looked up by customerOrderId.
    exchange_double.rate_limit_next(1, path_prefix="/v2/orders")
    with pytest.raises(OutcomeUnknown):
        client.place_order(buy("storm-1"))
    assert [r.outcome for r in exchange_double.order_placements()] == ["429"]
    assert client.get_order(BTC, "storm-1") is None and client.balances()


def test_429_storm_longer_than_the_budget_raises_rate_limited(
    make_client: ClientFactory, exchange_double: ExchangeDouble
) -> None:
    client = make_client(sleep=lambda _s: None, max_attempts=3, max_placement_attempts=2)
    client.pair_info(BTC)
    exchange_double.rate_limit_next(10, path_prefix="/v2/orders")
    with pytest.raises(OutcomeUnknown):  # a placement 429 is an unclear outcome, never re-sent
        client.place_order(buy("storm-2"))
    assert exchange_double.orders() == []
    assert len(exchange_double.order_placements()) == 1
    exchange_double.rate_limit_next(10, retry_after=120)  # longer than max_retry_after: give up at once
    with pytest.raises(RateLimited) as info:
        client.balances()
    assert info.value.retry_after == 120
    assert client.is_connected()  # a 429 proves the exchange is reachable


def test_rate_limit_per_key_like_valr(make_client: ClientFactory) -> None:
    double = ExchangeDouble(rate_limit_per_key=3, rate_limit_window=0.2).start()
    try:
        client = make_client(base_url=double.url, max_attempts=8)
        for _ in range(5):
            client.balances()
        outcomes = [r.outcome for r in double.requests("/v1/account/balances")]
        assert "429" in outcomes and outcomes.count("200") == 5
    finally:
        double.stop()


def test_double_down_means_disconnected_and_unavailable(
    make_client: ClientFactory, exchange_double: ExchangeDouble
) -> None:
    client = make_client(max_attempts=2)
    assert client.ping() and client.is_connected()
    client.pair_info(BTC)
    exchange_double.go_down()
    started = time.monotonic()
    assert client.ping() is False
    assert client.is_connected() is False
    with pytest.raises(ExchangeUnavailable):
        client.balances()
    with pytest.raises(ExchangeUnavailable):  # never sent: connection refused
        client.place_order(buy("down-1"))
    assert time.monotonic() - started < 3
    exchange_double.come_up()
    assert client.ping() is True and client.is_connected()
    assert client.get_order(BTC, "down-1") is None
    assert exchange_double.orders() == []


def test_clock_skew_corrected_via_public_time(make_client: ClientFactory, exchange_double: ExchangeDouble) -> None:
    exchange_double.set_clock_skew(60_000)
    stubborn = make_client(auto_clock_sync=False)
    with pytest.raises(AuthenticationFailed):
        stubborn.balances()
    offset = stubborn.sync_clock()
    assert 59_000 < offset < 61_000
    assert stubborn.balances()

    synced = make_client()  # auto: measures the offset before its first signed call
    assert synced.balances() and 59_000 < synced.clock_offset_ms < 61_000

    exchange_double.set_clock_skew(-30_000)  # the exchange clock jumps: one 401, re-sync, one retry
    assert synced.balances()
    assert -31_000 < synced.clock_offset_ms < -29_000


def test_no_secret_or_signature_in_logs_or_errors(
    make_client: ClientFactory, exchange_double: ExchangeDouble, caplog: pytest.LogCaptureFixture
) -> None:
    signatures: list[str] = []
    session = requests.Session()
    original_send = session.send

    def recording_send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if "X-VALR-SIGNATURE" in request.headers:
            signatures.append(str(request.headers["X-VALR-SIGNATURE"]))
        return original_send(request, **kwargs)

    session.send = recording_send  # type: ignore[method-assign]
    caplog.set_level(logging.DEBUG)
    client = make_client(session=session, sleep=lambda _s: None)
    errors: list[BaseException] = []
    client.balances()
    client.place_order(buy("log-1"))
    for fault in (
        lambda: exchange_double.drop_response_after_accept(1),
        lambda: exchange_double.fail_next(1, 500, "/v2/orders"),
        lambda: exchange_double.rate_limit_next(10),
    ):
        fault()
        try:
            client.place_order(buy(f"log-{len(errors) + 2}"))
        except ExchangeError as exc:
            errors.append(exc)
        exchange_double.clear_faults()
    wrong = make_client(api_secret="wrong-secret-value", session=session)
    try:
        wrong.balances()
    except ExchangeError as exc:
        errors.append(exc)
    exchange_double.go_down()
    try:
        client.balances()
    except ExchangeError as exc:
        errors.append(exc)
    assert len(errors) == 5 and signatures
    texts = [caplog.text] + [f"{e!s} {e!r} {e.__cause__!r} {e.__context__!r}" for e in errors]
    texts += [repr(client), repr(wrong)]
    for text in texts:
        assert DEFAULT_SECRET not in text
        assert "wrong-secret-value" not in text
        for signature in signatures:
            assert signature not in text


def test_admin_http_endpoints_drive_the_double(valr_client: ValrClient, exchange_double: ExchangeDouble) -> None:
    admin = exchange_double.url + "/_double"
    assert requests.post(f"{admin}/price", json={"pair": BTC, "price": "1000000"}, timeout=5).ok
    assert valr_client.ticker(BTC).last == Decimal("1000000")
    assert requests.post(f"{admin}/balance", json={"currency": "ZAR", "available": "42"}, timeout=5).ok
    assert {b.currency: b.available for b in valr_client.balances()}["ZAR"] == Decimal("42")
    seeded = requests.post(
        f"{admin}/orders/seed", timeout=5, json={"pair": BTC, "side": "SELL", "quantity": "0.001", "price": "1100000"}
    )
    assert seeded.status_code == 201 and seeded.json()["open"] is True
    faults = requests.post(f"{admin}/faults", timeout=5, json={"rate_limit_next": {"count": 1, "retry_after": 0}})
    assert faults.ok
    assert len(valr_client.open_orders()) == 1
    assert [r["outcome"] for r in requests.get(f"{admin}/requests", timeout=5).json()][-2:] == ["429", "200"]
    state = requests.get(f"{admin}/state", timeout=5).json()
    assert state["openOrders"] == 1 and state["prices"][BTC]["last"] == "1000000"
    assert requests.get(f"{admin}/orders?open=1", timeout=5).json()[0]["seeded"] is True
    assert requests.post(f"{admin}/down", json={"seconds": 0.5}, timeout=5).ok
    time.sleep(0.2)
    assert valr_client.ping() is False
    time.sleep(0.6)
    assert valr_client.ping() is True
    assert requests.post(f"{admin}/reset", timeout=5).json()["openOrders"] == 0


def test_module_entry_point_starts_and_prints_its_url() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helios_double",
            "--port",
            "0",
            "--price",
            "BTCZAR=1234567",
            "--key",
            "k:s:View,Trade",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = ValrClient("k", "s", base_url=url)
        assert client.ticker(BTC).last == Decimal("1234567")
        assert client.balances()
        client.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_default_key_constants_work_with_default_double(exchange_double: ExchangeDouble) -> None:
    client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=exchange_double.url)
    assert client.key_info().permissions == ("View access", "Trade")
    client.close()
