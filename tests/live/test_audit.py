"""`helios audit` against the exchange double: the plan's pre-live checklist, machine-checked, via the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from helios.journal import Journal
from helios.models import Mode
from helios.reconcile import STARTING_BALANCES_KEY
from helios_double import ExchangeDouble

KEY, SECRET = "audit-key", "audit-secret-0123456789abcdef0123456789"
TOKEN = "audit-token-0123456789abcdef"


@pytest.fixture
def double() -> Iterator[ExchangeDouble]:
    d = ExchangeDouble(port=0, prices={"BTCZAR": Decimal(1_000_000)}, balances={"ZAR": Decimal(800)}).start()
    d.add_key(KEY, SECRET, ("View access", "Trade"), allowed_ip_cidr="127.0.0.1/32")
    try:
        yield d
    finally:
        d.stop()


def sign_off_for_live(state: Path) -> None:
    """Issue 12: the audit requires the plan's to-live sign-offs (``helios attest``)."""
    from datetime import UTC, datetime

    from helios.attest import REQUIRED

    journal = Journal.open(state, Mode.LIVE)
    try:
        for item in REQUIRED["to-live"]:
            journal.record_signoff(item, "pytest", "", datetime.now(UTC))
    finally:
        journal.close()


def audit(double: ExchangeDouble, state: Path, *, signed: bool = True,
          **overrides: str) -> subprocess.CompletedProcess[str]:
    if signed:
        sign_off_for_live(state)
    env = {"TRADING_MODE": "LIVE", "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": KEY, "VALR_API_SECRET": SECRET,
           "VALR_BASE_URL": double.url, "HELIOS_API_TOKEN": TOKEN, "HELIOS_STATE_DIR": str(state),
           "MAX_POSITION_SIZE_ZAR": "300",
           "ALERT_URLS": f"file://{state}/alerts.jsonl"}  # issue 12: the audit delivers a test alert (loopback)
    env.update(overrides)
    env = {k: v for k, v in env.items() if v != "<unset>"}
    return subprocess.run([sys.executable, "-m", "helios.cli", "audit", "--json"], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env}, timeout=60, check=False)


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_a_conservative_live_setup_passes_and_records_starting_capital(double: ExchangeDouble, tmp_path: Path) -> None:
    result = audit(double, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["passed"] and data["failed"] == [] and data["warnings"] == []
    assert {"key_can_trade", "key_cannot_move_funds", "key_ip_allowlist", "exchange_reachable", "clock_skew",
            "balance_known", "starting_capital_cap", "api_token", "alerts", "limit_max_position_size",
            "limit_max_portfolio_risk", "limit_max_daily_loss", "limit_max_open_positions"} <= set(checks(result))
    journal = Journal.open(tmp_path, Mode.LIVE)
    try:
        assert json.loads(journal.get_meta(STARTING_BALANCES_KEY) or "{}")["ZAR"] == "800"
        assert journal.events("audit")[0]["detail"]["passed"] is True
    finally:
        journal.close()
    assert SECRET not in result.stdout + result.stderr and TOKEN not in result.stdout + result.stderr


def test_a_key_that_can_withdraw_fails(double: ExchangeDouble, tmp_path: Path) -> None:
    double.add_key(KEY, SECRET, ("View", "Trade", "Withdraw"), allowed_ip_cidr="127.0.0.1/32")
    result = audit(double, tmp_path)
    assert result.returncode == 1
    assert checks(result)["key_cannot_move_funds"]["ok"] is False
    assert "withdraw" in str(checks(result)["key_cannot_move_funds"]["detail"])


def test_limits_above_the_go_live_caps_fail(double: ExchangeDouble, tmp_path: Path) -> None:
    result = audit(double, tmp_path, MAX_POSITION_SIZE_ZAR="1000", MAX_OPEN_POSITIONS="5")
    assert result.returncode == 1
    assert set(json.loads(result.stdout)["failed"]) == {"limit_max_position_size", "limit_max_open_positions"}


def test_too_much_capital_and_no_alerts_fail(double: ExchangeDouble, tmp_path: Path) -> None:
    double.set_balance("ZAR", "5000")
    result = audit(double, tmp_path, ALERT_URLS="<unset>")
    assert result.returncode == 1
    assert set(json.loads(result.stdout)["failed"]) == {"starting_capital_cap", "alerts"}


def test_a_missing_token_fails_before_touching_the_exchange(double: ExchangeDouble, tmp_path: Path) -> None:
    result = audit(double, tmp_path, HELIOS_API_TOKEN="<unset>")
    assert result.returncode == 2
    assert "HELIOS_API_TOKEN: required when TRADING_MODE=LIVE" in result.stderr
    assert double.requests() == []


def test_no_ip_allowlist_is_a_warning_and_unreachable_exchange_fails(double: ExchangeDouble, tmp_path: Path) -> None:
    double.add_key(KEY, SECRET, ("View", "Trade"))
    warned = audit(double, tmp_path)
    assert warned.returncode == 0 and json.loads(warned.stdout)["warnings"] == ["key_ip_allowlist"]
    double.go_down()
    down = audit(double, tmp_path)
    assert down.returncode == 1 and "exchange_reachable" in json.loads(down.stdout)["failed"]


def test_finding11_rerunning_a_passing_audit_rebaselines_without_double_counting(double: ExchangeDouble,
                                                                                   tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from helios.models import Fill, Side
    from helios.reconcile import compare_balances, decode_balances, implied_balances

    assert audit(double, tmp_path).returncode == 0
    journal = Journal.open(tmp_path, Mode.LIVE)
    try:  # Helios bought 0.0001 BTC for R100 (fee R0.10) after go-live; the exchange agrees
        journal.record_fill(Fill("t-1", "o-1", "hl-1", "BTCZAR", Side.BUY, Decimal(1_000_000), Decimal("0.0001"),
                                 Decimal("0.10"), "ZAR", datetime.now(UTC)), customer_order_id="hl-1",
                            fee_zar=Decimal("0.10"), realised_pnl_zar=Decimal(0), position=None,
                            position_pair="BTCZAR", closed_trade=None, now=datetime.now(UTC))
    finally:
        journal.close()
    double.set_balance("ZAR", "699.90")
    double.set_balance("BTC", "0.0001")
    assert audit(double, tmp_path).returncode == 0  # the operator re-baselines
    journal = Journal.open(tmp_path, Mode.LIVE)
    try:
        since = journal.baseline_at()
        implied = implied_balances(decode_balances(journal.get_meta(STARTING_BALANCES_KEY) or "{}"),
                                   journal.fills_since(since), journal.capital_flows(since))
        from helios.models import Balance

        actual = [Balance("ZAR", Decimal("699.90"), Decimal(0), Decimal("699.90")),
                  Balance("BTC", Decimal("0.0001"), Decimal(0), Decimal("0.0001"))]
        assert compare_balances(implied, actual, {"BTC": Decimal(1_000_000)}, Decimal(5)).ok, implied
    finally:
        journal.close()


def test_audit_requires_a_spot_only_account_and_reports_which_account_the_key_acts_for(
    double: ExchangeDouble, tmp_path: Path
) -> None:
    result = audit(double, tmp_path)
    found = checks(result)
    assert found["account_spot_only"]["ok"] is True
    assert "MAIN account" in str(found["account_identity"]["detail"])
    double.book.margin_enabled = True
    double.book.borrowed["ZAR"] = Decimal(5)
    result = audit(double, tmp_path / "again")
    assert result.returncode != 0
    data = json.loads(result.stdout)
    assert "account_spot_only" in data["failed"]
    detail = str(checks(result)["account_spot_only"]["detail"])
    assert "margin trading is enabled" in detail and "ZAR has a borrowed amount" in detail
