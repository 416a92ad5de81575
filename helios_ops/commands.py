"""Pure command and plan builders for the Helios operator tasks (deploy, rollback, mode, backups, emergency stop).

Nothing here touches the network or a host: every function turns arguments into argv lists, shell strings,
extra-vars or text, so it is tested without SSH (tests/deploy/test_commands.py). ``helios_ops.deploy`` is the thin
executor that runs what these build (ansible-playbook locally, single commands over SSH with Fabric).

Host-side logic lives once, in ``helios-deployctl`` (ansible/roles/helios_release/files/), which both the
playbooks and the Fabric calls invoke.
"""

from __future__ import annotations

import getpass
import json
import shlex
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ANSIBLE_DIR = REPO_ROOT / "ansible"
HELPER = "/usr/local/lib/helios/helios-deployctl"
CURRENT_HELIOS = "/opt/helios/current/venv/bin/helios"
PRODUCTION_NAMES = frozenset({"production", "prod"})
SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "API_KEY", "ALERT_URLS")

#: The deploy steps of issue 5, in order (what ``invoke deploy --check`` prints).
DEPLOY_STEPS: tuple[str, ...] = (
    "take the deploy lock (atomic; who/where/when/what/why)",
    "verified backup: journal(s) via SQLite online backup, env file, release id, SHA256SUMS, row counts",
    "upload: dependency wheelhouse only if the host lacks it, then the helios wheel",
    "build the release virtualenv offline (pip --no-index)",
    "helios check-config of the new release against /etc/helios/helios.env (old release still running)",
    "stop the old service (SIGTERM; wait until its process and the state lock are gone)",
    "switch /opt/helios/current atomically (symlink + rename)",
    "start helios.service",
    "health gate: /api/health ok, /api/mode/current = configured mode, heartbeat fresh, soak",
    "prune releases (keep 5; never current, never last good, never backups)",
    "audit line in /var/log/helios/audit.jsonl",
    "release the deploy lock",
)


class OpsError(RuntimeError):
    """An operator task cannot run; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class Host:
    """One inventory host, as SSH (Fabric) needs it."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    api_port: int = 8100
    become: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Inventories
# ----------------------------------------------------------------------------------------------------------------
def check_inventory_name(name: str) -> str:
    """Inventory names are plain directory names under inventory/; production is never implied."""
    if not name or "/" in name or name.startswith("."):
        raise OpsError(f"invalid inventory name {name!r} (use a directory name under inventory/)")
    return name


