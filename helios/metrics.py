"""Windowed success metrics: pure functions over facts read from the journal (no I/O here).

The operator plan's "SUCCESS METRICS", per window:

* **win rate** - share of closed trades in the window with realised P&L (net of every fee) > 0, in percent.
* **average trade P&L** - mean realised P&L of the window's closed trades.
* **max drawdown on marked equity** - equity = capital baseline + realised + unrealised P&L, sampled by the engine
  (``equity_snapshots``). Deposits and withdrawals move the baseline, not P&L, so the curve is *time-weighted*: each
  step's return is ``(pnl_i - pnl_{i-1}) / (capital_{i-1} + pnl_{i-1})``, chained into an index; drawdown is the
  largest fall of that index from its running peak, in percent. With a constant baseline this is exactly
  ``(peak equity - equity) / peak equity``.
* **Sharpe ratio on daily returns** - a day's return is its P&L change (close of the day minus close of the previous
  day, the first day against the window's first sample) divided by the equity at the previous close; days are
  Africa/Johannesburg calendar days (the daily loss limit's days). ``Sharpe = mean(r) / stdev(r) * sqrt(365)``
  (crypto trades every day), ``stdev`` the *sample* standard deviation (n - 1). Fewer than two daily returns, or a
  zero standard deviation (returns never varied), leave it **undefined** (``None``): a threshold on it is then
  "no data", never a pass.
* **monthly profitability** - P&L change of each calendar month the window touches; profitable when every one > 0.
* **system reliability** - share of the window's minutes that have a heartbeat (``heartbeats``), in percent.
* **fees and slippage** - fees of the window's fills in ZAR, and slippage: each fill against its order's reference
  price (the limit price, or the touch when a market order was decided), in ZAR and in basis points of the notional.
* **P&L accuracy against VALR** - balance reconciliations in the window: accurate when at least one ran and none
  found a difference beyond the tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

JOHANNESBURG = ZoneInfo("Africa/Johannesburg")
DAYS_PER_YEAR = 365
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True)
class ClosedTrade:
    pnl_zar: Decimal
    closed_at: datetime


@dataclass(frozen=True)
class EquityPoint:
    at: datetime
    capital_zar: Decimal
    pnl_zar: Decimal

    @property
    def equity_zar(self) -> Decimal:
        return self.capital_zar + self.pnl_zar


@dataclass(frozen=True)
class FillCost:
    """One fill with the price the order was decided at (the limit, or the touch for a market order)."""

    side: str  # "BUY" / "SELL"
    price: Decimal
    quantity: Decimal
    reference_price: Decimal
    fee_zar: Decimal


# --- the metrics --------------------------------------------------------------------------------------------------
def win_rate_pct(trades: Sequence[ClosedTrade]) -> Decimal | None:
    if not trades:
        return None
    return Decimal(sum(1 for t in trades if t.pnl_zar > 0)) / len(trades) * HUNDRED


def average_trade_pnl(trades: Sequence[ClosedTrade]) -> Decimal | None:
    if not trades:
        return None
    return sum((t.pnl_zar for t in trades), Decimal(0)) / len(trades)


def slippage_zar(fills: Sequence[FillCost]) -> Decimal:
    """What fills cost against their reference price, in ZAR (positive = worse than the reference)."""
    total = Decimal(0)
    for f in fills:
        if f.reference_price > 0:
            total += (f.price - f.reference_price) * f.quantity * (1 if f.side == "BUY" else -1)
    return total


def slippage_bps(fills: Sequence[FillCost]) -> Decimal | None:
    notional = sum((f.reference_price * f.quantity for f in fills if f.reference_price > 0), Decimal(0))
    return None if notional == 0 else slippage_zar(fills) / notional * 10_000


def _step_return(previous: EquityPoint, current: EquityPoint) -> Decimal:
    base = previous.equity_zar
    if base <= 0:
        return Decimal(0)
    return (current.pnl_zar - previous.pnl_zar) / base


def drawdown_series(points: Sequence[EquityPoint]) -> list[Decimal]:
    """Drawdown in percent at each point: the time-weighted equity index's fall from its running peak."""
    out = [Decimal(0)] if points else []
    index = peak = Decimal(1)
    for previous, current in pairwise(points):
        index *= 1 + _step_return(previous, current)
        peak = max(peak, index)
        out.append((peak - index) / peak * HUNDRED)
    return out


def max_drawdown_pct(points: Sequence[EquityPoint]) -> Decimal:
    """Largest drawdown of the series, in percent (0 without a fall)."""
    return max(drawdown_series(points), default=Decimal(0))


def _local_day(at: datetime) -> date:
    return at.astimezone(JOHANNESBURG).date()


def daily_closes(points: Sequence[EquityPoint]) -> list[tuple[date, EquityPoint]]:
    """The last sample of each local day, in order."""
    closes: dict[date, EquityPoint] = {}
    for point in points:
        closes[_local_day(point.at)] = point
    return sorted(closes.items())


