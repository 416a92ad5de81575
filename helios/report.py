"""Success metrics from the journal: the operator plan's "SUCCESS METRICS" and "Red Flags", machine-checked."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from helios.config import Settings
from helios.engine import JOHANNESBURG
from helios.journal import Journal
from helios.reconcile import STARTING_BALANCES_KEY, decode_balances

MIN_WIN_RATE_PCT = Decimal(60)
RED_FLAG_WIN_RATE_PCT = Decimal(40)
RED_FLAG_LOSING_DAYS = 3


def success_report(journal: Journal, settings: Settings) -> dict[str, Any]:
    trades = journal.all_trades()
    pnls = [Decimal(t["realised_pnl_zar"]) for t in trades]
    wins = [p for p in pnls if p > 0]
    by_day: dict[str, Decimal] = defaultdict(Decimal)
    for t in trades:
        day = datetime.fromisoformat(t["closed_at"]).astimezone(JOHANNESBURG).date().isoformat()
        by_day[day] += Decimal(t["realised_pnl_zar"])
    recorded = journal.get_meta(STARTING_BALANCES_KEY)
    capital = decode_balances(recorded).get("ZAR", Decimal(0)) if recorded else settings.helios_paper_starting_zar
    equity = capital
    peak = capital
    max_drawdown_pct = Decimal(0)
    for pnl in pnls:
        equity += pnl
        peak = max(peak, equity)
        if peak > 0:
            max_drawdown_pct = max(max_drawdown_pct, (peak - equity) / peak * 100)
    streak = 0
    worst_streak = 0
    for day in sorted(by_day):
        streak = streak + 1 if by_day[day] < 0 else 0
        worst_streak = max(worst_streak, streak)
    win_rate = Decimal(len(wins)) / len(pnls) * 100 if pnls else None
    red_flags = []
    if win_rate is not None and len(pnls) >= 10 and win_rate < RED_FLAG_WIN_RATE_PCT:
        red_flags.append(f"win rate {win_rate:.1f}% is below {RED_FLAG_WIN_RATE_PCT}%")
    if worst_streak >= RED_FLAG_LOSING_DAYS:
        red_flags.append(f"{worst_streak} consecutive losing days")
    worst_day = min(by_day.values(), default=Decimal(0))
    if -worst_day > settings.max_daily_loss_zar:
        red_flags.append(f"a daily loss of R{-worst_day:.2f} exceeded MAX_DAILY_LOSS_ZAR")
    rejections = journal.rejection_counts()
    return {
        "mode": settings.mode.value,
        "trades": len(pnls),
        "wins": len(wins),
        "win_rate_pct": None if win_rate is None else str(round(win_rate, 1)),
        "average_trade_pnl_zar": None if not pnls else str(round(sum(pnls) / len(pnls), 2)),
        "realised_total_zar": str(round(sum(pnls, Decimal(0)), 2)),
        "fees_total_zar": str(round(journal.fees_total(), 2)),
        "starting_capital_zar": str(capital),
        "max_drawdown_pct": str(round(max_drawdown_pct, 2)),
        "consecutive_losing_days_max": worst_streak,
        "daily_pnl_zar": {d: str(round(v, 2)) for d, v in sorted(by_day.items())},
        "gate_rejections": rejections,
        "meets_week1_win_rate": None if win_rate is None else win_rate >= MIN_WIN_RATE_PCT,
        "red_flags": red_flags,
    }


def render_report(report: dict[str, Any]) -> str:
    lines = [
        f"mode                 {report['mode']}",
        f"trades               {report['trades']} ({report['wins']} won)",
        f"win rate             {report['win_rate_pct'] or '-'}%  (plan: >= 60% in week 1)",
        f"average trade P&L    R{report['average_trade_pnl_zar'] or '0'}",
        f"realised total       R{report['realised_total_zar']} (fees R{report['fees_total_zar']})",
        f"max drawdown         {report['max_drawdown_pct']}% of R{report['starting_capital_zar']}",
        f"losing-day streak    {report['consecutive_losing_days_max']}",
    ]
    if report["red_flags"]:
        lines.append("RED FLAGS (plan: stop LIVE trading):")
        lines += [f"  - {flag}" for flag in report["red_flags"]]
    else:
        lines.append("red flags            none")
    return "\n".join(lines)
