"""The order tracker: the one owner of every order's state (the journal persists what it decides).

In the spirit of hummingbot's client order tracker: every order Helios sent (or may have sent) is tracked from its
durable intent until the exchange has positively confirmed its fate *and* every fill it showed has been applied to
the portfolio. Allowed moves:

    SUBMITTING -> OPEN | PARTIALLY_FILLED | FILLED | CANCELLED | FAILED | UNKNOWN
    UNKNOWN    -> OPEN | PARTIALLY_FILLED | FILLED | CANCELLED | FAILED      (only on the exchange's own answer)
    OPEN       -> PARTIALLY_FILLED | FILLED | CANCELLED | FAILED | UNKNOWN
    PARTIALLY_FILLED -> FILLED | CANCELLED | FAILED | UNKNOWN
    REJECTED, FILLED, CANCELLED, FAILED: terminal

UNKNOWN is the *lost* state: the answer never came, or the exchange stopped knowing an order. A lost order stays
fillable: it counts as exposure (its whole remaining quantity) and blocks new entries until the exchange answers
with its status. Time alone never turns it FAILED; only the operator can, with the service stopped, after the
exchange (asked by customerOrderId at that moment) does not know it (``helios orders resolve-lost``). FAILED
straight from SUBMITTING is otherwise only for a placement the client proved was never accepted (refused, or never
sent).

Exposure: an order's filled quantity counts the moment any answer shows it (placement answer, status look-up),
as ``filled_seen`` (cumulative, never decreasing). Fills from the trade history are applied to the portfolio once
each (by trade id) and add to ``applied``; until ``applied`` catches up, the difference stays counted here, so a
fill is counted exactly once whichever answer showed it first. A terminal order leaves the tracker only when every
fill it showed has been applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from helios.journal import Journal, OrderRecord
from helios.models import ExchangeOrder, OrderPurpose, OrderStatus

log = logging.getLogger("helios.orders")

S = OrderStatus
_LIVE = frozenset(s for s in OrderStatus if s.is_live_on_exchange)
_AFTER_SENT = frozenset({S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.FAILED})

#: The allowed transitions (a status to itself is always allowed: a repeated answer).
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.SUBMITTING: _AFTER_SENT | {S.UNKNOWN},
    S.UNKNOWN: _AFTER_SENT,
    S.OPEN: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.FAILED, S.UNKNOWN}),
    S.PARTIALLY_FILLED: frozenset({S.FILLED, S.CANCELLED, S.FAILED, S.UNKNOWN}),
    S.REJECTED: frozenset(),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.FAILED: frozenset(),
}


def allowed(current: OrderStatus, new: OrderStatus) -> bool:
    return new is current or new in TRANSITIONS[current]


@dataclass(frozen=True)
class Exposure:
    """What one tracked order adds to the book before the trade history has been applied: base quantity."""

    pair: str
    purpose: OrderPurpose
    pending: Decimal  # could still fill: the remaining quantity of a live or lost order
    filled_unapplied: Decimal  # filled according to an answer, not yet applied from the trade history
    price: Decimal  # ZAR per unit to value it (average fill price, limit price or reference price)
    stop_loss: Decimal | None

    @property
    def quantity(self) -> Decimal:
        return self.pending + self.filled_unapplied


@dataclass
class Tracked:
    record: OrderRecord
    filled_seen: Decimal
    applied: Decimal

    @property
    def filled_unapplied(self) -> Decimal:
        return max(Decimal(0), self.filled_seen - self.applied)

    @property
    def done(self) -> bool:
        return self.record.status.is_terminal and self.filled_unapplied == 0


class OrderTracker:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._orders: dict[str, Tracked] = {}
        self._sending: set[str] = set()  # SUBMITTING right now in this process (not unresolved)
        self.reload()

    # --- views ----------------------------------------------------------------------------------------------
    @property
    def active(self) -> dict[str, OrderRecord]:
        """Orders that may still work on the exchange or whose outcome is unknown (a copy)."""
        return {cid: t.record for cid, t in self._orders.items() if t.record.status.is_live_on_exchange}

    def get(self, customer_order_id: str) -> OrderRecord | None:
        tracked = self._orders.get(customer_order_id)
        return None if tracked is None else tracked.record

    def is_sending(self, customer_order_id: str) -> bool:
        return customer_order_id in self._sending

    def lost(self) -> list[OrderRecord]:
        return [t.record for t in self._orders.values() if t.record.status is OrderStatus.UNKNOWN]

    def unresolved(self) -> int:
        """Orders whose fate the exchange has not confirmed (SUBMITTING after a crash, or lost)."""
        return sum(1 for t in self._orders.values() if t.record.status in (S.UNKNOWN, S.SUBMITTING)
                   and t.record.customer_order_id not in self._sending)

    def exposures(self) -> list[Exposure]:
        out = []
        for t in self._orders.values():
            r = t.record
            pending = max(Decimal(0), r.quantity - t.filled_seen) if r.status.is_live_on_exchange else Decimal(0)
            price = r.average_price or (r.price if r.price is not None else r.reference_price)
            out.append(Exposure(pair=r.pair, purpose=r.purpose, pending=pending, filled_unapplied=t.filled_unapplied,
                                price=price, stop_loss=r.stop_loss))
        return out

    def entry_exposure(self) -> tuple[dict[str, Decimal], Decimal]:
        """The gates' view of the entries (one pass, on the router's hot path): ZAR value per pair that has any
        pending or unapplied filled quantity, and the total risk to their stops (the whole value without a stop)."""
        value: dict[str, Decimal] = {}
        risk = Decimal(0)
        zero = Decimal(0)
        for t in self._orders.values():
            r = t.record
            if r.purpose is not OrderPurpose.ENTRY:
                continue
            quantity = t.filled_seen - t.applied if t.filled_seen > t.applied else zero
            if r.status in _LIVE and r.quantity > t.filled_seen:
                quantity += r.quantity - t.filled_seen
            if quantity <= 0:
                continue
            price = r.average_price or (r.price if r.price is not None else r.reference_price)
            value[r.pair] = value.get(r.pair, zero) + quantity * price
            stop = r.stop_loss if r.stop_loss is not None else zero
            if price > stop:
                risk += (price - stop) * quantity
        return value, risk

    def exit_in_flight(self, pair: str) -> bool:
        """An exit for ``pair`` that may still fill, or whose fills are not applied yet."""
        return any(t.record.pair == pair and t.record.purpose is OrderPurpose.EXIT
                   and (t.record.status.is_live_on_exchange or t.filled_unapplied > 0)
                   for t in self._orders.values())

    # --- changes (each persisted by the journal) ------------------------------------------------------------
    def reload(self) -> None:
        """(Re)build from the journal: live orders plus ended ones whose fills are not all applied yet."""
        self._sending = set()
        records = self.journal.active_orders() + self.journal.orders_with_unapplied_fills()
        applied = self.journal.fill_quantities([r.customer_order_id for r in records])
        self._orders = {r.customer_order_id: Tracked(r, r.filled_quantity, applied.get(r.customer_order_id,
                                                                                          Decimal(0)))
                        for r in records}
        self._drop_done()

    def sending(self, record: OrderRecord) -> None:
        """A journaled SUBMITTING intent that is being sent now."""
        self._orders[record.customer_order_id] = Tracked(record, Decimal(0), Decimal(0))
        self._sending.add(record.customer_order_id)

    def sent(self, customer_order_id: str) -> None:
        self._sending.discard(customer_order_id)

    def on_answer(self, customer_order_id: str, eo: ExchangeOrder, now: datetime) -> OrderRecord:
        """An exchange answer about one of our orders (placement, status look-up, open-orders row)."""
        tracked = self._orders.get(customer_order_id)
        if tracked is None:
            record = self.journal.get_order(customer_order_id)
            if record is None:
                raise KeyError(customer_order_id)
            tracked = Tracked(record, record.filled_quantity, Decimal(0))
            self._orders[customer_order_id] = tracked
        record = tracked.record
        filled = max(tracked.filled_seen, eo.filled_quantity)
        status = eo.status
        if not allowed(record.status, status):
            log.warning("order %s: ignoring %s -> %s (not an allowed transition)", customer_order_id,
                        record.status.value, status.value)
            status = record.status
        if status is S.UNKNOWN:  # never from an answer; keep what we know
            status = record.status
        fee_total = eo.total_fee if eo.filled_quantity >= tracked.filled_seen else record.fee_total
        tracked.filled_seen = filled
        tracked.record = replace(
            record, status=status, exchange_order_id=eo.order_id or record.exchange_order_id, filled_quantity=filled,
            average_price=eo.average_price or record.average_price, fee_total=fee_total, updated_at=now,
        )
        self.journal.update_order(customer_order_id, status=status, now=now, exchange_order_id=eo.order_id,
                                  filled_quantity=filled, average_price=eo.average_price,
                                  fee_total=tracked.record.fee_total, error=eo.failed_reason)
        self._drop_done(customer_order_id)
        return tracked.record

    def mark_lost(self, customer_order_id: str, why: str, now: datetime) -> OrderRecord:
        """The outcome is unknown: the order stays fillable exposure until the exchange answers about it."""
        tracked = self._orders[customer_order_id]
        if not allowed(tracked.record.status, S.UNKNOWN):
            return tracked.record
        if tracked.record.status is not S.UNKNOWN:
            self.journal.update_order(customer_order_id, status=S.UNKNOWN, now=now, error=why)
            self.journal.record_event("order_lost", {"customer_order_id": customer_order_id, "why": why}, now)
        tracked.record = replace(tracked.record, status=S.UNKNOWN, updated_at=now, error=why)
        return tracked.record

    def not_placed(self, customer_order_id: str, why: str, now: datetime) -> OrderRecord:
        """The client proved the placement was never accepted (refused, or never sent): FAILED."""
        tracked = self._orders[customer_order_id]
        if tracked.record.status is not S.SUBMITTING:
            raise ValueError(f"{customer_order_id}: only a SUBMITTING order can be declared not placed")
        self.journal.update_order(customer_order_id, status=S.FAILED, now=now, error=why)
        tracked.record = replace(tracked.record, status=S.FAILED, updated_at=now, error=why)
        self._drop_done(customer_order_id)
        return tracked.record

    def confirmed_never_placed(self, customer_order_id: str, why: str, now: datetime) -> OrderRecord:
        """An operator's resolution of a lost (or SUBMITTING) order that the exchange, asked just now by its
        customerOrderId, does not know: FAILED, with the operator's reason on record."""
        tracked = self._orders.get(customer_order_id)
        if tracked is None or tracked.record.status not in (S.UNKNOWN, S.SUBMITTING):
            raise ValueError(f"{customer_order_id}: not an order with an unknown outcome")
        self.journal.update_order(customer_order_id, status=S.FAILED, now=now, error=why)
        self.journal.record_event("order_resolved_never_placed", {"customer_order_id": customer_order_id,
                                                                  "why": why}, now)
        tracked.record = replace(tracked.record, status=S.FAILED, updated_at=now, error=why)
        self._drop_done(customer_order_id)
        return tracked.record

    def fill_applied(self, customer_order_id: str, quantity: Decimal) -> None:
        """A trade-history fill of this order was applied to the portfolio (once, by trade id)."""
        tracked = self._orders.get(customer_order_id)
        if tracked is None:
            return
        tracked.applied += quantity
        tracked.filled_seen = max(tracked.filled_seen, tracked.applied)
        self._drop_done(customer_order_id)

    def _drop_done(self, customer_order_id: str | None = None) -> None:
        """Forget ended orders whose fills are all applied (one order, or all of them)."""
        cids = list(self._orders) if customer_order_id is None else [customer_order_id]
        for cid in cids:
            tracked = self._orders.get(cid)
            if tracked is not None and tracked.done:
                del self._orders[cid]