def daily_pnl(points: Sequence[EquityPoint]) -> list[tuple[date, Decimal]]:
    """Each local day's marked P&L: its close minus the previous close (the first day: minus the first sample)."""
    if not points:
        return []
    out = []
    previous = points[0]
    for day, close in daily_closes(points):
        out.append((day, close.pnl_zar - previous.pnl_zar))
        previous = close
    return out


def daily_returns(points: Sequence[EquityPoint]) -> list[Decimal]:
    if not points:
        return []
    out = []
    previous = points[0]
    for _, close in daily_closes(points):
        out.append(_step_return(previous, close))
        previous = close
    return out


def sharpe_ratio(returns: Sequence[Decimal]) -> Decimal | None:
    """mean / sample stdev * sqrt(365); None with fewer than two returns or a zero stdev (see the module doc)."""
    n = len(returns)
    if n < 2:
        return None
    mean = sum(returns, Decimal(0)) / n
    variance = sum(((r - mean) ** 2 for r in returns), Decimal(0)) / (n - 1)
    if variance == 0:
        return None
    return mean / variance.sqrt() * Decimal(DAYS_PER_YEAR).sqrt()


def monthly_pnl(points: Sequence[EquityPoint]) -> list[tuple[str, Decimal]]:
    """P&L change of each local calendar month (YYYY-MM) the samples touch."""
    months: dict[str, Decimal] = {}
    for day, pnl in daily_pnl(points):
        key = f"{day.year:04d}-{day.month:02d}"
        months[key] = months.get(key, Decimal(0)) + pnl
    return sorted(months.items())


def losing_day_streak(days: Sequence[tuple[date, Decimal]]) -> int:
    """Consecutive losing days at the end of ``days`` (the current streak)."""
    streak = 0
    for _, pnl in reversed(days):
        if pnl >= 0:
            break
        streak += 1
    return streak


def reliability_pct(heartbeat_minutes: Iterable[datetime], window: Window) -> Decimal | None:
    """Share of the window's whole minutes with a heartbeat, in percent; None for a window under one minute."""
    start = window.start.replace(second=0, microsecond=0)
    if start < window.start:
        start += timedelta(minutes=1)
    total = math.floor((window.end - start).total_seconds() / 60)
    if total <= 0:
        return None
    beating = sum(1 for m in set(heartbeat_minutes) if start <= m < start + timedelta(minutes=total))
    return Decimal(beating) / total * HUNDRED


# --- thresholds ---------------------------------------------------------------------------------------------------
class Outcome(StrEnum):
    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    NO_DATA = "no data"


@dataclass(frozen=True)
class Thresholds:
    """One phase's success criteria (the plan's numbers are the defaults below); ``None`` = not required."""

    phase: str
    min_win_rate_pct: Decimal | None = None
    max_drawdown_pct: Decimal | None = None
    positive_average_trade: bool = False
    profitable_window: bool = False
    every_month_profitable: bool = False
    min_sharpe: Decimal | None = None
    min_reliability_pct: Decimal | None = None
    max_crashes: int | None = 0  # "no system crashes or errors"
    max_failed_orders: int | None = 0  # "all trades execute correctly"
    pnl_accurate: bool = True  # "P&L tracking accurate"


WEEK_1 = Thresholds("week 1", min_win_rate_pct=Decimal(60), max_drawdown_pct=Decimal(10))
WEEKS_2_TO_4 = Thresholds("weeks 2-4", min_win_rate_pct=Decimal(60), max_drawdown_pct=Decimal(15),
                          positive_average_trade=True, profitable_window=True)
MONTH_2_PLUS = Thresholds("month 2+", min_win_rate_pct=Decimal(55), max_drawdown_pct=Decimal(20),
                          every_month_profitable=True, min_sharpe=Decimal("1.0"), min_reliability_pct=Decimal(99))
PHASES = (WEEK_1, WEEKS_2_TO_4, MONTH_2_PLUS)


def phase_for_stage(stage_index: int, phases: Sequence[Thresholds] = PHASES) -> Thresholds:
    """Stage 0 (R1,000) is week 1, stage 1 (R5,000) weeks 2-4, every later stage month 2+."""
    return phases[min(max(stage_index, 0), len(phases) - 1)]


@dataclass(frozen=True)
class WindowFacts:
    """Everything the metrics need for one window, read from the journal by ``helios.report``."""

    window: Window
    trades: Sequence[ClosedTrade]
    equity: Sequence[EquityPoint]
    heartbeat_minutes: frozenset[datetime]
    balance_checks: int
    balance_mismatches: int
    failed_orders: int
    crashes: int
    fills: Sequence[FillCost] = ()


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "outcome": self.outcome.value, "detail": self.detail}


