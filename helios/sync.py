"""Order, fill and balance synchronisation with the exchange, and reconciliation (the engine's side; the pure
comparisons live in ``helios.reconcile``).

* Fills: trade history since the fill cursor (with an overlap) and the account WebSocket's NEW_ACCOUNT_TRADE events,
  applied once each by trade id (the journal is the one record) through ``helios.portfolio``.
* Orders: every live order of ours is looked up (open orders, else by customerOrderId) and its answer goes to the
  order tracker; an order the exchange does not know stays lost (UNKNOWN), never FAILED.
* The account stream's events are queued by its thread and applied by the tick; after every (re)connect a full REST
  reconciliation closes the gap. REST polling remains as the slower safety net: while the stream is connected and
  the REST reconciliation after its last (re)connect succeeded, the full REST poll (trade history, open orders,
  every live order by id) runs every HELIOS_REST_SAFETY_POLL_SECONDS, and at once when an answer showed a fill the
  trade history has not delivered yet; orders whose fate is unknown (SUBMITTING, lost) are still looked up by id
  every tick. Without a stream (PAPER), or while it is down, every tick polls in full.
* Reconciliation at start-up and on resume; balance checks (two misses in a row halt); LIVE account guards.
Plain functions taking the engine.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from helios import control, portfolio
from helios.exchange.errors import ExchangeError
from helios.journal import OrderRecord
from helios.models import ExchangeOrder, Fill, Mode, OrderStatus, Side, TradingState
from helios.reconcile import (
    STARTING_BALANCES_KEY,
    ReconcileResult,
    capital_baseline,
    compare_balances,
    decode_balances,
    encode_balances,
    implied_balances,
    unknown_open_orders,
)

if TYPE_CHECKING:
    from helios.engine import Engine

log = logging.getLogger("helios.engine")

QUOTE = "ZAR"
FILL_OVERLAP = timedelta(minutes=5)
BALANCE_REFRESH = timedelta(seconds=10)
#: How often a LIVE engine re-checks the account guards (margin, futures, borrowed amounts).
ACCOUNT_GUARD_INTERVAL = timedelta(minutes=5)


class StreamState(Protocol):
    """What the engine needs to know of the account WebSocket (``helios.exchange.valr_ws.AccountStream``)."""

    @property
    def connected(self) -> bool: ...


def rest_poll_due(engine: Engine, now: datetime) -> bool:
    """Whether this tick runs the full REST poll: always without a connected account stream; with one, when no
    full poll has completed since its last (re)connect, every HELIOS_REST_SAFETY_POLL_SECONDS, and at once when an
    answer showed a fill that the trade history has not delivered yet (the position waits for it)."""
    stream = engine.account_stream
    if stream is None or not stream.connected or engine._rest_polled_at is None:
        return True
    if any(e.filled_unapplied > 0 for e in engine.orders.exposures()):
        return True
    return now - engine._rest_polled_at >= timedelta(seconds=float(engine.settings.helios_rest_safety_poll_seconds))


def sync_orders(engine: Engine, now: datetime, *, full: bool = True) -> None:
    """``full``: trade history, open orders and every live order by id (the REST poll); else only the orders whose
    fate is unknown (SUBMITTING, lost) are looked up by customerOrderId. A full poll that completed without an
    exchange error is the safety net's last run (``_rest_polled_at``)."""
    with engine._sync_lock:
        if not full:
            _look_up_unsettled(engine, now)
        elif _sync_orders_locked(engine, now):
            engine._rest_polled_at = now


def _look_up_unsettled(engine: Engine, now: datetime) -> None:
    for cid, record in engine.orders.active.items():
        if record.status not in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN) or engine.orders.is_sending(cid):
            continue
        try:
            eo = engine.client.get_order(record.pair, cid)
        except ExchangeError as exc:
            engine.last_error = f"order {cid}: {exc.message}"
            continue
        if eo is None:
            _order_not_on_exchange(engine, record, now)
            continue
        engine.orders.on_answer(cid, replace(eo, customer_order_id=cid), now)


