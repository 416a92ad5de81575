"""Cancel every open order and confirm it by re-querying: one routine for the running engine and for
``helios emergency-stop --direct`` (service down).

"Cancel all" on VALR is accepted, not proof. So: ask for cancel-all, then re-query open orders and cancel what is
still there one by one, until the exchange reports zero open orders or the deadline passes. The report says what is
left; it never claims zero without having seen zero, nor while an order of ours is SUBMITTING/UNKNOWN.

Nothing here touches the journal: the callers block sending first (in memory, or the durable HALTED), cancel here,
and journal afterwards, so a locked, full or corrupt journal never delays the cancels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from helios.exchange.base import ExchangeClient, call_deadline
from helios.exchange.errors import ExchangeError
from helios.journal import Journal
from helios.models import ExchangeOrder, OrderStatus


@dataclass
class CancelReport:
    cancel_accepted: set[str] = field(default_factory=set)  # exchange order ids / customer ids asked to cancel
    remaining: list[ExchangeOrder] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)  # our SUBMITTING/UNKNOWN orders whose fate is not known
    confirmed: bool = False  # True only after zero open orders AND no order of ours in an unknown state
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
            "orders_in_unknown_state": list(self.unsettled),
            "zero_open_orders_confirmed": self.confirmed,
            "errors": self.errors[-5:],
            "open_order_queries": self.queries,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


#: An order we sent whose fate the exchange has not told us yet (SUBMITTING / UNKNOWN): (pair, customerOrderId).
Pending = tuple[str, str]


def keep_on_halt(order: ExchangeOrder) -> bool:
    """Hook: True for an order a HALT must leave working (e.g. a protective exit held on the exchange).

    Nothing is exempt today: every open order is cancelled while HALTED.
    """
    return False


def cancel_everything(
    client: ExchangeClient,
    *,
    timeout_s: float,
    poll_interval_s: float = 0.05,
    pending: Callable[[], list[Pending]] = lambda: [],
) -> CancelReport:
    """Cancel all open orders on the account and re-query until zero are confirmed or ``timeout_s`` passes.

    Every exchange call runs under one call deadline (``timeout_s`` from now), so against a hanging exchange the
    sweep returns within ``timeout_s`` plus at most one request's connect/read slack. ``pending`` lists our orders
    whose outcome is unknown: each is looked up by customerOrderId (cancelled if open); zero is never confirmed while
    one of them is not positively known to the exchange as finished.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    report = CancelReport()
    with call_deadline(deadline):
        _sweep(client, report, deadline, poll_interval_s, pending)
    report.elapsed_ms = (time.monotonic() - started) * 1000
    return report


def _settle_pending(client: ExchangeClient, report: CancelReport, pending: list[Pending]) -> list[str]:
    unsettled = []
    for pair, cid in pending:
        try:
            eo = client.get_order(pair, cid)
        except ExchangeError as exc:
            report.errors.append(f"look up {cid}: {exc.message}")
            unsettled.append(cid)
            continue
        if eo is None:
            unsettled.append(cid)  # not (yet) on the exchange: it may still land
        elif not eo.status.is_terminal:
            unsettled.append(cid)
            try:
                client.cancel_order(pair, cid)
                report.cancel_accepted.add(eo.order_id or cid)
            except ExchangeError as exc:
                report.errors.append(f"cancel {cid}: {exc.message}")
    return unsettled


def _sweep(client: ExchangeClient, report: CancelReport, deadline: float, poll_interval_s: float,
           pending: Callable[[], list[Pending]]) -> None:
    try:
        report.cancel_accepted.update(client.cancel_all_orders())
    except ExchangeError as exc:
        report.errors.append(f"cancel-all: {type(exc).__name__}: {exc.message}")
    while True:
        try:
            still_open: list[ExchangeOrder] | None = [o for o in client.open_orders() if not keep_on_halt(o)]
            report.queries += 1
        except ExchangeError as exc:
            report.errors.append(f"open-orders: {type(exc).__name__}: {exc.message}")
            still_open = None
        if still_open is not None:
            report.remaining = still_open
            if not still_open:
                report.unsettled = _settle_pending(client, report, pending())
                if not report.unsettled:
                    report.confirmed = True
                    return
        if time.monotonic() >= deadline:
            return
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


def cancel_open_orders_once(client: ExchangeClient) -> list[str]:
    """One HALTED tick's sweep: cancel every order seen open on the exchange (except ``keep_on_halt`` ones).

    Returns the customerOrderIds / order ids asked to cancel. Errors are left to the next tick.
    """
    asked: list[str] = []
    try:
        open_now = client.open_orders()
    except ExchangeError:
        return asked
    for order in open_now:
        if keep_on_halt(order):
            continue
        try:
            if order.customer_order_id is not None:
                client.cancel_order(order.pair, order.customer_order_id)
                asked.append(order.customer_order_id)
            else:
                asked.extend(client.cancel_all_orders())
        except ExchangeError:
            continue
    return asked


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
