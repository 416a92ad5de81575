"""Invoke tasks for releases, modes, backups, locks and the emergency stop (added to the collection in tasks.py).

Every state change is ONE flow of the host helper (helios_ops/deployctl.py), run on the host detached from SSH,
started by one SSH call (the system ssh client, a reused verified connection); the deploy streams its upload into
that same call (``helios-deployctl receive``). If the link drops, the task reattaches to the flow and prints its
real outcome; ``invoke flow`` reattaches by hand. Every
task takes ``--inventory NAME`` (default ``sandbox``; production must be named). A failure exits non-zero with one
line that ends with what the host runs now.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from helios_ops import commands as cmd
from helios_ops import runner as ex
from helios_ops.inventory import REPO_ROOT, Host, OpsError, inventory_hosts, inventory_path

INV_HELP = "inventory name under inventory/ (default sandbox; production must be named explicitly)"


def _hosts(inventory: str, limit: str | None = None) -> list[Host]:
    try:
        hosts = inventory_hosts(inventory)
    except OpsError as exc:
        raise Exit(f"inventory {inventory!r}: {exc}", code=1) from None
    if limit:
        wanted = set(limit.split(","))
        hosts = [h for h in hosts if h.name in wanted]
        if not hosts:
            raise Exit(f"--limit {limit!r} matches no host of inventory {inventory!r}", code=1)
    return hosts


def _report(what: str, results: Sequence[ex.FlowResult]) -> None:
    """Print each host's final line (what the host runs now); exit non-zero when any flow did not succeed."""
    for res in results:
        tail = res.data.get("detail", {}).get("journal_tail") or []
        if tail:
            print(f"{res.host}: the failing service's last journal lines:")
            print("\n".join(f"  {line}" for line in tail))
        print(res.line)
    bad = [r.host for r in results if r.code != 0]
    if bad:
        raise Exit(f"{what} did not succeed on {', '.join(bad)} (see the line above for what each host runs now)",
                   code=1)


def _flow_each(what: str, inventory: str, limit: str | None, flow: str, args: list[str], reason: str) -> None:
    """One flow on each host in turn, stopping at the first failure."""
    results = []
    for host in _hosts(inventory, limit):
        res = ex.run_flow(host, flow, args, cmd.actor(), reason or what)
        results.append(res)
        if res.code != 0:
            break
    _report(what, results)


