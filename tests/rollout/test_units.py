"""The new systemd units run commands the CLI really has; `helios report --save-dir --alert` stores the report and
alerts its summary (what helios-report.service runs every day)."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from helios.cli import build_parser
from helios.journal import Journal
from helios.models import Mode

from .conftest import add_trade

UNITS = Path(__file__).resolve().parents[2] / "systemd"
HELIOS = "/opt/helios/current/venv/bin/helios"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


def helios_argv(exec_line: str) -> list[str]:
    words = shlex.split(exec_line.lstrip("-"))
    if words[0] == "/bin/sh":  # /bin/sh -c '... exec helios ...': the helios part
        inner = words[2].split("exec ", 1)[1].split(";")[0]
        words = shlex.split(re.sub(r'"\$\(.*?\)"', "0", inner))  # a $(...) substitution stands for a number
    assert words[0] == HELIOS, words
    return [w.replace("%i", "helios.service").replace("%H", "host") for w in words[1:]]


def test_the_units_call_commands_and_options_the_cli_has() -> None:
    text = (UNITS / "helios-alert@.service").read_text()
    assert "EnvironmentFile=/etc/helios/helios.env" in text
    execs = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = helios_argv(execs[-1])
    args = build_parser().parse_args(argv)
    assert args.command == "alert" and args.level == "critical" and "helios.service" in args.title
    assert json.loads(args.detail_json)["unit"] == "helios.service"
    report_text = (UNITS / "helios-report.service").read_text()
    assert "OnFailure=helios-alert@%n.service" in report_text and "SuccessExitStatus=1" in report_text
    windows = []
    for line in report_text.splitlines():
        if line.startswith("ExecStart="):
            parsed = build_parser().parse_args(helios_argv(line.split("=", 1)[1]))
            assert parsed.command == "report" and parsed.alert and str(parsed.save_dir) == "/var/lib/helios/reports"
            windows.append(parsed.window)
    assert windows == ["day", "week"]
    timer = unit("helios-report.timer")
    assert timer.get("Timer", "OnCalendar") == "*-*-* 00:05:00 Africa/Johannesburg"


def test_report_save_dir_and_alert(tmp_path: Path) -> None:
    state = tmp_path / "state"
    now = datetime.now(UTC)
    journal = Journal.open(state, Mode.PAPER)
    try:
        add_trade(journal, Decimal(-20), now - timedelta(hours=3))
    finally:
        journal.close()
    alerts = tmp_path / "alerts.jsonl"
    env = {"PATH": "/usr/bin:/bin", "HELIOS_STATE_DIR": str(state), "ALERT_URLS": f"file://{alerts}"}
    result = subprocess.run([sys.executable, "-m", "helios.cli", "report", "--window", "day", "--save-dir",
                             str(state / "reports"), "--alert"], capture_output=True, text=True, env=env,
                            check=False, timeout=60)
    assert result.returncode == 1, result.stderr  # win rate 0% < 60%: a failed threshold
    latest = json.loads((state / "reports" / "latest-day.json").read_text())
    assert latest["passed"] is False and latest["trades"] == 1
    stamped = sorted(p.name for p in (state / "reports").glob("day-*.json"))
    assert len(stamped) == 1 and json.loads((state / "reports" / stamped[0]).read_text()) == latest
    sent = json.loads(alerts.read_text())
    assert (sent["type"], sent["title"]) == ("failure", "Helios critical: day report: FAIL")
    assert '"failed_checks": ["win_rate"]' in sent["body"]
