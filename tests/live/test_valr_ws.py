"""VALR's WebSocket streams against the double's real WebSocket server on loopback (same port as its REST)."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from helios.exchange.valr import ValrClient
from helios.exchange.valr_ws import AccountEvent, AccountStream, Connected, FillDeduper, TradeStream, ws_auth_headers
from helios.models import Fill, OrderRequest, OrderStatus, OrderType, Side, Ticker
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble

BTC = "BTCZAR"


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition the code under test makes true (an event, not a guessed delay)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.002)


@pytest.fixture(params=["data", "flat"])
def double(request: pytest.FixtureRequest) -> Iterator[ExchangeDouble]:
    with ExchangeDouble() as server:
        server.ws_envelope = request.param
        yield server


@pytest.fixture
def client(double: ExchangeDouble) -> Iterator[ValrClient]:
    c = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, backoff_base=0.01)
    yield c
    c.close()


def test_signature_covers_timestamp_get_and_path() -> None:
    headers = ws_auth_headers("k", "secret", timestamp_ms=1558014486185)
    from helios.exchange.valr import sign_request

    assert headers["X-VALR-SIGNATURE"] == sign_request("secret", 1558014486185, "GET", "/ws/account")
    assert "X-VALR-SUB-ACCOUNT-ID" not in headers
    assert ws_auth_headers("k", "s", subaccount_id="42")["X-VALR-SUB-ACCOUNT-ID"] == "42"


def test_a_wrong_secret_never_connects(double: ExchangeDouble) -> None:
    stream = AccountStream(double.url, DEFAULT_KEY, "wrong-secret", on_event=lambda _e: None, backoff_base=0.01,
                           backoff_max=0.02).start()
    try:
        _until(lambda: stream.last_error is not None and "401" in stream.last_error)
        assert not stream.connected and stream.connections == 0 and double.ws_connections("/ws/account") == 0
    finally:
        stream.stop()


def test_events_and_keepalive(double: ExchangeDouble, client: ValrClient) -> None:
    events: queue.Queue[AccountEvent] = queue.Queue()
    stream = AccountStream(double.url, DEFAULT_KEY, DEFAULT_SECRET, on_event=events.put, ping_interval=0.05).start()
    try:
        assert stream.wait_connected()
        double.wait_ws_connections(1, "/ws/account")
        client.place_order(OrderRequest("ws-1", BTC, Side.BUY, OrderType.MARKET, Decimal("0.001")))
        kinds = {}
        while len(kinds) < 3:
            event = events.get(timeout=10)
            kinds[event.kind] = event
        trade = kinds["NEW_ACCOUNT_TRADE"].fill
        assert trade is not None and trade.customer_order_id == "ws-1" and trade.quantity == Decimal("0.001")
        assert kinds["NEW_ACCOUNT_TRADE"].fee_known and trade.fee_currency == "BTC"  # taker BUY: currency received
        status = kinds["ORDER_STATUS_UPDATE"].order
        assert status is not None and status.status is OrderStatus.FILLED and status.customer_order_id == "ws-1"
        assert kinds["BALANCE_UPDATE"].balance is not None
        _until(lambda: stream.pings_sent >= 2)
        assert stream.connected  # PINGs answered, connection kept
    finally:
        stream.stop()


def test_drop_mid_fill_misses_nothing_and_doubles_nothing(double: ExchangeDouble, client: ValrClient) -> None:
    """The account stream dies between two partial fills; the fill made while it was down arrives through the
    REST reconciliation that on_reconnect triggers; every fill is booked exactly once."""
    booked: list[Fill] = []
    lock = threading.Lock()
    dedupe = FillDeduper()
    reconciled: list[int] = []

    def book(fill: Fill) -> None:
        with lock:
            if dedupe.add(fill):
                booked.append(fill)

    def on_event(event: AccountEvent) -> None:
        if event.fill is not None:
            book(event.fill)

    def on_reconnect(info: Connected) -> None:
        for fill in client.fills():  # REST closes the gap
            book(fill)
        reconciled.append(info.count)

    stream = AccountStream(double.url, DEFAULT_KEY, DEFAULT_SECRET, on_event=on_event, on_reconnect=on_reconnect,
                           backoff_base=0.01, backoff_max=0.05).start()
    try:
        _until(lambda: reconciled == [1])
        double.wait_ws_connections(1, "/ws/account")
        double.set_fill_ratio("0.5")
        client.place_order(OrderRequest("mid-1", BTC, Side.BUY, OrderType.LIMIT, Decimal("0.004"), Decimal("1100000")))
        double.set_price(BTC, "1099000")  # first half fills while the stream is up
        _until(lambda: len(booked) == 1)
        double.ws_refuse = True
        double.ws_drop_all()
        _until(lambda: not stream.connected)
        double.step(BTC)  # second half fills while the stream is down: no message can reach us
        assert client.get_order(BTC, "mid-1").status is OrderStatus.FILLED  # type: ignore[union-attr]
        double.ws_refuse = False
        _until(lambda: reconciled == [1, 2])
        double.wait_ws_connections(1, "/ws/account")
        client.place_order(OrderRequest("after-1", BTC, Side.SELL, OrderType.MARKET, Decimal("0.001")))
        _until(lambda: len(booked) == 3)
        on_reconnect(Connected(3, 0.0))  # a redundant REST sweep (the safety net) must not double anything
    finally:
        stream.stop()
    exchange_ids = sorted(t.trade_id for t in double.book.trades)
    assert sorted(f.trade_id for f in booked) == exchange_ids and len(exchange_ids) == 3


def test_trade_stream_market_summaries(double: ExchangeDouble) -> None:
    tickers: queue.Queue[Ticker] = queue.Queue()
    stream = TradeStream(double.url, [BTC], on_ticker=tickers.put).start()
    try:
        first = tickers.get(timeout=10)  # the current summary right after SUBSCRIBE
        assert first.pair == BTC and first.last == Decimal("1200000")
        double.set_price(BTC, "1234000")
        assert tickers.get(timeout=10).last == Decimal("1234000")
    finally:
        stream.stop()


def test_a_silent_link_that_never_answers_ping_is_closed_and_reconnected() -> None:
    """A half-open connection (the socket looks open, nothing comes back, not even PONG) must not count as a healthy
    stream: REST would then poll only every safety interval while no event can arrive. The stream closes it after
    ``pong_timeout`` of silence following a PING and reconnects; on 059c31f it stayed "connected" for ever."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import ServerConnection, serve

    accepted: queue.Queue[int] = queue.Queue()
    release = threading.Event()

    def silent(connection: ServerConnection) -> None:
        accepted.put(1)
        with contextlib.suppress(ConnectionClosed):
            for _ in connection:  # read PINGs and SUBSCRIBEs, answer nothing
                if release.is_set():
                    break

    with serve(silent, "127.0.0.1", 0) as server:
        port = server.socket.getsockname()[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()

        stream = AccountStream(f"http://127.0.0.1:{port}", "k", "s", on_event=lambda e: None,
                               ping_interval=0.05, pong_timeout=0.3, backoff_base=0.01, backoff_max=0.05)
        stream.start()
        try:
            accepted.get(timeout=10)
            _until(lambda: stream.pings_sent >= 1)
            _until(lambda: not stream.connected)  # declared dead
            accepted.get(timeout=10)  # and back on a fresh connection
            _until(lambda: stream.connections >= 2)
            assert stream.last_error is not None and "no answer to PING" in stream.last_error
        finally:
            release.set()
            stream.stop()
            server.shutdown()
