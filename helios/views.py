"""Read-only views of the engine for the HTTP API, the service's health and the emergency stop's report."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from helios import daily_loss, exits

if TYPE_CHECKING:
    from helios.engine import Engine

QUOTE = "ZAR"


def positions_json(engine: Engine) -> list[dict[str, Any]]:
    out = []
    for pair, position in sorted(engine.positions.items()):
        ticker = engine.tickers.get(pair)
        out.append({
            "pair": pair,
            "quantity": str(position.quantity),
            "avg_entry_price": str(position.avg_entry_price),
            "stop_loss": str(position.stop_loss),
            "take_profit": str(position.take_profit),
            "mark_price": None if ticker is None else str(ticker.bid),
            "unrealised_pnl_zar": None if ticker is None else str(round(position.unrealised(ticker.bid), 2)),
            "opened_at": position.opened_at.isoformat(),
            "exit_pending": engine.protection.software_exit_pending(pair),
            "protected_on_exchange": engine.protection.protected(pair),
            "dust": exits.is_dust(engine, pair),
        })
    return out


def heartbeat_age(engine: Engine, now: datetime) -> float | None:
    return None if engine.last_heartbeat is None else (now - engine.last_heartbeat).total_seconds()


def pnl_json(engine: Engine) -> dict[str, Any]:
    realised_total = engine.journal.realised_total()
    return {
        "currency": QUOTE,
        "today_realised_zar": str(round(engine._realised_today, 2)),
        "unrealised_zar": str(round(daily_loss.unrealised_zar(engine), 2)),
        "today_total_zar": str(round(daily_loss.todays_pnl_zar(engine), 2)),
        "today_start_unrealised_zar": str(round(engine._day_baseline, 2)),
        "realised_total_zar": str(round(realised_total, 2)),
        "fees_total_zar": str(round(engine.journal.fees_total(), 2)),
        "daily_loss_limit_zar": str(engine.settings.max_daily_loss_zar),
        "today_starts_at": engine._today_start.isoformat(),
        "cash_zar": None if engine._cash_zar is None else str(engine._cash_zar),
    }
