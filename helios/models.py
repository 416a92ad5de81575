"""Domain values shared by the engine, the journal and every exchange client.

Money and quantities are always ``Decimal``; timestamps are timezone-aware UTC ``datetime``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Mode(enum.StrEnum):
    PAPER = "PAPER"
    LIVE = "LIVE"


class TradingState(enum.StrEnum):
    ACTIVE = "ACTIVE"  # normal
    REDUCING = "REDUCING"  # no new entries; stop-loss / take-profit exits still run
    HALTED = "HALTED"  # emergency stop: every open order cancelled, nothing new is sent


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(enum.StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(enum.StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderPurpose(enum.StrEnum):
    ENTRY = "ENTRY"  # opens or adds to a position: every limit applies
    EXIT = "EXIT"  # reduces a position (stop-loss, take-profit, manual close)


class OrderStatus(enum.StrEnum):
    """Helios' view of one order's life. Terminal states never change again."""

    REJECTED = "REJECTED"  # refused by a gate or by local pair rules: never sent
    SUBMITTING = "SUBMITTING"  # being sent now
    UNKNOWN = "UNKNOWN"  # sent, answer lost: look it up by customerOrderId before anything else
    OPEN = "OPEN"  # resting on the exchange (VALR Placed / Active)
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"  # the exchange refused it or it ended Failed

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_live_on_exchange(self) -> bool:
        """Could this order still be working (or about to work) on the exchange?"""
        return self in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN, OrderStatus.OPEN,
                        OrderStatus.PARTIALLY_FILLED)


TERMINAL_STATUSES = frozenset(
    {OrderStatus.REJECTED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.FAILED}
)


@dataclass(frozen=True)
class Ticker:
    pair: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    timestamp: datetime  # when the price was observed (exchange time where known)

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True)
class PairInfo:
    symbol: str
    base_currency: str
    quote_currency: str
    min_base_amount: Decimal
    max_base_amount: Decimal
    min_quote_amount: Decimal
    max_quote_amount: Decimal
    tick_size: Decimal
    base_decimal_places: int
    active: bool = True


@dataclass(frozen=True)
class OrderRequest:
    """What Helios asks an exchange to do. ``quantity`` is in the base currency."""

    customer_order_id: str
    pair: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    price: Decimal | None = None  # required for LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False


@dataclass(frozen=True)
class ExchangeOrder:
    """An exchange's answer about one order (placement result, status look-up, open-orders row)."""

    customer_order_id: str | None
    order_id: str | None
    pair: str
    side: Side
    order_type: OrderType
    status: OrderStatus
    price: Decimal | None
    original_quantity: Decimal
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    total_fee: Decimal = Decimal(0)
    fee_currency: str | None = None
    failed_reason: str | None = None
    updated_at: datetime | None = None

    @property
    def remaining_quantity(self) -> Decimal:
        return self.original_quantity - self.filled_quantity


@dataclass(frozen=True)
class Fill:
    trade_id: str
    order_id: str | None
    customer_order_id: str | None
    pair: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    traded_at: datetime


@dataclass(frozen=True)
class Balance:
    currency: str
    available: Decimal
    reserved: Decimal
    total: Decimal


@dataclass(frozen=True)
class FeeRates:
    maker_pct: Decimal
    taker_pct: Decimal


@dataclass(frozen=True)
class KeyInfo:
    label: str
    permissions: tuple[str, ...]
    is_sub_account: bool
    allowed_ip_cidr: str | None = None


@dataclass(frozen=True)
class Signal:
    """A strategy's wish to open a long position. Exits are the engine's job (stop-loss / take-profit)."""

    pair: str
    side: Side
    quantity: Decimal
    limit_price: Decimal | None  # None = market order
    stop_loss: Decimal
    take_profit: Decimal
    reason: str = ""


@dataclass
class Position:
    """An open long position in one pair."""

    pair: str
    quantity: Decimal
    avg_entry_price: Decimal  # quote per base, fees excluded
    entry_fees_zar: Decimal
    stop_loss: Decimal
    take_profit: Decimal
    opened_at: datetime
    exit_pending: bool = False

    def unrealised(self, bid: Decimal) -> Decimal:
        """Mark-to-market at the bid, net of the entry fees already paid."""
        return (bid - self.avg_entry_price) * self.quantity - self.entry_fees_zar

    def risk_zar(self) -> Decimal:
        """What is lost (before exit fees) if the stop-loss fills at its level."""
        return max(Decimal(0), self.avg_entry_price - self.stop_loss) * self.quantity
