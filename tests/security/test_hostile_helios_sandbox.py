"""Issue 10 findings 1-3 on a REAL host: the ``helios`` service user turns hostile and plants links, FIFOs, crafted
tables and traversing checksums in what it owns (``/var/lib/helios``); then every root flow runs the way the
operator runs it (``invoke ...`` as the restricted deploy user, through ``sudo -n helios-deployctl``).

After every test, three root-owned victims (``/etc/shadow``, ``/etc/helios-victim`` 0640, ``/root/helios-victim``
0600) still have their bytes, owner, mode and link count; each flow ends within its bounds and its outcome line
names the refusal when there is one. The plants are made as ``helios`` (root logs in, then ``runuser -u helios``),
except a hard link to a victim (``fs.protected_hardlinks=1`` stops ``helios`` making one; root plants it to stand
for a kernel without that protection) and a backup's ``SHA256SUMS`` (``/var/backups/helios`` is root's 0700:
it stands for a tampered backup copied back onto the host). ``invoke deploy`` runs here too, as the deploy user,
through the same helper-only sudo rule (its upload goes into ``helios-deployctl receive``).
"""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.security.sandbox_host import DEPLOY_USER, HELPER, REPO, VENV_BIN, SecHost

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

STATE = "/var/lib/helios"
JOURNAL = "journal-paper.sqlite"
VICTIMS = ("/etc/shadow", "/etc/helios-victim", "/root/helios-victim")
PAUSE = "/run/helios-deploy/pause-at"
OLDER = "20000101T000000Z-0000000"  # a copy of the current release with an older id: the rollback target
#: Every name a test plants in the state dir; removed (as root, ``rm -f`` never follows a link) after each test.
#: (The restore test's ``-wal``/``-shm`` links are removed by the restore itself; those names are the live service's.)
PLANTS = ("x", "victim-link", ".journal-paper.sqlite.restore", "hardlink", "journal-evil.sqlite",
          "journal-crafted.sqlite", "journal-fifo.sqlite", "root-left")


def fingerprint(host: SecHost) -> dict[str, str]:
    """Each victim's owner, group, mode, link count, size and sha256, read on the host."""
    script = "; ".join(f"echo {v} $(stat -c '%u:%g:%a:%h:%s' {v}) $(sha256sum < {v} | cut -c1-64)" for v in VICTIMS)
    return dict(line.split(" ", 1) for line in host.ssh(script).splitlines())


def pause_at(host: SecHost, flow: str, step: str) -> None:
    host.ssh(f"mkdir -p /run/helios-deploy && echo {flow}:{step} > {PAUSE}")


