"""Cancel every open order and confirm it by re-querying: one routine for the running engine and for
``helios emergency-stop --direct`` (service down).

"Cancel all" on VALR is accepted, not proof. So: ask for cancel-all, then re-query open orders and cancel what is
still there one by one, until the exchange reports zero open orders or the deadline passes. The report says what is
left; it never claims zero without having seen zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from helios.exchange.base import ExchangeClient
from helios.exchange.errors import ExchangeError
from helios.journal import Journal
from helios.models import ExchangeOrder, OrderStatus


@dataclass
class CancelReport:
    cancel_accepted: set[str] = field(default_factory=set)  # exchange order ids / customer ids asked to cancel
    remaining: list[ExchangeOrder] = field(default_factory=list)
    confirmed: bool = False  # True only after an open-orders query returned nothing
    errors: list[str] = field(default_factory=list)
    queries: int = 0
    elapsed_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "orders_cancelled": len(self.cancel_accepted),
            "open_orders_remaining": len(self.remaining) if self.confirmed or self.remaining else None,
            "open_orders_remaining_detail": [
                {"pair": o.pair, "customer_order_id": o.customer_order_id, "order_id": o.order_id,
                 "side": o.side.value, "remaining_quantity": str(o.remaining_quantity)}
                for o in self.remaining
            ],
            "zero_open_orders_confirmed": self.confirmed,
            "errors": self.errors[-5:],
            "open_order_queries": self.queries,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


def cancel_everything(client: ExchangeClient, *, timeout_s: float, poll_interval_s: float = 0.05) -> CancelReport:
    """Cancel all open orders on the account and re-query until zero are confirmed or ``timeout_s`` passes."""
    started = time.monotonic()
    deadline = started + timeout_s
    report = CancelReport()
    try:
        report.cancel_accepted.update(client.cancel_all_orders())
    except ExchangeError as exc:
        report.errors.append(f"cancel-all: {type(exc).__name__}: {exc.message}")
    while True:
        try:
            still_open = client.open_orders()
            report.queries += 1
        except ExchangeError as exc:
            report.errors.append(f"open-orders: {type(exc).__name__}: {exc.message}")
            still_open = None
        if still_open is not None:
            report.remaining = still_open
            if not still_open:
                report.confirmed = True
                break
        if time.monotonic() >= deadline:
            break
        for order in still_open or []:
            if order.customer_order_id is None:
                continue  # cancel-all covers orders without our id; re-tried below
            try:
                client.cancel_order(order.pair, order.customer_order_id)
                report.cancel_accepted.add(order.order_id or order.customer_order_id)
            except ExchangeError as exc:
                report.errors.append(f"cancel {order.customer_order_id}: {exc.message}")
        if still_open and any(o.customer_order_id is None for o in still_open):
            try:
                report.cancel_accepted.update(client.cancel_all_orders())
            except ExchangeError as exc:
                report.errors.append(f"cancel-all: {exc.message}")
        time.sleep(min(poll_interval_s, max(0.0, deadline - time.monotonic())))
    report.elapsed_ms = (time.monotonic() - started) * 1000
    return report


def record_cancellations(journal: Journal, client: ExchangeClient, now: datetime) -> int:
    """Bring the journal's active orders up to date with the exchange after a cancel sweep.

    Returns how many journaled orders ended CANCELLED. Orders the exchange no longer knows stay as they are (the
    engine's reconciliation resolves them).
    """
    cancelled = 0
    for record in journal.active_orders():
        try:
            eo = client.get_order(record.pair, record.customer_order_id)
        except ExchangeError:
            continue
        if eo is None:
            continue
        journal.update_from_exchange(eo, now)
        if eo.status is OrderStatus.CANCELLED:
            cancelled += 1
    return cancelled
