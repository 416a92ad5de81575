"""Capital stages: the ramp refuses each missing condition by name and accepts when all hold; the capital-at-risk
gate keeps positions at market + pending entries within the stage; `helios ramp` / `helios attest` / `helios report`
on a real journal."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from helios.attest import missing_signoffs
from helios.journal import Journal
from helios.metrics import Check, Outcome
from helios.models import Mode
from helios.stages import (
    Accept,
    CurrentStage,
    RampFacts,
    Refusal,
    StageConfig,
    StageRejection,
    capital_at_risk_gate,
    ramp_decision,
)

from .conftest import add_trade, at

D = Decimal
PASSING = (Check("win_rate", Outcome.PASS, "100%"), Check("max_drawdown", Outcome.PASS, "0%"))
GOOD = RampFacts(checks=PASSING)
STAGE_1 = CurrentStage(D(1000), at())


def refused(decision: Accept | Refusal) -> list[str]:
    assert isinstance(decision, Refusal), decision
    return [name for name, _ in decision.reasons]


def test_the_ramp_accepts_when_every_condition_holds() -> None:
    assert ramp_decision(stage=STAGE_1, to_zar=D(5000), now=at(hours=24), facts=GOOD) == Accept(D(5000))
    stage_2 = CurrentStage(D(5000), at())
    assert ramp_decision(stage=stage_2, to_zar=D(10000), now=at(days=7), facts=GOOD) == Accept(D(10000))


def test_the_ramp_refuses_before_the_minimum_time() -> None:
    decision = ramp_decision(stage=STAGE_1, to_zar=D(5000), now=at(hours=23, minutes=59), facts=GOOD)
    assert str(decision) == "min_time: the stage has run 23 h 59 min of the 24 h 00 min it needs"
    stage_2 = CurrentStage(D(5000), at())
    assert refused(ramp_decision(stage=stage_2, to_zar=D(10000), now=at(days=6, hours=23), facts=GOOD)) == [
        "min_time"]


def test_the_ramp_refuses_failed_or_missing_metrics() -> None:
    failing = RampFacts(checks=(*PASSING, Check("sharpe", Outcome.FAIL, "0.50 (needs >= 1.0)")))
    decision = ramp_decision(stage=STAGE_1, to_zar=D(5000), now=at(days=2), facts=failing)
    assert refused(decision) == ["metrics"] and "sharpe fail (0.50 (needs >= 1.0))" in str(decision)
    no_data = RampFacts(checks=(*PASSING, Check("pnl_accuracy", Outcome.NO_DATA, "no reconciliation")))
    assert refused(ramp_decision(stage=STAGE_1, to_zar=D(5000), now=at(days=2), facts=no_data)) == ["metrics"]
    assert refused(ramp_decision(stage=STAGE_1, to_zar=D(5000), now=at(days=2), facts=RampFacts())) == ["metrics"]


def test_the_ramp_refuses_a_red_flag_a_dirty_reconciliation_or_a_missing_signoff() -> None:
    for facts, name in ((RampFacts(checks=PASSING, red_flags=["3 consecutive losing days"]), "red_flags"),
                        (RampFacts(checks=PASSING, reconciliation_issues=["balance mismatch"]), "reconciliation"),
                        (RampFacts(checks=PASSING, missing_signoffs=["weekly-review"]), "signoff")):
        assert refused(ramp_decision(stage=STAGE_1, to_zar=D(5000), now=at(days=2), facts=facts)) == [name]


def test_the_ramp_refuses_skipping_a_stage_and_names_every_problem() -> None:
    decision = ramp_decision(stage=STAGE_1, to_zar=D(10000), now=at(hours=1),
                             facts=RampFacts(missing_signoffs=["weekly-review"]))
    assert refused(decision) == ["next_stage", "min_time", "metrics", "signoff"]
    assert "the next stage after R1000 is R5000, not R10000" in str(decision)


def test_lowering_is_always_accepted_and_the_first_stage_needs_no_history() -> None:
    stage_2 = CurrentStage(D(5000), at())
    assert ramp_decision(stage=stage_2, to_zar=D(1000), now=at(minutes=1), facts=RampFacts()) == Accept(D(1000))
    assert ramp_decision(stage=None, to_zar=D(1000), now=at(), facts=RampFacts()) == Accept(D(1000))
    assert refused(ramp_decision(stage=None, to_zar=D(5000), now=at(), facts=RampFacts())) == ["next_stage"]


def test_operator_configured_steps_continue_the_ramp() -> None:
    cfg = StageConfig(steps=(D(1000), D(5000), D(10000), D(20000)), min_times=(timedelta(hours=24),
                                                                                timedelta(weeks=1),
                                                                                timedelta(weeks=4)))
    stage_3 = CurrentStage(D(10000), at())
    assert refused(ramp_decision(stage=stage_3, to_zar=D(20000), now=at(days=27), facts=GOOD, cfg=cfg)) == [
        "min_time"]
    assert ramp_decision(stage=stage_3, to_zar=D(20000), now=at(days=28), facts=GOOD, cfg=cfg) == Accept(D(20000))
    assert refused(ramp_decision(stage=stage_3, to_zar=D(20000), now=at(days=28), facts=GOOD)) == ["next_stage"]
    with pytest.raises(ValueError, match="strictly increasing"):
        StageConfig(steps=(D(5000), D(1000)))


def test_capital_at_risk_stays_within_the_stage() -> None:
    positions = [(D("0.0005"), D(1_000_000))]  # R500 at market
    pending = [(D("0.0002"), D(990_000))]  # R198 entry resting
    assert capital_at_risk_gate(stage_limit_zar=D(1000), positions=positions, pending_entries=pending,
                                order_value_zar=D(302)) is None  # exactly R1,000
    assert capital_at_risk_gate(stage_limit_zar=D(1000), positions=positions, pending_entries=pending,
                                order_value_zar=D("302.01")) == StageRejection(
        "capital_stage", "capital at risk R698.00 + this order R302.01 would exceed the stage limit R1000")
    assert capital_at_risk_gate(stage_limit_zar=None, positions=[], pending_entries=[],
                                order_value_zar=D(1)) is not None


def test_missing_signoffs_for_live_and_for_a_ramp() -> None:
    signed = [("code-review", at()), ("weekly-review", at(days=1))]
    assert missing_signoffs("to-live", signed) == ["api-key-permissions", "balance-check", "emergency-contacts",
                                                   "rollback-plan", "kill-switch-test"]
    assert missing_signoffs("ramp", signed, since=at(hours=1)) == []
    assert missing_signoffs("ramp", signed, since=at(days=2)) == ["weekly-review"]  # older than the stage


# --- the commands on a real journal -------------------------------------------------------------------------------
def helios(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(state), "TRADING_MODE": "LIVE",
           "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": "k" * 20, "VALR_API_SECRET": "s" * 40,
           "HELIOS_API_TOKEN": "t" * 20}
    return subprocess.run([sys.executable, "-m", "helios.cli", *args], capture_output=True, text=True, env=env,
                          check=False, timeout=60)


def test_helios_ramp_attest_and_report_on_a_journal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    now = datetime.now(UTC)
    journal = Journal.open(state, Mode.LIVE)
    try:
        journal.record_stage(D(1000), "go-live", "ops", now - timedelta(hours=30))
        journal.record_equity(now - timedelta(hours=29), D(1000), D(0))
        journal.record_equity(now - timedelta(hours=1), D(1000), D(25))
        for i, pnl in enumerate((10, 10, -3, 8, 10)):  # 80% won
            add_trade(journal, pnl, now - timedelta(hours=20 - i))
        journal.record_event("balance_check", {"ok": True}, now - timedelta(hours=2))
    finally:
        journal.close()

    first = helios(state, "ramp", "--to", "5000", "--reason", "week went well", "--json")
    assert first.returncode == 1, first.stderr
    assert json.loads(first.stdout)["refused"] == [{"condition": "signoff", "detail": (
        "missing: weekly-review (helios attest ITEM --by NAME)")}]

    bad = helios(state, "attest", "weekly-reveiw", "--by", "Thandi")
    assert bad.returncode == 2 and "ITEM: unknown sign-off 'weekly-reveiw'" in bad.stderr
    signed = helios(state, "attest", "weekly-review", "--by", "Thandi", "--note", "24h reviewed")
    assert signed.returncode == 0, signed.stderr
    assert "signed off: weekly-review by Thandi" in signed.stdout

    skip = helios(state, "ramp", "--to", "10000", "--reason", "greedy")
    assert skip.returncode == 1 and "the next stage after R1000 is R5000, not R10000" in skip.stdout
    ok = helios(state, "ramp", "--to", "5000", "--reason", "week went well")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == "capital stage R1000 -> R5000"
    again = helios(state, "ramp", "--to", "10000", "--reason", "too soon")
    assert again.returncode == 1
    assert "min_time: the stage has run 0 h 00 min of the 168 h 00 min it needs" in again.stdout

    report = helios(state, "report", "--window", "week", "--json")
    data = json.loads(report.stdout)
    assert data["phase"] == "weeks 2-4" and data["stage"]["limit_zar"] == "5000"
    assert data["stage"]["next_zar"] == "10000"
    assert report.returncode == 0, report.stdout  # 80% >= 60%, drawdown 0, average R7, P&L +25
    journal = Journal.open(state, Mode.LIVE)
    try:
        assert [(s[0], s[2]) for s in journal.capital_stages()] == [(D(1000), "go-live"),
                                                                    (D(5000), "week went well")]
        assert [s[:3] for s in journal.signoffs()] == [("weekly-review", "Thandi", "24h reviewed")]
    finally:
        journal.close()

    bad_amount = helios(state, "ramp", "--to", "lots", "--reason", "x")
    assert bad_amount.returncode == 2 and "--to: not an amount in ZAR" in bad_amount.stderr


def test_helios_ramp_follows_the_configured_stages_and_minimum_times(tmp_path: Path) -> None:
    """HELIOS_CAPITAL_STAGES_ZAR / HELIOS_STAGE_MIN_HOURS reach `helios ramp` (not only the defaults)."""
    state = tmp_path / "state"
    Journal.open(state, Mode.LIVE).close()
    env = {"HELIOS_CAPITAL_STAGES_ZAR": "500,2000", "HELIOS_STAGE_MIN_HOURS": "48"}

    def ramp(to: str) -> subprocess.CompletedProcess[str]:
        base = {"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(state), "TRADING_MODE": "LIVE",
                "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": "k" * 20, "VALR_API_SECRET": "s" * 40,
                "HELIOS_API_TOKEN": "t" * 20, **env}
        return subprocess.run([sys.executable, "-m", "helios.cli", "ramp", "--to", to, "--reason", "r"],
                              capture_output=True, text=True, env=base, check=False, timeout=60)

    first = ramp("1000")
    assert first.returncode == 1 and "no stage yet: the first stage is R500" in first.stdout
    assert ramp("500").returncode == 0
    early = ramp("2000")
    assert early.returncode == 1
    assert "min_time: the stage has run 0 h 00 min of the 48 h 00 min it needs" in early.stdout
