"""Red flags that act: the operator plan's "Red Flags (Stop LIVE Trading Immediately)" as pure rules.

Each rule is a pure function over facts about a window (read from the journal by ``helios.report``) and returns a
named ``RedFlag`` or ``None``. ``evaluate_red_flags`` runs them all; the engine's tick calls it and, for each flag
whose action is HALT, moves to HALTED (the plan's "stop LIVE trading immediately") and sends a critical alert.
The daily loss limit keeps its contract rule (REDUCING: no new entries, exits still run).

| plan's red flag                  | rule                     | default                                           |
|----------------------------------|--------------------------|---------------------------------------------------|
| Win rate drops below 40%         | ``win_rate``             | < 40% over at least 10 closed trades              |
| 3+ consecutive losing days       | ``losing_days``          | the last 3 completed local days each lost money   |
| Daily loss exceeds R500          | ``daily_loss``           | today's loss >= MAX_DAILY_LOSS_ZAR -> REDUCING    |
| P&L discrepancies with VALR      | ``pnl_discrepancy``      | 2 balance mismatches in a row                     |
| Orders not executing correctly   | ``orders_not_executing`` | 3 failed or lost orders in the window             |
| Unexpected behaviour             | ``unknown_activity``     | any order or fill on the account nobody journaled |
| System crashes or errors         | ``repeated_crashes``     | 3 restarts (systemd ``NRestarts``) in the window  |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from helios.metrics import ClosedTrade, losing_day_streak, win_rate_pct


class Action(StrEnum):
    HALT = "HALT"
    REDUCE = "REDUCE"


@dataclass(frozen=True)
class RedFlag:
    name: str
    reason: str
    action: Action = Action.HALT

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason, "action": self.action.value}


@dataclass(frozen=True)
class RedFlagConfig:
    min_trades_for_win_rate: int = 10
    min_win_rate_pct: Decimal = Decimal(40)
    losing_days: int = 3
    balance_mismatch_streak: int = 2
    failed_orders: int = 3
    restarts: int = 3
    max_daily_loss_zar: Decimal = Decimal(500)


@dataclass(frozen=True)
class RedFlagFacts:
    """What the rules look at, for one window (since the window start, or the last resume if later)."""

    trades: Sequence[ClosedTrade] = ()
    completed_days: Sequence[tuple[date, Decimal]] = ()  # (local day, marked P&L), completed days only, in order
    todays_loss_zar: Decimal = Decimal(0)  # >= 0
    balance_mismatch_streak: int = 0
    failed_or_lost_orders: int = 0
    unknown_orders: int = 0
    unknown_fills: int = 0
    restarts: int = 0  # systemd NRestarts of helios.service (passed in by the caller)
    extra: dict[str, Any] = field(default_factory=dict)


def win_rate(facts: RedFlagFacts, cfg: RedFlagConfig) -> RedFlag | None:
    if len(facts.trades) < cfg.min_trades_for_win_rate:
        return None
    rate = win_rate_pct(facts.trades)
    if rate is None or rate >= cfg.min_win_rate_pct:
        return None
    return RedFlag("win_rate", f"win rate {rate:.1f}% over {len(facts.trades)} trades is below "
                               f"{cfg.min_win_rate_pct}%")


def losing_days(facts: RedFlagFacts, cfg: RedFlagConfig) -> RedFlag | None:
    streak = losing_day_streak(facts.completed_days)
    if streak < cfg.losing_days:
        return None
    return RedFlag("losing_days", f"{streak} consecutive losing days (limit {cfg.losing_days})")


def daily_loss(facts: RedFlagFacts, cfg: RedFlagConfig) -> RedFlag | None:
    if facts.todays_loss_zar < cfg.max_daily_loss_zar:  # reaching the limit reduces, as the engine's gate does
        return None
    return RedFlag("daily_loss", f"today's loss R{facts.todays_loss_zar:.2f} reached MAX_DAILY_LOSS_ZAR "
                                 f"R{cfg.max_daily_loss_zar}", Action.REDUCE)


def pnl_discrepancy(facts: RedFlagFacts, cfg: RedFlagConfig) -> RedFlag | None:
    if facts.balance_mismatch_streak < cfg.balance_mismatch_streak:
        return None
    return RedFlag("pnl_discrepancy", f"{facts.balance_mismatch_streak} balance reconciliations in a row differ "
                                      "from VALR beyond the tolerance")


def orders_not_executing(facts: RedFlagFacts, cfg: RedFlagConfig) -> RedFlag | None:
    if facts.failed_or_lost_orders < cfg.failed_orders:
        return None
    return RedFlag("orders_not_executing", f"{facts.failed_or_lost_orders} failed or lost orders in the window "
                                           f"(limit {cfg.failed_orders})")


def unknown_activity(facts: RedFlagFacts, cfg: RedFlagConfig) -> RedFlag | None:
    if facts.unknown_orders == 0 and facts.unknown_fills == 0:
        return None
    return RedFlag("unknown_activity", f"{facts.unknown_orders} order(s) and {facts.unknown_fills} fill(s) on the "
                                       "account that the journal does not know")


def repeated_crashes(facts: RedFlagFacts, cfg: RedFlagConfig) -> RedFlag | None:
    if facts.restarts < cfg.restarts:
        return None
    return RedFlag("repeated_crashes", f"the service restarted {facts.restarts} times (limit {cfg.restarts})")


RULES = (win_rate, losing_days, daily_loss, pnl_discrepancy, orders_not_executing, unknown_activity,
         repeated_crashes)


def evaluate_red_flags(facts: RedFlagFacts, cfg: RedFlagConfig | None = None) -> list[RedFlag]:
    """Every rule that fires, in the table's order. The engine hook: HALT + critical alert for HALT flags."""
    config = cfg or RedFlagConfig()
    return [flag for rule in RULES if (flag := rule(facts, config)) is not None]


@dataclass
class RedFlagLatch:
    """Acts once per flag: the engine's tick feeds every evaluation in and gets back only the flags that are new
    since the last ``reset`` (call it on resume), so a flag halts and alerts once, not every minute."""

    latched: set[str] = field(default_factory=set)

    def update(self, flags: Sequence[RedFlag]) -> list[RedFlag]:
        new = [f for f in flags if f.name not in self.latched]
        self.latched.update(f.name for f in new)
        return new

    def reset(self) -> None:
        self.latched.clear()


def act_on_red_flags(new_flags: Sequence[RedFlag], *, halt: Callable[[str], object], reduce: Callable[[str], object],
                     alert: Callable[[str, str, dict[str, Any]], None]) -> None:
    """The plan's action for each newly fired flag: a critical alert, then HALTED (or REDUCING for the daily loss).

    The engine passes its own callables (``halt``: the emergency stop with this reason; ``reduce``: the REDUCING
    transition; ``alert``: ``Alerter.send``), so the trading state keeps its one writer."""
    for flag in new_flags:
        alert("critical", f"RED FLAG {flag.name}: {flag.action.value}", flag.to_json())
        if flag.action is Action.HALT:
            halt(f"red flag {flag.name}: {flag.reason}")
        else:
            reduce(f"red flag {flag.name}: {flag.reason}")