# ----------------------------------------------------------------------------------------------------------------
@task(
    help={
        "inventory": INV_HELP,
        "ref": "git ref to deploy (default HEAD)",
        "check": "print the plan and change nothing",
        "allow_dirty": "deploy uncommitted changes of the checkout (recorded as dirty in release.json)",
        "source": "git checkout to build from (default: this one)",
        "reason": "why (lock owner and audit log)",
        "limit": "only these hosts (comma-separated)",
        "soak": "extra seconds the new release must stay healthy, ticking, same process (default 0)",
        "health_timeout": "seconds the new release gets to become healthy (default 60)",
    }
)
def deploy(
    c: Context,
    inventory: str = "sandbox",
    ref: str = "HEAD",
    check: bool = False,
    allow_dirty: bool = False,
    source: str | None = None,
    reason: str = "",
    limit: str | None = None,
    soak: float | None = None,
    health_timeout: float | None = None,
) -> None:
    """Build a release and deploy it host by host: upload, then the host's deploy flow (lock, backup, install, check,
    switch with new entries blocked, gate, promote, prune, audit)."""
    from helios_ops import artifact as artifact_mod
    from helios_ops.deployctl import host_now_line

    hosts = _hosts(inventory, limit)
    repo = Path(source).resolve() if source else REPO_ROOT
    if check:
        try:
            sha = artifact_mod.resolve_sha(ref, repo)
            dirty = artifact_mod.dirty_paths(repo) if sha == artifact_mod.resolve_sha("HEAD", repo) else []
        except artifact_mod.ArtifactError as exc:
            raise Exit(f"deploy --check failed: {exc}", code=1) from None
        if dirty and not allow_dirty:
            raise Exit(
                f"deploy refused: the working tree has uncommitted changes ({', '.join(dirty[:5])}); "
                "commit them or pass --allow-dirty",
                code=1,
            )
        print(cmd.deploy_plan_header(hosts, f"<build time>-{sha[:7]}" + (" (dirty)" if dirty else ""), ref, inventory))
        for res in ex.ssh_all(hosts, lambda h: cmd.plan_command("deploy", sudo=h.become), timeout=30):
            print(f"  on {res.host} (helios-deployctl plan deploy):")
            print("\n".join(f"    {line}" for line in res.json().get("steps", [ex.first_error(res)])))
        for res in ex.ssh_all(hosts, lambda h: cmd.status_command(sudo=h.become), timeout=30):
            now = res.json().get("host_now")
            print(f"  {res.host}: {host_now_line(now) if now else 'no answer (' + ex.first_error(res) + ')'}")
        print("(--check: nothing was changed)")
        return
    probes = ex.ssh_all(hosts, lambda h: cmd.probe_command(sudo=h.become), timeout=30)
    facts = {res.host: res.json() for res in probes}
    for res in probes:
        if not facts[res.host].get("python_version"):
            older = " (the installed helper predates `probe`: run `invoke provision`)" if res.rc == 2 else ""
            raise Exit(f"deploy refused: {res.host}: no answer to probe: {ex.first_error(res)}{older}; "
                       "nothing was changed", code=1)
    local_helper = artifact_mod.file_sha256(REPO_ROOT / "helios_ops" / "deployctl.py")
    for host in hosts:
        if facts[host.name].get("helper_sha256") != local_helper:
            print(f"{host.name}: the installed helios-deployctl differs from this checkout's (older?): "
                  "`invoke provision` installs this one; deploying with the installed one")
    targets = {(f["python_version"], f["arch"]) for f in facts.values()}
    if len(targets) != 1:
        raise Exit(f"deploy refused: the hosts run different Pythons/architectures {sorted(targets)}; deploy them "
                   "separately with --limit; nothing was changed", code=1)
    python_version, arch = targets.pop()
    try:
        art = artifact_mod.build(ref, python_version, arch, repo=repo, allow_dirty=allow_dirty)
    except artifact_mod.ArtifactError as exc:
        raise Exit(f"deploy refused: {exc}; nothing was changed", code=1) from None
    flow_id = ex.new_flow_id()
    who = cmd.actor()
    args = cmd.deploy_flow_args(art.release_id, soak=soak, health_timeout=health_timeout)
    results: list[ex.FlowResult] = []
    for i, host in enumerate(hosts):
        if results and results[-1].code != 0:
            print(f"{host.name}: not deployed (the deploy stopped at an earlier host)")
            continue
        send_wheelhouse = art.deps_hash not in facts[host.name].get("wheelhouses", [])
        print(f"== {host.name} ({i + 1}/{len(hosts)}): deploy {art.release_id}, flow {flow_id}"
              + (f", with the wheelhouse {art.deps_hash}" if send_wheelhouse else ""), flush=True)
        upload = ex.upload_writer(cmd.upload_members(art, send_wheelhouse, who))
        results.append(ex.run_flow(host, "deploy", args, who, reason or f"deploy {ref}", flow_id, send=upload))
    _report("deploy", results)


@task(
    help={
        "inventory": INV_HELP,
        "to": "release id to roll back to (default: the previous good release)",
        "restore_backup": "also restore this backup (YYYYmmddTHHMMSSZ) -- needed when the older release cannot "
        "read the current journal schema",
        "limit": "only these hosts (comma-separated)",
        "reason": "why (audit log)",
    }
)
def rollback(
    c: Context,
    inventory: str = "sandbox",
    to: str | None = None,
    restore_backup: str | None = None,
    limit: str | None = None,
    reason: str = "",
) -> None:
    """Roll back to the previous good release (bad ones skipped) or a named one; gated, promoted and audited."""
    args = (["--to", to] if to else []) + (["--restore-backup", restore_backup] if restore_backup else [])
    _flow_each("rollback", inventory, limit, "rollback", args, reason or "rollback")


@task(help={"inventory": INV_HELP, "json_": "print JSON"})
def releases(c: Context, inventory: str = "sandbox", json_: bool = False) -> None:
    """List releases per host with current / last-good / BAD marks, sha, deployed at/by."""
    hosts = _hosts(inventory)
    results = ex.ssh_all(hosts, lambda h: cmd.releases_command(sudo=h.become))
    failed = False
    for res in results:
        data = res.json()
        if json_:
            print(json.dumps({res.host: data}, indent=2))
        elif res.rc == 0:
            print(cmd.render_releases(res.host, data))
        else:
            failed = True
            print(f"{res.host}: cannot list releases: {ex.first_error(res)}")
    if failed:
        raise Exit("releases: some hosts did not answer", code=1)


