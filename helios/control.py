"""The engine's side of the trading state: every state write of the running service goes through
``trading_state.transition`` (the one writer; compare-and-set against the durable state), and the engine's in-memory
copy follows the durable state (``adopt`` / ``follow_durable_state``).

Also here: the emergency stop (block sending in memory -> cancel on the exchange through ``helios.killswitch`` ->
journal HALTED, retried in the background if the journal refuses), the while-HALTED sweep, the authenticated resume
(reconcile, then compare-and-set ACTIVE against the version seen before reconciling), start-up and shutdown.
Plain functions taking the engine; ``Engine`` delegates its public methods here.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from helios import sync, trading_state, views
from helios.exchange.errors import ExchangeError
from helios.killswitch import Pending, cancel_everything, cancel_open_orders_once, record_cancellations
from helios.models import Mode, OrderPurpose, OrderStatus, TradingState

if TYPE_CHECKING:
    from helios.engine import Engine

log = logging.getLogger("helios.engine")

#: A trading-state write waits this long for another process' journal write lock (a stop then retries later).
STATE_WRITE_BUSY_TIMEOUT_S = 0.25
#: An emergency stop's first journal attempt waits only this long; it then answers and retries in the background.
STOP_JOURNAL_FIRST_WAIT_S = 0.05


class ResumeRefused(Exception):
    """Resume is refused while reconciliation with the exchange fails."""


def set_state(engine: Engine, state: TradingState, reason: str, actor: str, *,
              resume: trading_state.Resume | None = None) -> TradingState:
    """Every state write of this process, through ``trading_state.transition`` (compare-and-set, durable at
    return). Returns the previous state; raises ``TransitionRefused`` (then the engine follows the durable
    state it found)."""
    try:
        done = trading_state.transition(engine.journal, state, reason=reason, actor=actor, now=engine.clock(),
                                        resume=resume, busy_timeout_s=STATE_WRITE_BUSY_TIMEOUT_S)
    except trading_state.TransitionRefused as exc:
        if exc.current is not None:
            with engine._state_lock:
                adopt(engine, exc.current, engine._state_version)
        raise
    with engine._state_lock:
        if resume is not None and state is TradingState.ACTIVE:
            if engine._halt_epoch != engine._resume_epoch:
                # An emergency stop arrived in memory after the CAS read: it wins; its journal write follows.
                raise trading_state.TransitionRefused(
                    trading_state.STATE_CHANGED, "an emergency stop arrived while the resume was committing",
                    TradingState.HALTED)
            engine._halt_latch = False
        adopt(engine, state, done.version)
    if done.changed:
        level = "critical" if state is TradingState.HALTED else "warning"
        log.warning("trading state %s -> %s", done.previous.value, state.value,
                    extra={"reason": reason, "actor": actor})
        engine.alerter.send(level, f"Helios {engine.mode.value} trading state {done.previous.value} -> {state.value}",
                            {"reason": reason, "actor": actor})
    return done.previous


def adopt(engine: Engine, durable: TradingState, version: int) -> None:
    """Follow the durable state (caller holds ``_state_lock``). A halt not journaled yet keeps HALTED."""
    if version < engine._state_version:
        return  # an older write finishing late
    engine._state_version = version
    engine.state = TradingState.HALTED if engine._halt_latch else durable


def follow_durable_state(engine: Engine) -> None:
    """Another process (``helios emergency-stop --direct``) may have changed the journal's state."""
    durable, version = engine.journal.read_state_version()
    with engine._state_lock:
        before = engine.state
        adopt(engine, durable, version)
        after = engine.state
    if after is not before:
        log.warning("trading state changed outside this process: now %s", after.value)


def pending_orders(engine: Engine) -> list[Pending]:
    """Our orders whose fate the exchange has not told us (the stop never confirms zero while one exists)."""
    return [(o.pair, o.customer_order_id) for o in list(engine.active.values())
            if o.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN)]


def sweep_if_halted(engine: Engine) -> None:
    """While HALTED every tick cancels whatever is open on the exchange (an order that landed late)."""
    if engine.state is not TradingState.HALTED:
        return
    asked = cancel_open_orders_once(engine.client)
    if asked:
        log.warning("HALTED: cancelled %d order(s) found open on the exchange", len(asked),
                    extra={"orders": asked})


def emergency_stop(engine: Engine, reason: str, actor: str, *, cancel_protective: bool = False) -> dict[str, Any]:
    """Block sending (in memory), cancel every open order that could add exposure and confirm zero by re-query,
    then journal HALTED. Protective exits held on the exchange stay (listed in ``protective_exits_left``)
    unless ``cancel_protective``.

    The journal never delays the cancels: a locked, full or corrupt journal is reported
    (``journal_recorded: false`` and why) and retried in the background with a critical alert. The wall time is
    bounded by HELIOS_EMERGENCY_STOP_TIMEOUT_SECONDS plus one request's slack.
    """
    started = time.monotonic()
    timeout = float(engine.settings.helios_emergency_stop_timeout_seconds)
    with engine._state_lock:  # 1. the router checks this under the same lock before it registers a send
        previous = engine.state
        engine._halt_latch = True
        engine._halt_epoch += 1
        engine.state = TradingState.HALTED
    sweep = cancel_everything(engine.client, timeout_s=timeout, pending=lambda: pending_orders(engine),  # 2. cancel
                              cancel_protective=cancel_protective)
    now = engine.clock()
    report: dict[str, Any] = {
        "trading_state": TradingState.HALTED.value,
        "previous": previous.value,
        "mode": engine.mode.value,
        **sweep.to_json(),
        "open_positions": views.positions_json(engine),
        "reason": reason,
        "actor": actor,
        "at": now.isoformat(),
    }
    error = _journal_halt(engine, reason, actor, report)  # 3. journal (one short attempt, then in background)
    report["journal_recorded"] = error is None
    report["journal_error"] = error
    report["total_ms"] = round((time.monotonic() - started) * 1000, 1)
    if not sweep.confirmed:
        engine.alerter.send("critical", "EMERGENCY STOP could not confirm zero open orders", report)
    return report


