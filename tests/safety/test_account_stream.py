"""The account WebSocket in the LIVE engine (issue 11): ORDER_STATUS_UPDATE / NEW_ACCOUNT_TRADE feed the order
tracker; a drop mid-fill is closed by the REST reconciliation after the reconnect: nothing missed, nothing doubled."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helios.exchange.valr_ws import AccountStream, Connected
from helios.models import OrderStatus
from helios_double import DEFAULT_KEY, DEFAULT_SECRET

from .conftest import D, SafetyRig, wait_for_price

RigFactory = Callable[..., SafetyRig]


class Streamed:
    def __init__(self, rig: SafetyRig) -> None:
        self.rig = rig
        self.connections: list[threading.Event] = [threading.Event() for _ in range(5)]
        self.count = 0
        self.trade_seen = threading.Event()

        def on_event(event: Any) -> None:
            rig.engine.on_account_event(event)
            if event.kind == "NEW_ACCOUNT_TRADE":
                self.trade_seen.set()

        def on_reconnect(connected: Connected) -> None:
            rig.engine.on_account_reconnect(connected)
            self.count = connected.count
            self.connections[min(connected.count, 4)].set()

        self.stream = AccountStream(rig.double.url, DEFAULT_KEY, DEFAULT_SECRET, on_event=on_event,
                                    on_reconnect=on_reconnect).start()

    def wait_connection(self, n: int) -> None:
        assert self.connections[n].wait(10), f"account stream connection #{n} never came"


@pytest.fixture
def streamed(make_safety_rig: RigFactory) -> Iterator[Streamed]:
    s = Streamed(make_safety_rig())
    try:
        yield s
    finally:
        s.stream.stop()


def _trade_ids(rig: SafetyRig) -> list[str]:
    return [f["trade_id"] for f in rig.journal.fills_since(None)]


def test_a_fill_while_the_account_stream_is_down_is_reconciled_once_after_the_reconnect(streamed: Streamed) -> None:
    rig = streamed.rig
    streamed.wait_connection(1)
    rig.engine.step()
    entry = rig.buy(990_000, qty="0.0002", stop=950_000)
    assert entry.status is OrderStatus.OPEN
    rig.double.ws_drop_all()  # the stream drops ...
    rig.double.set_price("BTCZAR", "985000")  # ... and the entry fills meanwhile
    wait_for_price(rig, "BTCZAR", 985_000)
    streamed.wait_connection(2)
    rig.engine.step()
    rig.engine.step()
    assert rig.journal.get_order(entry.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    ids = _trade_ids(rig)
    assert len(ids) == len(set(ids)) == 1, ids
    assert rig.engine.positions["BTCZAR"].quantity == D("0.0002")
    assert rig.journal.events("account_stream_connected", limit=10), "a REST reconciliation ran after the reconnect"


def test_a_fill_the_stream_delivers_is_applied_once_although_rest_reports_it_too(streamed: Streamed) -> None:
    rig = streamed.rig
    streamed.wait_connection(1)
    entry = rig.buy(990_000, qty="0.0002", stop=950_000)
    rig.double.set_price("BTCZAR", "985000")
    wait_for_price(rig, "BTCZAR", 985_000)
    assert streamed.trade_seen.wait(10), "the stream delivered the trade"
    rig.engine.step()
    assert rig.engine.stream_fills_applied == 1, "applied from the stream (before REST's trade history)"
    rig.engine.step()
    assert rig.journal.get_order(entry.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    ids = _trade_ids(rig)
    assert len(ids) == len(set(ids)) == 1, ids
    assert rig.engine.positions["BTCZAR"].quantity == D("0.0002")