def _sync_orders_locked(engine: Engine, now: datetime) -> bool:
    """The full REST poll; returns whether every call of it answered."""
    complete = True
    try:
        since = None if engine._fill_cursor is None else engine._fill_cursor - FILL_OVERLAP
        fills = engine.client.fills(since)
    except ExchangeError as exc:
        engine.last_error = f"fills: {exc.message}"
        fills, complete = [], False
    applied = False
    for fill in fills:
        if engine._fill_cursor is None or fill.traded_at > engine._fill_cursor:
            engine._fill_cursor = fill.traded_at
        if engine.journal.has_fill(fill.trade_id):
            continue
        applied = apply_fill(engine, fill, now) or applied
    if applied:
        refresh_balances(engine, now, force=True)
    active = {cid: r for cid, r in engine.orders.active.items() if not engine.orders.is_sending(cid)}
    if not active:
        return complete
    try:
        open_now = {o.customer_order_id: o for o in engine.client.open_orders() if o.customer_order_id}
    except ExchangeError as exc:
        engine.last_error = f"open orders: {exc.message}"
        return False
    for cid, record in active.items():
        eo: ExchangeOrder | None = open_now.get(cid)
        if eo is None:
            try:
                eo = engine.client.get_order(record.pair, cid)
            except ExchangeError as exc:
                engine.last_error = f"order {cid}: {exc.message}"
                complete = False
                continue
        if eo is None:
            _order_not_on_exchange(engine, record, now)
            continue
        engine.orders.on_answer(cid, replace(eo, customer_order_id=cid), now)
    return complete


def drain_account_stream(engine: Engine, now: datetime) -> None:
    """Apply the account stream's events: fills (de-duplicated by trade id with REST: the journal is the one
    record) and order status updates. A fill whose message carried no fee waits for REST (its order's answer
    shows it filled, which makes the REST poll due at once). After a reconnect a full REST reconciliation (trade
    history since the cursor, every live order by id) closes the gap; REST keeps polling as the safety net."""
    reconnected = False
    with engine._sync_lock:
        while True:
            try:
                event = engine.account_events.get_nowait()
            except queue.Empty:
                break
            if event is None:
                reconnected = True
            elif event.fill is not None:
                fresh = event.fee_known and not engine.journal.has_fill(event.fill.trade_id)
                if fresh and apply_fill(engine, event.fill, now):
                    engine.stream_fills_applied += 1
            elif event.order is not None and event.order.customer_order_id:
                cid = event.order.customer_order_id
                if cid in engine.orders.active and not engine.orders.is_sending(cid):
                    engine.orders.on_answer(cid, event.order, now)
    if reconnected:
        engine._rest_polled_at = None  # the safety net counts from a full poll after this connection
        engine.journal.record_event("account_stream_connected", {"reconcile": "rest"}, now)
        reconcile_orders(engine, now)


def _order_not_on_exchange(engine: Engine, record: OrderRecord, now: datetime) -> None:
    """The exchange has no order by this id (yet). Its outcome is unknown: it stays lost, never FAILED."""
    if record.status is OrderStatus.UNKNOWN:
        return
    why = ("not found by customerOrderId: it may still land" if record.status is OrderStatus.SUBMITTING
           else "the exchange no longer knows this order")
    engine.orders.mark_lost(record.customer_order_id, why, now)
    engine.journal.record_event("order_lost", {"customer_order_id": record.customer_order_id, "why": why}, now)


