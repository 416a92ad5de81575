"""One real systemd-nspawn host for the security suite (sandbox group ``security``: ssh 2621, api 8501).

Provisioned as root with ansible/provision.yml, which also creates the restricted ``deploy`` user (the sandbox key as
its authorized key) and its sudoers rule. ``inventory/security`` reaches the host as root (provisioning, set-up);
``inventory/security-deploy`` (written here) reaches it as ``deploy``: the operator's day-to-day path.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helios_ops import sandbox as sandbox_mod
from tests.hostapi import Run, api_get, wait_healthy

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
GROUP = "security"
ROOT_INVENTORY = REPO / "inventory" / "security"
DEPLOY_INVENTORY = REPO / "inventory" / "security-deploy"
DEPLOY_USER = "deploy"
HELPER = "/usr/local/lib/helios/helios-deployctl"


@dataclass
class SecHost:
    key: Path
    ssh_port: int
    api_port: int
    outputs: list[str] = field(default_factory=list)

    # -- operator side -------------------------------------------------------------------------------------------
    def invoke(self, *args: str, inventory: str = "security-deploy", timeout: float = 300) -> Run:
        """An operator command, by default as the restricted deploy user."""
        started = time.monotonic()
        proc = subprocess.run([str(VENV_BIN / "invoke"), *args, "--inventory", inventory], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        self.outputs.append(out)
        return Run(proc.returncode, out, time.monotonic() - started)

    def playbook(self, playbook: str, *extra: str, timeout: float = 600,
                 inventories: tuple[Path, ...] = (ROOT_INVENTORY,)) -> Run:
        started = time.monotonic()
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg")}
        sources = [arg for inv in inventories for arg in ("-i", str(inv))]
        proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), *sources, str(REPO / "ansible" / playbook),
                               *extra], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
                              env=env)
        return Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)

    def provision(self, *extra: str, inventories: tuple[Path, ...] = (ROOT_INVENTORY,)) -> Run:
        """ansible/provision.yml with the deploy user's key (the sandbox key) passed as data (-e @file)."""
        pub = Path(f"{self.key}.pub").read_text().strip()
        with tempfile.TemporaryDirectory(prefix="helios-sec-") as tmp:
            keys = Path(tmp) / "deploy-key.json"
            keys.write_text(json.dumps({"helios_deploy_authorized_keys": [pub]}))
            return self.playbook("provision.yml", "-e", f"@{keys}", *extra, inventories=inventories)

    # -- host side ------------------------------------------------------------------------------------------------
    def ssh_argv(self, command: str, user: str = "root") -> list[str]:
        argv = sandbox_mod.ssh_command(self.key, self.ssh_port, [command])
        return [f"{user}@127.0.0.1" if a == "root@127.0.0.1" else a for a in argv]

    def run(self, command: str, user: str = "root", timeout: float = 120) -> Run:
        started = time.monotonic()
        proc = subprocess.run(self.ssh_argv(command, user), capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
        return Run(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)

    def ssh(self, command: str, timeout: float = 120) -> str:
        res = self.run(command, timeout=timeout)
        if res.rc != 0:
            raise AssertionError(f"ssh {command!r} failed ({res.rc}): {res.out.strip()[-2000:]}")
        return res.out

    def as_helios(self, script: str) -> str:
        """A shell script run as the hostile service user (root logs in, then drops to ``helios``)."""
        return self.ssh(f"runuser -u helios -- sh -euc {shlex.quote(script)}")

    def api(self, path: str) -> dict[str, Any]:
        return api_get(self.api_port, path)

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        return wait_healthy(self.api, timeout)

    def current(self) -> str:
        return self.ssh("basename $(readlink /opt/helios/current)").strip()

    def trading_state(self) -> str:
        return str(self.api("/api/health").get("trading_state"))


def security_sandbox() -> sandbox_mod.Sandbox:
    return sandbox_mod.group_sandbox(GROUP)


def write_deploy_inventory() -> None:
    """inventory/security-deploy: the same host, as the restricted deploy user (same key, same known_hosts)."""
    text = (ROOT_INVENTORY / "hosts.yml").read_text()
    assert "ansible_user: root" in text
    (DEPLOY_INVENTORY / "hosts.yml").write_text(text.replace("ansible_user: root", f"ansible_user: {DEPLOY_USER}"))
    shutil.copyfile(ROOT_INVENTORY / "known_hosts", DEPLOY_INVENTORY / "known_hosts")


def security_host() -> Iterator[SecHost]:
    """Boot, provision (deploy user + sudoers rule included), yield; always tear down."""
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        pytest.skip("needs root and systemd-nspawn")
    box = security_sandbox()
    try:
        spec = box.up(1)[0]
        host = SecHost(key=box.key_file, ssh_port=spec.ssh_port, api_port=spec.api_port)
        prov = host.provision()
        assert prov.rc == 0, prov.out[-4000:]
        write_deploy_inventory()
        host.wait_healthy()
        yield host
    finally:
        for name in ("hosts.yml", "known_hosts"):
            (DEPLOY_INVENTORY / name).unlink(missing_ok=True)
        if not os.environ.get("HELIOS_KEEP_SECURITY_HOST"):
            box.down()
