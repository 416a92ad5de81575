"""Stateful property test: fills arrive over the account WebSocket while it drops and comes back at random
moments; with the REST reconciliation that every reconnect triggers, each exchange fill is booked exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from helios.exchange.valr import ValrClient
from helios.exchange.valr_ws import AccountEvent, AccountStream, Connected, FillDeduper
from helios.models import Fill, OrderRequest, OrderType, Side
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble

BTC = "BTCZAR"


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.002)


class StreamWithGaps(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.double = ExchangeDouble().start()
        self.client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=self.double.url)
        self.lock = threading.Lock()
        self.dedupe = FillDeduper()
        self.booked: list[Fill] = []
        self.reconciled = 0
        self.count = 0
        self.stream = AccountStream(self.double.url, DEFAULT_KEY, DEFAULT_SECRET, on_event=self._on_event,
                                    on_reconnect=self._on_reconnect, backoff_base=0.005, backoff_max=0.02).start()
        _until(lambda: self.reconciled == 1)
        self.double.wait_ws_connections(1, "/ws/account")
        self.up = True

    def _book(self, fill: Fill) -> None:
        with self.lock:
            if self.dedupe.add(fill):
                self.booked.append(fill)

    def _on_event(self, event: AccountEvent) -> None:
        if event.fill is not None:
            self._book(event.fill)

    def _on_reconnect(self, info: Connected) -> None:
        for fill in self.client.fills():
            self._book(fill)
        self.reconciled = info.count

    @rule(side=st.sampled_from([Side.BUY, Side.SELL]))
    def market_fill(self, side: Side) -> None:
        self.count += 1
        self.client.place_order(OrderRequest(f"p-{self.count}", BTC, side, OrderType.MARKET, Decimal("0.001")))

    @precondition(lambda self: self.up)
    @rule()
    def drop(self) -> None:
        self.double.ws_refuse = True
        self.double.ws_drop_all()
        _until(lambda: not self.stream.connected)
        self.up = False

    @precondition(lambda self: not self.up)
    @rule()
    def come_back(self) -> None:
        expected = self.stream.connections + 1
        self.double.ws_refuse = False
        _until(lambda: self.reconciled == expected)
        self.double.wait_ws_connections(1, "/ws/account")
        self.up = True

    @invariant()
    def nothing_doubled(self) -> None:
        with self.lock:
            ids = [f.trade_id for f in self.booked]
        assert len(ids) == len(set(ids))

    def teardown(self) -> None:
        try:
            if not self.up:
                self.come_back()
            # every fill the exchange made is booked once: streamed ones at once, gap ones by the reconciliation
            _until(lambda: len(self.booked) == len(self.double.book.trades))
            assert sorted(f.trade_id for f in self.booked) == sorted(t.trade_id for t in self.double.book.trades)
        finally:
            self.stream.stop()
            self.client.close()
            self.double.stop()


StreamWithGaps.TestCase.settings = settings(
    max_examples=12, stateful_step_count=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestStreamWithGaps = StreamWithGaps.TestCase
