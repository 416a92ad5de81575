"""Each red flag of the plan fires on a scripted journal path exactly when it should - not one trade, day, order or
restart earlier - with a named reason and the plan's action (HALT; the daily loss limit REDUCEs)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from helios.journal import Journal, OrderRecord
from helios.metrics import Window
from helios.models import OrderPurpose, OrderStatus, OrderType, Side
from helios.redflags import Action, RedFlag, RedFlagConfig, RedFlagFacts, evaluate_red_flags
from helios.report import red_flag_facts

from .conftest import add_trade, at

D = Decimal


def flags(journal: Journal, now: datetime, restarts: int = 0) -> list[RedFlag]:
    return evaluate_red_flags(red_flag_facts(journal, Window(now - timedelta(days=7), now), restarts=restarts))


def names(journal: Journal, now: datetime, restarts: int = 0) -> list[str]:
    return [f.name for f in flags(journal, now, restarts)]


def test_win_rate_below_40_percent_fires_at_the_tenth_trade_not_the_ninth(journal: Journal) -> None:
    for i, pnl in enumerate([5, 5, 5] + [-1] * 6):
        add_trade(journal, pnl, at(hours=i))
    assert names(journal, at(hours=10)) == []  # 3 of 9 = 33%, but under 10 trades
    add_trade(journal, -1, at(hours=10))
    fired = flags(journal, at(hours=11))
    assert fired == [RedFlag("win_rate", "win rate 30.0% over 10 trades is below 40%", Action.HALT)]


def test_win_rate_of_exactly_40_percent_does_not_fire(journal: Journal) -> None:
    for i, pnl in enumerate([5] * 4 + [-1] * 6):
        add_trade(journal, pnl, at(hours=i))
    assert names(journal, at(hours=11)) == []


def test_three_losing_days_fire_when_the_third_day_is_complete(journal: Journal) -> None:
    journal.record_equity(at(), D(1000), D(0))
    journal.record_equity(at(hours=10), D(1000), D(-10))  # day 1 (Johannesburg) loses
    journal.record_equity(at(days=1, hours=10), D(1000), D(-20))  # day 2 loses
    journal.record_equity(at(days=2, hours=10), D(1000), D(-30))  # day 3 loses, still running
    assert names(journal, at(days=2, hours=11)) == []
    assert flags(journal, at(days=3, hours=1)) == [RedFlag("losing_days", "3 consecutive losing days (limit 3)")]


def test_a_winning_day_breaks_the_streak(journal: Journal) -> None:
    for day, pnl in enumerate([-10, -20, -5, -15, -25]):  # lose, lose, win (+15), lose, lose
        journal.record_equity(at(days=day, hours=10), D(1000), D(pnl))
    assert "losing_days" not in names(journal, at(days=5, hours=1))


def test_daily_loss_over_the_limit_reduces(journal: Journal) -> None:
    journal.record_equity(at(days=1, hours=-1), D(2000), D(0))
    journal.record_equity(at(days=1, hours=1), D(2000), D("-499.99"))
    assert names(journal, at(days=1, hours=2)) == []  # one cent under the limit
    journal.record_equity(at(days=1, hours=2), D(2000), D(-500))
    assert flags(journal, at(days=1, hours=3)) == [RedFlag(  # reaching the limit reduces, as the engine's gate does
        "daily_loss", "today's loss R500.00 reached MAX_DAILY_LOSS_ZAR R500", Action.REDUCE)]


def test_pnl_discrepancy_fires_on_the_second_mismatch_in_a_row(journal: Journal) -> None:
    journal.record_event("balance_mismatch", {"ok": False, "streak": 1}, at(hours=1))
    assert names(journal, at(hours=2)) == []
    journal.record_event("balance_check", {"ok": True}, at(hours=2))
    journal.record_event("balance_mismatch", {"ok": False, "streak": 1}, at(hours=3))
    assert names(journal, at(hours=4)) == []  # a clean check in between resets the streak
    journal.record_event("balance_mismatch", {"ok": False, "streak": 2}, at(hours=4))
    assert names(journal, at(hours=5)) == ["pnl_discrepancy"]


def _failed_order(journal: Journal, n: int, when: datetime) -> None:
    journal.record_order(OrderRecord(
        customer_order_id=f"f{n}", exchange_order_id=None, pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT,
        purpose=OrderPurpose.ENTRY, quantity=D("0.0001"), price=D(1_000_000), reference_price=D(1_000_000),
        stop_loss=None, take_profit=None, status=OrderStatus.SUBMITTING, filled_quantity=D(0), average_price=None,
        fee_total=D(0), reason="test", error=None, created_at=when, updated_at=when))
    journal.update_order(f"f{n}", status=OrderStatus.FAILED, now=when, error="Insufficient Balance")


def test_orders_not_executing_fires_at_the_third_failed_or_lost_order(journal: Journal) -> None:
    _failed_order(journal, 1, at(hours=1))
    journal.record_event("order_lost", {"customer_order_id": "x"}, at(hours=2))
    assert names(journal, at(hours=3)) == []
    _failed_order(journal, 2, at(hours=3))
    assert flags(journal, at(hours=4)) == [RedFlag(
        "orders_not_executing", "3 failed or lost orders in the window (limit 3)")]


def test_unknown_orders_or_fills_on_the_account_fire_at_once(journal: Journal) -> None:
    journal.record_event("reconciliation", {"ok": True, "unknown_orders": []}, at(hours=1))
    assert names(journal, at(hours=2)) == []
    journal.record_event("reconciliation", {"ok": False, "unknown_orders": [{"order_id": "manual"}]}, at(hours=2))
    assert names(journal, at(hours=3)) == ["unknown_activity"]
    journal.record_event("reconciliation", {"ok": True, "unknown_orders": []}, at(hours=3))
    assert names(journal, at(hours=4)) == []
    journal.record_event("unknown_fill", {"trade_id": "m1"}, at(hours=4))
    assert flags(journal, at(hours=5))[0].reason == (
        "0 order(s) and 1 fill(s) on the account that the journal does not know")


def test_repeated_crashes_fire_at_the_third_restart(journal: Journal) -> None:
    assert names(journal, at(hours=1), restarts=2) == []
    assert names(journal, at(hours=1), restarts=3) == ["repeated_crashes"]


def test_a_resume_starts_the_count_again(journal: Journal) -> None:
    for i in range(10):
        add_trade(journal, -1, at(hours=i))
    assert names(journal, at(hours=11)) == ["win_rate"]
    journal.record_event("resume", {"reason": "reviewed"}, at(hours=12))
    assert names(journal, at(hours=13)) == []


def test_the_thresholds_are_configurable() -> None:
    facts = RedFlagFacts(restarts=1, failed_or_lost_orders=1)
    assert evaluate_red_flags(facts) == []
    cfg = RedFlagConfig(restarts=1, failed_orders=1)
    assert [f.name for f in evaluate_red_flags(facts, cfg)] == ["orders_not_executing", "repeated_crashes"]


def test_the_engine_hook_reports_each_flag_once_until_a_resume(journal: Journal) -> None:
    from helios.redflags import RedFlagLatch
    from helios.report import current_red_flags

    latch = RedFlagLatch()
    assert latch.update(current_red_flags(journal, at(hours=1))) == []
    journal.record_event("unknown_fill", {"trade_id": "m1"}, at(hours=1))
    first = latch.update(current_red_flags(journal, at(hours=2)))
    assert [f.name for f in first] == ["unknown_activity"]
    assert latch.update(current_red_flags(journal, at(hours=3))) == []  # still firing: already acted on
    latch.reset()  # the operator resumed
    journal.record_event("resume", {"reason": "adopted the manual trade"}, at(hours=4))
    assert latch.update(current_red_flags(journal, at(hours=5))) == []
    journal.record_event("unknown_fill", {"trade_id": "m2"}, at(hours=6))
    assert [f.name for f in latch.update(current_red_flags(journal, at(hours=7)))] == ["unknown_activity"]


def test_a_fired_flag_halts_the_journal_state_and_alerts_once(journal: Journal, tmp_path: Path) -> None:
    """The path the engine's tick takes: evaluate -> latch -> act (HALTED through the state's writer + alert)."""
    from helios import trading_state
    from helios.alerts import Alerter
    from helios.models import TradingState
    from helios.redflags import RedFlagLatch, act_on_red_flags
    from helios.report import current_red_flags

    alerts = tmp_path / "alerts.jsonl"
    alerter = Alerter([f"file://{alerts}"])
    latch = RedFlagLatch()
    reduced: list[str] = []

    def tick(now: datetime) -> None:
        act_on_red_flags(latch.update(current_red_flags(journal, now)),
                         halt=lambda why: trading_state.transition(journal, TradingState.HALTED, reason=why,
                                                              actor="engine", now=now),
                         reduce=reduced.append, alert=alerter.send)

    for i in range(9):
        add_trade(journal, -1, at(hours=i))
        tick(at(hours=i, minutes=1))
    assert journal.read_state() is TradingState.ACTIVE  # nine losing trades: not one trade earlier
    add_trade(journal, -1, at(hours=9))
    tick(at(hours=9, minutes=1))
    tick(at(hours=9, minutes=2))
    alerter.close()
    assert journal.read_state() is TradingState.HALTED
    assert journal.last_state_change()["reason"] == (  # type: ignore[index]
        "red flag win_rate: win rate 0.0% over 10 trades is below 40%")
    sent = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert [(s["type"], s["title"]) for s in sent] == [("failure", "Helios critical: RED FLAG win_rate: HALT")]
    assert reduced == []
