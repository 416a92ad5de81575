"""Issue 12: ``helios audit`` (the to-live gate) requires the plan's sign-offs and a test alert that every
ALERT_URLS destination accepted; the real CLI against the exchange double, alerts delivered on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from helios.attest import REQUIRED
from helios_double import ExchangeDouble
from tests.live.test_audit import KEY, SECRET, TOKEN, audit, checks
from tests.live.test_audit import double as double  # the audit's double, with its key


def attest(double: ExchangeDouble, state: Path, item: str) -> subprocess.CompletedProcess[str]:
    env = {"TRADING_MODE": "LIVE", "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": KEY, "VALR_API_SECRET": SECRET,
           "VALR_BASE_URL": double.url, "HELIOS_API_TOKEN": TOKEN, "HELIOS_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "helios.cli", "attest", item, "--by", "Thandi"], capture_output=True,
                          text=True, env={"PATH": os.environ["PATH"], **env}, timeout=60, check=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_audit_requires_every_to_live_signoff(double: ExchangeDouble, tmp_path: Path) -> None:
    result = audit(double, tmp_path, signed=False)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["failed"] == ["signoffs"]
    assert checks(result)["signoffs"]["detail"] == (
        "missing sign-offs: code-review, api-key-permissions, balance-check, emergency-contacts, rollback-plan, "
        "kill-switch-test (helios attest ITEM --by NAME)")
    for item in REQUIRED["to-live"][:-1]:
        assert attest(double, tmp_path, item).returncode == 0
    result = audit(double, tmp_path, signed=False)
    assert result.returncode == 1 and checks(result)["signoffs"]["detail"].startswith(
        "missing sign-offs: kill-switch-test")
    assert attest(double, tmp_path, "kill-switch-test").returncode == 0
    result = audit(double, tmp_path, signed=False)
    assert result.returncode == 0, result.stdout
    assert checks(result)["signoffs"]["ok"] is True


def test_audit_sends_a_test_alert_and_requires_its_delivery(double: ExchangeDouble, tmp_path: Path) -> None:
    delivered = tmp_path / "delivered.jsonl"
    result = audit(double, tmp_path, ALERT_URLS=f"file://{delivered}")
    assert result.returncode == 0, result.stdout
    assert checks(result)["alert_delivered"]["detail"] == "test alert delivered to 1 of 1 destination(s)"
    lines = [json.loads(line) for line in delivered.read_text().splitlines()]
    assert [line["title"] for line in lines] == ["Helios info: test alert (helios audit)"]
    # a second destination that accepts nothing (a closed loopback port): the audit fails, naming the scheme only
    dead = f"json://127.0.0.1:{closed_port()}/hook"
    result = audit(double, tmp_path, ALERT_URLS=f"file://{delivered},{dead}")
    assert result.returncode == 1 and json.loads(result.stdout)["failed"] == ["alert_delivered"]
    assert checks(result)["alert_delivered"]["detail"] == (
        "test alert delivered to 1 of 2 destination(s); failed: json")
    assert "127.0.0.1:" not in result.stdout.split('"alert_delivered"')[1].split("}")[0]


def test_audit_refuses_an_alert_url_apprise_cannot_use(double: ExchangeDouble, tmp_path: Path) -> None:
    result = audit(double, tmp_path, ALERT_URLS="smtp-ish://ops@example.com")
    assert result.returncode == 1 and json.loads(result.stdout)["failed"] == ["alert_delivered"]
    assert checks(result)["alert_delivered"]["detail"].startswith("ALERT_URLS: apprise cannot use this destination")
