"""Issue 12 phase 2: the rollout discipline acts through the REAL engine tick (real PaperExchange, real SQLite
journal, real apprise delivery to a ``file://`` destination).

Each red flag fires, is journaled, alerts (critical) and halts (journal HALTED, open orders cancelled) on a
scripted journal/price path, and not one trade earlier; the daily loss reduces with a critical alert; the capital
stage gate rejects an entry that would exceed the stage; the engine writes the heartbeat history, the
marked-equity curve and clean balance checks the reports read.

PAPER rigs run with ``HELIOS_REDFLAG_PAPER=true`` (LIVE always evaluates; one test runs a LIVE engine against the
exchange double)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from helios.alerts import Alerter
from helios.engine import Engine
from helios.journal import Journal
from helios.models import Mode, OrderRequest, OrderStatus, OrderType, Side, Signal, TradingState
from tests.live.test_live_engine import LiveRig
from tests.rollout.conftest import add_trade
from tests.service.conftest import Rig, RigFactory

D = Decimal
FLAGS_ON = {"HELIOS_REDFLAG_PAPER": "true"}


def buy(price: int, qty: str = "0.0005", stop: int = 970_000, take: int = 1_010_000,
        pair: str = "BTCZAR") -> Signal:
    return Signal(pair=pair, side=Side.BUY, quantity=D(qty), limit_price=D(price), stop_loss=D(stop),
                  take_profit=D(take), reason="test signal")


class Alerts:
    """The engine's real Alerter, delivering through apprise to a JSON-lines file."""

    def __init__(self, engine: Engine, path: Path) -> None:
        self.path = path
        engine.alerter = Alerter([f"file://{path}"], service="helios-test")
        self.alerter = engine.alerter

    def titles(self) -> list[str]:
        assert self.alerter.flush(30)
        if not self.path.exists():
            return []
        return [json.loads(line)["title"] for line in self.path.read_text().splitlines()]

    def close(self) -> None:
        self.alerter.close()


def durable_state(journal: Journal) -> TradingState:
    return journal.read_state_version()[0]


def red_flags(journal: Journal) -> list[str]:
    return [e["detail"]["name"] for e in reversed(journal.events("red_flag"))]


def assert_halted_by(rig: Rig, alerts: Alerts, flag: str) -> None:
    assert rig.engine.state is TradingState.HALTED
    assert durable_state(rig.journal) is TradingState.HALTED, "HALTED is journaled"
    assert red_flags(rig.journal) == [flag]
    stop = rig.journal.events("emergency_stop")[0]["detail"]
    assert stop["actor"] == "red-flag" and stop["reason"].startswith(f"red flag {flag}:")
    assert rig.exchange.open_orders() == [], "every open order cancelled"
    titles = alerts.titles()
    assert f"Helios critical: RED FLAG {flag}: HALT" in titles
    assert any(t.startswith("Helios critical:") and "HALTED" in t for t in titles)


def rest_an_entry(rig: Rig) -> str:
    """A limit BUY far below the market: it rests on the exchange until something cancels it."""
    rig.strategy.pending.append(buy(900_000, stop=880_000, take=1_100_000))
    rig.step()
    resting = [o for o in rig.exchange.open_orders() if o.price == D(900_000)]
    assert len(resting) == 1
    return resting[0].customer_order_id or ""


def prior_journal(state: Path) -> Journal:
    return Journal.open(state, Mode.PAPER)


# --- red flags ------------------------------------------------------------------------------------------------
def test_win_rate_red_flag_through_real_round_trips(make_rig: RigFactory, tmp_path: Path) -> None:
    """Nine scripted losers, then the engine's own tenth round trip (a real stop-loss exit) halts on the tick its
    exit fill arrives, before the strategy can send another entry."""
    state = tmp_path / "state"
    before = prior_journal(state)
    start = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    for i in range(9):
        add_trade(before, -5, start - timedelta(days=1, hours=i))
    before.close()
    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 980_000, 960_000, 960_000]}, state_dir=state, **FLAGS_ON)
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    rig.strategy.pending.append(buy(990_000))
    rig.step(2)
    assert rig.engine.state is TradingState.ACTIVE and red_flags(rig.journal) == [], "9 trades: no flag yet"
    cid = rest_an_entry(rig)
    rig.step()  # stop-loss SELL sent
    rig.strategy.pending.append(buy(950_000, stop=900_000))  # what the strategy would send on the halting tick
    rig.step()  # the exit fill closes trade 10 -> red flag before the strategy runs
    assert len(rig.journal.all_trades()) == 10
    assert_halted_by(rig, alerts, "win_rate")
    assert rig.strategy.pending, "the strategy did not run on the halting tick: nothing more was sent"
    assert rig.journal.get_order(cid) is not None
    alerts.close()


