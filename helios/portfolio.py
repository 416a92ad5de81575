"""Fills -> positions and P&L. Pure: no I/O, no clock; the engine journals what these functions return.

* A BUY opens or adds to the long position at its price; a fee paid in the bought coin (VALR takes a BUY's fee
  from the coins) reduces the quantity held; every fee is valued in ZAR at the fill price.
* Adding to a position keeps the tighter (higher) of the two stop-losses, so the risk the gates accepted for each
  part can never grow afterwards.
* A SELL realises (price - average entry) x sold - its fee - the sold share of the entry fees.
* Today's P&L (Johannesburg day) = realised today + unrealised now - the unrealised P&L the positions held at the
  start of the day had at their marks then (``day_baseline``). So yesterday's unrealised gain is not counted as
  today's (issue 8, finding 8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from helios.models import Fill, Position, Side

QUOTE = "ZAR"
#: A position whose quantity falls to or below this is closed.
CLOSED_AT = Decimal("0.00000001")


@dataclass(frozen=True)
class ClosedTrade:
    pair: str
    quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal
    opened_at: datetime
    closed_at: datetime


@dataclass(frozen=True)
class FillEffect:
    position: Position | None  # the pair's position after the fill (None: flat)
    quantity: Decimal  # base quantity the fill added (BUY, net of a fee in the coin) or removed (SELL)
    fee_zar: Decimal
    realised_zar: Decimal
    closed: ClosedTrade | None


def fee_zar(fill: Fill) -> Decimal:
    return fill.fee if fill.fee_currency == QUOTE else fill.fee * fill.price


def apply_fill(position: Position | None, fill: Fill, *, stop_loss: Decimal | None,
               take_profit: Decimal | None, exit_quantity: Decimal) -> FillEffect:
    """The pair's position after ``fill``. ``position`` is not changed (a copy is returned)."""
    fee = fee_zar(fill)
    base = fill.pair.removesuffix(QUOTE)
    quantity = fill.quantity
    if fill.side is Side.BUY and fill.fee_currency == base:
        quantity -= fill.fee
    if fill.side is Side.BUY:
        if position is None:
            opened = Position(pair=fill.pair, quantity=quantity, avg_entry_price=fill.price, entry_fees_zar=fee,
                              stop_loss=stop_loss or Decimal(0), take_profit=take_profit or Decimal(0),
                              opened_at=fill.traded_at)
            return FillEffect(opened, quantity, fee, Decimal(0), None)
        total = position.quantity + quantity
        added = replace(
            position, quantity=total, entry_fees_zar=position.entry_fees_zar + fee,
            avg_entry_price=(position.avg_entry_price * position.quantity + fill.price * quantity) / total,
            # the tighter stop: the risk the gates accepted for each part is never exceeded
            stop_loss=position.stop_loss if stop_loss is None else max(stop_loss, position.stop_loss),
            take_profit=position.take_profit if take_profit is None else take_profit,
        )
        return FillEffect(added, quantity, fee, Decimal(0), None)
    if position is None:
        return FillEffect(None, Decimal(0), fee, -fee, None)
    sold = min(quantity, position.quantity)
    entry_fee_share = position.entry_fees_zar * sold / position.quantity
    realised = (fill.price - position.avg_entry_price) * sold - fee - entry_fee_share
    left = replace(position, quantity=position.quantity - sold,
                   entry_fees_zar=position.entry_fees_zar - entry_fee_share)
    if left.quantity > CLOSED_AT:
        return FillEffect(left, sold, fee, realised, None)
    closed = ClosedTrade(pair=fill.pair, quantity=exit_quantity, entry_price=position.avg_entry_price,
                         exit_price=fill.price, opened_at=position.opened_at, closed_at=fill.traded_at)
    return FillEffect(None, sold, fee, realised, closed)


def unrealised(positions: Mapping[str, Position], marks: Mapping[str, Decimal]) -> Decimal:
    """Mark-to-market of every position with a mark, net of the entry fees already paid."""
    return sum((p.unrealised(marks[pair]) for pair, p in positions.items() if pair in marks), Decimal(0))


def day_baseline(positions: Mapping[str, Position], marks: Mapping[str, Decimal]) -> Decimal:
    """The positions' unrealised P&L at the start of the day, each at its mark then (its entry price if none)."""
    return sum((p.unrealised(marks.get(pair, p.avg_entry_price)) for pair, p in positions.items()), Decimal(0))


def todays_pnl(realised_today: Decimal, positions: Mapping[str, Position], marks: Mapping[str, Decimal],
               baseline: Decimal) -> Decimal:
    return realised_today + unrealised(positions, marks) - baseline


def round_down(quantity: Decimal, step: Decimal) -> Decimal:
    return (quantity / step).to_integral_value(rounding=ROUND_DOWN) * step


def round_up(quantity: Decimal, step: Decimal) -> Decimal:
    return (quantity / step).to_integral_value(rounding=ROUND_UP) * step


def sellable_after_fee(quantity: Decimal, fee_fraction: Decimal, step: Decimal) -> Decimal:
    """What an entry of ``quantity`` leaves to sell after a BUY fee taken in the coin, rounded down to the step."""
    return round_down(quantity * (1 - fee_fraction), step)
