"""Pure command and plan builders for the Helios operator tasks (deploy, rollback, mode, backups, emergency stop).

Nothing here touches the network or a host: every function turns arguments into argv lists, shell strings,
extra-vars or text, so it is tested without SSH (tests/deploy/test_commands.py). ``helios_ops.runner`` is the
one executor that runs what these build (ansible-playbook locally, single commands over the system ssh client);
``helios_ops.inventory`` reads inventories.

Host-side logic lives once, in ``helios_ops/deployctl.py`` (installed on hosts as ``helios-deployctl``): one
function per flow, which both the playbooks and the SSH calls start.
"""

from __future__ import annotations

import getpass
import json
import re
import shlex
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from helios_ops.inventory import REPO_ROOT, Host, OpsError

ANSIBLE_DIR = REPO_ROOT / "ansible"
#: The one description of the server layout (also read by the host helper and the Ansible roles).
LAYOUT: dict[str, Any] = json.loads((Path(__file__).with_name("layout.json")).read_text())
HELPER: str = LAYOUT["helper"]
CURRENT_HELIOS = f"{LAYOUT['current_link']}/venv/bin/helios"
PRODUCTION_NAMES = frozenset({"production", "prod"})
SECRET_MARKERS: tuple[str, ...] = tuple(LAYOUT["secret_markers"])
FLOWS = ("deploy", "rollback", "mode", "restore", "backup", "estop", "resume")


# ----------------------------------------------------------------------------------------------------------------
# ansible-playbook
# ----------------------------------------------------------------------------------------------------------------
def actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


MAX_OPERATOR_TEXT = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def operator_text(value: str, what: str) -> str:
    """An operator string (reason, who, confirmation) is data: at most 500 characters, no control characters."""
    if len(value) > MAX_OPERATOR_TEXT:
        raise OpsError(f"{what}: longer than {MAX_OPERATOR_TEXT} characters ({len(value)}); nothing was done")
    if _CONTROL.search(value):
        raise OpsError(f"{what}: contains a control character (newline, tab, escape...); nothing was done")
    return value


def extra_vars_text(values: Mapping[str, Any]) -> str:
    """The playbook's extra vars as a YAML file for ``-e @FILE``: every string is tagged ``!unsafe`` so that
    Ansible never renders it as a template (``{{ lookup('pipe', ...) }}`` in a reason stays text). Empty/None
    values are left out; other values are JSON (a subset of YAML)."""
    lines = ["---"]
    for key, value in sorted(values.items()):
        if value is None or value == "":
            continue
        if re.fullmatch(r"[a-z_][a-z0-9_]*", key) is None:
            raise OpsError(f"bad extra var name {key!r}")
        if isinstance(value, str):
            lines.append(f"{key}: !unsafe {json.dumps(operator_text(value, key))}")
        else:
            lines.append(f"{key}: {json.dumps(value, sort_keys=True)}")
    return "\n".join(lines) + "\n"


def playbook_argv(
    ansible_playbook: str,
    inventory_dir: Path,
    playbook: str,
    extra_vars_file: Path | None = None,
    limit: str | None = None,
    vault_password_file: Path | None = None,
) -> list[str]:
    """``extra_vars_file``: written from :func:`extra_vars_text` (operator strings never reach ``-e`` as text)."""
    argv = [ansible_playbook, "-i", str(inventory_dir), str(ANSIBLE_DIR / playbook)]
    if vault_password_file is not None:
        argv += ["--vault-password-file", str(vault_password_file)]
    if limit:
        argv += ["--limit", limit]
    if extra_vars_file is not None:
        argv += ["-e", f"@{extra_vars_file}"]
    return argv