def test_losing_days_red_flag_halts_when_the_third_day_completes(make_rig: RigFactory, tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = prior_journal(state)
    # Johannesburg days 22 and 23 Nov lost R10 each; 24 Nov loses R10 in the morning (realised trades + snapshots)
    before.record_equity(datetime(2026, 11, 21, 22, 30, tzinfo=UTC), D(10000), D(0))
    add_trade(before, -10, datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
    before.record_equity(datetime(2026, 11, 22, 21, 0, tzinfo=UTC), D(10000), D(-10))
    add_trade(before, -10, datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    before.record_equity(datetime(2026, 11, 23, 21, 0, tzinfo=UTC), D(10000), D(-20))
    add_trade(before, -10, datetime(2026, 11, 24, 0, 30, tzinfo=UTC))
    before.close()
    rig = make_rig({"BTCZAR": [1_000_000]}, state_dir=state, **FLAGS_ON)
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    rig.step()
    cid = rest_an_entry(rig)
    rig.clock.now = datetime(2026, 11, 24, 21, 58, 30, tzinfo=UTC)  # 23:58:30 in Johannesburg
    rig.step()
    assert rig.engine.state is TradingState.ACTIVE, "two completed losing days, the third is not over"
    rig.clock.now = datetime(2026, 11, 24, 22, 0, 30, tzinfo=UTC)  # 00:00:30: 24 Nov is complete
    rig.step()
    assert_halted_by(rig, alerts, "losing_days")
    assert rig.journal.get_order(cid) is not None
    alerts.close()


def test_unknown_fill_red_flag_halts_at_once(make_rig: RigFactory, tmp_path: Path) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]}, **FLAGS_ON)
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    rig.step()
    rest_an_entry(rig)
    rig.step()
    assert rig.engine.state is TradingState.ACTIVE
    # somebody trades on the account by hand: a fill the journal does not know
    rig.exchange.place_order(OrderRequest("manual-1", "BTCZAR", Side.BUY, OrderType.MARKET, D("0.0001")))
    rig.step()
    assert_halted_by(rig, alerts, "unknown_activity")
    alerts.close()


def test_failed_orders_red_flag_halts_after_the_third_before_a_fourth_is_sent(make_rig: RigFactory,
                                                                               tmp_path: Path) -> None:
    # R600 in the account: the gates pass a R495 entry, the exchange refuses it (Insufficient Balance) after the
    # first one reserved the cash
    rig = make_rig({"BTCZAR": [1_000_000]}, HELIOS_PAPER_STARTING_ZAR="600", MAX_OPEN_POSITIONS="3", **FLAGS_ON)
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    rig.step()
    rig.strategy.pending.append(buy(990_000, qty="0.0005", stop=985_000))
    rig.step()  # rests (reserves R495)
    for _ in range(4):  # R180 each: more than the R105 left
        rig.strategy.pending.append(buy(900_000, qty="0.0002", stop=890_000))
    sent_before = len(rig.journal.orders())
    failed: list[int] = []
    for _ in range(4):
        rig.step()
        failed.append(sum(1 for o in rig.journal.orders() if o.status is OrderStatus.FAILED))
        if rig.engine.state is TradingState.HALTED:
            break
    assert failed[-1] == 3 and rig.engine.state is TradingState.HALTED
    assert failed[:-1] == [1, 2, 3][: len(failed) - 1], "halted on the tick after the third failure, not before"
    assert len(rig.journal.orders()) - sent_before == 3, "no fourth entry was sent"
    assert_halted_by(rig, alerts, "orders_not_executing")
    alerts.close()


