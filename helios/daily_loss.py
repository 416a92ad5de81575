"""Today's P&L and the daily loss limit, measured against each position's mark at the start of the Johannesburg
day (recorded once per day in the journal, so a restart keeps it). Reaching MAX_DAILY_LOSS_ZAR moves ACTIVE to
REDUCING through the trading state's one writer. The numbers come from the pure ``helios.portfolio``.
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from helios import control, portfolio, trading_state
from helios.models import TradingState

if TYPE_CHECKING:
    from helios.engine import Engine

JOHANNESBURG = ZoneInfo("Africa/Johannesburg")
DAY_BASELINE_KEY = "day_baseline"


def day_start(now: datetime) -> datetime:
    """Midnight of ``now``'s calendar day in Africa/Johannesburg."""
    local = now.astimezone(JOHANNESBURG)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def roll_day(engine: Engine, now: datetime) -> None:
    """At the first tick of a Johannesburg day, record each position's mark: today's P&L starts there."""
    start = day_start(now)
    if start == engine._today_start and engine._day_rolled:
        return
    stored = stored_day_baseline(engine, start)
    if stored is None:
        marks = {pair: t.bid for pair, t in engine.tickers.items()}
        stored = portfolio.day_baseline(engine.positions, marks)
        detail = {"day": start.isoformat(), "unrealised_zar": str(stored),
                  "marks": {p: str(marks[p]) for p in engine.positions if p in marks}}
        engine.journal.set_meta(DAY_BASELINE_KEY, json.dumps(detail, sort_keys=True))
        engine.journal.record_event("day_start", detail, now)
    engine._today_start = start
    engine._day_baseline = stored
    engine._realised_today = engine.journal.realised_since(start)
    engine._day_rolled = True


def stored_day_baseline(engine: Engine, start: datetime) -> Decimal | None:
    raw = engine.journal.get_meta(DAY_BASELINE_KEY)
    if raw is None:
        return None
    stored = json.loads(raw)
    return Decimal(stored["unrealised_zar"]) if stored.get("day") == start.isoformat() else None


def check_daily_loss(engine: Engine, now: datetime) -> None:
    loss = todays_loss_zar(engine)
    if loss >= engine.settings.max_daily_loss_zar and engine.state is TradingState.ACTIVE:
        with suppress(trading_state.TransitionRefused):  # compare-and-set: a HALT written meanwhile wins
            control.set_state(engine, TradingState.REDUCING, f"daily loss R{loss:.2f} reached "
                              f"MAX_DAILY_LOSS_ZAR=R{engine.settings.max_daily_loss_zar}", "engine")


def marks(engine: Engine) -> dict[str, Decimal]:
    return {pair: t.bid for pair, t in engine.tickers.items()}


def unrealised_zar(engine: Engine) -> Decimal:
    return portfolio.unrealised(engine.positions, marks(engine))


def todays_pnl_zar(engine: Engine) -> Decimal:
    """Since midnight in Johannesburg: positions held then count from their mark then (not their entry)."""
    return portfolio.todays_pnl(engine._realised_today, engine.positions, marks(engine), engine._day_baseline)


def todays_loss_zar(engine: Engine) -> Decimal:
    return max(Decimal(0), -todays_pnl_zar(engine))
