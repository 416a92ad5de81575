"""Thin executor for the operator tasks: runs ansible-playbook (state changes) and single SSH calls with Fabric
(emergency stop, status, logs, read-only listings). The commands come from ``helios_ops.commands``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helios_ops import commands as cmd
from helios_ops import provision as provision_mod

INVENTORY_ROOT = cmd.REPO_ROOT / "inventory"


@dataclass
class PlaybookResult:
    rc: int
    seconds: float
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def failure_line(self, what: str) -> str:
        """One line: what failed, on which host, and the host's state (from the failing task's message)."""
        failed = [(name, h) for name, h in sorted(self.hosts.items()) if h.get("failed")]
        if not failed:
            return f"{what} failed: ansible-playbook exited {self.rc} (see the output above)"
        parts = [f"{name}: {h.get('message') or 'failed'}" for name, h in failed]
        return f"{what} failed -- " + " | ".join(parts)

    def results(self, host: str, task_prefix: str) -> dict[str, Any] | None:
        for name, value in (self.hosts.get(host, {}).get("results") or {}).items():
            if task_prefix in name:
                return dict(value)
        return None


@dataclass
class SshResult:
    host: str
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.stdout.strip().splitlines()[-1]) if self.stdout.strip() else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}


# ----------------------------------------------------------------------------------------------------------------
def inventory_path(name: str) -> Path:
    cmd.check_inventory_name(name)
    try:
        return provision_mod.inventory_dir(name, INVENTORY_ROOT)
    except provision_mod.ProvisionError as exc:
        raise cmd.OpsError(str(exc)) from None


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        if handle.read(14) == b"$ANSIBLE_VAULT":
            return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data if isinstance(data, dict) else {}


def inventory_hosts(name: str) -> list[cmd.Host]:
    """Hosts of inventory/<name> (hosts.yml + group_vars/all), for the Fabric calls."""
    path = inventory_path(name)
    hosts_file = next((p for p in (path / "hosts.yml", path / "hosts.yaml") if p.is_file()), None)
    if hosts_file is None:
        raise cmd.OpsError(f"inventory {name!r} has no hosts.yml")
    group_vars: dict[str, Any] = {}
    gv = path / "group_vars" / "all"
    files = (
        sorted(gv.glob("*.yml"))
        if gv.is_dir()
        else ([gv.with_suffix(".yml")] if gv.with_suffix(".yml").is_file() else [])
    )
    for file in files:
        group_vars.update(_load_yaml(file))
    hosts = cmd.hosts_from_inventory(_load_yaml(hosts_file), group_vars)
    if not hosts:
        raise cmd.OpsError(f"inventory {name!r} lists no hosts")
    return hosts


def run_playbook(
    playbook: str,
    inventory: str,
    extra_vars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> PlaybookResult:
    """Run one of ansible/*.yml with the timed step output; returns rc and the per-host JSON summary."""
    path = inventory_path(inventory)
    vault_file = None
    if provision_mod.needs_vault(path):
        vault_file = provision_mod.vault_password_file()
        if vault_file is None:
            raise cmd.OpsError(
                f"inventory {inventory!r} has vault-encrypted files: set {provision_mod.VAULT_PASSWORD_ENV}"
            )
    binary = str(Path(sys.executable).parent / "ansible-playbook")
    argv = cmd.playbook_argv(binary, path, playbook, extra_vars, limit, vault_file)
    write = echo or (lambda line: print(line, flush=True))
    with tempfile.TemporaryDirectory(prefix="helios-run-") as tmp:
        result_file = Path(tmp) / "result.json"
        env = {**os.environ, **cmd.playbook_env(result_file, cmd.actor())}
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cmd.REPO_ROOT
        )
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            write(line.rstrip("\n"))
        rc = proc.wait()
        hosts: dict[str, dict[str, Any]] = {}
        if result_file.is_file():
            hosts = json.loads(result_file.read_text()).get("hosts", {})
    return PlaybookResult(rc=rc, seconds=round(time.monotonic() - started, 3), hosts=hosts, output="".join(lines))


def new_run_id() -> str:
    return uuid.uuid4().hex


# ----------------------------------------------------------------------------------------------------------------
def ssh_run(host: cmd.Host, command: str, timeout: float = 60, pty: bool = False, stream: bool = False) -> SshResult:
    """One command on one host over SSH (Fabric / paramiko)."""
    from fabric import Config, Connection

    started = time.monotonic()
    connect: dict[str, Any] = {"look_for_keys": host.key_file is None, "allow_agent": host.key_file is None}
    if host.key_file:
        connect["key_filename"] = [host.key_file]
    config = Config(overrides={"load_ssh_configs": False, "run": {"warn": True}})
    conn = Connection(
        host=host.address, user=host.user, port=host.port, connect_kwargs=connect, connect_timeout=10, config=config
    )
    try:
        result = conn.run(command, hide=not stream, warn=True, pty=pty, timeout=timeout, in_stream=False)
        return SshResult(
            host.name, int(result.exited), result.stdout, result.stderr, round(time.monotonic() - started, 3)
        )
    except Exception as exc:
        return SshResult(
            host.name,
            255,
            "",
            f"ssh to {host.name} failed: {type(exc).__name__}: {exc}",
            round(time.monotonic() - started, 3),
        )
    finally:
        conn.close()


def ssh_all(hosts: Sequence[cmd.Host], build: Callable[[cmd.Host], str], timeout: float = 60) -> list[SshResult]:
    """The same kind of command on every host at once (emergency stop, status)."""
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        futures = [pool.submit(ssh_run, h, build(h), timeout) for h in hosts]
        return [f.result() for f in futures]


def first_error(result: SshResult) -> str:
    data = result.json()
    if data.get("error"):
        return str(data["error"])
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {result.rc}"