def test_repeated_crashes_red_flag_halts_at_the_third_unclean_restart(make_rig: RigFactory,
                                                                      tmp_path: Path) -> None:
    state = tmp_path / "state"
    rig = make_rig({"BTCZAR": [1_000_000]}, state_dir=state, **FLAGS_ON)
    rig.engine.shutdown()
    rig.close()  # a clean stop (deploy, systemctl restart): not a crash
    for _ in range(3):  # three runs that die without a shutdown (kill -9, OOM, watchdog)
        rig = make_rig({"BTCZAR": [1_000_000]}, state_dir=state, **FLAGS_ON)
        rig.step()
        assert rig.engine.state is TradingState.ACTIVE
        rig.close()
    rig = make_rig({"BTCZAR": [1_000_000]}, state_dir=state, **FLAGS_ON)  # the third unclean restart
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    rig.step()
    assert_halted_by(rig, alerts, "repeated_crashes")
    alerts.close()


def test_pnl_discrepancy_red_flag_on_a_live_engine(make_live: Callable[..., LiveRig], tmp_path: Path) -> None:
    """LIVE (exchange double): two balance reconciliations in a row differ from VALR. The engine's own rule halts
    on the second; the red flag is journaled and alerted on the next tick (it does not stop a second time)."""
    rig = make_live()
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    assert rig.buy(950_000).status is OrderStatus.OPEN
    rig.double.set_balance("ZAR", "800")  # about R100 left the account without a journaled fill
    rig.engine.check_balances(rig.engine.clock())
    rig.engine.step()
    assert rig.engine.state is TradingState.ACTIVE and red_flags(rig.journal) == [], "one miss: not yet"
    rig.engine.check_balances(rig.engine.clock())
    rig.engine.step()
    assert durable_state(rig.journal) is TradingState.HALTED
    assert red_flags(rig.journal) == ["pnl_discrepancy"]
    assert rig.double.open_orders() == []
    assert "Helios critical: RED FLAG pnl_discrepancy: HALT" in alerts.titles()
    assert len(rig.journal.events("emergency_stop")) == 1, "halted once"


def test_daily_loss_reduces_with_a_critical_alert_and_keeps_the_position(make_rig: RigFactory,
                                                                         tmp_path: Path) -> None:
    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 980_000, 975_000]}, MAX_DAILY_LOSS_ZAR="7", **FLAGS_ON)
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    rig.strategy.pending.append(buy(990_000, stop=900_000))
    rig.step(3)  # fills at 990,000; at 980,000 the loss is R5.50 (R5 + R0.50 fee): under R7
    assert rig.engine.state is TradingState.ACTIVE and red_flags(rig.journal) == []
    rig.step()  # 975,000: R8.00 >= R7
    assert rig.engine.state is TradingState.REDUCING
    assert durable_state(rig.journal) is TradingState.REDUCING
    assert red_flags(rig.journal) == ["daily_loss"]
    assert "BTCZAR" in rig.engine.positions, "trading stops without abandoning the open position"
    assert "Helios critical: RED FLAG daily_loss: REDUCE" in alerts.titles()
    alerts.close()


# --- the facts the reports read ---------------------------------------------------------------------------------
def test_engine_writes_heartbeats_equity_and_clean_balance_checks(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000]})
    t0 = rig.clock.now
    for _ in range(150):  # 150 ticks of 1 s: minutes 08:00, 08:01, 08:02
        rig.step()
    minutes = rig.journal.heartbeat_minutes(t0, rig.clock.now + timedelta(minutes=1))
    assert sorted(m.minute for m in minutes) == [0, 1, 2]
    snapshots = rig.journal.equity_snapshots(t0, rig.clock.now + timedelta(seconds=1))
    assert [s[0] - t0 for s in snapshots] == [timedelta(seconds=1), timedelta(seconds=61), timedelta(seconds=121)]
    assert all(capital == D(10000) and pnl == 0 for _, capital, pnl in snapshots)
    checks = rig.journal.events_between(("balance_check",), t0, rig.clock.now + timedelta(seconds=1))
    assert len(checks) == 3 and all(c["detail"]["ok"] for c in checks), "one per clean reconciliation (60 s)"