@task(name="to-paper", help={"inventory": INV_HELP, "limit": "only these hosts (comma-separated)"})
def to_paper(c: Context, inventory: str = "sandbox", limit: str | None = None) -> None:
    """Back to PAPER: emergency stop first if LIVE, change only the two mode keys, restart, verify."""
    _flow_each("to-paper", inventory, limit, "mode", ["--mode", "PAPER"], "to-paper")


@task(
    name="to-live",
    help={
        "inventory": INV_HELP,
        "host": "the host to switch (required when the inventory has several)",
        "confirm": "the host name, for automation (otherwise you are asked to type it)",
    },
)
def to_live(c: Context, inventory: str = "sandbox", host: str | None = None, confirm: str | None = None) -> None:
    """Go LIVE on one host: helios audit on the candidate env, masked diff, typed confirmation, verify LIVE."""
    hosts = _hosts(inventory, host)
    if len(hosts) != 1:
        raise Exit(
            f"to-live switches one host at a time: pass --host (one of {', '.join(h.name for h in hosts)})", code=1
        )
    target = hosts[0]
    who = cmd.actor()
    if confirm is None:
        pre = ex.run_flow(target, "mode", ["--mode", "LIVE", "--preflight"], who, "to-live preflight")
        detail = pre.data.get("detail", {})
        print("\n".join(["audit:", *detail.get("audit", []), "env change:", *detail.get("diff", [])]))
        if pre.code != 0:
            _report("to-live preflight", [pre])
        if not sys.stdin.isatty():
            raise Exit("to-live refused: no terminal to confirm on; pass --confirm HOSTNAME", code=1)
        confirm = input(f"Type the host name ({target.name}) to switch it to LIVE trading: ").strip()
    if confirm != target.name:
        raise Exit(
            f"to-live refused: confirmation {confirm!r} does not match host {target.name!r}; nothing was changed",
            code=1,
        )
    res = ex.run_flow(target, "mode", ["--mode", "LIVE", "--confirmed"], who, "to-live")
    print("\n".join(["env change:", *res.data.get("detail", {}).get("diff", [])]))
    _report("to-live", [res])


@task(name="emergency-stop", help={"inventory": INV_HELP, "reason": "why (journal and audit log)",
                                   "cancel_protective": "also cancel the stop-loss exits held on the exchange"})
def emergency_stop(c: Context, inventory: str = "sandbox", reason: str = "emergency stop (invoke)",
                   cancel_protective: bool = False) -> None:
    """HALT every host at once: local API, else --direct to the exchange + stop the unit. Never waits for locks.
    Protective stop-loss exits held on the exchange stay (they can only sell what a position holds) unless
    ``--cancel-protective``."""
    started = time.monotonic()
    hosts = _hosts(inventory)
    args = [f"--reason={reason}", *(["--cancel-protective"] if cancel_protective else [])]
    results = ex.run_flow_all(hosts, "estop", args, cmd.actor(), reason)
    elapsed = time.monotonic() - started
    bad = []
    for res in results:
        detail = res.data.get("detail", {})
        print(cmd.render_estop(res.host, {**detail, "ok": res.code == 0, "error": res.data.get("error")})
              if detail else res.line)
        print(f"  {res.line}")
        if not detail.get("zero_open_orders_confirmed"):
            bad.append(res.host)
    print(f"emergency stop done in {elapsed:.2f}s on {len(hosts)} host(s)")
    if bad:
        raise Exit(
            f"emergency stop NOT confirmed on {', '.join(bad)}: open orders may remain; check the exchange directly",
            code=1,
        )


@task(help={"inventory": INV_HELP, "reason": "why (required; journal and audit log)"})
def resume(c: Context, reason: str, inventory: str = "sandbox") -> None:
    """Lift HALTED/REDUCING back to ACTIVE on every host (authenticated, audited)."""
    try:
        args = cmd.resume_args(reason)
    except OpsError as exc:
        raise Exit(f"resume refused: {exc}", code=1) from None
    _report("resume", ex.run_flow_all(_hosts(inventory), "resume", args, cmd.actor(), reason))


