"""Issue 10 (hygiene, the deploy user's sudo): without a host. Every command an operator task runs with ``sudo -n``
is the host helper (the sudoers rule allows nothing else), and the helper's ``audit`` / ``report`` / ``ramp`` /
``logs`` take only strictly validated arguments."""

from __future__ import annotations

import shlex

import pytest

from helios_ops import commands as cmd
from helios_ops import deployctl as ctl

SUDO_BUILDERS = {
    "status": lambda: cmd.status_command(sudo=True),
    "releases": lambda: cmd.releases_command(sudo=True),
    "backups": lambda: cmd.backups_command(sudo=True),
    "plan": lambda: cmd.plan_command("deploy", sudo=True),
    "lock status": lambda: cmd.lock_status_command(sudo=True),
    "lock break": lambda: cmd.lock_break_command("me", "why", sudo=True),
    "follow": lambda: cmd.follow_command(None, sudo=True),
    "flow": lambda: cmd.flow_command("resume", "20260101T000000Z-0123abcd", "me", "why", ["--reason=x"], sudo=True),
    "audit": lambda: cmd.audit_command(sudo=True),
    "report": lambda: cmd.report_command("day", compare=True, sudo=True),
    "ramp": lambda: cmd.ramp_command("5000", "stage 2", sudo=True, who="me"),
    "logs": lambda: cmd.logs_command(20, follow=True, sudo=True),
}


@pytest.mark.parametrize("name", sorted(SUDO_BUILDERS))
def test_every_sudo_command_is_the_host_helper_and_nothing_else(name: str) -> None:
    argv = shlex.split(SUDO_BUILDERS[name]())
    assert argv[:3] == ["sudo", "-n", cmd.HELPER], argv
    assert not any(word in ("sh", "bash", "-c", "env", "journalctl") for word in argv[3:]), argv


def test_the_new_helper_commands_build_fixed_service_argv() -> None:
    parse = ctl.build_parser().parse_args
    assert ctl.operator_cli_argv(parse(["audit"])) == ["audit"]
    assert ctl.operator_cli_argv(parse(["report", "--window=month", "--compare"])) == [
        "report", "--window=month", "--compare"]
    reason = "-x {{ lookup('pipe','id') }}; rm -rf /"
    assert ctl.operator_cli_argv(parse(["ramp", "--to=2500.50", f"--reason={reason}", "--who=op"])) == [
        "ramp", "--to=2500.50", f"--reason={reason}", "--actor=op"]
    assert ctl.operator_cli_argv(parse(["report"])) == ["report", "--window=week"]
    assert parse(["logs", "--lines=20", "--follow"]).lines == 20


@pytest.mark.parametrize("argv", [
    ["logs", "--lines=0"], ["logs", "--lines=5;id"], ["logs", "--lines=1000001"], ["logs", "--unit=ssh"],
    ["ramp", "--to=1e9", "--reason=x"], ["ramp", "--to=-5", "--reason=x"], ["ramp", "--to=0", "--reason=x"],
    ["ramp", "--to=NaN", "--reason=x"], ["ramp", "--to=5000", "--reason= "], ["ramp", "--to=5000", "--reason=a\nb"],
    ["ramp", "--to=5000"], ["report", "--window=year"], ["audit", "--env-file=/tmp/x"],
])
def test_the_new_helper_commands_refuse_bad_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ctl.build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("keep", [0, -3])
def test_backup_retention_never_deletes_the_newest_backup(keep: int) -> None:
    names = ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"]
    assert ctl.backups_to_remove(names, keep) == names[:2]
