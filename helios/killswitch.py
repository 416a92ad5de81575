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
from helios.protection import is_protective, is_protective_id


@dataclass
class CancelReport:
    cancel_accepted: set[str] = field(default_factory=set)  # exchange order ids / customer ids asked to cancel
    remaining: list[ExchangeOrder] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)  # our SUBMITTING/UNKNOWN orders whose fate is not known
    protective: list[ExchangeOrder] = field(default_factory=list)  # protective exits left working on purpose
    protective_conditionals: list[str] = field(default_factory=list)  # conditional TP/SL ids left working
    cancel_protective: bool = False
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
            "cancel_protective": self.cancel_protective,
            "protective_exits_left": [
                {"pair": o.pair, "customer_order_id": o.customer_order_id, "order_id": o.order_id,
                 "side": o.side.value, "remaining_quantity": str(o.remaining_quantity)}
                for o in self.protective
            ] + [{"conditional_order_id": cid} for cid in self.protective_conditionals],
            "zero_open_orders_confirmed": self.confirmed,
            "errors": self.errors[-5:],
            "open_order_queries": self.queries,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


#: An order we sent whose fate the exchange has not told us yet (SUBMITTING / UNKNOWN): (pair, customerOrderId).
Pending = tuple[str, str]


def keep_on_halt(order: ExchangeOrder) -> bool:
    """True for an order a HALT leaves working: a protective exit held on the exchange (our stop-loss SELL, which
    can only sell what the position holds). ``cancel_protective`` stops remove those too."""
    return is_protective(order)


def _cancel_nothing_kept(order: ExchangeOrder) -> bool:
    return False


def cancel_everything(
    client: ExchangeClient,
    *,
    timeout_s: float,
    poll_interval_s: float = 0.05,
    pending: Callable[[], list[Pending]] = lambda: [],
    cancel_protective: bool = False,
) -> CancelReport:
    """Cancel every open order that could add exposure (``cancel_protective``: every open order, conditional
    TP/SL orders included) on the account and re-query until zero are confirmed or ``timeout_s`` passes.

    Every exchange call runs under one call deadline (``timeout_s`` from now), so against a hanging exchange the
    sweep returns within ``timeout_s`` plus at most one request's connect/read slack. ``pending`` lists our orders
    whose outcome is unknown: each is looked up by customerOrderId (cancelled if open); zero is never confirmed while
    one of them is not positively known to the exchange as finished.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    report = CancelReport(cancel_protective=cancel_protective)
    keep = _cancel_nothing_kept if cancel_protective else keep_on_halt
    with call_deadline(deadline):
        _sweep(client, report, deadline, poll_interval_s, pending, keep)
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


def _cancel_all_except(client: ExchangeClient, report: CancelReport, keep: Callable[[ExchangeOrder], bool],
                       open_now: list[ExchangeOrder] | None) -> None:
    """Cancel-all when nothing open is to be kept (one call); otherwise one by one, keeping ``keep`` orders."""
    kept = [o for o in open_now or [] if keep(o)]
    if open_now is not None and not kept:
        try:
            report.cancel_accepted.update(client.cancel_all_orders())
        except ExchangeError as exc:
            report.errors.append(f"cancel-all: {type(exc).__name__}: {exc.message}")
        return
    for order in open_now or []:
        if keep(order):
            continue
        try:
            if order.customer_order_id is not None:
                client.cancel_order(order.pair, order.customer_order_id)
                report.cancel_accepted.add(order.order_id or order.customer_order_id)
            elif hasattr(client, "cancel_open_orders_except"):
                asked: list[ExchangeOrder] = client.cancel_open_orders_except(keep)
                report.cancel_accepted.update(o.order_id or o.customer_order_id or "" for o in asked)
            else:
                report.errors.append(f"cannot cancel order {order.order_id} without cancel-all")
        except ExchangeError as exc:
            report.errors.append(f"cancel {order.customer_order_id or order.order_id}: {exc.message}")


def _conditionals(client: ExchangeClient, report: CancelReport, cancel: bool) -> list[str] | None:
    """The account's open conditional TP/SL orders (VALR; ``DELETE /v1/orders`` does not cover them): cancelled
    when ``cancel``, else listed as protective. Returns the ids still open (None: could not read)."""
    if not (hasattr(client, "conditional_orders") and hasattr(client, "cancel_all_conditionals")):
        return []
    try:
        if cancel:
            report.cancel_accepted.update(client.cancel_all_conditionals())
        ids = [str(c.order_id) for c in client.conditional_orders()]
    except ExchangeError as exc:
        report.errors.append(f"conditional orders: {type(exc).__name__}: {exc.message}")
        return None
    if not cancel:
        report.protective_conditionals = ids
        return []
    return ids


def _sweep(client: ExchangeClient, report: CancelReport, deadline: float, poll_interval_s: float,
           pending: Callable[[], list[Pending]], keep: Callable[[ExchangeOrder], bool] = keep_on_halt) -> None:
    if keep is _cancel_nothing_kept:
        _cancel_all_except(client, report, keep, [])  # nothing is kept: cancel-all at once, before any read
    else:
        try:
            first: list[ExchangeOrder] | None = client.open_orders()
            report.queries += 1
        except ExchangeError as exc:
            report.errors.append(f"open-orders: {type(exc).__name__}: {exc.message}")
            first = None
        _cancel_all_except(client, report, keep, first)
    conditionals_left = _conditionals(client, report, cancel=keep is _cancel_nothing_kept)
    while True:
        try:
            listed = client.open_orders()
            report.queries += 1
            still_open: list[ExchangeOrder] | None = [o for o in listed if not keep(o)]
            report.protective = [o for o in listed if keep(o)]
        except ExchangeError as exc:
            report.errors.append(f"open-orders: {type(exc).__name__}: {exc.message}")
            still_open = None
        if conditionals_left is None or conditionals_left:
            conditionals_left = _conditionals(client, report, cancel=keep is _cancel_nothing_kept)
        if still_open is not None:
            report.remaining = still_open
            if not still_open and conditionals_left == []:
                ours = [p for p in pending() if keep is _cancel_nothing_kept or not is_protective_id(p[1])]
                report.unsettled = _settle_pending(client, report, ours)
                if not report.unsettled:
                    report.confirmed = True
                    return
        if time.monotonic() >= deadline:
            return
        if still_open:
            _cancel_all_except(client, report, keep, still_open)
        time.sleep(min(poll_interval_s, max(0.0, deadline - time.monotonic())))


def cancel_open_orders_once(client: ExchangeClient) -> list[str]:
    """One HALTED tick's sweep: cancel every order seen open on the exchange except ``keep_on_halt`` ones (the
    protective exits). Returns the customerOrderIds / order ids asked to cancel. Errors are left to the next tick.
    """
    try:
        open_now = client.open_orders()
    except ExchangeError:
        return []
    if not [o for o in open_now if not keep_on_halt(o)]:
        return []
    report = CancelReport()
    _cancel_all_except(client, report, keep_on_halt, open_now)
    return sorted(report.cancel_accepted)


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