def apply_fill(engine: Engine, fill: Fill, now: datetime) -> bool:
    """Apply one trade-history fill once (by trade id); returns whether it changed the portfolio."""
    record = None
    if fill.customer_order_id:
        record = engine.journal.get_order(fill.customer_order_id)
    if record is None and fill.order_id:
        record = engine.journal.find_order_by_exchange_id(fill.order_id)
    if record is None:
        # Not ours (manual trade, another bot, history from before go-live): never touch positions; flag it
        # once per trade id until the operator classifies it.
        if engine.journal.record_foreign_fill(fill, now):
            engine.journal.record_event("unknown_fill", {"trade_id": fill.trade_id, "pair": fill.pair,
                                                         "side": fill.side.value,
                                                         "quantity": str(fill.quantity)}, now)
        return False
    effect = portfolio.apply_fill(
        engine.positions.get(fill.pair), fill, stop_loss=record.stop_loss, take_profit=record.take_profit,
        exit_quantity=record.quantity,
    )
    closed: dict[str, Any] | None = None
    if effect.closed is not None:
        earlier_realised, earlier_fees = engine.journal.pair_fill_totals(fill.pair, effect.closed.opened_at)
        closed = {
            "pair": fill.pair, "quantity": effect.closed.quantity, "entry_price": effect.closed.entry_price,
            "exit_price": effect.closed.exit_price, "fees_zar": earlier_fees + effect.fee_zar,
            "realised_pnl_zar": earlier_realised + effect.realised_zar,
            "exit_reason": record.reason or "exit", "opened_at": effect.closed.opened_at,
            "closed_at": effect.closed.closed_at,
        }
    stored = engine.journal.record_fill(
        fill, customer_order_id=record.customer_order_id, fee_zar=effect.fee_zar,
        realised_pnl_zar=effect.realised_zar, position=effect.position, position_pair=fill.pair,
        closed_trade=closed, now=now,
    )
    if not stored:
        return False
    if effect.position is None:
        engine.positions.pop(fill.pair, None)
    else:
        engine.positions[fill.pair] = effect.position
    engine.orders.fill_applied(record.customer_order_id, fill.quantity)
    _cash_follows_fill(engine, fill)
    if fill.traded_at >= engine._today_start:
        engine._realised_today += effect.realised_zar
    log.info("fill", extra={"fill": {"pair": fill.pair, "side": fill.side.value, "price": str(fill.price),
                                     "quantity": str(fill.quantity), "realised_zar": str(effect.realised_zar)}})
    if closed is not None:
        log.info("position closed", extra={"trade": {k: str(v) for k, v in closed.items()}})
        if engine.mode is Mode.LIVE:
            engine.alerter.send("info", f"LIVE position closed: {fill.pair} ({closed['exit_reason']})",
                                {"realised_pnl_zar": str(closed["realised_pnl_zar"])})
    return True


def _cash_follows_fill(engine: Engine, fill: Fill) -> None:
    """Move the cached ZAR cash by the fill's ZAR flow (and a fee paid in ZAR) until the next balance read
    replaces it: a failed read must never leave equity = the old cash + the position that cash bought."""
    if engine._cash_zar is None or not fill.pair.endswith(QUOTE):
        return
    value = fill.quantity * fill.price
    fee = fill.fee if fill.fee_currency == QUOTE else Decimal(0)
    engine._cash_zar += -value - fee if fill.side is Side.BUY else value - fee


def reconcile_orders(engine: Engine, now: datetime) -> ReconcileResult:
    """Match the account's open orders and fills to the journal; resolve every order in an unknown state."""
    try:
        open_now = engine.client.open_orders()
    except ExchangeError as exc:
        return ReconcileResult(ok=False, issues=[f"exchange unreachable: {type(exc).__name__}: {exc.message}"])
    result = ReconcileResult(ok=True)
    for order in unknown_open_orders(open_now, engine.journal.order_ids()):
        result.ok = False
        result.unknown_orders.append({"pair": order.pair, "order_id": order.order_id,
                                      "customer_order_id": order.customer_order_id, "side": order.side.value})
    if result.unknown_orders:
        result.issues.append(f"{len(result.unknown_orders)} open order(s) on the account that the journal "
                             "does not know: cancel or adopt them, then resume")
    sync_orders(engine, now)  # resolves SUBMITTING/UNKNOWN by customerOrderId and adopts fills made while down
    unresolved = [o.customer_order_id for o in engine.orders.lost()]
    if unresolved:
        result.ok = False
        result.issues.append(f"{len(unresolved)} order(s) with unknown outcome: {', '.join(unresolved[:5])}")
    foreign = engine.unknown_fills
    if foreign:
        result.ok = False
        result.issues.append(f"{foreign} fill(s) on the account that the journal does not know (classify them: "
                             "helios capital classify-history)")
    engine.reconciliation = result
    engine.journal.record_event("reconciliation", result.to_json(), now)
    return result