@task(help={"inventory": INV_HELP, "json_": "print JSON"})
def status(c: Context, inventory: str = "sandbox", json_: bool = False) -> None:
    """Per host: release, mode, trading state, health, P&L today, positions, orders, lock, last deploy, URL."""
    hosts = _hosts(inventory)
    by_name = {h.name: h for h in hosts}
    results = ex.ssh_all(hosts, lambda h: cmd.status_command(sudo=h.become), timeout=30)
    unreachable = []
    for res in results:
        data = res.json()
        if json_:
            print(json.dumps({res.host: data}, indent=2, default=str))
        elif data:
            print(cmd.render_status(by_name[res.host], data))
        else:
            unreachable.append(res.host)
            print(f"{res.host}: no status: {ex.first_error(res)}")
    if not json_ and hosts and cmd.service_url(hosts[0]) is None:
        print(
            "\nThe API and dashboard listen on the server's loopback only. Reach them through an SSH tunnel:\n  "
            + cmd.tunnel_hint(hosts[0])
        )
    if unreachable:
        raise Exit(f"status: no answer from {', '.join(unreachable)}", code=1)


@task(help={"inventory": INV_HELP, "follow": "keep following", "lines": "lines to show", "host": "one host"})
def logs(
    c: Context, inventory: str = "sandbox", follow: bool = False, lines: int = 100, host: str | None = None
) -> None:
    """The service's journald log (journalctl -u helios) of one host."""
    hosts = _hosts(inventory, host)
    if follow and len(hosts) > 1:
        raise Exit("logs --follow: pick one host with --host", code=1)
    for h in hosts:
        if len(hosts) > 1:
            print(f"== {h.name}")
        res = ex.ssh_run(
            h, cmd.logs_command(lines, follow, sudo=h.become), timeout=0 if follow else 60, pty=follow, stream=True
        )
        if res.rc not in (0, 130) and not follow:
            raise Exit(f"logs: {h.name}: {ex.first_error(res)}", code=1)


@task(help={"inventory": INV_HELP, "keep": "backups to keep (retention)", "limit": "only these hosts"})
def backup(c: Context, inventory: str = "sandbox", keep: int = 72, limit: str | None = None) -> None:
    """Verified backup: journals (SQLite online backup), env file, release id, checksums, row counts."""
    _flow_each("backup", inventory, limit, "backup", ["--keep", str(keep)], "backup")


@task(help={"inventory": INV_HELP, "json_": "print JSON"})
def backups(c: Context, inventory: str = "sandbox", json_: bool = False) -> None:
    """List backups per host."""
    for res in ex.ssh_all(_hosts(inventory), lambda h: cmd.backups_command(sudo=h.become)):
        data = res.json()
        if json_:
            print(json.dumps({res.host: data}, indent=2))
            continue
        print(f"{res.host}:")
        for b in data.get("backups", []):
            print(
                f"  {b['backup']}  release {b.get('release')}  {b.get('bytes', 0) / 1024:.0f} KiB  "
                f"{', '.join(b.get('files', []))}"
            )
        if res.rc != 0:
            print(f"  cannot list: {ex.first_error(res)}")


@task(help={"inventory": INV_HELP, "backup": "backup timestamp (see invoke backups)", "limit": "only these hosts"})
def restore(c: Context, backup: str, inventory: str = "sandbox", limit: str | None = None) -> None:
    """Restore journal and env from a verified backup; the trading state never changes; a failure puts the host
    back as it was. Audited."""
    _flow_each("restore", inventory, limit, "restore", ["--backup", backup], f"restore {backup}")


@task(name="audit", help={"inventory": INV_HELP})
def audit_(c: Context, inventory: str = "sandbox") -> None:
    """Run the pre-live audit (helios audit) on every host with its env file."""
    bad = []
    for res in ex.ssh_all(_hosts(inventory), lambda h: cmd.audit_command(sudo=h.become)):
        print(f"== {res.host}\n{res.stdout.rstrip()}{res.stderr.rstrip()}")
        if res.rc != 0:
            bad.append(res.host)
    if bad:
        raise Exit(f"audit failed on {', '.join(bad)}", code=1)


