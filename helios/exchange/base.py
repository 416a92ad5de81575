"""The one interface every exchange client implements (paper, VALR).

The engine and the mode orchestrator only ever see this protocol, so a new client plugs in without touching them.
All methods are synchronous and may raise the errors in ``helios.exchange.errors``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Protocol, runtime_checkable

from helios.models import (
    Balance,
    ExchangeOrder,
    FeeRates,
    Fill,
    KeyInfo,
    Mode,
    OrderRequest,
    PairInfo,
    Ticker,
)

# --- call deadline (the kill switch's time bound) ----------------------------------------------------------------
#: ``time.monotonic()`` by which every exchange call made in this context must have returned (None: no deadline).
#: A network client caps each request's timeouts to what is left and makes no retry once it has passed.
CALL_DEADLINE: ContextVar[float | None] = ContextVar("helios_call_deadline", default=None)


@contextmanager
def call_deadline(at: float) -> Iterator[None]:
    token = CALL_DEADLINE.set(at)
    try:
        yield
    finally:
        CALL_DEADLINE.reset(token)


def deadline_remaining() -> float | None:
    """Seconds left before this context's call deadline, or None when there is none."""
    at = CALL_DEADLINE.get()
    return None if at is None else at - time.monotonic()
# --- end call deadline ---------------------------------------------------------------------------------------------


@runtime_checkable
class ExchangeClient(Protocol):
    #: PAPER for simulated clients, LIVE for anything that can move real money.
    mode: Mode

    def place_order(self, request: OrderRequest) -> ExchangeOrder:
        """Place one order. Returns the order as the exchange accepted it (status OPEN, FILLED, ...).

        Raises OrderRejected when it was definitely not placed (or reached the matching engine and failed there),
        OutcomeUnknown when it may have been (no answer, 5xx, or a 429: never re-send it - look it up by
        customerOrderId with ``get_order``), ExchangeUnavailable when it was provably never sent.
        """
        ...

    def get_order(self, pair: str, customer_order_id: str) -> ExchangeOrder | None:
        """Status of one order by its customerOrderId (open or historical); None when the exchange never saw it."""
        ...

    def open_orders(self) -> list[ExchangeOrder]:
        """Every order currently open on the account (all pairs)."""
        ...

    def cancel_order(self, pair: str, customer_order_id: str) -> None:
        """Ask the exchange to cancel one order. Accepted is not proof: re-query."""
        ...

    def cancel_all_orders(self) -> list[str]:
        """Ask the exchange to cancel every open order; returns the order ids it accepted to cancel."""
        ...

    def fills(self, since: datetime | None = None) -> list[Fill]:
        """Account fills (trade history), oldest first, optionally only those at or after ``since``."""
        ...

    def balances(self) -> list[Balance]:
        ...

    def fee_rates(self, pair: str) -> FeeRates:
        ...

    def pair_info(self, pair: str) -> PairInfo:
        ...

    def key_info(self) -> KeyInfo:
        """The API key's permissions (paper: a simulated View+Trade key)."""
        ...

    def is_connected(self) -> bool:
        """Cheap connectivity verdict for the 'exchange connected' gate (cached, refreshed by ``ping``)."""
        ...

    def ping(self) -> bool:
        """Actively check connectivity and refresh the cached verdict."""
        ...

    def on_market_price(self, ticker: Ticker) -> None:
        """Paper clients match resting orders against a new price; real exchanges ignore it."""
        ...

    def close(self) -> None:
        ...