def check_balances(engine: Engine, now: datetime) -> ReconcileResult:
    """Compare the balances the journal implies with the exchange's. Two misses in a row halt trading."""
    recorded = engine.journal.get_meta(STARTING_BALANCES_KEY)
    if recorded is None:
        result = ReconcileResult(ok=False, issues=["no starting balances recorded (run helios audit)"])
    else:
        try:
            actual = engine.client.balances()
        except ExchangeError as exc:
            return ReconcileResult(ok=False, issues=[f"balances unavailable: {exc.message}"])
        prices = {pair.removesuffix(QUOTE): t.bid for pair, t in engine.tickers.items()}
        since = capital_baseline(engine.journal)
        implied = implied_balances(decode_balances(recorded), engine.journal.fills_since(since),
                                   engine.journal.capital_flows(since))
        result = compare_balances(implied, actual, prices, engine.settings.helios_balance_tolerance_zar)
    engine.balance_check = result
    engine._balance_checked_at = now
    if result.ok:
        engine._balance_mismatches = 0
        return result
    engine._balance_mismatches += 1
    engine.journal.record_event("balance_mismatch", {**result.to_json(), "streak": engine._balance_mismatches}, now)
    if engine._balance_mismatches >= 2 and engine.state is not TradingState.HALTED and recorded is not None:
        # A fill between our two reads can explain one miss; two in a row is a real discrepancy.
        engine.alerter.send("critical", "Balance reconciliation failed: halting", result.to_json())
        control.emergency_stop(engine, "balance reconciliation: " + "; ".join(result.issues), "engine")
    return result


def periodic_balance_check(engine: Engine, now: datetime) -> None:
    interval = timedelta(seconds=float(engine.settings.helios_balance_check_seconds))
    if engine._balance_checked_at is None or now - engine._balance_checked_at >= interval:
        check_balances(engine, now)


def record_starting_balances(engine: Engine, now: datetime, *, overwrite: bool = False) -> dict[str, str]:
    """Record the account's balances as the starting point of balance reconciliation (go-live)."""
    existing = engine.journal.get_meta(STARTING_BALANCES_KEY)
    if existing is not None and not overwrite:
        return {k: str(v) for k, v in decode_balances(existing).items()}
    balances = engine.client.balances()
    engine.journal.record_baseline(encode_balances(balances), now)
    engine.journal.record_event("starting_balances", {b.currency: str(b.total) for b in balances}, now)
    return {b.currency: str(b.total) for b in balances}


def check_account_guards(engine: Engine, now: datetime) -> None:
    """LIVE (VALR): every ACCOUNT_GUARD_INTERVAL, margin and futures must be disabled and nothing borrowed; a
    violation HALTs trading through the trading state (the emergency stop), with a critical alert."""
    guards = getattr(engine.client, "account_guards", None)
    if guards is None or engine.mode is not Mode.LIVE:
        return
    if engine._guards_checked_at is not None and now - engine._guards_checked_at < ACCOUNT_GUARD_INTERVAL:
        return
    engine._guards_checked_at = now
    try:
        problems: list[str] = guards()
    except ExchangeError as exc:
        engine.last_error = f"account guards: {exc.message}"
        return
    if not problems or engine.state is TradingState.HALTED:
        return
    engine.journal.record_event("account_guard", {"problems": problems}, now)
    engine.alerter.send("critical", "Account guard failed: halting", {"problems": problems})
    control.emergency_stop(engine, "account guard: " + "; ".join(problems), "engine")


def refresh_balances(engine: Engine, now: datetime, force: bool = False) -> None:
    if not force and engine._balances_at is not None and now - engine._balances_at < BALANCE_REFRESH:
        return
    try:
        balances = engine.client.balances()
    except ExchangeError as exc:
        engine.last_error = f"balances: {exc.message}"
        return
    engine._cash_zar = next((b.total for b in balances if b.currency == QUOTE), Decimal(0))
    engine._balances_at = now