def _journal_halt(engine: Engine, reason: str, actor: str, report: dict[str, Any]) -> str | None:
    """Write HALTED and the stop's event; on failure retry in the background. Returns why it failed, or None."""
    def attempt(busy_timeout_s: float) -> None:
        trading_state.transition(engine.journal, TradingState.HALTED, reason=reason, actor=actor,
                                 now=engine.clock(), busy_timeout_s=busy_timeout_s)
        engine.journal.record_event("emergency_stop", report, engine.clock())

    try:
        attempt(STOP_JOURNAL_FIRST_WAIT_S)
    except Exception as exc:
        why = str(exc) if isinstance(exc, trading_state.TransitionRefused) else f"{type(exc).__name__}: {exc}"
    else:
        with engine._state_lock:
            adopt(engine, TradingState.HALTED, engine.journal.read_state_version()[1])
        engine.alerter.send("critical", f"Helios {engine.mode.value} trading state {report['previous']} -> HALTED",
                            {"reason": reason, "actor": actor})
        return None
    log.critical("emergency stop: HALTED is not journaled yet (%s); retrying", why)
    engine.alerter.send("critical", "EMERGENCY STOP: cancelled, but the journal cannot be written; retrying",
                        {"error": why, "reason": reason, "actor": actor})
    epoch = engine._halt_epoch

    def retry() -> None:
        wait = 0.2
        while engine._halt_latch and engine._halt_epoch == epoch and not engine._closing:
            time.sleep(wait)
            try:
                attempt(STATE_WRITE_BUSY_TIMEOUT_S)
            except Exception as exc:
                log.error("emergency stop: journal still unavailable: %s", exc)
                wait = min(wait * 2, 1.0)
                continue
            log.warning("emergency stop: HALTED journaled after retry")
            return

    engine.halt_journal_retry = threading.Thread(target=retry, name="halt-journal-retry", daemon=True)
    engine.halt_journal_retry.start()
    return why


def resume(engine: Engine, reason: str, actor: str) -> dict[str, Any]:
    """Authenticated resume (the caller checked the token): reconcile, then compare-and-set ACTIVE against the
    version seen before reconciling. A stop that arrived meanwhile wins (``TransitionRefused``)."""
    if not reason.strip():
        raise ValueError("a resume needs a reason")
    with engine._state_lock:
        engine._resume_epoch = engine._halt_epoch
    seen = trading_state.read(engine.journal)
    result = sync.reconcile_orders(engine, engine.clock())
    if not result.ok:
        raise ResumeRefused("reconciliation: " + "; ".join(result.issues))
    with engine._state_lock:
        if engine._halt_epoch != engine._resume_epoch:
            raise trading_state.TransitionRefused(
                trading_state.STATE_CHANGED, "an emergency stop arrived while the resume was reconciling",
                TradingState.HALTED)
    previous = set_state(engine, TradingState.ACTIVE, reason, actor,
                         resume=trading_state.Resume(actor=actor, seen_version=seen.version))
    engine.journal.record_event("resume", {"previous": previous.value, "reason": reason, "actor": actor},
                                engine.clock())
    return {"trading_state": engine.state.value, "previous": previous.value, "reason": reason, "actor": actor}


def start_up(engine: Engine) -> None:
    """Boot in the durable state. A HALTED service sweeps the account again: nothing may be left working."""
    now = engine.clock()
    sync.refresh_balances(engine, now, force=True)
    engine.journal.record_event("start", {"mode": engine.mode.value, "state": engine.state.value}, now)
    if engine.mode is Mode.PAPER:
        sync.record_starting_balances(engine, now)  # LIVE records them in the pre-live audit
    result = sync.reconcile_orders(engine, now)
    if not result.ok and engine.state is TradingState.ACTIVE:
        with suppress(trading_state.TransitionRefused):  # a stop got there first: it wins
            set_state(engine, TradingState.REDUCING, "reconciliation: " + "; ".join(result.issues), "engine")
    if engine.state is TradingState.HALTED:
        sweep = cancel_everything(engine.client, pending=lambda: pending_orders(engine),
                                  timeout_s=float(engine.settings.helios_emergency_stop_timeout_seconds))
        record_cancellations(engine.journal, engine.client, engine.clock())
        engine.active = {o.customer_order_id: o for o in engine.journal.active_orders()}
        engine.journal.record_event("halted_start_sweep", sweep.to_json(), engine.clock())


def shutdown(engine: Engine) -> dict[str, Any]:
    """SIGTERM: stop sending, cancel resting entry orders (nobody watches them while we are down)."""
    engine._closing = True  # ends a background HALTED-journal retry
    cancelled: list[str] = []
    with engine._send_lock:
        for record in list(engine.active.values()):
            if record.purpose is not OrderPurpose.ENTRY or record.status is OrderStatus.UNKNOWN:
                continue
            try:
                engine.client.cancel_order(record.pair, record.customer_order_id)
                cancelled.append(record.customer_order_id)
            except ExchangeError as exc:
                log.error("shutdown: cancel %s failed: %s", record.customer_order_id, exc.message)
        now = engine.clock()
        record_cancellations(engine.journal, engine.client, now)
    detail = {"entry_orders_cancelled": cancelled, "open_positions": views.positions_json(engine)}
    engine.journal.record_event("shutdown", detail, now)
    return detail
