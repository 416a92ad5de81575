"""Issue 10 (hygiene): "the deploy user needs unrestricted passwordless sudo". On a real host, provisioning creates
the restricted ``deploy`` user with a sudoers rule that allows the host helper as root and nothing else, and every
day-to-day operator command works as that user (inventory/security-deploy: ansible_user=deploy)."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.security.sandbox_host import DEPLOY_INVENTORY, DEPLOY_USER, HELPER, ROOT_INVENTORY, SecHost

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def test_provisioning_installs_a_valid_sudoers_rule_for_the_helper_only(sec_host: SecHost) -> None:
    assert sec_host.run("visudo -c").rc == 0
    rule = sec_host.ssh("cat /etc/sudoers.d/helios-deploy")
    grants = [line for line in rule.splitlines() if line.strip() and not line.lstrip().startswith(("#", "Defaults"))]
    assert grants == [f"{DEPLOY_USER} ALL=(root) NOPASSWD: {HELPER}"], rule
    assert sec_host.ssh("stat -c '%U %a' /etc/sudoers.d/helios-deploy").split() == ["root", "440"]
    listed = sec_host.run("sudo -n -l", user=DEPLOY_USER).out
    assert HELPER in listed and "(ALL" not in listed and "(root) NOPASSWD: ALL" not in listed, listed


@pytest.mark.parametrize("command", [
    "sudo -n /bin/sh -c id",
    "sudo -n cat /etc/shadow",
    "sudo -n -u helios /bin/sh -c id",
    "sudo -n /usr/bin/python3 -c 'import os; print(os.getuid())'",
    "sudo -n journalctl -n 1",
    "sudo -n /opt/helios/current/venv/bin/helios audit",
    f"sudo -n env PYTHONPATH=/tmp {HELPER} status",
])
def test_the_deploy_user_cannot_run_anything_else_as_root(sec_host: SecHost, command: str) -> None:
    res = sec_host.run(command, user=DEPLOY_USER)
    assert res.rc != 0, res.out
    assert "uid=0" not in res.out and "$y$" not in res.out and "root:" not in res.out, res.out
    assert re.search(r"sudo: (a password is required|sorry, you are not allowed)", res.out), res.out


def test_the_helper_runs_as_root_for_the_deploy_user(sec_host: SecHost) -> None:
    res = sec_host.run(f"sudo -n {HELPER} status", user=DEPLOY_USER)
    assert res.rc == 0, res.out
    assert '"release"' in res.out


def test_bad_arguments_to_the_new_helper_commands_are_refused_before_anything_runs(sec_host: SecHost) -> None:
    for args in (["logs", "--lines=0"], ["logs", "--lines=5;id"], ["ramp", "--to=1e9", "--reason=x"],
                 ["ramp", "--to=-5", "--reason=x"], ["ramp", "--to=5000", "--reason= "], ["report", "--window=year"],
                 ["logs", "--unit=ssh"], ["ramp", "--to=5000", "--reason=a\nb"]):
        res = sec_host.run(shlex.join(["sudo", "-n", HELPER, *args]), user=DEPLOY_USER)
        assert res.rc == 2, (args, res.out)
        assert "error: argument" in res.out or "unrecognized arguments" in res.out, (args, res.out)


def test_day_to_day_operator_commands_work_as_the_deploy_user(sec_host: SecHost) -> None:
    """status, emergency-stop, resume, backup, deploy, logs, audit, report, rollback (there and back), as ``deploy``:
    the deploy's upload goes through the helper (probe, receive), so the helper-only sudo rule is enough."""
    status = sec_host.invoke("status")
    assert status.rc == 0 and "trading state   ACTIVE" in status.out, status.out

    stop = sec_host.invoke("emergency-stop", "--reason", "deploy-user test")
    assert stop.rc == 0, stop.out
    assert "HALTED via api" in stop.out and "zero open orders confirmed" in stop.out, stop.out
    assert sec_host.trading_state() == "HALTED"

    resume = sec_host.invoke("resume", "--reason", "deploy-user test over")
    assert resume.rc == 0 and "HALTED -> ACTIVE" in resume.out, resume.out

    backup = sec_host.invoke("backup")
    assert backup.rc == 0 and re.search(r"backup \d{8}T\d{6}Z verified", backup.out), backup.out

    before = sec_host.current()
    deploy = sec_host.invoke("deploy", "--allow-dirty", "--reason", "deploy-user test", timeout=600)
    assert deploy.rc == 0, deploy.out[-3000:]
    assert "password is required" not in deploy.out and "Missing sudo password" not in deploy.out, deploy.out
    deployed = sec_host.current()
    assert deployed != before
    assert f"host now: release {deployed}" in deploy.out.strip().splitlines()[-1], deploy.out[-2000:]
    sec_host.wait_healthy()

    logs = sec_host.invoke("logs", "--lines", "20")
    assert logs.rc == 0 and "helios" in logs.out and "password is required" not in logs.out, logs.out

    audit = sec_host.invoke("audit")  # PAPER sandbox: the pre-live audit may fail checks, but it must run
    assert "password is required" not in audit.out and "not allowed" not in audit.out, audit.out
    assert re.search(r"^\s*(PASS|FAIL|WARN)", audit.out, re.M), audit.out

    report = sec_host.invoke("report", "--window", "day")
    assert "password is required" not in report.out and "not allowed" not in report.out, report.out
    assert report.rc in (0, 1) and "== sec1" in report.out, report.out

    current = sec_host.current()
    older = "20000101T000000Z-0000000"  # a copy of the current release, older: the rollback target
    sec_host.ssh(f"cp -a /opt/helios/releases/{current} /opt/helios/releases/{older}")
    back = sec_host.invoke("rollback", "--to", older, "--reason", "deploy-user test")
    assert back.rc == 0, back.out
    assert sec_host.current() == older
    forward = sec_host.invoke("rollback", "--to", current, "--reason", "deploy-user test: forward again")
    assert forward.rc == 0, forward.out
    assert sec_host.current() == current
    sec_host.wait_healthy()


def test_provisioning_needs_the_admin_account_and_connects_as_helios_admin_user(sec_host: SecHost) -> None:
    """With the deploy user as the inventory's ansible_user, provisioning (Ansible become) is refused; with
    helios_admin_user set it connects as that account and finds nothing to change."""
    as_deploy = (ROOT_INVENTORY, DEPLOY_INVENTORY)  # group_vars of the first, ansible_user=deploy from the second
    refused = sec_host.provision(inventories=as_deploy)
    assert refused.rc != 0 and "Missing sudo password" in refused.out, refused.out[-3000:]
    admin = sec_host.provision("-e", "helios_admin_user=root", inventories=as_deploy)
    assert admin.rc == 0, admin.out[-3000:]
    assert re.search(r"sec1\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", admin.out), admin.out[-3000:]
    assert sec_host.run("visudo -c").rc == 0
    assert sec_host.run(f"sudo -n {HELPER} status", user=DEPLOY_USER).rc == 0