# --- the capital stage gate ------------------------------------------------------------------------------------
def test_an_entry_beyond_the_capital_stage_is_rejected_by_the_capital_stage_gate(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000, 985_000], "ETHZAR": [50_000, 50_000]}, HELIOS_PAIRS="BTCZAR,ETHZAR")
    rig.journal.record_stage(D(1000), "go-live", "pytest", rig.clock.now)
    rig.strategy.pending.append(buy(990_000))  # R495
    rig.step(2)
    assert rig.engine.positions["BTCZAR"].quantity == D("0.0005")
    # R600 of ETH: within MAX_POSITION_SIZE_ZAR for the pair, but R495 at market + R600 > the R1,000 stage
    record = rig.engine.submit_signal(buy(50_000, qty="0.012", stop=49_000, take=52_000, pair="ETHZAR"))
    assert record.status is OrderStatus.REJECTED
    assert (record.error or "").startswith("capital_stage: capital at risk R492.50 + this order R600.00 would "
                                           "exceed the stage limit R1000")
    assert rig.engine.rejection_counts["capital_stage"] == 1
    fits = rig.engine.submit_signal(buy(50_000, qty="0.01", stop=49_000, take=52_000, pair="ETHZAR"))  # R500
    assert fits.status is not OrderStatus.REJECTED and fits.error is None


def test_live_defaults_to_the_first_capital_stage(make_live: Callable[..., LiveRig]) -> None:
    rig = make_live(MAX_POSITION_SIZE_ZAR="2000", MAX_PORTFOLIO_RISK_PCT="100")
    assert rig.journal.capital_stages() == []
    assert rig.engine.current_capital_stage() == D(1000)
    record = rig.buy(990_000, qty="0.0011", stop=900_000)  # R1,089
    assert record.status is OrderStatus.REJECTED and (record.error or "").startswith("capital_stage:")


def test_the_live_service_runs_the_paper_shadow_beside_it(make_live: Callable[..., LiveRig]) -> None:
    rig = make_live()
    shadow = rig.engine.shadow
    assert shadow is not None, "build_runtime attaches the shadow in LIVE (HELIOS_SHADOW=true by default)"
    try:
        assert shadow.exchange.path == rig.settings.helios_state_dir / "shadow-paper.sqlite"
        assert shadow.exchange.mode is Mode.PAPER
    finally:
        shadow.close()
    off = make_live(HELIOS_SHADOW="false")
    assert off.engine.shadow is None


def test_every_live_order_alerts(make_live: Callable[..., LiveRig], tmp_path: Path) -> None:
    """Plan: "Send alert (email/SMS)" after each LIVE trade execution - through the engine, delivered by apprise."""
    rig = make_live()
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    assert rig.buy(950_000).status is OrderStatus.OPEN
    assert alerts.titles() == ["Helios info: LIVE order OPEN: BUY BTCZAR"]


def test_no_todo_or_fixme_in_the_trading_code() -> None:
    """Plan, deployment checklist: "No TODO/FIXME comments in critical code paths" (the whole service package)."""
    package = Path(__file__).resolve().parents[2] / "helios"
    marked = [f"{path.relative_to(package)}:{n}" for path in sorted(package.rglob("*.py"))
              for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
              if "TODO" in line or "FIXME" in line]
    assert marked == []


def test_a_failing_red_flag_evaluation_is_loud_and_does_not_stop_the_tick(make_rig: RigFactory, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 960_000, 960_000]}, **FLAGS_ON)
    alerts = Alerts(rig.engine, tmp_path / "alerts.jsonl")
    rig.strategy.pending.append(buy(990_000))
    rig.step(2)  # in a position
    assert "BTCZAR" in rig.engine.positions

    def broken(*_: object, **__: object) -> None:
        raise ValueError("bug")

    monkeypatch.setattr("helios.report.red_flag_facts", broken)
    rig.clock.advance(60)
    rig.step()  # 960,000: below the stop
    assert rig.engine.last_heartbeat == rig.clock.now, "the tick completed"
    assert [o.reason for o in rig.journal.orders() if o.side is Side.SELL] == ["stop_loss"], "exits still run"
    assert rig.engine.last_error == "red flags: ValueError: bug"
    assert "Helios critical: Red-flag evaluation failed (retried every minute)" in alerts.titles()
    alerts.close()
