"""Invoke tasks for the Helios ops toolkit. Thin: the logic lives in ``helios_ops``."""

from __future__ import annotations

import json
import os
import sys

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

# Invoke turns Python's bytecode cache off by default (--write-pyc turns it on), so every command would compile
# helios_ops again (~50 ms of each emergency stop). Let Python cache it, unless the user asked for no bytecode.
if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
    sys.dont_write_bytecode = False

from helios_ops import tasks_deploy  # after the bytecode switch above

# helios_ops.sandbox and helios_ops.provision are imported by the tasks that use them: every `invoke` command loads
# this file, and an emergency stop should not first compile code it never runs.


def _fail(what: str, exc: Exception) -> Exit:
    return Exit(f"{what} failed: {exc}", code=1)


@task(help={"hosts": "number of test hosts (default 1)", "group": "host group: sandbox (default) or molecule"})
def up(c: Context, hosts: int = 1, group: str = "sandbox") -> None:
    """Boot N local systemd test hosts (systemd-nspawn) and write inventory/sandbox/hosts.yml."""
    from helios_ops import sandbox as sandbox_mod

    try:
        box = sandbox_mod.group_sandbox(group)
        specs = box.up(hosts)
    except sandbox_mod.SandboxError as exc:
        raise _fail("sandbox.up", exc) from None
    for spec in specs:
        print(f"{spec.name}: ssh root@127.0.0.1 -p {spec.ssh_port}, helios api 127.0.0.1:{spec.api_port}")


@task(help={"group": "host group: sandbox (default) or molecule"})
def down(c: Context, group: str = "sandbox") -> None:
    """Stop the test hosts that sandbox.up started and remove their rootfs copies."""
    from helios_ops import sandbox as sandbox_mod

    try:
        stopped = sandbox_mod.group_sandbox(group).down()
    except sandbox_mod.SandboxError as exc:
        raise _fail("sandbox.down", exc) from None
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@task(help={"group": "host group: sandbox (default) or molecule", "json_": "print JSON"})
def status(c: Context, group: str = "sandbox", json_: bool = False) -> None:
    """Show each test host: pid, ports, systemctl is-system-running, failed units."""
    from helios_ops import sandbox as sandbox_mod

    try:
        rows = sandbox_mod.group_sandbox(group).status()
    except sandbox_mod.SandboxError as exc:
        raise _fail("sandbox.status", exc) from None
    if json_:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no sandbox hosts")
    for row in rows:
        failed = f" failed: {row['failed_units']}" if row["failed_units"] else ""
        print(
            f"{row['name']}: pid={row['pid']} ssh={row['ssh_port']} api={row['api_port']} "
            f"system={row['system']}{failed}"
        )


@task(help={"host": "host name, e.g. helios2 (default: first running host)", "group": "host group"})
def ssh(c: Context, host: str | None = None, group: str = "sandbox") -> None:
    """Open a root shell on a test host."""
    from helios_ops import sandbox as sandbox_mod

    try:
        argv = sandbox_mod.group_sandbox(group).ssh_argv(host)
    except sandbox_mod.SandboxError as exc:
        raise _fail("sandbox.ssh", exc) from None
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 -- interactive ssh replaces this process


@task(
    name="provision",
    help={
        "inventory": "inventory name under inventory/ (default sandbox; production must be named)",
        "limit": "ansible --limit pattern",
        "check": "dry run (ansible --check --diff)",
    },
)
def provision(c: Context, inventory: str = "sandbox", limit: str | None = None, check: bool = False) -> None:
    """Provision hosts with ansible/provision.yml (user, layout, env, hardened unit, first release)."""
    from helios_ops import provision as provision_mod

    try:
        argv = provision_mod.playbook_argv(inventory, limit=limit, check=check)
    except provision_mod.ProvisionError as exc:
        raise _fail("provision", exc) from None
    result = provision_mod.run_playbook(argv)
    if result.returncode != 0:
        raise Exit(provision_mod.failure_line(inventory, result.returncode), code=1)


sandbox = Collection("sandbox")
sandbox.add_task(up)
sandbox.add_task(down)
sandbox.add_task(status)
sandbox.add_task(ssh)

ns = Collection()
ns.add_collection(sandbox)
ns.add_task(provision)
tasks_deploy.register(ns)  # deploy, rollback, releases, to-paper/to-live, emergency-stop, backups, lock.*
