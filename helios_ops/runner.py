"""The one runner of the operator tasks: ansible-playbook (deploy: upload + flow; provisioning) and single SSH calls
with Fabric (every other flow, queries). The commands come from ``helios_ops.commands``, the hosts from
``helios_ops.inventory``. ``run_flow`` starts a host-side flow and, when the link drops, reattaches until it knows
the flow's real outcome.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helios_ops import commands as cmd
from helios_ops import hostkeys
from helios_ops import provision as provision_mod
from helios_ops.inventory import REPO_ROOT, Host, OpsError, inventory_path


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
    refused: bool = False  # the host's SSH key is not the recorded one: nothing was sent

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.stdout.strip().splitlines()[-1]) if self.stdout.strip() else {}
        except ValueError:
            data = {}
        return data if isinstance(data, dict) else {}


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
            raise OpsError(
                f"inventory {inventory!r} has vault-encrypted files: set {provision_mod.VAULT_PASSWORD_ENV}"
            )
        try:
            provision_mod.check_vault_password(inventory, vault_file)
        except provision_mod.ProvisionError as exc:
            raise OpsError(str(exc)) from None
    binary = str(Path(sys.executable).parent / "ansible-playbook")
    write = echo or (lambda line: print(line, flush=True))
    with tempfile.TemporaryDirectory(prefix="helios-run-") as tmp:
        vars_file = Path(tmp) / "extra-vars.yml"
        vars_file.write_text(cmd.extra_vars_text(extra_vars or {}))
        argv = cmd.playbook_argv(binary, path, playbook, vars_file, limit, vault_file)
        result_file = Path(tmp) / "result.json"
        env = {**os.environ, **cmd.playbook_env(result_file, cmd.actor())}
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO_ROOT
        )
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            write(line.rstrip("\n"))
        rc = proc.wait()
        refusal = hostkeys.ansible_refusal("".join(lines)) if rc != 0 else None
        if refusal is not None:
            write(refusal)
        hosts: dict[str, dict[str, Any]] = {}
        if result_file.is_file():
            hosts = json.loads(result_file.read_text()).get("hosts", {})
    return PlaybookResult(rc=rc, seconds=round(time.monotonic() - started, 3), hosts=hosts, output="".join(lines))


def new_flow_id() -> str:
    return cmd.new_flow_id(datetime.now(UTC), uuid.uuid4().hex[:8])


# ----------------------------------------------------------------------------------------------------------------
def ssh_run(
    host: Host, command: str, timeout: float = 60, pty: bool = False, stream: bool = False, show_stdout: bool = True
) -> SshResult:
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
        conn.client = hostkeys.strict_client(host)  # the inventory's known_hosts only; RejectPolicy
    except OpsError as exc:
        return SshResult(host.name, 255, "", str(exc), 0.0, refused=True)
    try:
        hide: bool | str = (not stream) or ("out" if not show_stdout else False)
        result = conn.run(command, hide=hide, warn=True, pty=pty, timeout=timeout, in_stream=False)
        return SshResult(
            host.name, int(result.exited), result.stdout, result.stderr, round(time.monotonic() - started, 3)
        )
    except Exception as exc:
        refusal = hostkeys.refusal(host, exc)
        if refusal is not None:
            return SshResult(host.name, 255, "", refusal, round(time.monotonic() - started, 3), refused=True)
        return SshResult(
            host.name,
            255,
            "",
            f"ssh to {host.name} failed: {type(exc).__name__}: {exc}",
            round(time.monotonic() - started, 3),
        )
    finally:
        conn.close()


def ssh_all(hosts: Sequence[Host], build: Callable[[Host], str], timeout: float = 60) -> list[SshResult]:
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


@dataclass
class FlowResult:
    """A flow's outcome as the host reported it (``line`` says what the host runs now)."""

    host: str
    code: int
    data: dict[str, Any]
    reattached: int

    @property
    def line(self) -> str:
        return f"{self.host}: {self.data.get('line') or self.data.get('error') or 'no answer from the host'}"


def follow_flow(host: Host, flow_id: str, attempts: int = 30) -> FlowResult:
    """Reattach to a flow until its outcome is known (each try is a fresh SSH connection)."""
    last = SshResult(host.name, 255, "", "not tried", 0.0)
    for attempt in range(1, attempts + 1):
        last = ssh_run(host, cmd.follow_command(flow_id, sudo=host.become), timeout=900)
        if last.refused:
            return FlowResult(host.name, 255, {"error": last.stderr}, attempt)
        data = last.json()
        if last.rc != 255 and data:
            return FlowResult(host.name, last.rc, data, attempt)
        time.sleep(min(2.0, 0.2 * attempt))
    return FlowResult(host.name, 255, {"error": f"cannot reach the host to learn the outcome of flow {flow_id}: "
                                                f"{first_error(last)}; run `invoke flow --id {flow_id}`"}, attempts)


def run_flow(host: Host, flow: str, args: Sequence[str], who: str, why: str, flow_id: str | None = None,
             stream: bool = True) -> FlowResult:
    """Start one flow on the host and follow it; a dropped link is followed by a reattach, never by a guess."""
    flow_id = flow_id or new_flow_id()
    res = ssh_run(host, cmd.flow_command(flow, flow_id, who, why, args, sudo=host.become), timeout=900,
                  stream=stream, show_stdout=False)
    if res.refused:
        return FlowResult(host.name, 255, {"error": res.stderr}, 0)
    data = res.json()
    if res.rc != 255 and data.get("flow_id") == flow_id:
        return FlowResult(host.name, res.rc, data, 0)
    if res.rc != 255 and data.get("error"):  # refused before a flow existed (bad input)
        return FlowResult(host.name, res.rc, data, 0)
    print(f"{host.name}: lost the link to flow {flow_id} ({first_error(res)}); reattaching", flush=True)
    return follow_flow(host, flow_id)


def run_flow_all(hosts: Sequence[Host], flow: str, args: Sequence[str], who: str, why: str) -> list[FlowResult]:
    """The same flow on every host at once (emergency stop, resume)."""
    flow_id = new_flow_id()
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        futures = [pool.submit(run_flow, h, flow, args, who, why, flow_id, False) for h in hosts]
        return [f.result() for f in futures]