def playbook_env(result_file: Path, who: str) -> dict[str, str]:
    """Environment for ansible-playbook: repo config, the timed step output and its JSON summary file."""
    return {
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "helios_steps",
        "ANSIBLE_CALLBACK_PLUGINS": str(ANSIBLE_DIR / "callback_plugins"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",  # against inventory/<name>/known_hosts (inventory vars)
        "HELIOS_RESULT_FILE": str(result_file),
        "HELIOS_ACTOR": who,
    }


def new_flow_id(now: datetime, token: str) -> str:
    """The id of one flow run (also its upload directory and its host-side record): ``YYYYmmddTHHMMSSZ-<8 hex>``."""
    flow_id = f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{token}"
    if not re.fullmatch(LAYOUT["flow_id_re"], flow_id):
        raise OpsError(f"bad flow id {flow_id!r}")
    return flow_id


def deploy_plan_header(hosts: Sequence[Host], release: str, ref: str, inventory: str) -> str:
    """The first lines of ``invoke deploy --check``; each host's helper then prints its own step list."""
    lines = [f"deploy plan for inventory {inventory!r}: release {release} (ref {ref}); hosts one at a time, "
             "stop at the first failure"]
    lines += [f"  host {i}/{len(hosts)}: {h.name} ({h.user}@{h.address}:{h.port})" for i, h in enumerate(hosts, 1)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Single SSH commands: the helper's flows and queries
# ----------------------------------------------------------------------------------------------------------------
def helper_command(*args: str, sudo: bool = False) -> str:
    cmd = shlex.join([HELPER, *args])
    return f"sudo -n {cmd}" if sudo else cmd


def flow_command(flow: str, flow_id: str, who: str, why: str, args: Sequence[str], sudo: bool = False) -> str:
    """Start one host-side flow (detached unit) and follow it. Operator strings are single argv items (quoted)."""
    if flow not in FLOWS:
        raise OpsError(f"unknown flow {flow!r}")
    operator_text(who, "who")
    operator_text(why, "reason")
    for arg in args:  # --name=VALUE: the value is the operator's
        operator_text(arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg, arg.split("=", 1)[0])
    return helper_command("start", flow, "--flow-id", flow_id, f"--who={who}", f"--why={why}", "--", *args,
                          sudo=sudo)


def receive_command(flow_id: str, who: str, why: str, args: Sequence[str], sudo: bool = False) -> str:
    """The deploy over one SSH stream: the helper reads the upload (tar) from stdin, then starts and follows the
    deploy flow (``args``: its arguments)."""
    operator_text(who, "who")
    operator_text(why, "reason")
    return helper_command("receive", "--flow-id", flow_id, f"--who={who}", f"--why={why}", "--", *args, sudo=sudo)


def probe_command(sudo: bool = False) -> str:
    """The host's Python, the installed helper's digest and the wheelhouses it has (one cheap call)."""
    return helper_command("probe", sudo=sudo)


def upload_members(art: Any, wheelhouse: bool, deployed_by: str) -> list[tuple[str, Path | bytes]]:
    """What a deploy sends: the wheel, the manifest last, and the dependency wheelhouse only when the host lacks
    it (``art``: a built ``helios_ops.artifact.Artifact``)."""
    from helios_ops import artifact as artifact_mod

    meta = {**artifact_mod.manifest(art, deployed_by), "release": art.release_id, "wheel": art.wheel,
            "deps_hash": art.deps_hash}
    members: list[tuple[str, Path | bytes]] = []
    if wheelhouse:
        members += [(f"wheelhouse/{p.name}", p) for p in sorted(Path(art.wheelhouse).glob("*.whl"))]
    members.append((art.wheel, Path(art.wheel_path)))
    members.append(("release.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()))
    return members


def deploy_flow_args(release: str, soak: float | None = None, health_timeout: float | None = None,
                     keep: int | None = None, python: str = "/usr/bin/python3") -> list[str]:
    args = ["--release", release, "--python", python]
    if soak is not None:
        args += ["--soak", str(soak)]
    if health_timeout is not None:
        args += ["--timeout", str(health_timeout)]
    if keep is not None:
        args += ["--keep", str(keep)]
    return args


def follow_command(flow_id: str | None, sudo: bool = False) -> str:
    """Reattach to a flow (the newest one when no id is given)."""
    return helper_command("follow", *([flow_id] if flow_id else []), sudo=sudo)


def resume_args(reason: str) -> list[str]:
    if not reason.strip():
        raise OpsError("resume needs --reason (it is written to the journal and the audit log)")
    return [f"--reason={operator_text(reason, '--reason')}"]


def status_command(sudo: bool = False) -> str:
    return helper_command("status", sudo=sudo)


def releases_command(sudo: bool = False) -> str:
    return helper_command("releases", sudo=sudo)


def backups_command(sudo: bool = False) -> str:
    return helper_command("backups", sudo=sudo)


def plan_command(flow: str, sudo: bool = False) -> str:
    return helper_command("plan", flow, sudo=sudo)


def lock_status_command(sudo: bool = False) -> str:
    return helper_command("lock", "status", sudo=sudo)


def lock_break_command(who: str, why: str, sudo: bool = False) -> str:
    return helper_command("lock", "break", f"--who={who}", f"--why={why}", sudo=sudo)


def audit_command(sudo: bool = False) -> str:
    """``helios audit`` on the host, through the helper (which runs it as the service user with the env file)."""
    return helper_command("audit", sudo=sudo)


REPORT_WINDOWS = ("day", "week", "month")


def report_command(window: str = "week", compare: bool = False, sudo: bool = False) -> str:
    """``helios report`` on the host, through the helper (read-only; run as the service user).
    Exit 1 from it means a success-metric threshold failed or a red flag fired."""
    if window not in REPORT_WINDOWS:
        raise OpsError(f"--window: one of {', '.join(REPORT_WINDOWS)}, not {window!r}; nothing was done")
    return helper_command("report", f"--window={window}", *(["--compare"] if compare else []), sudo=sudo)


def ramp_command(to_zar: str, reason: str, sudo: bool = False, who: str | None = None) -> str:
    """``helios ramp`` on the host, through the helper: the next capital stage, refused by Helios unless every
    condition holds."""
    try:
        amount = Decimal(to_zar)
    except ArithmeticError:
        raise OpsError(f"--to: not a ZAR amount ({to_zar!r}); nothing was done") from None
    if not amount.is_finite() or amount <= 0:
        raise OpsError(f"--to: must be a positive ZAR amount, not {to_zar!r}; nothing was done")
    if not reason.strip():
        raise OpsError("--reason: a ramp needs a reason; nothing was done")
    return helper_command("ramp", f"--to={amount:f}", f"--reason={operator_text(reason, '--reason')}",
                          f"--who={operator_text(who or actor(), 'who')}", sudo=sudo)


def logs_command(lines: int = 100, follow: bool = False, sudo: bool = False) -> str:
    """The service's journald log, through the helper (journalctl of the helios unit only)."""
    if not 1 <= lines <= 100_000:
        raise OpsError(f"--lines: from 1 to 100000, not {lines}; nothing was done")
    return helper_command("logs", f"--lines={lines}", *(["--follow"] if follow else []), sudo=sudo)


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
    left = report.get("protective_exits_left") or []
    protective = ("; protective exits cancelled too" if report.get("cancel_protective")
                  else f"; protective exits left on the exchange: {len(left)}")
    return (
        f"{host}: {report.get('trading_state')} via {via}{stopped}; orders cancelled {report.get('orders_cancelled')}, "
        f"open orders remaining {remaining}{confirmed}; open positions: {pos}{protective}"
    )


def render_status(host: Host, data: Mapping[str, Any]) -> str:
    svc: Mapping[str, Any] = data.get("service") or {}
    pnl: Mapping[str, Any] = svc.get("pnl") or {}
    positions = svc.get("positions") or []
    health = "ok" if svc.get("healthy") else f"UNHEALTHY {data.get('service_error') or ''}".strip()
    last: Mapping[str, Any] = data.get("last_flow") or {}
    last_txt = (
        f"{last.get('flow')} {last.get('flow_id')} {str(last.get('state', '?')).upper()}: {last.get('message') or ''}"
        f" (by {last.get('who')}; reattach: invoke flow --id {last.get('flow_id')})"
    )
    lock: Mapping[str, Any] = data.get("lock") or {}
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
        f"  deploy lock     {lock.get('message') if lock.get('held') else 'free'}",
        f"  last flow       {last_txt if last else '-'}",
    ]
    if data.get("host_now"):
        from helios_ops.deployctl import host_now_line

        lines.append(f"  {host_now_line(data['host_now'])}")
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
