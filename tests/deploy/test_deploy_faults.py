"""Issue 9: ops flows under faults on a real systemd host -- the operator killed, the SSH link dropped, a crash
mid-gate, a full disk, an emergency stop during a deploy, a dead flow's lock, a damaged rollback target, a restore
while HALTED.

Faults are injected at step boundaries the host helper reports: a test-only marker (/run/helios-deploy/pause-at,
``flow:step``) makes the flow wait at that step and record ``paused_at``; the test waits for that record (an event,
never a sleep), injects the fault, removes the marker and checks what the host really runs.

After each scenario: the host runs the last good or the new promoted release, the lock is free (or held by a live
flow), the flow wrote exactly one audit line, the journal lost no rows, and the operator's last line (or the
reattach's) names what the host runs now. Exactly one engine at any sampled moment is checked at the end of the
session (test_deploy_sandbox.py::test_invariants_across_scenarios) over every scenario.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import (
    BROKEN,
    REPO,
    VENV_BIN,
    EngineSampler,
    Host,
    deploytest_sandbox,
    double_admin,
    scratch_source,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

PAUSE = "/run/helios-deploy/pause-at"
HELPER_PROC = "^/usr/bin/python3 (-Es )?/usr/local/lib/helios/helios-deployctl (start|receive)"


# ----------------------------------------------------------------------------------------------------------------
def operator(*args: str) -> subprocess.Popen[str]:
    """An operator's invoke command, in its own process group (so that it can be killed whole)."""
    return subprocess.Popen(
        [str(VENV_BIN / "invoke"), *args, "--inventory", "deploytest"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def finish(host: Host, proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    host.outputs.append(out)
    return proc.returncode, out


def pause_at(host: Host, flow: str, step: str) -> None:
    host.ssh(f"mkdir -p {Path(PAUSE).parent} && echo {flow}:{step} > {PAUSE}")


def unpause(host: Host) -> None:
    host.ssh(f"rm -f {PAUSE}")


def wait_paused(host: Host, step: str, proc: subprocess.Popen[str] | None = None, timeout: float = 240) -> str:
    """Wait until the host's newest flow reports it is paused at ``step``; return its flow id."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = host.helper("status").get("last_flow") or {}
        if last.get("paused_at") == step:
            return str(last["flow_id"])
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the operator's command ended before step {step}: {proc.communicate()[0][-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"flow never paused at {step}: {last}")


def drop_link(host: Host) -> None:
    """Kill the sshd session that carries the operator's `helios-deployctl start` (the link drops mid-flow)."""
    script = (
        f"pid=$(pgrep -of '{HELPER_PROC}'); "
        'while [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid")" != sshd ]; do '
        'pid=$(ps -o ppid= -p "$pid" | tr -d " "); done; '
        '[ -n "$pid" ] && [ "$pid" != 1 ] && kill -9 "$pid" && echo "$pid"'
    )
    assert host.ssh(script).strip(), "no sshd session carried the operator's flow"


def kill_operator(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def host_line(out: str) -> str:
    """The operator's last line that states what the host runs now."""
    lines = [x for x in out.strip().splitlines() if "host now:" in x]
    assert lines, out[-2000:]
    return lines[-1]


def sha7(src: Path) -> str:
    return subprocess.run(["git", "-C", str(src), "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def flow_audit(host: Host, flow_id: str) -> list[dict[str, Any]]:
    return [x for x in host.audit_lines() if x.get("flow_id") == flow_id]


def wait_flow_done(host: Host, flow_id: str) -> dict[str, Any]:
    """Reattach like an operator (`invoke flow --id`) and return its last line and the host's record."""
    r = host.invoke("flow", "--id", flow_id)
    record = host.helper("status")
    return {"rc": r.rc, "last": host_line(r.out), "out": r.out, "status": record}


def assert_settled(host: Host, flow_id: str, expect_release: str, line: str) -> None:
    """The invariants every fault scenario ends with."""
    status = host.helper("status")
    assert host.current() == expect_release
    assert status["promoted"] == expect_release, status
    assert status["lock"]["held"] is False, status["lock"]
    assert len(flow_audit(host, flow_id)) == 1, flow_audit(host, flow_id)
    assert f"host now: release {expect_release}" in line and "NOT promoted" not in line, line
    assert host.wait_healthy()["release"] == expect_release
    host.journal_counts()
    host.assert_journal_never_lost_rows()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    tmp = tmp_path_factory.mktemp("fault-sources")
    yield [scratch_source(tmp, f"f{i}") for i in range(16)]


@pytest.fixture(autouse=True)
def _no_pause_left(host: Host) -> Iterator[None]:
    yield
    unpause(host)


_counter = iter(range(16))


# ----------------------------------------------------------------------------------------------------------------
# Findings 1, 2, 4: the operator's link drops / the operator's command is killed at a step of a deploy
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "step"),
    [("drop", "install"), ("drop", "gate"), ("kill", "start"), ("kill", "audit")],
)
def test_deploy_survives_operator_fault_at_step(host: Host, sources: list[Path], fault: str, step: str) -> None:
    src = sources[next(_counter)]
    pause_at(host, "deploy", step)
    proc = operator("deploy", "--source", str(src), "--reason", f"{fault} at {step}")
    flow_id = wait_paused(host, step, proc)
    if fault == "drop":
        drop_link(host)
        unpause(host)
        rc, out = finish(host, proc)
        last = host_line(out)
        # the operator's own command reattached and reports the flow's real outcome (finding 1: never "failed
        # before the switch" when the new release is live)
        assert rc == 0, out[-3000:]
        assert "before the switch" not in out
    else:
        kill_operator(proc)
        unpause(host)
        done = wait_flow_done(host, flow_id)
        assert done["rc"] == 0, done["out"][-2000:]
        last = done["last"]
    new = host.current()
    assert new.endswith(sha7(src))
    assert "OK" in last and flow_id in last, last
    assert_settled(host, flow_id, new, last)
    line = flow_audit(host, flow_id)[0]
    assert line["event"] == "deploy" and line["result"] == "ok" and line["release"] == new
    assert "prune" in line  # prune ran (finding 2)


# ----------------------------------------------------------------------------------------------------------------
# Rollback, mode switch and restore: dropped link and killed operator at a step
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fault", "step"), [("drop", "gate"), ("kill", "switch")])
def test_rollback_survives_operator_fault(host: Host, fault: str, step: str) -> None:
    releases = host.helper("releases")
    cur = host.current()
    target = next(r["release"] for r in releases["releases"] if not r["bad"] and r["release"] < cur)
    pause_at(host, "rollback", step)
    proc = operator("rollback", "--reason", f"{fault} at {step}")
    flow_id = wait_paused(host, step, proc)
    if fault == "drop":
        drop_link(host)
        unpause(host)
        rc, out = finish(host, proc)
        assert rc == 0, out[-3000:]
        last = host_line(out)
        assert "reattaching" in out
    else:
        kill_operator(proc)
        unpause(host)
        done = wait_flow_done(host, flow_id)
        assert done["rc"] == 0, done["out"][-2000:]
        last = done["last"]
    assert_settled(host, flow_id, target, last)
    assert flow_audit(host, flow_id)[0]["result"] == "ok"


def test_mode_switch_survives_a_dropped_link_and_a_killed_operator(host: Host) -> None:
    cur = host.current()
    double_admin("POST", "/balance", {"balances": {"ZAR": "900", "ETH": "0", "BTC": "0"}})
    pause_at(host, "mode", "restart")
    proc = operator("to-live", "--confirm", "deploy1")
    flow_id = wait_paused(host, "restart", proc)
    drop_link(host)
    unpause(host)
    rc, out = finish(host, proc)
    assert rc == 0, out[-3000:]
    assert "mode LIVE" in host_line(out) and host.api("/api/mode/current")["mode"] == "LIVE"
    assert_settled(host, flow_id, cur, host_line(out))
    pause_at(host, "mode", "gate")
    proc = operator("to-paper")
    flow_id = wait_paused(host, "gate", proc)
    kill_operator(proc)
    unpause(host)
    done = wait_flow_done(host, flow_id)
    assert done["rc"] == 0 and "mode PAPER" in done["last"], done["out"][-2000:]
    assert host.api("/api/mode/current")["mode"] == "PAPER"
    assert_settled(host, flow_id, cur, done["last"])


@pytest.mark.parametrize("fault", ["drop", "kill"])
def test_restore_survives_operator_fault(host: Host, fault: str) -> None:
    assert host.invoke("backup").rc == 0
    ts = host.helper("backups")["backups"][-1]["backup"]
    cur = host.current()
    pause_at(host, "restore", "restore")
    proc = operator("restore", "--backup", ts)
    flow_id = wait_paused(host, "restore", proc)
    if fault == "drop":
        drop_link(host)
        unpause(host)
        rc, out = finish(host, proc)
        assert rc == 0, out[-3000:]
        last = host_line(out)
    else:
        kill_operator(proc)
        unpause(host)
        done = wait_flow_done(host, flow_id)
        assert done["rc"] == 0, done["out"][-2000:]
        last = done["last"]
    host.journal_history.clear()  # a restore rewinds the journal on purpose
    assert_settled(host, flow_id, cur, last)


# ----------------------------------------------------------------------------------------------------------------
# Finding 3: a real power cut in the middle of the gate (the container's processes SIGKILLed at once, no shutdown),
# then the same root filesystem boots again
# ----------------------------------------------------------------------------------------------------------------
def test_power_cut_mid_gate_boots_back_on_last_good_before_trading(host: Host, sources: list[Path]) -> None:
    good = host.current()
    host.journal_counts()
    pause_at(host, "deploy", "gate")
    proc = operator("deploy", "--source", str(sources[next(_counter)]), "--reason", "power cut mid-gate")
    flow_id = wait_paused(host, "gate", proc)
    new = host.current()
    assert new != good and host.helper("status")["promoted"] != new  # running, but not promoted: no entries
    deploytest_sandbox().power_cycle("deploy1")  # power cut: every process of the host dies at once; boot again
    kill_operator(proc)
    host.samplers.append(EngineSampler(host))  # the old sampler's SSH session died with the host
    body = host.wait_healthy(timeout=90)
    # boot-check (ExecStartPre) put the last good release back before the engine's first start after boot
    assert body["release"] == good and host.current() == good
    first_start = host.ssh("journalctl -b -u helios.service -o cat --no-pager | grep -m1 '\"action\"'")
    assert f"switched back to {good}" in first_start, first_start
    starts = host.ssh(f"journalctl -b -u helios.service -o cat --no-pager | grep -c 'releases/{new}' || true")
    assert starts.strip() == "0", "the un-promoted release ran after the boot"
    status = host.helper("status")
    assert status["promoted"] == good and status["lock"]["held"] is False, status
    assert status["last_flow"]["state"] == "interrupted", status["last_flow"]
    assert any(r["release"] == new and r["bad"] for r in host.helper("releases")["releases"])
    done = wait_flow_done(host, flow_id)
    assert "INTERRUPTED" in done["last"] and "host restarted" in done["last"], done["last"]
    assert_settled(host, flow_id, good, done["last"])
    assert flow_audit(host, flow_id)[0]["result"] == "interrupted"
    shown = host.invoke("status")
    assert shown.rc == 0 and f"host now: release {good}," in shown.out and "NOT promoted" not in shown.out, shown.out


# ----------------------------------------------------------------------------------------------------------------
# Finding 4 / 9: a flow process that dies leaves a lock named dead at once; half-built releases are removed
# ----------------------------------------------------------------------------------------------------------------
def test_dead_flow_lock_and_half_built_release(host: Host, sources: list[Path]) -> None:
    good = host.current()
    pause_at(host, "deploy", "install")
    proc = operator("deploy", "--source", str(sources[next(_counter)]), "--reason", "flow dies")
    flow_id = wait_paused(host, "install", proc)
    host.ssh(f"systemctl kill -s SIGKILL helios-flow-{flow_id}.service")
    rc, out = finish(host, proc)
    assert rc != 0 and "died" in host_line(out) and f"host now: release {good}" in host_line(out), out[-2000:]
    lock = host.helper("lock", "status")
    assert lock["held"] and lock["alive"] is False and "GONE" in lock["message"]
    unpause(host)
    # a half-built release just older than current, as a run killed inside `pip install` leaves it
    from datetime import datetime, timedelta

    stamp = datetime.strptime(good.split("-")[0], "%Y%m%dT%H%M%SZ") - timedelta(seconds=1)
    half = f"{stamp:%Y%m%dT%H%M%SZ}-0000000"
    host.ssh(f"mkdir -p /opt/helios/releases/{half}/venv/bin")
    assert host.invoke("lock.release", "--force", "--reason", "flow killed in test").rc == 0
    r = host.invoke("rollback")
    assert r.rc == 0, r.out[-2000:]
    assert half not in host.ssh("ls /opt/helios/releases").split()  # removed, never picked as a target
    assert host.current() != half
    assert host.helper("lock", "status")["held"] is False
    assert host.invoke("rollback", "--to", good).rc == 0


# ----------------------------------------------------------------------------------------------------------------
# Finding 9: a rollback target that cannot start is marked BAD and audited
# ----------------------------------------------------------------------------------------------------------------
def test_rollback_target_that_cannot_start_is_marked_bad(host: Host) -> None:
    cur = host.current()
    releases = host.helper("releases")["releases"]
    target = next(r["release"] for r in releases if not r["bad"] and r["release"] < cur)
    host.ssh(f"mv /opt/helios/releases/{target}/venv/bin/helios /opt/helios/releases/{target}/venv/bin/helios.off")
    try:
        r = host.invoke("rollback")
        assert r.rc != 0 and "cannot start" in r.out and f"host now: release {cur}" in r.out, r.out[-1500:]
        assert host.current() == cur
        marked = {x["release"]: x for x in host.helper("releases")["releases"]}
        assert marked[target]["bad"] and "cannot start" in marked[target]["bad_reason"]
        line = [x for x in host.audit_lines() if x["event"] == "rollback"][-1]
        assert line["result"] == "refused" and line["release"] == target
    finally:
        host.ssh(f"mv /opt/helios/releases/{target}/venv/bin/helios.off /opt/helios/releases/{target}/venv/bin/helios;"
                 f" rm -f /opt/helios/releases/{target}/BAD")


# ----------------------------------------------------------------------------------------------------------------
# Finding 5: a restore never changes the trading state; a restore that fails verification changes nothing
# ----------------------------------------------------------------------------------------------------------------
def test_restore_keeps_halted_and_a_damaged_backup_changes_nothing(host: Host) -> None:
    assert host.wait_healthy()["trading_state"] == "ACTIVE"
    assert host.invoke("backup").rc == 0
    active_backup = host.helper("backups")["backups"][-1]["backup"]
    assert host.invoke("emergency-stop", "--reason", "halt before restore").rc == 0
    r = host.invoke("restore", "--backup", active_backup)
    assert r.rc == 0, r.out[-2000:]
    assert "trading HALTED" in host_line(r.out), r.out[-1500:]
    assert host.wait_healthy()["trading_state"] == "HALTED"
    host.journal_history.clear()
    host.journal_counts()
    # a backup whose checksum no longer matches: refused before anything stops
    pid = host.ssh("systemctl show -p MainPID --value helios").strip()
    host.ssh(f"echo tampered >> /var/backups/helios/{active_backup}/helios.env")
    bad = host.invoke("restore", "--backup", active_backup)
    assert bad.rc != 0 and "checksum" in bad.out and "nothing was changed" in bad.out, bad.out[-1500:]
    assert "service active" in host_line(bad.out)
    assert host.ssh("systemctl show -p MainPID --value helios").strip() == pid
    assert host.wait_healthy()["trading_state"] == "HALTED"
    assert host.invoke("resume", "--reason", "restore checks done").rc == 0


# ----------------------------------------------------------------------------------------------------------------
# Finding 6: an emergency stop at a step of a deploy is prompt and never gets the good release marked BAD
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", ["start", "gate"])
def test_emergency_stop_during_deploy(host: Host, sources: list[Path], step: str) -> None:
    pause_at(host, "deploy", step)
    proc = operator("deploy", "--source", str(sources[next(_counter)]), "--reason", f"estop at {step}")
    flow_id = wait_paused(host, step, proc)
    started = time.monotonic()
    stop = host.invoke("emergency-stop", "--reason", f"during deploy at {step}")
    took = time.monotonic() - started
    assert stop.rc == 0, stop.out[-1500:]
    assert took < 20, f"emergency stop took {took:.1f}s during a deploy"
    unpause(host)
    rc, out = finish(host, proc)
    assert rc == 0, out[-3000:]
    new = host.current()
    assert host.wait_healthy()["trading_state"] == "HALTED"  # the halt survives the switch
    releases = {r["release"]: r for r in host.helper("releases")["releases"]}
    assert not any(r["bad"] for rid, r in releases.items() if rid == new or r["last_good"])
    assert_settled(host, flow_id, new, host_line(out))
    assert host.invoke("resume", "--reason", f"estop at {step} done").rc == 0


# ----------------------------------------------------------------------------------------------------------------
# A full disk during a deploy: fails before the switch, the old release untouched, nothing left behind
# ----------------------------------------------------------------------------------------------------------------
def test_two_concurrent_deploys_one_refused_with_the_owner_named(host: Host, sources: list[Path]) -> None:
    pause_at(host, "deploy", "gate")
    first = operator("deploy", "--source", str(sources[next(_counter)]), "--reason", "first of two")
    flow_id = wait_paused(host, "gate", first)
    audit_before = len(host.audit_lines())
    second = host.invoke("deploy", "--source", str(sources[next(_counter)]), "--reason", "second of two")
    assert second.rc != 0
    last = host_line(second.out)
    assert "LOCKED" in last and "first of two" in last and "still running" in last and "nothing was changed" in last
    refused = host.audit_lines()[audit_before:]
    assert [(x["event"], x["result"]) for x in refused] == [("deploy", "locked")]
    unpause(host)
    rc, out = finish(host, first)
    assert rc == 0, out[-2000:]
    assert_settled(host, flow_id, host.current(), host_line(out))


def test_full_disk_fails_before_the_switch(host: Host, sources: list[Path]) -> None:
    good = host.current()
    pid = host.ssh("systemctl show -p MainPID --value helios").strip()
    host.ssh("mount -t tmpfs -o size=64k tmpfs /var/backups/helios && "
             "dd if=/dev/zero of=/var/backups/helios/fill bs=4k count=16 2>/dev/null || true")
    try:
        r = host.invoke("deploy", "--source", str(sources[next(_counter)]), "--reason", "disk full")
    finally:
        host.ssh("umount /var/backups/helios")
    assert r.rc != 0
    last = host_line(r.out)
    assert "before the switch" in last and f"host now: release {good}" in last, last
    assert host.current() == good
    assert host.ssh("systemctl show -p MainPID --value helios").strip() == pid
    assert host.helper("lock", "status")["held"] is False
    assert [x["result"] for x in host.audit_lines() if x["event"] == "deploy"][-1] == "failed"


def test_never_healthy_release_has_entries_blocked_during_its_gate(host: Host, tmp_path: Path) -> None:
    """Finding 8: the release under its gate runs un-promoted (the engine sees REDUCING: no new entries)."""
    good = host.current()
    src = scratch_source(tmp_path, "never_healthy_gate", BROKEN["never_healthy"])
    pause_at(host, "deploy", "gate")
    proc = operator("deploy", "--source", str(src), "--health-timeout", "8", "--soak", "1")
    wait_paused(host, "gate", proc)
    status = host.helper("status")
    assert status["release"] != good and status["promoted"] != status["release"]
    assert "NOT promoted" in host.invoke("status").out
    unpause(host)
    rc, out = finish(host, proc)
    assert rc != 0 and "ROLLED BACK" in out
    assert host.current() == good and host.helper("status")["promoted"] == good


# ----------------------------------------------------------------------------------------------------------------
# Issue 9: the emergency stop runs as its own process detached from SSH: the operator's command and its whole SSH
# session can die right after the stop started, the stop still completes and says so
# ----------------------------------------------------------------------------------------------------------------
def flow_pid(host: Host, flow_id: str) -> int:
    record = host.ssh(f"cat /var/lib/helios-deploy/flows/{flow_id}.json")
    import json

    return int(json.loads(record)["pid"])


@pytest.mark.parametrize("fault", ["drop", "kill"])
def test_emergency_stop_completes_on_the_host_when_the_operator_goes(host: Host, fault: str) -> None:
    assert host.wait_healthy()["trading_state"] == "ACTIVE"
    pause_at(host, "estop", "api")  # the stop has started: flow record written, cancel next
    proc = operator("emergency-stop", "--reason", f"operator {fault} mid-stop")
    flow_id = wait_paused(host, "api", proc)
    starter = host.ssh(f"pgrep -of '{HELPER_PROC}'").strip()
    stopper = flow_pid(host, flow_id)
    sid = host.ssh(f"ps -o sid= -p {starter}").strip()
    assert host.ssh(f"ps -o sid= -p {stopper}").strip() != sid, "the stop runs inside the SSH command's session"
    if fault == "drop":
        drop_link(host)
    else:
        kill_operator(proc)
    host.ssh(f"pkill -9 -s {sid} || true")  # what sshd / logind do to a closed session's processes
    unpause(host)
    if fault == "drop":
        rc, out = finish(host, proc)  # the operator's own command reattached
        assert rc == 0 and "HALTED" in out, out[-2000:]
        last = host_line(out)
    else:
        done = wait_flow_done(host, flow_id)
        assert done["rc"] == 0, done["out"][-2000:]
        last = done["last"]
    assert "OK" in last and "trading HALTED" in last and flow_id in last, last
    assert host.wait_healthy()["trading_state"] == "HALTED"
    lines = flow_audit(host, flow_id)
    assert [(x["event"], x["result"]) for x in lines] == [("emergency_stop", "ok")], lines
    record = host.helper("status")["last_flow"]
    assert record["flow_id"] == flow_id and record["state"] == "ok", record
    shown = host.invoke("status")
    assert "HALTED" in shown.out and f"invoke flow --id {flow_id}" in shown.out, shown.out
    assert host.invoke("resume", "--reason", f"estop {fault} test done").rc == 0
