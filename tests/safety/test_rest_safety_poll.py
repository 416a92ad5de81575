"""REST polling as the slower safety net behind VALR's account WebSocket (issue 11): while the stream is connected and
reconciled, the full REST order/trade poll runs every HELIOS_REST_SAFETY_POLL_SECONDS; orders whose fate is unknown
are still looked up every tick; while the stream is down every tick polls in full. The engine's clock is a manual
clock (one tick = one second, the default HELIOS_TICK_SECONDS); counts are of the requests the double received."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from helios.exchange.errors import OutcomeUnknown
from helios.exchange.valr_ws import AccountEvent, AccountStream, Connected
from helios.models import ExchangeOrder, OrderRequest, OrderStatus
from helios_double import DEFAULT_KEY, DEFAULT_SECRET
from tests.service.conftest import FakeClock

from .conftest import D, SafetyRig

RigFactory = Callable[..., SafetyRig]
TRADE_HISTORY = "/v1/account/tradehistory"
OPEN_ORDERS = "/v1/orders/open"
INTERVAL_S = 15  # the default HELIOS_REST_SAFETY_POLL_SECONDS


class StreamedRig:
    """A LIVE engine with the account stream attached as the service attaches it; ``drop_events`` makes the stream's
    messages vanish before the engine sees them (the connection stays up)."""

    def __init__(self, rig: SafetyRig) -> None:
        self.rig = rig
        self.clock = FakeClock(rig.engine.clock())
        rig.engine.clock = self.clock
        self.drop_events = False
        self.dropped_trade = threading.Event()
        self.connected = threading.Event()
        self.reconnected = threading.Event()  # a second connection came

        def on_event(event: AccountEvent) -> None:
            if self.drop_events:
                if event.kind == "NEW_ACCOUNT_TRADE":
                    self.dropped_trade.set()
                return
            rig.engine.on_account_event(event)

        def on_reconnect(connected: Connected) -> None:
            rig.engine.on_account_reconnect(connected)
            (self.connected if connected.first else self.reconnected).set()

        self.stream = AccountStream(rig.double.url, DEFAULT_KEY, DEFAULT_SECRET, on_event=on_event,
                                    on_reconnect=on_reconnect).start()
        rig.engine.account_stream = self.stream

    def up_and_reconciled(self) -> None:
        """Wait for the connection, then one tick: it drains the reconnect and runs the REST reconciliation."""
        assert self.connected.wait(10), "the account stream never connected"
        self.rig.engine.step()
        assert self.rig.journal.events("account_stream_connected", limit=5)

    def ticks(self, n: int) -> None:
        for _ in range(n):
            self.clock.advance(1)
            self.rig.engine.step()


@pytest.fixture
def streamed(make_safety_rig: RigFactory) -> Iterator[StreamedRig]:
    s = StreamedRig(make_safety_rig(HELIOS_ENTRY_ORDER_TTL_SECONDS="3600"))
    try:
        yield s
    finally:
        s.stream.stop()


def _private(rig: SafetyRig, path_prefix: str = "") -> int:
    """Signed (private) REST requests the double received."""
    return sum(1 for r in rig.double.requests(path_prefix) if r.api_key is not None)


def test_with_the_account_stream_up_rest_polls_every_safety_interval_and_every_tick_while_it_is_down(
    streamed: StreamedRig,
) -> None:
    rig = streamed.rig
    streamed.up_and_reconciled()
    entry = rig.buy(990_000)  # a resting entry: the full poll reads open orders too
    assert entry.status is OrderStatus.OPEN
    rig.double.clear_requests()
    streamed.ticks(2 * INTERVAL_S)
    up = {p: _private(rig, p) for p in (TRADE_HISTORY, OPEN_ORDERS, "")}
    assert up[TRADE_HISTORY] == 2 and up[OPEN_ORDERS] == 2, f"stream up: one full poll every {INTERVAL_S} s: {up}"

    streamed.stream.stop()  # the stream is down (its thread has ended: not connected)
    assert not streamed.stream.connected
    rig.double.clear_requests()
    streamed.ticks(2 * INTERVAL_S)
    down = {p: _private(rig, p) for p in (TRADE_HISTORY, OPEN_ORDERS, "")}
    assert down[TRADE_HISTORY] == down[OPEN_ORDERS] == 2 * INTERVAL_S, f"stream down: every tick polls: {down}"
    assert up[""] * 3 < down[""], (up, down)
    assert rig.journal.get_order(entry.customer_order_id).status is OrderStatus.OPEN  # type: ignore[union-attr]


def test_a_lost_order_is_looked_up_every_tick_while_the_stream_is_up(
    streamed: StreamedRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = streamed.rig
    streamed.up_and_reconciled()

    def answer_lost(request: OrderRequest) -> ExchangeOrder:
        raise OutcomeUnknown("read timeout (test)")  # never reached the double: not found by its id

    monkeypatch.setattr(rig.engine.client, "place_order", answer_lost)
    lost = rig.buy(990_000)
    monkeypatch.undo()
    assert lost.status is OrderStatus.UNKNOWN
    rig.double.clear_requests()
    streamed.ticks(5)  # well inside the safety interval
    lookups = _private(rig, f"/v1/orders/BTCZAR/customerorderid/{lost.customer_order_id}")
    assert lookups == 5, "one look-up by customerOrderId per tick"
    assert _private(rig, TRADE_HISTORY) == 0, "no full poll inside the interval"
    assert rig.engine.orders.get(lost.customer_order_id).status is OrderStatus.UNKNOWN  # type: ignore[union-attr]


def test_a_fill_the_stream_never_delivered_is_seen_by_the_rest_safety_poll_within_its_interval(
    streamed: StreamedRig,
) -> None:
    rig = streamed.rig
    streamed.up_and_reconciled()
    polled_at: datetime = streamed.clock()
    entry = rig.buy(990_000, qty="0.0002", stop=950_000)
    assert entry.status is OrderStatus.OPEN
    streamed.drop_events = True  # the connection stays up; its messages about this fill are lost
    rig.double.set_price("BTCZAR", "985000")  # the entry fills on the exchange
    assert streamed.dropped_trade.wait(10), "the double sent the trade (and the test dropped it)"
    streamed.ticks(INTERVAL_S - 1)
    assert "BTCZAR" not in rig.engine.positions, "inside the interval only REST could show it, and it did not poll"
    streamed.ticks(1)
    assert (streamed.clock() - polled_at).total_seconds() == INTERVAL_S
    assert rig.engine.positions["BTCZAR"].quantity == D("0.0002"), "the safety poll found the fill"
    assert rig.journal.get_order(entry.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert len(rig.journal.fills_since(None)) == 1


def test_right_after_a_reconnect_a_full_rest_reconciliation_runs_inside_the_safety_interval(
    streamed: StreamedRig,
) -> None:
    rig = streamed.rig
    streamed.up_and_reconciled()
    entry = rig.buy(990_000, qty="0.0002", stop=950_000)
    streamed.ticks(1)
    rig.double.ws_drop_all()  # the stream dies ...
    rig.double.set_price("BTCZAR", "985000")  # ... the entry fills while nobody listens
    assert streamed.reconnected.wait(10), "the account stream reconnected"
    rig.double.clear_requests()
    streamed.ticks(1)  # 2 s after the last full poll: only the reconnect makes this one due
    assert _private(rig, TRADE_HISTORY) == 1, "one full REST reconciliation after the reconnect"
    assert rig.engine.positions["BTCZAR"].quantity == D("0.0002")
    assert rig.journal.get_order(entry.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert len(rig.journal.fills_since(None)) == 1