def wait_paused(host: SecHost, step: str, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    """Wait until the host's newest flow reports that it waits at ``step`` (an event the helper records)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = host.ssh(f"{HELPER} status")
        if f'"paused_at": "{step}"' in last:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the operator's command ended before step {step}: {proc.communicate()[0][-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"the flow never reached step {step}: {last[-1500:]}")


def start_invoke(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(VENV_BIN / "invoke"), *args, "--inventory", "security-deploy"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


@pytest.fixture(scope="module")
def victims(sec_host: SecHost) -> dict[str, str]:
    for path, mode in (("/etc/helios-victim", "0640"), ("/root/helios-victim", "0600")):
        sec_host.ssh(f"printf 'victim %s\\n' {secrets.token_hex(16)} > {path} && chmod {mode} {path}")
    current = sec_host.current()
    sec_host.ssh(f"test -d /opt/helios/releases/{OLDER} || cp -a /opt/helios/releases/{current} "
                 f"/opt/helios/releases/{OLDER}")
    return fingerprint(sec_host)


@pytest.fixture(autouse=True)
def hostile(sec_host: SecHost, victims: dict[str, str]) -> Iterator[SecHost]:
    """After each test: the victims are unchanged; then the plants go and the host is left ACTIVE and healthy."""
    yield sec_host
    sec_host.ssh(f"rm -f {PAUSE}; cd {STATE} && rm -f {' '.join(shlex.quote(p) for p in PLANTS)}"
                 " && if [ -e helios.lock ] && [ ! -f helios.lock ]; then rm -f helios.lock; fi"
                 f" && if [ -f {JOURNAL}.real ]; then mv -f {JOURNAL}.real {JOURNAL}; fi"
                 " && (systemctl is-active -q helios || systemctl start helios)")
    after = fingerprint(sec_host)  # the hard links planted are gone again: the link count is back to 1
    sec_host.wait_healthy()
    if sec_host.trading_state() != "ACTIVE":
        assert sec_host.invoke("resume", "--reason", "security test clean-up").rc == 0
    assert after == victims, "a root flow changed a victim file"


def plant(host: SecHost, script: str) -> None:
    host.as_helios(f"cd {STATE} && {script}")


def assert_refused(rc: int, out: str, *needles: str) -> None:
    assert rc != 0, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in the outcome: {out[-3000:]}"


# ----------------------------------------------------------------------------------------------------------------
# backup
# ----------------------------------------------------------------------------------------------------------------
def test_backup_never_follows_planted_symlinks_or_hard_links(hostile: SecHost) -> None:
    plant(hostile, "ln -s /etc/shadow x && ln -s /etc/helios-victim victim-link"
                   " && ln -s /root/helios-victim .journal-paper.sqlite.restore")
    hostile.ssh(f"ln /etc/helios-victim {STATE}/hardlink")
    res = hostile.invoke("backup")
    assert res.rc == 0, res.out
    assert re.search(r"backup \d{8}T\d{6}Z verified", res.out), res.out
    files = hostile.ssh(f"{HELPER} backups")
    assert "victim" not in files and '"x"' not in files  # nothing but the journals, env, release, rows, sums


def test_backup_refuses_a_journal_name_planted_as_a_symlink(hostile: SecHost) -> None:
    plant(hostile, "ln -s /etc/shadow journal-evil.sqlite")
    res = hostile.invoke("backup")
    assert_refused(res.rc, res.out, "journal-evil.sqlite", "a symlink is refused")


def test_backup_refuses_a_crafted_table_name_without_running_it(hostile: SecHost) -> None:
    crafted = 't" ; ATTACH DATABASE \'/etc/helios-victim\' AS v; CREATE TABLE v.pwn(x); --'
    script = ("import sqlite3\nc = sqlite3.connect('journal-crafted.sqlite')\n"
              f"c.execute('CREATE TABLE \"' + {crafted!r}.replace('\"', '\"\"') + '\" (id INTEGER)')\n"
              "c.commit()\n")
    plant(hostile, f"python3 -c {shlex.quote(script)}")
    res = hostile.invoke("backup")
    assert_refused(res.rc, res.out, "journal-crafted.sqlite", "unexpected table name")


def test_backup_refuses_a_fifo_in_place_of_a_journal_at_once(hostile: SecHost) -> None:
    plant(hostile, "mkfifo journal-fifo.sqlite")
    res = hostile.invoke("backup", timeout=120)
    assert_refused(res.rc, res.out, "journal-fifo.sqlite", "not a regular file")
    assert res.seconds < 60, res.seconds


# ----------------------------------------------------------------------------------------------------------------
# restore and verify-backup
# ----------------------------------------------------------------------------------------------------------------
def test_restore_never_writes_through_planted_links(hostile: SecHost) -> None:
    made = hostile.invoke("backup")
    ts = re.search(r"backup (\d{8}T\d{6}Z) verified", made.out)
    assert made.rc == 0 and ts, made.out
    pause_at(hostile, "restore", "restore")  # the service is stopped: the -wal/-shm names are free to take
    proc = start_invoke("restore", "--backup", ts.group(1))
    try:
        wait_paused(hostile, "restore", proc)
        plant(hostile, f"ln -sf /etc/helios-victim {JOURNAL}-wal && ln -sf /root/helios-victim {JOURNAL}-shm"
                       " && ln -sf /etc/shadow .journal-paper.sqlite.restore && ln -sf /etc/shadow x")
        hostile.ssh(f"ln -f /etc/helios-victim {STATE}/hardlink && install -m 0600 /dev/null {STATE}/root-left")
    finally:
        hostile.ssh(f"rm -f {PAUSE}")
    rc, out = finish(proc)
    assert rc == 0, out
    assert f"restored backup {ts.group(1)} (checksums verified" in out, out
    # the ownership fix-up ran (a root-owned file root left there went back to helios) and skipped every link;
    # the planted -wal/-shm links were removed, never written through; the restored journal reads
    owners = hostile.ssh(f"stat -c '%n %U' {STATE}/root-left {STATE}/{JOURNAL}")
    assert owners.split() == [f"{STATE}/root-left", "helios", f"{STATE}/{JOURNAL}", "helios"], owners
    hostile.wait_healthy()
    assert hostile.ssh(f"find {STATE} -maxdepth 1 -type l -name '{JOURNAL}-*'").strip() == ""
    meta = ("import sqlite3; c = sqlite3.connect('file:/var/lib/helios/journal-paper.sqlite?mode=ro', uri=True); "
            "print(c.execute('SELECT COUNT(*) FROM meta').fetchone()[0])")
    assert int(hostile.ssh(f"runuser -u helios -- python3 -c {shlex.quote(meta)}")) > 0


def test_restore_and_verify_backup_refuse_traversing_checksum_names(hostile: SecHost) -> None:
    made = hostile.invoke("backup")
    ts = re.search(r"backup (\d{8}T\d{6}Z) verified", made.out)
    assert made.rc == 0 and ts, made.out
    crafted = "20000101T000000Z"
    hostile.ssh(f"cp -a /var/backups/helios/{ts.group(1)} /var/backups/helios/{crafted} && cd /var/backups/helios/"
                f"{crafted} && echo \"$(sha256sum < /etc/helios-victim | cut -c1-64)  ../../../etc/helios-victim\""
                " >> SHA256SUMS")
    try:
        verify = hostile.run(f"sudo -n {HELPER} verify-backup {crafted}", user=DEPLOY_USER)
        assert_refused(verify.rc, verify.out, "bad file name '../../../etc/helios-victim' in SHA256SUMS")
        release = hostile.current()
        res = hostile.invoke("restore", "--backup", crafted)
        assert_refused(res.rc, res.out, "bad file name '../../../etc/helios-victim'", "nothing was stopped")
        assert hostile.current() == release
    finally:
        hostile.ssh(f"rm -rf /var/backups/helios/{crafted}")


# ----------------------------------------------------------------------------------------------------------------
# rollback, resume --direct, emergency stop --direct, mode switch
# ----------------------------------------------------------------------------------------------------------------
def test_rollback_with_links_and_a_fifo_lock_planted(hostile: SecHost) -> None:
    """The FIFO in place of helios.lock must not hang the stop (the flow reaches ``start``); links stay links."""
    current = hostile.current()
    plant(hostile, "ln -s /etc/shadow x && ln -s /root/helios-victim .journal-paper.sqlite.restore"
                   " && rm -f helios.lock && mkfifo helios.lock")
    hostile.ssh(f"ln /etc/helios-victim {STATE}/hardlink")
    pause_at(hostile, "rollback", "start")
    proc = start_invoke("rollback", "--to", OLDER, "--reason", "hostile rollback")
    try:
        wait_paused(hostile, "start", proc, timeout=120)
        plant(hostile, "rm -f helios.lock")  # the hostile user gives the service its lock back, or it cannot start
    finally:
        hostile.ssh(f"rm -f {PAUSE}")
    rc, out = finish(proc)
    assert rc == 0, out
    assert hostile.current() == OLDER
    forward = hostile.invoke("rollback", "--to", current, "--reason", "hostile rollback: forward again")
    assert forward.rc == 0, forward.out
    assert hostile.current() == current


def test_resume_direct_refuses_a_fifo_lock_at_once(hostile: SecHost) -> None:
    stop = hostile.invoke("emergency-stop", "--reason", "before a hostile resume")
    assert stop.rc == 0, stop.out
    hostile.ssh("systemctl stop helios")  # the service is down: resume goes --direct
    plant(hostile, "rm -f helios.lock && mkfifo helios.lock")
    res = hostile.invoke("resume", "--reason", "hostile resume", timeout=120)
    assert_refused(res.rc, res.out, "helios.lock", "not a regular file")
    assert res.seconds < 25, res.seconds
    hostile.ssh(f"rm -f {STATE}/helios.lock && systemctl start helios")
    hostile.wait_healthy()
    assert hostile.trading_state() == "HALTED"  # the refused resume changed nothing


def test_emergency_stop_direct_with_fifos_in_place_of_the_lock_and_the_journal(hostile: SecHost) -> None:
    hostile.ssh("systemctl stop helios")  # the API does not answer: the stop goes --direct
    plant(hostile, f"rm -f helios.lock && mkfifo helios.lock && mv {JOURNAL} {JOURNAL}.real && mkfifo {JOURNAL}")
    res = hostile.invoke("emergency-stop", "--reason", "hostile direct stop", timeout=180)
    assert res.rc == 0, res.out  # straight to the exchange: the cancels never wait on the lock or the journal
    assert "HALTED via direct; unit stopped" in res.out and "confirmed by re-query" in res.out, res.out
    assert res.seconds < 60, res.seconds
    assert hostile.ssh("systemctl is-active helios || true").strip() != "active"
    assert hostile.ssh(f"stat -c %F {STATE}/helios.lock {STATE}/{JOURNAL}").split("\n")[:2] == ["fifo", "fifo"]


def test_mode_switch_with_links_planted(hostile: SecHost) -> None:
    """Weak on purpose and said so: this host has no exchange double, so only PAPER -> PAPER runs (read the env file,
    gate). The mode flow writes only root's ``/etc/helios``, which the ``helios`` user cannot plant in."""
    plant(hostile, "ln -s /etc/shadow x && ln -s /root/helios-victim .journal-paper.sqlite.restore")
    hostile.ssh(f"ln /etc/helios-victim {STATE}/hardlink")
    res = hostile.invoke("to-paper")
    assert res.rc == 0, res.out
    assert "PAPER" in res.out, res.out


def test_deploy_with_links_planted(hostile: SecHost) -> None:
    """A whole deploy (receive, backup of the state dir, install, switch, gate, promote, prune) as the deploy user
    while the hostile user has planted links into root-owned files and a hard link to one: the deploy succeeds and
    the victims are untouched (checked by the fixture)."""
    before = hostile.current()
    plant(hostile, "ln -s /etc/shadow x && ln -s /root/helios-victim .journal-paper.sqlite.restore")
    hostile.ssh(f"ln /etc/helios-victim {STATE}/hardlink")
    res = hostile.invoke("deploy", "--allow-dirty", "--reason", "hostile deploy", timeout=600)
    assert res.rc == 0, res.out[-3000:]
    after = hostile.current()
    assert after != before
    assert f"host now: release {after}" in res.out.strip().splitlines()[-1], res.out[-2000:]
