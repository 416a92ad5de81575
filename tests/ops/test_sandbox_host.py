"""End to end on a real systemd-nspawn host (group "pytest": ssh 2521, api 8401): bring-up, provision,
hardened service health, and bad input (wrong SSH port, rejected env value, missing vault password).

Needs root, debootstrap and systemd-nspawn: ``pytest -m sandbox tests/ops``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helios_ops import provision, sandbox

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="sandbox hosts need root"),
]

REPO = Path(__file__).resolve().parents[2]


class Host:
    def __init__(self, box: sandbox.Sandbox, spec: sandbox.HostSpec, inventory: Path) -> None:
        self.box, self.spec, self.inventory = box, spec, inventory

    def sh(self, command: str) -> str:
        result = self.box.ssh(self.spec.ssh_port, command)
        assert result.returncode == 0, f"{command}: {result.stderr}"
        return result.stdout.strip()

    def provision(self, extra_vars: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = provision.playbook_argv(str(self.inventory), extra_vars=extra_vars, environ={})
        return provision.run_playbook(argv, capture=True)

    def health(self) -> tuple[int, dict[str, object]]:
        url = f"http://127.0.0.1:{self.spec.api_port}/api/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    box = sandbox.group_sandbox("pytest")
    try:
        [spec] = box.up(1)
        inventory = tmp_path_factory.mktemp("inventory")
        (inventory / "hosts.yml").write_text((box.state_dir / "hosts.yml").read_text())
        (inventory / "group_vars").symlink_to(REPO / "inventory" / "sandbox" / "group_vars")
        node = Host(box, spec, inventory)
        result = node.provision()
        assert result.returncode == 0, result.stdout[-3000:]
        yield node
    finally:
        box.down()


def test_hardened_service_answers_health_on_its_own_port(host: Host) -> None:
    status, body = host.health()
    assert status == 200
    assert body["mode"] == "PAPER"
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{7}", str(body["release"]))
    assert host.sh("systemctl is-active helios.service") == "active"
    assert host.sh("ps -o user= -p $(systemctl show -p MainPID --value helios.service)") == "helios"
    score = host.sh("systemd-analyze security helios.service --no-pager | tail -n 1")
    match = re.search(r"exposure level for helios\.service:\s*([0-9.]+)", score)
    assert match and float(match.group(1)) <= 1.5, score


def test_second_provision_changes_nothing(host: Host) -> None:
    result = host.provision()
    assert result.returncode == 0
    recap = re.search(r"changed=(\d+)", result.stdout.split("PLAY RECAP")[-1])
    assert recap and recap.group(1) == "0", result.stdout[-2000:]


def test_rejected_env_value_keeps_the_old_config_running(host: Host) -> None:
    before_env = hashlib.sha256(host.sh("cat /etc/helios/helios.env").encode()).hexdigest()
    before_pid = host.sh("systemctl show -p MainPID --value helios.service")
    result = host.provision(extra_vars=json.dumps({"helios_limits": {"MAX_OPEN_POSITIONS": 0}}))
    assert result.returncode == 2
    out = result.stdout
    assert "helios check-config rejected the new /etc/helios/helios.env" in out
    assert "MAX_OPEN_POSITIONS" in out
    assert "sandbox-token-not-secret" not in out  # no secrets in the output
    assert hashlib.sha256(host.sh("cat /etc/helios/helios.env").encode()).hexdigest() == before_env
    assert host.sh("systemctl show -p MainPID --value helios.service") == before_pid
    assert host.health()[0] == 200


def test_wrong_ssh_port_is_reported_unreachable(host: Host) -> None:
    result = host.provision(extra_vars=json.dumps({"ansible_port": 2499}))
    assert result.returncode == 4
    assert "UNREACHABLE" in result.stdout
    assert "unreachable" in provision.failure_line("sandbox", result.returncode)


def test_up_is_idempotent_and_status_reports_running(host: Host) -> None:
    before = {s.name: s.pid for s in host.box.recorded()}
    host.box.up(1)
    assert {s.name: s.pid for s in host.box.recorded()} == before
    [row] = host.box.status()
    assert row["system"] in sandbox.READY_STATES