def _on_each_host(inventory: str, command: str) -> list[str]:
    """Run one read-or-refuse host command everywhere; print each host's answer; the hosts that exited non-zero."""
    bad = []
    for res in ex.ssh_all(_hosts(inventory), lambda h: ("sudo -n " if h.become else "") + command, timeout=60):
        print(f"== {res.host}\n{res.stdout.rstrip()}{res.stderr.rstrip()}")
        if res.rc != 0:
            bad.append(f"{res.host} (exit {res.rc})")
    return bad


@task(help={"inventory": INV_HELP, "window": "day, week (default) or month", "compare": "LIVE vs its paper shadow"})
def report(c: Context, inventory: str = "sandbox", window: str = "week", compare: bool = False) -> None:
    """Success metrics and red flags per host (helios report); non-zero when a threshold fails on any host."""
    try:
        command = cmd.report_command(window, compare)
    except OpsError as exc:
        raise Exit(f"report refused: {exc}", code=2) from None
    failed = _on_each_host(inventory, command)
    if failed:
        raise Exit(f"report: a threshold failed or no report on {', '.join(failed)}", code=1)


@task(help={"inventory": INV_HELP, "to": "the next stage's capital in ZAR", "reason": "why (required; journaled)"})
def ramp(c: Context, to: str, reason: str, inventory: str = "sandbox") -> None:
    """Raise the capital stage (helios ramp): Helios refuses unless time in stage, success metrics, no red flag,
    clean reconciliation and the sign-off all hold. Each host answers for itself."""
    try:
        command = cmd.ramp_command(to, reason)
    except OpsError as exc:
        raise Exit(f"ramp refused: {exc}", code=2) from None
    refused = _on_each_host(inventory, command)
    if refused:
        raise Exit(f"ramp refused on {', '.join(refused)}: the stage there is unchanged", code=1)


@task(
    name="flow",
    help={"inventory": INV_HELP, "id": "flow id (default: each host's latest flow)", "limit": "only these hosts"},
)
def flow(c: Context, inventory: str = "sandbox", id: str | None = None, limit: str | None = None) -> None:
    """Reattach to a flow (after a dropped link or a killed command): its steps, its real outcome, what runs now."""
    results = []
    for host in _hosts(inventory, limit):
        if id:
            results.append(ex.follow_flow(host, id))
            continue
        res = ex.ssh_run(host, cmd.follow_command(None, sudo=host.become), timeout=900)
        results.append(ex.FlowResult(host.name, res.rc, res.json() or {"error": ex.first_error(res)}, 1))
    _report("flow", results)


@task(name="status", help={"inventory": INV_HELP})
def lock_status(c: Context, inventory: str = "sandbox") -> None:
    """Show the deploy lock of every host (owner, age, stale or not)."""
    for res in ex.ssh_all(_hosts(inventory), lambda h: cmd.lock_status_command(sudo=h.become)):
        data = res.json()
        if res.rc != 0:
            print(f"{res.host}: cannot read the lock: {ex.first_error(res)}")
        elif data.get("held"):
            print(f"{res.host}: {data.get('message')}")
        else:
            print(f"{res.host}: free")


@task(
    name="release",
    help={"inventory": INV_HELP, "force": "required: break the lock", "reason": "why", "limit": "only these hosts"},
)
def lock_release(
    c: Context, inventory: str = "sandbox", force: bool = False, reason: str = "", limit: str | None = None
) -> None:
    """Break a deploy lock left by a crashed run (needs --force; audited as lock_break)."""
    if not force:
        raise Exit("lock.release needs --force (check `invoke lock.status` first: is that run really dead?)", code=1)
    who = cmd.actor()
    for res in ex.ssh_all(
        _hosts(inventory, limit), lambda h: cmd.lock_break_command(who, reason or "lock.release --force", sudo=h.become)
    ):
        data = res.json()
        if res.rc != 0:
            raise Exit(f"lock.release failed on {res.host}: {ex.first_error(res)}", code=1)
        owner = data.get("previous_owner") or {}
        print(
            f"{res.host}: "
            + (
                f"broke the lock of {owner.get('who')} ({owner.get('what')}, since {owner.get('at')})"
                if data.get("released")
                else "no lock was held"
            )
        )


