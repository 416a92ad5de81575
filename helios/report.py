"""Reports: read one window's facts from the journal, then hand them to the pure modules.

``helios.metrics`` computes the plan's success metrics and checks the phase's thresholds, ``helios.redflags`` the
red flags, ``helios.stages`` the ramp decision. This module is the only one of them that reads the journal.

Windows end now: ``day`` = the last 24 h, ``week`` = 7 days, ``month`` = 30 days. The thresholds are those of the
current capital stage's phase (stage 1: week 1, stage 2: weeks 2-4, later: month 2+).

Facts the engine journals (the lead wires the writers): ``heartbeats`` (``Journal.record_heartbeat`` each tick),
``equity_snapshots`` (``Journal.record_equity``), events ``balance_check`` (a clean balance reconciliation),
``balance_mismatch``, ``reconciliation``, ``unknown_fill``, ``order_lost``, ``start``/``shutdown``, ``resume`` and
``red_flag`` (each flag that fired).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from helios.attest import missing_signoffs
from helios.config import Settings
from helios.journal import Journal
from helios.metrics import (
    JOHANNESBURG,
    ClosedTrade,
    EquityPoint,
    FillCost,
    Outcome,
    Thresholds,
    Window,
    WindowFacts,
    compute_metrics,
    daily_pnl,
    evaluate,
    phase_for_stage,
    slippage_zar,
)
from helios.models import OrderStatus
from helios.reconcile import STARTING_BALANCES_KEY, decode_balances
from helios.redflags import RedFlag, RedFlagConfig, RedFlagFacts, evaluate_red_flags
from helios.shadow import BookSummary, ShadowBook
from helios.stages import CurrentStage, RampFacts, StageConfig, current_stage

WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
BALANCE_EVENTS = ("balance_check", "balance_mismatch")


def starting_capital(journal: Journal, default_zar: Decimal) -> Decimal:
    """The ZAR recorded at go-live (balance reconciliation's starting point), else ``default_zar``."""
    recorded = journal.get_meta(STARTING_BALANCES_KEY)
    return decode_balances(recorded).get("ZAR", Decimal(0)) if recorded else default_zar


def window_ending(name: str, now: datetime) -> Window:
    return Window(now - WINDOWS[name], now)


def _trades(journal: Journal, window: Window) -> list[ClosedTrade]:
    out = []
    for row in journal.all_trades():
        closed = datetime.fromisoformat(row["closed_at"])
        if window.contains(closed):
            out.append(ClosedTrade(Decimal(row["realised_pnl_zar"]), closed))
    return out


def _equity(journal: Journal, window: Window) -> list[EquityPoint]:
    return [EquityPoint(at, capital, pnl) for at, capital, pnl in journal.equity_snapshots(window.start, window.end)]


def realised_equity(trades: list[ClosedTrade], window: Window, capital_zar: Decimal) -> list[EquityPoint]:
    """A realised-only curve (capital + cumulative realised P&L at each close), for journals without marked-equity
    snapshots. Reports label it; a ramp never uses it."""
    points = [EquityPoint(window.start, capital_zar, Decimal(0))]
    for trade in sorted(trades, key=lambda t: t.closed_at):
        points.append(EquityPoint(trade.closed_at, capital_zar, points[-1].pnl_zar + trade.pnl_zar))
    return points


def _fill_costs(journal: Journal, window: Window) -> list[FillCost]:
    out = []
    for row in journal.all_fills():
        if not window.contains(datetime.fromisoformat(row["traded_at"])):
            continue
        order = journal.get_order(row["customer_order_id"]) if row["customer_order_id"] else None
        price = Decimal(row["price"])
        out.append(FillCost(row["side"], price, Decimal(row["quantity"]),
                            order.reference_price if order is not None else price, Decimal(row["fee_zar"])))
    return out


def _failed_orders(journal: Journal, window: Window) -> int:
    failed = sum(1 for o in journal.orders(limit=100_000)
                 if o.status is OrderStatus.FAILED and window.contains(o.updated_at))
    return failed + len(journal.events_between(("order_lost",), window.start, window.end))


def _crashes(journal: Journal, window: Window) -> int:
    """Starts that followed a start with no clean shutdown between them (the previous run died)."""
    crashes = 0
    previous: str | None = None
    for event in journal.events_between(("start", "shutdown"), window.start, window.end):
        if event["kind"] == "start" and previous == "start":
            crashes += 1
        previous = event["kind"]
    return crashes


def _mismatch_streak(journal: Journal, window: Window) -> int:
    events = journal.events_between(BALANCE_EVENTS, window.start, window.end)
    if not events or events[-1]["kind"] != "balance_mismatch":
        return 0
    return int(events[-1]["detail"].get("streak", 1))


def collect_window_facts(journal: Journal, window: Window, *, restarts: int = 0,
                         fallback_capital_zar: Decimal | None = None) -> WindowFacts:
    """One window's facts. Without marked-equity snapshots the equity curve is empty, or realised-only when
    ``fallback_capital_zar`` is given."""
    balance = journal.events_between(BALANCE_EVENTS, window.start, window.end)
    trades = _trades(journal, window)
    equity = _equity(journal, window)
    if not equity and fallback_capital_zar is not None:
        equity = realised_equity(trades, window, fallback_capital_zar)
    return WindowFacts(
        window=window, trades=trades, equity=equity,
        heartbeat_minutes=frozenset(journal.heartbeat_minutes(window.start, window.end)),
        balance_checks=len(balance), balance_mismatches=sum(1 for e in balance if e["kind"] == "balance_mismatch"),
        failed_orders=_failed_orders(journal, window), crashes=_crashes(journal, window) + restarts,
        fills=_fill_costs(journal, window),
    )


def _unknown_fills(journal: Journal, window: Window) -> int:
    """Fills on the account nobody journaled, first seen in the window; trades from before go-live (the capital
    baseline) are history for ``helios capital classify-history``, not a red flag."""
    seen = [str(e["detail"].get("trade_id")) for e in journal.events_between(("unknown_fill",), window.start,
                                                                             window.end)]
    baseline = journal.baseline_at()
    history = set() if baseline is None or not seen else journal.foreign_fill_ids_traded_before(baseline)
    return sum(1 for trade_id in seen if trade_id not in history)


def since_last_resume(journal: Journal, window: Window) -> datetime:
    """The window's start, or the last resume in it if later (red flags count from there)."""
    resumes = journal.events_between(("resume",), window.start, window.end)
    return datetime.fromisoformat(resumes[-1]["at"]) if resumes else window.start


def red_flag_facts(journal: Journal, window: Window, *, restarts: int = 0) -> RedFlagFacts:
    """Facts for the red-flag rules over ``window``, counted from the last resume if that is later (an operator
    who resumed after reviewing a flag is not halted again by the same history).

    Restarts for ``repeated_crashes``: starts of the service that followed a start with no clean shutdown between
    them (the previous run died: crash, kill -9, watchdog, OOM), plus ``restarts`` given by the caller (e.g.
    systemd's ``NRestarts`` read by an operator). The service journals its own ``start`` at boot and ``shutdown``
    on SIGTERM, so this counts what ``NRestarts`` counts for a crashing unit, survives ``systemctl restart``
    resetting that counter, and does not count deploys or clean restarts."""
    since = Window(since_last_resume(journal, window), window.end)
    equity = _equity(journal, since)
    today = window.end.astimezone(JOHANNESBURG).date()
    days = daily_pnl(equity)
    completed: list[tuple[date, Decimal]] = [(d, p) for d, p in days if d < today]
    todays = next((p for d, p in days if d == today), Decimal(0))
    reconciliations = journal.events_between(("reconciliation",), since.start, since.end)
    return RedFlagFacts(
        trades=_trades(journal, since), completed_days=completed, todays_loss_zar=max(-todays, Decimal(0)),
        balance_mismatch_streak=_mismatch_streak(journal, since),
        failed_or_lost_orders=_failed_orders(journal, since),
        unknown_orders=len(reconciliations[-1]["detail"].get("unknown_orders", [])) if reconciliations else 0,
        unknown_fills=_unknown_fills(journal, since),
        restarts=restarts + _crashes(journal, since),
    )


def stage_config(settings: Settings) -> StageConfig:
    """The capital stages and minimum times the operator configured (HELIOS_CAPITAL_STAGES_ZAR, _STAGE_MIN_HOURS)."""
    return StageConfig(steps=settings.capital_stages, min_times=settings.stage_min_times)


def redflag_config(settings: Settings) -> RedFlagConfig:
    """The red-flag limits the operator configured (HELIOS_REDFLAG_*, MAX_DAILY_LOSS_ZAR)."""
    return RedFlagConfig(
        min_trades_for_win_rate=settings.helios_redflag_min_trades,
        min_win_rate_pct=settings.helios_redflag_win_rate_pct,
        losing_days=settings.helios_redflag_losing_days,
        failed_orders=settings.helios_redflag_failed_orders,
        restarts=settings.helios_redflag_restarts,
        max_daily_loss_zar=settings.max_daily_loss_zar,
    )


def current_red_flags(journal: Journal, now: datetime, *, restarts: int = 0, window_name: str = "week",
                      cfg: RedFlagConfig | None = None) -> list[RedFlag]:
    """The engine hook: the red flags firing now over the window (facts since the last resume)."""
    return evaluate_red_flags(red_flag_facts(journal, window_ending(window_name, now), restarts=restarts), cfg)


@dataclass(frozen=True)
class StageInfo:
    stage: CurrentStage | None
    index: int | None
    next_zar: Decimal | None
    min_time: timedelta | None

    def to_json(self, now: datetime) -> dict[str, Any]:
        if self.stage is None:
            return {"limit_zar": None, "entered_at": None, "next_zar": None, "time_to_next_s": None}
        remaining = None if self.min_time is None else max(
            (self.stage.entered_at + self.min_time - now).total_seconds(), 0.0)
        return {"limit_zar": str(self.stage.limit_zar), "entered_at": self.stage.entered_at.isoformat(),
                "index": self.index, "next_zar": None if self.next_zar is None else str(self.next_zar),
                "time_to_next_s": remaining}


def stage_info(journal: Journal, cfg: StageConfig) -> StageInfo:
    stage = current_stage([(limit, at) for limit, at, _, _ in journal.capital_stages()])
    if stage is None:
        return StageInfo(None, None, None, None)
    index = cfg.index_of(stage.limit_zar)
    nxt = None if index is None or index + 1 >= len(cfg.steps) else cfg.steps[index + 1]
    return StageInfo(stage, index, nxt, None if index is None else cfg.min_time(index))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(round(value, 4))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def build_report(journal: Journal, *, window_name: str, now: datetime, capital_zar: Decimal, restarts: int = 0,
                 stage_cfg: StageConfig | None = None, phases: tuple[Thresholds, ...] | None = None,
                 flag_cfg: RedFlagConfig | None = None) -> dict[str, Any]:
    """One window's metrics, threshold checks and red flags; ``passed`` is False when a check FAILs or a flag fires."""
    cfg = stage_cfg or StageConfig()
    window = window_ending(window_name, now)
    info = stage_info(journal, cfg)
    thresholds = phase_for_stage(info.index or 0) if phases is None else phase_for_stage(info.index or 0, phases)
    marked = bool(journal.equity_snapshots(window.start, window.end))
    facts = collect_window_facts(journal, window, restarts=restarts, fallback_capital_zar=capital_zar)
    metrics = compute_metrics(facts)
    checks = evaluate(metrics, thresholds)
    flags = evaluate_red_flags(red_flag_facts(journal, window, restarts=restarts), flag_cfg)
    return {
        "window": window_name, "start": window.start.isoformat(), "end": window.end.isoformat(),
        "mode": journal.mode.value, "phase": thresholds.phase, "stage": info.to_json(now),
        "equity_source": "marked" if marked else "realised only (no marked-equity snapshots in the window)",
        # the all-trades summary of earlier reports, kept for scripts that read it
        "trades": len(facts.trades), "wins": sum(1 for t in facts.trades if t.pnl_zar > 0),
        "win_rate_pct": None if metrics["win_rate_pct"] is None else str(round(metrics["win_rate_pct"], 1)),
        "realised_total_zar": str(round(metrics["realised_zar"], 2)),
        "max_drawdown_pct": None if metrics["max_drawdown_pct"] is None else str(round(metrics["max_drawdown_pct"], 2)),
        "metrics": _jsonable(metrics), "checks": [c.to_json() for c in checks],
        "red_flags": [f.to_json() for f in flags],
        "passed": not flags and all(c.outcome is not Outcome.FAIL for c in checks),
    }


def ramp_facts(journal: Journal, stage: CurrentStage, now: datetime, *, restarts: int = 0,
               cfg: StageConfig | None = None, flag_cfg: RedFlagConfig | None = None) -> RampFacts:
    """What the current stage achieved, from entering it until now."""
    config = cfg or StageConfig()
    window = Window(stage.entered_at, now)
    index = config.index_of(stage.limit_zar) or 0
    checks = evaluate(compute_metrics(collect_window_facts(journal, window, restarts=restarts)),
                      phase_for_stage(index))
    fired = [str(e["detail"].get("reason", e["detail"])) for e in
             journal.events_between(("red_flag",), window.start, window.end)]
    fired += [f.reason for f in evaluate_red_flags(red_flag_facts(journal, window, restarts=restarts), flag_cfg)]
    issues = [f"balance mismatch at {e['at']}" for e in journal.events_between(("balance_mismatch",), window.start,
                                                                               window.end)]
    issues += [f"reconciliation not clean at {e['at']}: {'; '.join(e['detail'].get('issues', []))}"
               for e in journal.events_between(("reconciliation",), window.start, window.end)
               if not e["detail"].get("ok", False)]
    signed = [(item, at) for item, _, _, at in journal.signoffs()]
    return RampFacts(checks=checks, red_flags=fired, reconciliation_issues=issues,
                     missing_signoffs=missing_signoffs("ramp", signed, since=stage.entered_at))


def live_summary(journal: Journal, window: Window) -> BookSummary:
    """The LIVE journal's side of the comparison, in the shadow's terms."""
    fills = [r for r in journal.all_fills() if window.contains(datetime.fromisoformat(r["traded_at"]))]
    return BookSummary(fills=len(fills), fees_zar=sum((Decimal(r["fee_zar"]) for r in fills), Decimal(0)),
                       slippage_zar=slippage_zar(_fill_costs(journal, window)),
                       realised_pnl_zar=sum((Decimal(r["realised_pnl_zar"]) for r in fills), Decimal(0)))


def compare_with_shadow(journal: Journal, shadow: ShadowBook, *, window_name: str, now: datetime,
                        capital_zar: Decimal, alert_pct: Decimal) -> dict[str, Any]:
    """LIVE against its paper shadow over the window: fills, fees, slippage and realised P&L, and their
    divergence (LIVE minus shadow). ``passed`` is False when the P&L divergence exceeds ``alert_pct`` of capital."""
    window = window_ending(window_name, now)
    live, paper = live_summary(journal, window), shadow.summary(window.start, window.end)
    pnl_gap = live.realised_pnl_zar - paper.realised_pnl_zar
    gap_pct = abs(pnl_gap) / capital_zar * 100 if capital_zar > 0 else Decimal(0)
    return {
        "window": window_name, "start": window.start.isoformat(), "end": window.end.isoformat(),
        "live": live.to_json(), "shadow": paper.to_json(),
        "divergence": {"fills": live.fills - paper.fills,
                       "fees_zar": str(round(live.fees_zar - paper.fees_zar, 2)),
                       "slippage_zar": str(round(live.slippage_zar - paper.slippage_zar, 2)),
                       "realised_pnl_zar": str(round(pnl_gap, 2)),
                       "pnl_pct_of_capital": str(round(gap_pct, 2))},
        "alert_pct": str(alert_pct), "capital_zar": str(capital_zar),
        "passed": gap_pct <= alert_pct,
    }


def render_compare(compare: dict[str, Any]) -> str:
    rows = [("fills", "fills"), ("fees", "fees_zar"), ("slippage", "slippage_zar"),
            ("realised P&L", "realised_pnl_zar")]
    lines = [f"LIVE vs paper shadow, {compare['window']} ({compare['start']} .. {compare['end']})",
             f"{'':20} {'LIVE':>12} {'shadow':>12} {'divergence':>12}"]
    lines += [f"{label:20} {compare['live'][key]!s:>12} {compare['shadow'][key]!s:>12} "
              f"{compare['divergence'][key]!s:>12}" for label, key in rows]
    lines.append(f"P&L divergence       {compare['divergence']['pnl_pct_of_capital']}% of capital "
                 f"(alert above {compare['alert_pct']}%): {'pass' if compare['passed'] else 'FAIL'}")
    return "\n".join(lines)


def render_report(report: dict[str, Any]) -> str:
    m = report["metrics"]
    stage = report["stage"]
    lines = [
        f"window               {report['window']} ({report['start']} .. {report['end']})",
        f"mode / phase         {report['mode']} / {report['phase']}",
        f"capital stage        {'R' + stage['limit_zar'] if stage['limit_zar'] else 'none recorded'}"
        + (f" (next R{stage['next_zar']})" if stage.get("next_zar") else ""),
        f"trades               {m['trades']}  win rate {m['win_rate_pct'] or '-'}%  "
        f"average R{m['average_trade_pnl_zar'] or '-'}",
        f"marked P&L           R{m['marked_pnl_zar'] or '-'}  max drawdown {m['max_drawdown_pct'] or '-'}%  "
        f"Sharpe {m['sharpe'] or '-'}",
        f"reliability          {m['reliability_pct'] or '-'}%",
        f"fees / slippage      R{m['fees_zar']} / R{m['slippage_zar']} ({m['slippage_bps'] or '-'} bps)",
        "checks:",
        *(f"  {c['outcome'].upper():8} {c['name']}: {c['detail']}" for c in report["checks"]),
    ]
    if report["red_flags"]:
        lines.append("RED FLAGS (plan: stop LIVE trading):")
        lines += [f"  - {f['name']}: {f['reason']} -> {f['action']}" for f in report["red_flags"]]
    else:
        lines.append("red flags            none")
    lines.append("RESULT               " + ("pass" if report["passed"] else "FAIL"))
    return "\n".join(lines)
