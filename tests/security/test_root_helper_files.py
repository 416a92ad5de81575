"""Issue 10 findings 1-3 without a host: the real ``helios-deployctl`` functions (helios_ops/deployctl.py) run as
root against a layout in a temp directory, with ``nobody`` playing the hostile ``helios`` user who owns the state
dir. Every planted symlink, hard link, FIFO, crafted table and ``../`` checksum must leave the victim file
unchanged (content, owner, mode) and be refused or ignored.

These run as root (as CI does): the point is what root does with files somebody else controls.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helios_ops import deployctl as ctl

REPO = Path(__file__).resolve().parents[2]
VICTIM_TEXT = b"root:$y$secret-hash:19000:0:99999:7:::\n"


@dataclass
class Box:
    root: Path
    state: Path
    victim: Path
    uid: int
    gid: int

    def victim_fingerprint(self) -> tuple[bytes, int, int, int]:
        st = os.lstat(self.victim)
        return self.victim.read_bytes(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    def journal(self, name: str = "journal-paper.sqlite", tables: tuple[str, ...] = ("orders", "fills")) -> Path:
        path = self.state / name
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode=WAL")  # as helios/journal.py opens it
        for i, table in enumerate(tables):
            quoted = '"' + table.replace('"', '""') + '"'
            conn.execute(f"CREATE TABLE {quoted} (id INTEGER PRIMARY KEY, v TEXT)")
            conn.executemany(f"INSERT INTO {quoted} (v) VALUES (?)", [(f"r{n}",) for n in range(i + 2)])
        conn.commit()
        conn.close()
        os.chown(path, self.uid, self.gid)
        return path


@pytest.fixture
def box(monkeypatch: pytest.MonkeyPatch) -> Iterator[Box]:
    """A layout under /tmp (readable by ``nobody``: the helper re-executes itself as the service user)."""
    if os.geteuid() != 0:
        pytest.fail("tests/security/test_root_helper_files.py must run as root (CI does)")
    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="helios-sec-", dir="/tmp"))
    root.chmod(0o755)
    data = json.loads((REPO / "helios_ops" / "layout.json").read_text())
    for key, value in list(data.items()):
        if isinstance(value, str) and value.startswith("/") and key not in ("helper", "helper_layout"):
            data[key] = str(root / value.lstrip("/"))
    data["service_user"] = "nobody"
    layout_file = root / "layout.json"
    layout_file.write_text(json.dumps(data))
    layout_file.chmod(0o644)
    layout = ctl.Layout.from_dict(data)
    for d in (layout.state_dir.parent, layout.env_file.parent, layout.backup_dir, layout.base_dir):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)
    layout.backup_dir.chmod(0o700)
    layout.state_dir.mkdir(mode=0o700)
    os.chown(layout.state_dir, nobody.pw_uid, nobody.pw_gid)
    secret_dir = root / "root-only"
    secret_dir.mkdir(mode=0o700)
    victim = secret_dir / "victim"
    victim.write_bytes(VICTIM_TEXT)
    victim.chmod(0o600)
    monkeypatch.setattr(ctl, "L", layout)
    monkeypatch.setenv("HELIOS_DEPLOY_LAYOUT", str(layout_file))
    try:
        yield Box(root, layout.state_dir, victim, nobody.pw_uid, nobody.pw_gid)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_state_ownership_fixup_never_follows_a_symlink_or_hard_link(box: Box) -> None:
    """Finding 1: a link ``state/x -> /etc/shadow`` must not be chowned to helios by the next backup."""
    before = box.victim_fingerprint()
    (box.state / "x").symlink_to(box.victim)
    os.link(box.victim, box.state / "y")  # root can; protected_hardlinks stops helios, but never rely on it
    own = box.state / "left-by-root"
    own.write_text("root wrote this")
    ctl.fix_state_ownership()
    assert box.victim_fingerprint() == before
    assert os.lstat(own).st_uid == box.uid  # what root really left there goes back to the service user
    (box.state / "y").unlink()
    assert box.victim_fingerprint() == before


def test_backup_with_planted_links_leaves_the_victim_alone(box: Box) -> None:
    """Finding 1 through a whole routine backup: links in the state dir are neither followed nor copied."""
    box.journal()
    (box.state / "evil.sqlite").symlink_to(box.victim)
    (box.state / "x").symlink_to(box.victim)
    before = box.victim_fingerprint()
    with pytest.raises(ctl.Failure, match=r"evil\.sqlite: cannot open safely"):  # refused loudly, never read
        ctl.make_backup(keep=5)
    assert box.victim_fingerprint() == before
    assert not [p for p in ctl.L.backup_dir.iterdir()]  # nothing half-made left behind
    (box.state / "evil.sqlite").unlink()
    info = ctl.make_backup(keep=5)
    assert info["verified"] is True and set(info["rows"]) == {"journal-paper.sqlite"}
    assert info["rows"]["journal-paper.sqlite"] == {"fills": 3, "orders": 2}
    assert box.victim_fingerprint() == before


def test_restore_never_writes_through_a_planted_symlink(box: Box) -> None:
    """Finding 2: ``.journal-paper.sqlite.restore -> victim`` (and -wal/-shm links) must not be written through."""
    box.journal()
    info = ctl.make_backup(keep=5)
    src = ctl.L.backup_dir / info["backup"]
    for name in (".journal-paper.sqlite.restore", "journal-paper.sqlite-wal", "journal-paper.sqlite-shm"):
        (box.state / name).unlink(missing_ok=True)
        (box.state / name).symlink_to(box.victim)
    (box.state / "journal-paper.sqlite").unlink()
    (box.state / "journal-paper.sqlite").symlink_to(box.victim)
    before = box.victim_fingerprint()
    restored = ctl.restore_files(src, ctl.verify_backup(src))
    assert box.victim_fingerprint() == before
    journal = box.state / "journal-paper.sqlite"
    st = os.lstat(journal)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == box.uid and stat.S_IMODE(st.st_mode) == 0o600
    assert restored["journal-paper.sqlite"]["sha256"] == ctl.sha256(journal)


def test_crafted_table_name_is_refused_not_executed(box: Box) -> None:
    """Finding 3: a table name crafted by the service user never reaches SQL as root."""
    crafted = 'orders" ; DROP TABLE fills; --'
    box.journal(tables=("fills", crafted))
    with pytest.raises(ctl.Failure, match="unexpected table name"):
        ctl.make_backup(keep=5)
    conn = sqlite3.connect(box.state / "journal-paper.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0] == 2
    conn.close()
    with pytest.raises(ctl.Failure, match="unexpected table name"):
        ctl.table_names_checked(["ok_name", "a b"])
    assert ctl.table_names_checked(["orders", "state_changes"]) == ["orders", "state_changes"]


def test_fifo_in_place_of_the_lock_or_a_journal_never_hangs_root(box: Box) -> None:
    """Finding 3: a FIFO as ``helios.lock`` or as a journal is refused at once (no blocking open)."""
    os.mkfifo(box.state / "helios.lock")
    os.mkfifo(box.state / "journal-live.sqlite")
    done = threading.Event()
    result: dict[str, object] = {}

    def probe() -> None:
        result["held"] = ctl.state_lock_held()
        try:
            ctl.make_backup(keep=5)
        except ctl.Failure as exc:
            result["backup"] = str(exc)
        done.set()

    threading.Thread(target=probe, daemon=True).start()
    assert done.wait(60), "root blocked on a FIFO planted by the service user"
    assert result["held"] is False
    assert "not a regular file" in str(result["backup"])


@pytest.mark.parametrize("name", ["../victim", "/etc/shadow", ".hidden", "a/../../b", "x\ny"])
def test_checksum_file_names_outside_the_backup_are_refused(name: str) -> None:
    """Finding 3: ``verify-backup`` must not follow ``../`` or absolute names from SHA256SUMS."""
    with pytest.raises(ctl.Failure, match=r"bad file name|malformed"):
        ctl.parse_sums(f"{'0' * 64}  {name}\n")


def test_verify_backup_refuses_a_traversing_checksum_file(box: Box) -> None:
    box.journal()
    info = ctl.make_backup(keep=5)
    src = ctl.L.backup_dir / info["backup"]
    digest = ctl.sha256(box.victim)
    sums = src / "SHA256SUMS"
    sums.write_text(sums.read_text() + f"{digest}  ../../root-only/victim\n")
    with pytest.raises(ctl.Failure, match="bad file name"):
        ctl.verify_backup(src)


@pytest.mark.parametrize("value", ["20260101T000000Z\n", "20260101T000000Z-aaaaaaa\n", " 20260101T000000Z"])
def test_ids_with_a_trailing_newline_are_refused(value: str) -> None:
    assert not ctl.is_backup_id(value)
    assert not ctl.is_release_id(value)


def test_helios_owned_data_is_parsed_as_the_service_user(box: Box) -> None:
    """Finding 3: ``journal-info``/``check-config`` and the journal dumps run as the service user, not root."""
    argv = ctl.as_service(["/opt/helios/current/venv/bin/helios", "journal-info", "--json"])
    assert argv[:3] == ["setpriv", f"--reuid={box.uid}", f"--regid={box.gid}"]
    # A journal the service user cannot read (root-only, as if root had planted it) cannot be dumped by the dump.
    path = box.journal()
    os.chown(path, 0, 0)
    path.chmod(0o600)
    with pytest.raises(ctl.Failure, match="as nobody failed"):
        ctl.make_backup(keep=5)


def test_host_commands_take_operator_values_as_one_argument(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 6 (helper side): a reason starting with ``-`` is passed as ``--reason=VALUE``."""
    seen: list[list[str]] = []

    def fake_run(argv: list[str], timeout: float = 0, check: bool = False,
                 env: dict[str, str] | None = None) -> object:
        seen.append(list(argv))
        import subprocess

        return subprocess.CompletedProcess(argv, 0, '{"trading_state": "HALTED"}', "")

    monkeypatch.setattr(ctl, "run", fake_run)

    class _Flow:
        who = "-ops"

    ctl.halt_direct(_Flow(), "-urgent")  # type: ignore[arg-type]
    assert "--reason=-urgent" in seen[0] and "--actor=-ops" in seen[0]
    assert seen[0][:2] == ["setpriv", f"--reuid={box.uid}"]


def test_old_env_backups_are_pruned_keeping_three() -> None:
    """Finding 9: rotated secrets must not linger in ``/etc/helios/helios.env.<ts>.bak`` forever."""
    names = [f"helios.env.2026010{i}T000000Z.bak" for i in range(1, 7)] + ["helios.env", "helios.env.bak.txt"]
    assert ctl.env_backups_to_remove(names, 3) == [f"helios.env.2026010{i}T000000Z.bak" for i in range(1, 4)]
    assert ctl.env_backups_to_remove(names[:2], 3) == []
    assert ctl.L.keep_env_backups == 3