@task(help={"allow_dirty": "deploy uncommitted changes too, recorded as dirty (default on: it is a sandbox)"})
def demo(c: Context, allow_dirty: bool = True) -> None:
    """One sandbox host: sandbox.up -> provision -> deploy (PAPER, simulated prices) -> status and the URL."""
    from helios_ops import provision as provision_mod
    from helios_ops import sandbox as sandbox_mod

    print("== sandbox.up (1 host)")
    try:
        sandbox_mod.group_sandbox("sandbox").up(1)
    except sandbox_mod.SandboxError as exc:
        raise Exit(f"demo failed at sandbox.up: {exc}", code=1) from None
    print("== provision")
    argv = provision_mod.playbook_argv("sandbox")
    result = c.run(provision_mod.shell_join(argv), warn=True, env=provision_mod.playbook_env())
    if result is None or result.exited != 0:
        raise Exit(
            "demo failed at provision: see the output above; the sandbox host is still up (invoke sandbox.down)", code=1
        )
    print("== deploy")
    deploy(c, inventory="sandbox", allow_dirty=allow_dirty, reason="demo")
    print("== status")
    status(c, inventory="sandbox")


@task(
    name="trust",
    help={
        "inventory": INV_HELP,
        "host": "the inventory host whose key to record (default: every host of the inventory)",
        "fingerprint": "the SHA256:... fingerprint you checked out of band (required with --yes)",
        "yes": "do not ask (automation): only together with a matching --fingerprint",
    },
)
def hosts_trust(c: Context, inventory: str = "sandbox", host: str | None = None, fingerprint: str | None = None,
                yes: bool = False) -> None:
    """Show a host's SSH key fingerprint and record it in inventory/<name>/known_hosts after confirmation."""
    from helios_ops import hostkeys

    if yes and not fingerprint:
        raise Exit("hosts.trust refused: --yes needs --fingerprint SHA256:... (checked out of band); nothing recorded",
                   code=1)
    if fingerprint and hostkeys.FINGERPRINT_RE.fullmatch(fingerprint) is None:
        raise Exit(f"hosts.trust refused: --fingerprint {fingerprint!r} is not SHA256:<43 base64 chars>", code=1)
    for target in _hosts(inventory, host):
        known = Path(target.known_hosts or inventory_path(inventory) / hostkeys.KNOWN_HOSTS)
        try:
            key = hostkeys.scan(target.address, target.port)
        except OpsError as exc:
            raise Exit(f"hosts.trust: {exc}; nothing recorded", code=1) from None
        old = hostkeys.recorded(known, target.address, target.port)
        print(f"{target.name} ({target.address}:{target.port}) presents {key.keytype} {key.fingerprint}")
        if old:
            print(f"  recorded now: {', '.join(k.keytype + ' ' + k.fingerprint for k in old)}"
                  + (" (unchanged)" if key in old else " -- THE KEY CHANGED"))
        if fingerprint is not None and fingerprint != key.fingerprint:
            raise Exit(f"hosts.trust refused: {target.name} presents {key.fingerprint}, not {fingerprint}; "
                       "nothing recorded", code=1)
        if not yes:
            if not sys.stdin.isatty():
                raise Exit("hosts.trust refused: no terminal to confirm on; pass --fingerprint SHA256:... --yes",
                           code=1)
            answer = input(f"Compare it with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_{key.keytype[4:]}"
                           f"_key.pub on its console). Type yes or {target.name} to record it: ").strip()
            if answer not in ("yes", target.name):
                raise Exit(f"hosts.trust: not confirmed for {target.name}; nothing recorded", code=1)
        hostkeys.record(known, target.address, target.port, [key])
        print(f"{target.name}: recorded {key.keytype} {key.fingerprint} in {known}")


def register(ns: Collection) -> None:
    """Add the deploy tasks and the ``lock`` namespace to the root collection."""
    for t in (
        deploy,
        flow,
        rollback,
        releases,
        to_paper,
        to_live,
        emergency_stop,
        resume,
        status,
        logs,
        backup,
        backups,
        restore,
        audit_,
        report,
        ramp,
        demo,
    ):
        ns.add_task(t)
    lock = Collection("lock")
    lock.add_task(lock_status)
    lock.add_task(lock_release)
    ns.add_collection(lock)
    hosts = Collection("hosts")
    hosts.add_task(hosts_trust)
    ns.add_collection(hosts)
