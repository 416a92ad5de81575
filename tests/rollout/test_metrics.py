"""Success metrics on a fixed journal, compared with numbers worked out by hand (issue 12: drawdown on marked equity,
Sharpe on daily returns, reliability from the heartbeat history, per window)."""

from __future__ import annotations

import math
import statistics
from datetime import timedelta
from decimal import Decimal

from helios.journal import Journal
from helios.metrics import (
    MONTH_2_PLUS,
    WEEK_1,
    EquityPoint,
    Outcome,
    Window,
    compute_metrics,
    evaluate,
    max_drawdown_pct,
    sharpe_ratio,
)
from helios.report import collect_window_facts

from .conftest import add_trade, at

D = Decimal


def _fixed_journal(journal: Journal) -> Window:
    """Capital R1,000. Marked P&L: day 1 opens at 0 and closes +50, day 2 closes +20 (an open position marked
    down: unrealised), day 3 closes -30, day 4 closes +40. Equity 1000 -> 1050 -> 1020 -> 970 -> 1040.
    Trades: +10, -5, +3, -2. Heartbeats: 7 of the window's first 10 minutes (one minute twice)."""
    journal.record_equity(at(hours=0), D(1000), D(0))
    journal.record_equity(at(hours=12), D(1000), D(50))
    journal.record_equity(at(days=1, hours=12), D(1000), D(20))
    journal.record_equity(at(days=2, hours=12), D(1000), D(-30))
    journal.record_equity(at(days=3, hours=12), D(1000), D(40))
    for pnl, day in ((10, 0), (-5, 1), (3, 2), (-2, 3)):
        add_trade(journal, pnl, at(days=day, hours=6))
    for minute in (0, 1, 2, 4, 5, 7, 9):
        journal.record_heartbeat(at(minutes=minute, hours=0) + timedelta(seconds=13))
    journal.record_heartbeat(at(minutes=9, hours=0) + timedelta(seconds=50))  # same minute again
    return Window(at(), at(days=4))


def test_window_metrics_match_the_hand_computed_numbers(journal: Journal) -> None:
    window = _fixed_journal(journal)
    m = compute_metrics(collect_window_facts(journal, window))
    assert m["trades"] == 4
    assert m["win_rate_pct"] == D(50)  # 2 of 4
    assert m["average_trade_pnl_zar"] == D("1.5")  # (10 - 5 + 3 - 2) / 4
    # peak equity 1050, trough 970: (1050 - 970) / 1050 = 7.6190...%
    assert round(m["max_drawdown_pct"], 4) == D("7.6190")
    assert [p for _, p in m["daily_pnl_zar"]] == [D(50), D(-30), D(-50), D(70)]
    # daily returns: 50/1000, -30/1050, -50/1020, 70/970; Sharpe = mean / sample stdev * sqrt(365)
    returns = [50 / 1000, -30 / 1050, -50 / 1020, 70 / 970]
    by_hand = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365)
    assert round(by_hand, 4) == 3.6106
    assert round(m["sharpe"], 4) == D("3.6106")
    assert m["monthly_pnl_zar"] == [("2026-11", D(40))]
    # reliability over the first 10 minutes: 7 minutes with a heartbeat = 70%
    ten = collect_window_facts(journal, Window(at(), at(minutes=10)))
    assert compute_metrics(ten)["reliability_pct"] == D(70)
    # the 4-day window has 5760 minutes, 7 of them beating
    assert m["reliability_pct"] == D(7) / 5760 * 100


def test_a_window_sees_only_its_own_trades_and_curve(journal: Journal) -> None:
    _fixed_journal(journal)
    m = compute_metrics(collect_window_facts(journal, Window(at(days=1), at(days=4))))
    assert m["trades"] == 3 and m["win_rate_pct"] == D(1) / 3 * 100
    # curve 1020 -> 970 -> 1040 (day 2's 12:00 sample opens the window): drawdown 50/1020
    assert round(m["max_drawdown_pct"], 4) == round(D(50) / 1020 * 100, 4)


def test_drawdown_is_on_marked_equity_not_realised_only() -> None:
    # realised never moves, an open position is marked down 120 then recovers: drawdown 120/1000 = 12%
    points = [EquityPoint(at(hours=h), D(1000), D(p)) for h, p in ((0, 0), (1, -120), (2, 0))]
    assert max_drawdown_pct(points) == D(12)


def test_deposits_and_withdrawals_are_not_drawdown_or_profit() -> None:
    # P&L flat at +100 while the operator withdraws R500: no drawdown; then P&L -55 on R600 equity: 55/600
    points = [EquityPoint(at(hours=0), D(1000), D(100)), EquityPoint(at(hours=1), D(500), D(100)),
              EquityPoint(at(hours=2), D(500), D(45))]
    assert round(max_drawdown_pct(points), 12) == round(D(55) / 600 * 100, 12)


def test_sharpe_is_undefined_without_variation_or_with_one_day() -> None:
    assert sharpe_ratio([D("0.01")]) is None
    assert sharpe_ratio([D("0.01"), D("0.01"), D("0.01")]) is None
    assert sharpe_ratio([D("0.02"), D(0)]) == D("0.01") / D("0.0002").sqrt() * D(365).sqrt()


def test_thresholds_fail_pass_or_say_no_data(journal: Journal) -> None:
    window = _fixed_journal(journal)
    checks = {c.name: c for c in evaluate(compute_metrics(collect_window_facts(journal, window)), WEEK_1)}
    assert checks["win_rate"].outcome is Outcome.FAIL and checks["win_rate"].detail == "50.00% (needs >= 60%)"
    assert checks["max_drawdown"].outcome is Outcome.PASS  # 7.62% <= 10%
    assert checks["crashes"].outcome is Outcome.PASS and checks["orders_execute"].outcome is Outcome.PASS
    assert checks["pnl_accuracy"].outcome is Outcome.NO_DATA
    month = {c.name: c for c in evaluate(compute_metrics(collect_window_facts(journal, window)), MONTH_2_PLUS)}
    assert month["sharpe"].outcome is Outcome.PASS and month["max_drawdown"].outcome is Outcome.PASS
    assert month["reliability"].outcome is Outcome.FAIL  # 0.12% < 99%
    assert month["monthly_profitability"].outcome is Outcome.PASS
    journal.record_event("balance_check", {"ok": True}, at(days=1))
    journal.record_event("balance_mismatch", {"ok": False, "streak": 1}, at(days=2))
    again = {c.name: c for c in evaluate(compute_metrics(collect_window_facts(journal, window)), WEEK_1)}
    assert again["pnl_accuracy"].outcome is Outcome.FAIL