def compute_metrics(facts: WindowFacts) -> dict[str, Any]:
    returns = daily_returns(facts.equity)
    total_pnl = (facts.equity[-1].pnl_zar - facts.equity[0].pnl_zar) if facts.equity else None
    return {
        "trades": len(facts.trades),
        "win_rate_pct": win_rate_pct(facts.trades),
        "average_trade_pnl_zar": average_trade_pnl(facts.trades),
        "realised_zar": sum((t.pnl_zar for t in facts.trades), Decimal(0)),
        "marked_pnl_zar": total_pnl,
        "max_drawdown_pct": max_drawdown_pct(facts.equity) if len(facts.equity) >= 2 else None,
        "daily_pnl_zar": daily_pnl(facts.equity),
        "daily_returns": returns,
        "sharpe": sharpe_ratio(returns),
        "monthly_pnl_zar": monthly_pnl(facts.equity),
        "reliability_pct": reliability_pct(facts.heartbeat_minutes, facts.window),
        "fees_zar": sum((f.fee_zar for f in facts.fills), Decimal(0)),
        "slippage_zar": slippage_zar(facts.fills),
        "slippage_bps": slippage_bps(facts.fills),
        "balance_checks": facts.balance_checks,
        "balance_mismatches": facts.balance_mismatches,
        "failed_orders": facts.failed_orders,
        "crashes": facts.crashes,
    }


def _at_least(name: str, value: Decimal | None, floor: Decimal, unit: str = "") -> Check:
    if value is None:
        return Check(name, Outcome.NO_DATA, f"not computable in this window (needs >= {floor}{unit})")
    ok = value >= floor
    return Check(name, Outcome.PASS if ok else Outcome.FAIL, f"{value:.2f}{unit} (needs >= {floor}{unit})")


def evaluate(metrics: Mapping[str, Any], t: Thresholds) -> list[Check]:
    """Each threshold of ``t`` as a named check. FAIL fails the report; NO_DATA is no proof (a ramp refuses it)."""
    checks: list[Check] = []
    if t.min_win_rate_pct is not None:
        checks.append(_at_least("win_rate", metrics["win_rate_pct"], t.min_win_rate_pct, "%"))
    if t.max_drawdown_pct is not None:
        dd: Decimal | None = metrics["max_drawdown_pct"]
        if dd is None:
            checks.append(Check("max_drawdown", Outcome.NO_DATA, "no equity curve in this window"))
        else:
            checks.append(Check("max_drawdown", Outcome.PASS if dd <= t.max_drawdown_pct else Outcome.FAIL,
                                f"{dd:.2f}% (needs <= {t.max_drawdown_pct}%)"))
    if t.positive_average_trade:
        avg: Decimal | None = metrics["average_trade_pnl_zar"]
        checks.append(Check("average_trade_pnl", Outcome.NO_DATA, "no closed trade") if avg is None else
                      Check("average_trade_pnl", Outcome.PASS if avg > 0 else Outcome.FAIL,
                            f"R{avg:.2f} (needs > 0)"))
    if t.profitable_window:
        pnl: Decimal | None = metrics["marked_pnl_zar"]
        checks.append(Check("profitable", Outcome.NO_DATA, "no equity curve") if pnl is None else
                      Check("profitable", Outcome.PASS if pnl > 0 else Outcome.FAIL, f"R{pnl:.2f} (needs > 0)"))
    if t.every_month_profitable:
        months: list[tuple[str, Decimal]] = metrics["monthly_pnl_zar"]
        losing = [m for m, v in months if v <= 0]
        checks.append(Check("monthly_profitability", Outcome.NO_DATA, "no equity curve") if not months else
                      Check("monthly_profitability", Outcome.FAIL if losing else Outcome.PASS,
                            f"not profitable: {', '.join(losing)}" if losing else "every month > 0"))
    if t.min_sharpe is not None:
        checks.append(_at_least("sharpe", metrics["sharpe"], t.min_sharpe))
    if t.min_reliability_pct is not None:
        checks.append(_at_least("reliability", metrics["reliability_pct"], t.min_reliability_pct, "%"))
    if t.max_crashes is not None:
        crashes = int(metrics["crashes"])
        checks.append(Check("crashes", Outcome.PASS if crashes <= t.max_crashes else Outcome.FAIL,
                            f"{crashes} (needs <= {t.max_crashes})"))
    if t.max_failed_orders is not None:
        failed = int(metrics["failed_orders"])
        checks.append(Check("orders_execute", Outcome.PASS if failed <= t.max_failed_orders else Outcome.FAIL,
                            f"{failed} failed or lost order(s) (needs <= {t.max_failed_orders})"))
    if t.pnl_accurate:
        runs, misses = int(metrics["balance_checks"]), int(metrics["balance_mismatches"])
        if misses:
            checks.append(Check("pnl_accuracy", Outcome.FAIL, f"{misses} balance mismatch(es) with VALR"))
        elif runs == 0:
            checks.append(Check("pnl_accuracy", Outcome.NO_DATA, "no balance reconciliation in this window"))
        else:
            checks.append(Check("pnl_accuracy", Outcome.PASS, f"{runs} reconciliation(s), all within tolerance"))
    return checks