def hosts_from_inventory(data: Mapping[str, Any], group_vars: Mapping[str, Any] | None = None) -> list[Host]:
    """Hosts of a YAML inventory (``all`` with nested ``children``), group vars applied from the top down."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Mapping[str, Any], inherited: Mapping[str, Any]) -> None:
        merged = {**inherited, **(node.get("vars") or {})}
        for name, hvars in (node.get("hosts") or {}).items():
            found[name] = {**merged, **(found.get(name) or {}), **(hvars or {})}
        for child in (node.get("children") or {}).values():
            walk(child or {}, merged)

    walk(data.get("all") or {}, dict(group_vars or {}))
    hosts = []
    for name, v in sorted(found.items()):
        user = str(v.get("ansible_user", "root"))
        hosts.append(
            Host(
                name=name,
                address=str(v.get("ansible_host", name)),
                port=int(v.get("ansible_port", 22)),
                user=user,
                key_file=v.get("ansible_ssh_private_key_file"),
                api_port=int(v.get("helios_api_port", 8100)),
                become=user != "root",
            )
        )
    return hosts


# ----------------------------------------------------------------------------------------------------------------
# ansible-playbook
# ----------------------------------------------------------------------------------------------------------------
def actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def extra_vars_arg(values: Mapping[str, Any]) -> list[str]:
    """``-e <json>`` (JSON keeps types and needs no quoting rules); empty/None values are left out."""
    clean = {k: v for k, v in values.items() if v is not None and v != ""}
    return ["-e", json.dumps(clean, sort_keys=True)] if clean else []


def playbook_argv(
    ansible_playbook: str,
    inventory_dir: Path,
    playbook: str,
    extra_vars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    vault_password_file: Path | None = None,
) -> list[str]:
    argv = [ansible_playbook, "-i", str(inventory_dir), str(ANSIBLE_DIR / playbook)]
    if vault_password_file is not None:
        argv += ["--vault-password-file", str(vault_password_file)]
    if limit:
        argv += ["--limit", limit]
    argv += extra_vars_arg(extra_vars or {})
    return argv


def playbook_env(result_file: Path, who: str) -> dict[str, str]:
    """Environment for ansible-playbook: repo config, the timed step output and its JSON summary file."""
    return {
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "helios_steps",
        "ANSIBLE_CALLBACK_PLUGINS": str(ANSIBLE_DIR / "callback_plugins"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "HELIOS_RESULT_FILE": str(result_file),
        "HELIOS_ACTOR": who,
    }


def deploy_vars(
    artifact: Mapping[str, Any] | None,
    reason: str,
    run_id: str,
    soak: float | None = None,
    health_timeout: float | None = None,
    keep: int | None = None,
) -> dict[str, Any]:
    values: dict[str, Any] = {"helios_reason": reason, "helios_run_id": run_id}
    if artifact is not None:
        values["helios_release_artifact"] = dict(artifact)
    if soak is not None:
        values["helios_release_soak"] = soak
    if health_timeout is not None:
        values["helios_release_health_timeout"] = health_timeout
    if keep is not None:
        values["helios_release_keep"] = keep
    return values


def deploy_plan(hosts: Sequence[Host], release: str, ref: str, inventory: str) -> str:
    """What ``invoke deploy --check`` prints: hosts in order (one at a time) and the steps on each."""
    lines = [
        f"deploy plan for inventory {inventory!r}: release {release} (ref {ref}); hosts one at a time, "
        "stop at the first failure",
    ]
    for i, host in enumerate(hosts, 1):
        lines.append(f"  host {i}/{len(hosts)}: {host.name} ({host.user}@{host.address}:{host.port})")
    lines.append("  on each host:")
    lines += [f"    {n:>2}. {step}" for n, step in enumerate(DEPLOY_STEPS, 1)]
    lines.append("  on failure after the switch: switch back, start the old release, confirm healthy, mark the new")
    lines.append("  release bad, alert, show the unit's last journal lines, exit non-zero")
    lines.append("  on failure before the switch: the old service keeps running; the half-built release is removed")
    lines.append("(--check: nothing was changed)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Single SSH commands (Fabric)
# ----------------------------------------------------------------------------------------------------------------
def helper_command(*args: str, sudo: bool = False) -> str:
    cmd = shlex.join([HELPER, *args])
    return f"sudo -n {cmd}" if sudo else cmd


def estop_command(reason: str, who: str, sudo: bool = False) -> str:
    return helper_command("estop", "--reason", reason, "--who", who, sudo=sudo)


def resume_command(reason: str, who: str, sudo: bool = False) -> str:
    if not reason.strip():
        raise OpsError("resume needs --reason (it is written to the journal and the audit log)")
    return helper_command("resume", "--reason", reason, "--who", who, sudo=sudo)


def status_command(sudo: bool = False) -> str:
    return helper_command("status", sudo=sudo)


def releases_command(sudo: bool = False) -> str:
    return helper_command("releases", sudo=sudo)


def backups_command(sudo: bool = False) -> str:
    return helper_command("backups", sudo=sudo)


def lock_status_command(sudo: bool = False) -> str:
    return helper_command("lock", "status", sudo=sudo)


def lock_break_command(who: str, why: str, sudo: bool = False) -> str:
    return helper_command("lock", "release", "--force", "--who", who, "--why", why, sudo=sudo)


def audit_command(sudo: bool = False) -> str:
    """``helios audit`` on the host with its env file (read-only)."""
    cmd = shlex.join([CURRENT_HELIOS, "audit"])
    return f"sudo -n {cmd}" if sudo else cmd


def logs_command(lines: int = 100, follow: bool = False, sudo: bool = False) -> str:
    argv = ["journalctl", "-u", "helios.service", "-n", str(lines), "--no-pager", "-o", "short-iso"]
    if follow:
        argv.append("-f")
    cmd = shlex.join(argv)
    return f"sudo -n {cmd}" if sudo else cmd


def tunnel_hint(host: Host, local_port: int = 8100) -> str:
    """How to reach a server's loopback-only API and dashboard from the operator's machine."""
    key = f" -i {host.key_file}" if host.key_file else ""
    return (
        f"ssh -N -L {local_port}:127.0.0.1:{host.api_port}{key} -p {host.port} {host.user}@{host.address}  "
        f"then open http://127.0.0.1:{local_port}/dashboard.html"
    )


def service_url(host: Host) -> str | None:
    """Direct URL when the host's loopback is this machine's loopback (sandbox hosts)."""
    if host.address in ("127.0.0.1", "localhost", "::1"):
        return f"http://127.0.0.1:{host.api_port}/dashboard.html"
    return None


# ----------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------
def mask_env_line(line: str) -> str:
    key, sep, _ = line.partition("=")
    if sep and any(marker in key.upper() for marker in SECRET_MARKERS):
        return f"{key}=****"
    return line


def render_estop(host: str, report: Mapping[str, Any]) -> str:
    if not report.get("ok", False) and "orders_cancelled" not in report:
        return f"{host}: EMERGENCY STOP FAILED: {report.get('error', 'no answer')}"
    positions = report.get("open_positions") or []
    pos = ", ".join(f"{p.get('pair')} {p.get('quantity')}" for p in positions) or "none"
    remaining = report.get("open_orders_remaining")
    confirmed = " (confirmed by re-query)" if report.get("zero_open_orders_confirmed") else " (NOT CONFIRMED)"
    via = report.get("path", "?")
    stopped = "; unit stopped" if report.get("unit_stopped") else ""
    return (
        f"{host}: {report.get('trading_state')} via {via}{stopped}; orders cancelled {report.get('orders_cancelled')}, "
        f"open orders remaining {remaining}{confirmed}; open positions: {pos}"
    )


def render_status(host: Host, data: Mapping[str, Any]) -> str:
    svc: Mapping[str, Any] = data.get("service") or {}
    pnl: Mapping[str, Any] = svc.get("pnl") or {}
    positions = svc.get("positions") or []
    health = "ok" if svc.get("healthy") else f"UNHEALTHY {data.get('service_error') or ''}".strip()
    last = data.get("last_deploy") or {}
    last_txt = (
        f"{last.get('event')} {last.get('result')} {last.get('release')} at {last.get('at')} by {last.get('who')}"
    )
    lines = [
        f"{host.name}",
        f"  release         {data.get('release')}"
        + ("" if data.get("release") == data.get("last_good") else f" (last good {data.get('last_good')})"),
        f"  mode            {svc.get('mode', data.get('configured_mode'))}   unit {data.get('unit')}",
        f"  trading state   {svc.get('trading_state', '-')}",
        f"  health          {health}",
        f"  P&L today       R{pnl.get('today_total_zar', '-')} (realised R{pnl.get('today_realised_zar', '-')})",
        f"  open positions  {len(positions)}"
        + "".join(f"\n                  {p.get('pair')} {p.get('quantity')}" for p in positions),
        f"  open orders     {svc.get('open_orders', '-')}",
        f"  deploy lock     {data.get('lock') or 'free'}",
        f"  last deploy     {last_txt if last else '-'}",
    ]
    url = service_url(host)
    lines.append(f"  url             {url}" if url else f"  url             via SSH tunnel: {tunnel_hint(host)}")
    return "\n".join(lines)


def render_releases(host: str, data: Mapping[str, Any]) -> str:
    lines = [f"{host}:"]
    for r in data.get("releases", []):
        marks = []
        if r.get("current"):
            marks.append("CURRENT")
        if r.get("last_good"):
            marks.append("last-good")
        if r.get("bad"):
            marks.append("BAD")
        if r.get("dirty"):
            marks.append("dirty")
        sha = (r.get("git_sha") or "")[:10]
        lines.append(
            f"  {r['release']}  {','.join(marks) or 'good':<18} sha {sha:<10} "
            f"deployed {r.get('deployed_at') or '-'} by {r.get('deployed_by') or '-'}"
        )
    if len(lines) == 1:
        lines.append("  (no releases)")
    return "\n".join(lines)
