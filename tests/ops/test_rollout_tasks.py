"""`invoke report` and `invoke ramp` (issue 12): the pure command builders the tasks run on each host."""

from __future__ import annotations

import shlex

import pytest

from helios_ops import commands as cmd
from helios_ops.inventory import OpsError


def test_report_runs_the_service_cli_with_the_window() -> None:
    assert shlex.split(cmd.report_command("day")) == [cmd.HELPER, "report", "--window=day"]
    assert shlex.split(cmd.report_command("week", compare=True, sudo=True)) == [
        "sudo", "-n", cmd.HELPER, "report", "--window=week", "--compare"]


def test_report_refuses_an_unknown_window() -> None:
    with pytest.raises(OpsError, match="--window: one of day, week, month"):
        cmd.report_command("year")


def test_ramp_passes_amount_and_reason_as_single_values() -> None:
    reason = "-x {{ lookup('pipe', 'id') }} week 1 reviewed; 'quoted'"
    argv = shlex.split(cmd.ramp_command("5000", reason, who="op@laptop"))
    assert argv == [cmd.HELPER, "ramp", "--to=5000", f"--reason={reason}", "--who=op@laptop"]  # literal, one argument


@pytest.mark.parametrize(("to", "reason", "message"), [
    ("0", "ok", "--to: must be a positive"),
    ("-5", "ok", "--to: must be a positive"),
    ("NaN", "ok", "--to: must be a positive"),
    ("five", "ok", "--to: not a ZAR amount"),
    ("5000", "   ", "--reason: a ramp needs a reason"),
    ("5000", "line\nbreak", "control character"),
    ("5000", "x" * 501, "longer than 500"),
])
def test_ramp_refuses_bad_input_before_anything_runs(to: str, reason: str, message: str) -> None:
    with pytest.raises(OpsError, match=message):
        cmd.ramp_command(to, reason)


def test_both_tasks_are_registered() -> None:
    from tasks import ns

    names = set(ns.task_names)
    assert {"report", "ramp"} <= names
