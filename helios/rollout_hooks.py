"""The rollout discipline inside the tick (issue 12): heartbeat history, marked equity, clean balance checks, the
capital stage gate's facts, the paper shadow, and the plan's red flags that act (HALT through the emergency stop,
REDUCE through the trading state's one writer). Plain functions taking the engine.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import suppress
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from helios import control, daily_loss, redflags, report, trading_state
from helios.journal import JournalError
from helios.models import Mode, TradingState
from helios.redflags import RedFlagLatch, evaluate_red_flags
from helios.shadow import ShadowTee

if TYPE_CHECKING:
    from helios.engine import Engine

log = logging.getLogger("helios.engine")

#: Equity snapshots and the red-flag evaluation run about once a minute (red flags also at once when an input moves).
ROLLOUT_PERIOD = timedelta(minutes=1)


def record_rollout_facts(engine: Engine, now: datetime) -> None:
    """Each tick: this minute had a heartbeat (reliability). About once a minute, and on the tick after a
    fill: one marked-equity point (capital at go-live + realised + unrealised P&L, net of fees). After a clean
    balance reconciliation: a ``balance_check`` event (reports and the ramp count clean checks)."""
    engine.journal.record_heartbeat(now)
    check = engine.balance_check
    if check is not None and check is not engine._balance_check_seen:
        engine._balance_check_seen = check
        if check.ok:
            engine.journal.record_event("balance_check", check.to_json(), now)
    if (engine._equity_recorded_at is not None and now - engine._equity_recorded_at < ROLLOUT_PERIOD
            and engine._fill_cursor == engine._equity_fill_cursor):
        return  # at most once a minute, and at once after a fill (a loss inside a minute still shows)
    capital = report.starting_capital(engine.journal, engine.settings.helios_paper_starting_zar)
    engine.journal.record_equity(now, capital, engine.journal.realised_total() + daily_loss.unrealised_zar(engine))
    engine._equity_recorded_at, engine._equity_fill_cursor = now, engine._fill_cursor


def current_capital_stage(engine: Engine) -> Decimal | None:
    """The stage in force: the last one ``helios ramp`` recorded; in LIVE without one, the first configured
    stage (HELIOS_CAPITAL_STAGES_ZAR, R1,000 by default); in PAPER without one, none."""
    recorded = engine.journal.capital_stages()
    if recorded:
        return recorded[-1][0]
    return engine.settings.capital_stages[0] if engine.mode is Mode.LIVE else None


def capital_stage_context(engine: Engine) -> dict[str, Any]:
    limit = current_capital_stage(engine)
    marks = daily_loss.marks(engine)
    positions = tuple((p.quantity, marks.get(pair, p.avg_entry_price)) for pair, p in engine.positions.items())
    entries, _ = engine.orders.entry_exposure()  # ZAR per pair: as (1, ZAR) pairs
    return {"stage_applies": limit is not None, "stage_limit_zar": limit, "positions_at_market": positions,
            "pending_entries": tuple((Decimal(1), zar) for zar in entries.values())}


def feed_shadow(engine: Engine) -> None:
    """The shadow sees the prices the engine saw this tick; the strategy's signals reach it through a tee."""
    if engine.shadow is None:
        return
    if not isinstance(engine.strategy, ShadowTee):
        engine.strategy = ShadowTee(engine.strategy, engine.shadow)
    try:
        engine.shadow.tick(engine.tickers)
    except Exception:  # the shadow never stops the real book
        log.exception("shadow: tick failed")


def red_flags_apply(engine: Engine) -> bool:
    """LIVE always; PAPER only as a rehearsal (HELIOS_REDFLAG_PAPER=true)."""
    return engine.mode is Mode.LIVE or engine.settings.red_flags_in_paper


def act_on_red_flags(engine: Engine, now: datetime) -> None:
    """The plan's red flags: evaluated about once a minute, and at once on the tick where one of their inputs
    changed (a fill, an order sent, a lost order, a balance check, a reconciliation, the daily loss reaching
    its limit): a flag acts before the tick's strategy can send anything more. Each
    newly fired flag is journaled (event ``red_flag``), alerted (critical) and acted on: HALT through the
    emergency stop (orders cancelled, HALTED journaled), REDUCE through the trading state's one writer.

    Which flags already acted is read from the journal (``red_flag`` events since the last resume), so a
    restart does not act twice and a resume lets a flag act again."""
    if not red_flags_apply(engine):
        return
    inputs: tuple[object, ...] = (engine._fill_cursor, len(engine.orders.lost()), engine._balance_mismatches,
                                  id(engine.reconciliation), id(engine.balance_check),
                                  engine._sent_times[-1] if engine._sent_times else None,
                                  daily_loss.todays_loss_zar(engine) >= engine.settings.max_daily_loss_zar)
    if (engine._red_flags_at is not None and now - engine._red_flags_at < ROLLOUT_PERIOD
            and inputs == engine._red_flag_inputs):
        return
    engine._red_flags_at, engine._red_flag_inputs = now, inputs
    until = now + timedelta(microseconds=1)  # the window includes what this tick journaled at ``now``
    window = report.window_ending("week", until)
    try:
        facts = report.red_flag_facts(engine.journal, window)  # restarts: unclean starts in the journal
        latched = {str(e["detail"].get("name")) for e in engine.journal.events_between(
            ("red_flag",), report.since_last_resume(engine.journal, window), until)}
    except (JournalError, sqlite3.Error):
        raise  # the journal itself: the tick fails and health reports it
    except Exception as exc:  # a bug in the evaluation must not stop exits; it is loud, retried each minute
        log.exception("red flags: evaluation failed")
        engine.last_error = f"red flags: {type(exc).__name__}: {exc}"
        engine.alerter.send("critical", "Red-flag evaluation failed (retried every minute)",
                            {"error": engine.last_error})
        return
    # today's loss is the engine's own (the daily-loss gate's number), not one re-derived from snapshots
    facts = replace(facts, todays_loss_zar=daily_loss.todays_loss_zar(engine))
    new = RedFlagLatch(latched).update(evaluate_red_flags(facts, report.redflag_config(engine.settings)))
    for flag in new:
        engine.journal.record_event("red_flag", flag.to_json(), now)
        log.critical("red flag %s: %s -> %s", flag.name, flag.reason, flag.action.value)
    redflags.act_on_red_flags(new, halt=partial(_red_flag_halt, engine), reduce=partial(_red_flag_reduce, engine),
                              alert=engine.alerter.send)


def _red_flag_halt(engine: Engine, reason: str) -> None:
    if engine.state is not TradingState.HALTED:
        control.emergency_stop(engine, reason, "red-flag")


def _red_flag_reduce(engine: Engine, reason: str) -> None:
    if engine.state is TradingState.ACTIVE:
        with suppress(trading_state.TransitionRefused):  # a stop written meanwhile wins
            control.set_state(engine, TradingState.REDUCING, reason, "red-flag")
