#!/usr/bin/python3
"""helios-deployctl: the host side of every Helios ops flow. Standard library only.

Installed by ansible/roles/helios_release as ``/usr/local/lib/helios/helios-deployctl`` (root, 0755) with
``layout.json`` (the one description of the server layout) beside it.

Each state-changing flow -- deploy, rollback, mode, restore, backup, estop, resume -- is ONE function below
(``flow_<name>``), listed in the ``FLOWS`` dispatch table. ``helios-deployctl start FLOW ...`` writes a flow record
and runs the flow as a transient systemd unit (``helios-flow-<id>``), detached from the SSH session that asked for
it; then it follows the record and prints the outcome. The flow process takes the deploy lock, runs every step,
writes exactly one audit line and releases the lock whatever happens. If the operator's command dies or its link
drops, the flow carries on; ``helios-deployctl follow [ID]`` (``invoke flow``, ``invoke status``) reattaches and
prints its real outcome. Every final line ends with what the host runs now (release, mode, trading state).

A switch is provisional until its gate passes: a new release starts with new entries blocked (``promoted_file``
names another release; helios/promotion.py) until the flow promotes it. ``boot-check`` (ExecStartPre of
helios.service) puts the last good release back when the host restarted in the middle of a gate.

Output: one JSON object on stdout; step lines for humans on stderr.
Exit codes: 0 ok · 1 failed · 3 failed after the switch and rolled back · 4 the lock is held · 5 refused.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_ROLLED_BACK, EXIT_LOCKED, EXIT_REFUSED = 0, 1, 3, 4, 5
TS_FORMAT = "%Y%m%dT%H%M%SZ"
FINAL_STATES = frozenset({"ok", "failed", "rolled_back", "rollback_failed", "refused", "locked", "interrupted"})


# ----------------------------------------------------------------------------------------------------------------
# Layout (layout.json: one source for Python and Ansible)
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    helper: Path
    base_dir: Path
    releases_dir: Path
    incoming_dir: Path
    wheelhouse_dir: Path
    current_link: Path
    last_good_file: Path
    promoted_file: Path
    env_file: Path
    alert_hook: Path
    state_dir: Path
    backup_dir: Path
    log_dir: Path
    audit_log: Path
    lock_file: Path
    flow_dir: Path
    pause_file: Path
    unit: str
    service_user: str
    flow_unit_prefix: str
    keep_releases: int
    keep_backups: int
    keep_flows: int
    keep_env_backups: int
    release_id_re: re.Pattern[str]
    backup_id_re: re.Pattern[str]
    flow_id_re: re.Pattern[str]
    secret_markers: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Layout:
        paths = {
            name: Path(str(data[name]))
            for name, kind in cls.__annotations__.items()
            if kind == "Path"
        }
        return cls(
            **paths,
            unit=str(data["unit"]),
            service_user=str(data.get("service_user", "helios")),
            flow_unit_prefix=str(data["flow_unit_prefix"]),
            keep_releases=int(data["keep_releases"]),
            keep_backups=int(data["keep_backups"]),
            keep_flows=int(data["keep_flows"]),
            keep_env_backups=int(data.get("keep_env_backups", 3)),
            release_id_re=re.compile(str(data["release_id_re"])),
            backup_id_re=re.compile(str(data["backup_id_re"])),
            flow_id_re=re.compile(str(data["flow_id_re"])),
            secret_markers=tuple(str(m) for m in data["secret_markers"]),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> Layout:
        where = path or Path(os.environ.get("HELIOS_DEPLOY_LAYOUT", str(Path(__file__).with_name("layout.json"))))
        data = json.loads(where.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{where}: not a JSON object")
        return cls.from_dict(data)


L = Layout.load()


class Failure(Exception):
    """A flow (or query) cannot go on; ``message`` is one line saying what failed."""

    def __init__(self, message: str, code: int = EXIT_FAILED, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = dict(detail or {})


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None = None) -> str:
    return (ts or now_utc()).strftime("%Y-%m-%dT%H:%M:%SZ")


def say(message: str) -> None:
    """A step line for humans; a dropped link (broken pipe) never stops a flow."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Pure helpers (tests/deploy/test_deployctl_pure.py)
# ----------------------------------------------------------------------------------------------------------------
def is_release_id(value: str) -> bool:
    return L.release_id_re.fullmatch(value) is not None


def is_backup_id(value: str) -> bool:
    return L.backup_id_re.fullmatch(value) is not None


def is_flow_id(value: str) -> bool:
    return L.flow_id_re.fullmatch(value) is not None


def new_flow_id(now: datetime, token: str) -> str:
    flow_id = f"{now.astimezone(UTC).strftime(TS_FORMAT)}-{token}"
    if not is_flow_id(flow_id):
        raise ValueError(f"bad flow id {flow_id!r}")
    return flow_id


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines (optionally quoted) -> dict; comments and blanks ignored."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def mode_values(mode: str) -> dict[str, str]:
    if mode not in ("PAPER", "LIVE"):
        raise Failure(f"mode must be PAPER or LIVE, got {mode!r}", EXIT_REFUSED)
    return {"TRADING_MODE": mode, "ENABLE_PAPER_TRADING": "false" if mode == "LIVE" else "true"}


def rewrite_mode(text: str, mode: str) -> str:
    """Change only TRADING_MODE and ENABLE_PAPER_TRADING; every other line stays byte-identical."""
    wanted = mode_values(mode)
    seen: set[str] = set()
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        match = re.fullmatch(r"(\s*(?:export\s+)?)([A-Z_][A-Z0-9_]*)(\s*=\s*)(.*)", body)
        if match and match.group(2) in wanted:
            key = match.group(2)
            value = match.group(4).strip()
            quote = value[0] if value[:1] in ("'", '"') else ""
            out.append(f"{match.group(1)}{key}{match.group(3)}{quote}{wanted[key]}{quote}{ending}")
            seen.add(key)
        else:
            out.append(line)
    missing = [k for k in wanted if k not in seen]
    if missing:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.extend(f"{k}='{wanted[k]}'\n" for k in missing)
    return "".join(out)


def is_secret_name(name: str, markers: Sequence[str] | None = None) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in (markers if markers is not None else L.secret_markers))


def masked_diff(old: str, new: str) -> list[str]:
    """Per-key diff of two env files with secret values masked."""
    a, b = parse_env(old), parse_env(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        secret = is_secret_name(key)
        if key not in a:
            lines.append(f"+ {key}={'****' if secret else b[key]}")
        elif key not in b:
            lines.append(f"- {key}={'****' if secret else a[key]}")
        elif secret:
            lines.append(f"~ {key}=**** (changed)")
        else:
            lines.append(f"~ {key}: {a[key]} -> {b[key]}")
    return lines


def pick_previous(releases: Sequence[str], current: str | None, bad: set[str]) -> str | None:
    """The newest release older than ``current`` that is not marked bad."""
    older = sorted(r for r in releases if is_release_id(r) and (current is None or r < current))
    return next((r for r in reversed(older) if r not in bad), None)


def prune_plan(
    releases: Sequence[str], keep: int, current: str | None, last_good: str | None, bad: set[str]
) -> list[str]:
    """Releases to delete. Kept: the newest ``keep`` GOOD releases, current and last good, and the two newest BAD
    ones (to look at). BAD releases never count toward ``keep``: failed deploys never push the good ones out."""
    good = sorted((r for r in releases if is_release_id(r) and r not in bad), reverse=True)
    bad_sorted = sorted((r for r in releases if is_release_id(r) and r in bad), reverse=True)
    kept = set(good[: max(keep, 1)]) | set(bad_sorted[:2]) | {r for r in (current, last_good) if r}
    return sorted(r for r in releases if is_release_id(r) and r not in kept)


ENV_BACKUP_RE = re.compile(r"helios\.env\.[0-9]{8}T[0-9]{6}Z\.bak")


def env_backups_to_remove(names: Sequence[str], keep: int) -> list[str]:
    """Old ``helios.env.<ts>.bak`` copies (they hold rotated secrets): all but the newest ``keep``."""
    baks = sorted(n for n in names if ENV_BACKUP_RE.fullmatch(n))
    return baks[: max(0, len(baks) - keep)]


def backups_to_remove(names: Sequence[str], keep: int) -> list[str]:
    """All but the newest ``keep`` backups -- never the newest one (``--keep 0`` from the deploy user's sudo would
    otherwise delete every backup, the one just verified included)."""
    snaps = sorted(n for n in names if is_backup_id(n))
    return snaps[: max(0, len(snaps) - max(keep, 1))]


def lock_message(owner: Mapping[str, Any], alive: bool, now_epoch: float) -> str:
    age = now_epoch - float(owner.get("epoch", now_epoch))
    text = (
        f"deploy lock held by {owner.get('who', '?')} since {owner.get('at', '?')} ({age / 60:.0f} min ago) "
        f"for {owner.get('what', '?')} ({owner.get('why') or 'no reason given'}; flow {owner.get('flow_id', '?')})"
    )
    if alive:
        return text + ": that flow is still running (follow it with `invoke flow`)"
    return text + ": its flow process is GONE (dead flow); check the host, then `invoke lock.release --force`"


def flow_steps_text(flow: str) -> list[str]:
    """The plan ``--check`` prints: the flow's own step list."""
    return [f"{n:>2}. {name}: {what}" for n, (name, what) in enumerate(FLOW_STEPS[flow], 1)]


def host_now_line(now: Mapping[str, Any]) -> str:
    """What the host runs now, in one clause (read from the host, never assumed)."""
    release = now.get("release") or "no release"
    promoted = "" if now.get("promoted") else " (NOT promoted: new entries blocked)"
    return (
        f"host now: release {release}{promoted}, mode {now.get('mode', '?')}, "
        f"trading {now.get('trading_state') or 'unknown'}, service {now.get('unit', '?')}"
    )


def final_line(record: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    state = record.get("state", "?")
    what = f"{record.get('flow', '?')} {record.get('flow_id', '')}".strip()
    message = record.get("message") or state
    if state not in FINAL_STATES:
        message = f"still running at step '{record.get('step')}'" + (
            f" (paused at '{record.get('paused_at')}')" if record.get("paused_at") else ""
        )
    return f"{what}: {state.upper().replace('_', ' ')}: {message}; {host_now_line(now)}"


def pause_requested(pause_text: str, flow: str, step: str) -> bool:
    """The test-only pause marker names ``flow:step`` (or ``*:step``)."""
    wanted = {line.strip() for line in pause_text.splitlines() if line.strip()}
    return f"{flow}:{step}" in wanted or f"*:{step}" in wanted


def boot_recovery_plan(
    current: str | None, last_good: str | None, promoted: str | None, flow_alive: bool
) -> str | None:
    """At service start: the release that must be current AND promoted, or None (nothing to do). A live flow owns
    the switch. Otherwise a current release that never passed its gate (the host restarted mid-gate) goes back to
    the last good one, and a last good release left un-promoted by a dead flow is promoted again."""
    if flow_alive or current is None or current == promoted:
        return None
    if last_good is None or current == last_good:
        return current  # nothing older is known good: this is the release to run
    return last_good


# ----------------------------------------------------------------------------------------------------------------
# Small executors
# ----------------------------------------------------------------------------------------------------------------
def run(argv: Sequence[str], timeout: float = 120, check: bool = False,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                                env=None if env is None else dict(env))
    except subprocess.TimeoutExpired:
        result = subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]} timed out after {timeout:g}s")
    except OSError as exc:
        result = subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: {exc.strerror}")
    if check and result.returncode != 0:
        raise Failure(f"{' '.join(argv[:3])} failed (exit {result.returncode}): {last_line(result)}")
    return result


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def json_out(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        data = json.loads(result.stdout) if result.stdout.strip() else {}
        return data if isinstance(data, dict) else {}
    return {}


# ----------------------------------------------------------------------------------------------------------------
# Files as root (issue 10): never follow a link, never trust a file the service user could have planted
# ----------------------------------------------------------------------------------------------------------------
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
JOURNAL_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}\.sqlite")
BACKUP_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def open_regular(path: Path, flags: int = os.O_RDONLY, dir_fd: int | None = None) -> int:
    """An fd on ``path`` only if it is a regular file reached without a symlink (a FIFO never blocks: O_NONBLOCK)."""
    try:
        fd = os.open(path, flags | NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        raise Failure(f"{path}: cannot open safely ({exc.strerror or exc}; a symlink is refused)") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Failure(f"{path}: not a regular file (refused)")
    return fd


def read_bytes_safe(path: Path, limit: int = 1 << 30) -> bytes:
    fd = open_regular(path)
    try:
        chunks, size = [], 0
        while block := os.read(fd, 1 << 20):
            size += len(block)
            if size > limit:
                raise Failure(f"{path}: larger than {limit} bytes (refused)")
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_exclusive(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Write ``data`` to a new temp file (O_EXCL, never a planted name) beside ``path``, fsync, fchown/fchmod the
    open descriptor, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def service_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(L.service_user)
    return entry.pw_uid, entry.pw_gid


def as_service(argv: Sequence[str]) -> list[str]:
    """Run ``argv`` as the service user: whatever parses helios-owned data never runs as root."""
    uid, gid = service_ids()
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--no-new-privs", "--", *argv]


def service_env() -> dict[str, str]:
    """The service's configuration (read by root from the 0600 env file) for a helios command run as the service
    user, who cannot read that file; no --env-file."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(L.state_dir), **parse_env(env_text())}


def service_cli(args: Sequence[str], timeout: float, rid: str | None = None,
                env_text_override: str | None = None) -> subprocess.CompletedProcess[str]:
    env = service_env() if env_text_override is None else {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(L.state_dir), **parse_env(env_text_override)}
    return run(as_service([helios_cli(rid), *args]), timeout=timeout, env=env)


def helper_as_service(args: Sequence[str], data: bytes | None, timeout: float = 120) -> bytes:
    """This helper's own ``service-*`` subcommands, run as the service user (stdin/stdout carry the bytes)."""
    argv = as_service([sys.executable, "-I", str(Path(__file__).resolve()), *args])
    try:
        result = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, check=False,
                                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                                     **{k: v for k, v in os.environ.items() if k == "HELIOS_DEPLOY_LAYOUT"}})
    except subprocess.TimeoutExpired:
        raise Failure(f"{args[0]} as {L.service_user} timed out after {timeout:g}s") from None
    if result.returncode != 0:
        lines = [x for x in result.stderr.decode(errors="replace").splitlines() if x.strip()]
        raise Failure(f"{args[0]} as {L.service_user} failed: {lines[-1] if lines else 'no output'}")
    return result.stdout


def sqlite_report(conn: sqlite3.Connection) -> dict[str, Any]:
    check = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    return {"integrity": check, "rows": row_counts_conn(conn) if check == "ok" else {}}


def rollback_journal_image(data: bytes) -> bytes:
    """A WAL-mode database image (header bytes 18-19 = 2) as a rollback-journal one (= 1): what the old file
    backup's ``PRAGMA journal_mode=DELETE`` did; an in-memory database cannot open a WAL image."""
    if len(data) >= 20 and data[18:20] == b"\x02\x02":
        return data[:18] + b"\x01\x01" + data[20:]
    return data


def db_report_from_bytes(data: bytes) -> dict[str, Any]:
    """(as the service user) integrity and row counts of a journal image, parsed in memory."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(rollback_journal_image(data))
        return sqlite_report(conn)
    finally:
        conn.close()


def dump_journal(name: str) -> bytes:
    """(as the service user) a consistent image of a journal in the state dir (SQLite online backup)."""
    if JOURNAL_NAME_RE.fullmatch(name) is None:
        raise Failure(f"not a journal name: {name!r}")
    path = L.state_dir / name
    os.close(open_regular(path))
    src = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(":memory:")
    try:
        src.backup(dst)
        return rollback_journal_image(bytes(dst.serialize()))
    finally:
        dst.close()
        src.close()


def service_main(cmd: str, arg: str | None) -> int:
    """``service-dump NAME`` / ``service-inspect`` (stdin): the parts that read helios-owned data."""
    try:
        if cmd == "service-dump" and arg is not None:
            sys.stdout.buffer.write(dump_journal(arg))
        elif cmd == "service-inspect":
            print(json.dumps(db_report_from_bytes(sys.stdin.buffer.read())))
        else:
            raise Failure(f"unknown {cmd}")
    except (Failure, sqlite3.Error, OSError, ValueError) as exc:
        print(f"{cmd}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def audit(event: str, result: str, who: str, **detail: Any) -> None:
    L.log_dir.mkdir(parents=True, exist_ok=True)
    line = {"at": iso(), "host": socket.gethostname(), "event": event, "result": result, "who": who, **detail}
    fd = os.open(L.audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True, default=str) + "\n").encode())
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Mapping[str, Any], mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_exclusive(path, (json.dumps(data, sort_keys=True, default=str) + "\n").encode(), mode)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    write_exclusive(path, text.encode(), mode)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    fd = open_regular(path)
    try:
        while block := os.read(fd, 1 << 20):
            digest.update(block)
    finally:
        os.close(fd)
    return digest.hexdigest()


def env_text() -> str:
    return read_bytes_safe(L.env_file, 1 << 20).decode() if L.env_file.exists() else ""


def configured_mode() -> str:
    return parse_env(env_text()).get("TRADING_MODE", "PAPER")


def api_base() -> str:
    env = parse_env(env_text())
    host = env.get("HELIOS_API_HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{env.get('HELIOS_API_PORT', '8100')}"


def http_json(path: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(api_base() + path, timeout=timeout) as response:  # noqa: S310 -- loopback
            data = json.loads(response.read() or b"{}")
            return int(response.status), data if isinstance(data, dict) else {}
    except urllib.error.HTTPError as exc:
        try:
            data = json.loads(exc.read() or b"{}")
            return exc.code, data if isinstance(data, dict) else {}
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def api_post(path: str, body: Mapping[str, Any], timeout: float) -> tuple[int, dict[str, Any]]:
    """POST to the service's loopback API with its control token (read from the env file, never printed)."""
    token = parse_env(env_text()).get("HELIOS_API_TOKEN", "")
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(  # noqa: S310 -- loopback http only
        api_base() + path, data=json.dumps(dict(body)).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 -- loopback
            data = json.loads(response.read() or b"{}")
            return int(response.status), data if isinstance(data, dict) else {}
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def read_text(path: Path) -> str | None:
    with contextlib.suppress(OSError):
        return path.read_text().strip() or None
    return None


def current_release() -> str | None:
    try:
        name = Path(os.readlink(L.current_link)).name
    except OSError:
        return None
    return name if is_release_id(name) else None


def last_good() -> str | None:
    return read_text(L.last_good_file)


def promoted() -> str | None:
    return read_text(L.promoted_file)


def release_dir(rid: str) -> Path:
    if not is_release_id(rid):
        raise Failure(f"not a release id: {rid!r} (expected YYYYmmddTHHMMSSZ-sha7)", EXIT_REFUSED)
    return L.releases_dir / rid


def all_releases() -> list[str]:
    if not L.releases_dir.is_dir():
        return []
    return sorted(p.name for p in L.releases_dir.iterdir() if is_release_id(p.name) and is_complete(p.name))


def bad_releases() -> set[str]:
    return {r for r in all_releases() if (L.releases_dir / r / "BAD").exists()}


def mark_bad(rid: str, why: str) -> None:
    with contextlib.suppress(OSError):
        (release_dir(rid) / "BAD").write_text(f"{iso()} {why}\n")


def can_start(rid: str) -> bool:
    return (L.releases_dir / rid / "venv" / "bin" / "helios").is_file()


def manifest(rid: str) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((L.releases_dir / rid / "release.json").read_text())
        return data if isinstance(data, dict) else {}
    return {}


def fix_state_ownership() -> None:
    """Files root left in the state dir go back to the service user -- only root-owned regular files with one
    link, changed through their open descriptor (O_NOFOLLOW): a planted symlink or hard link is never followed."""
    try:
        dfd = os.open(L.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        owner = os.fstat(dfd)
        for name in os.listdir(dfd):
            try:
                fd = os.open(name, os.O_RDONLY | NOFOLLOW, dir_fd=dfd)
            except OSError:
                continue  # a symlink (ELOOP), gone, or not ours to open
            try:
                st = os.fstat(fd)
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == 0:
                    os.fchown(fd, owner.st_uid, owner.st_gid)
            finally:
                os.close(fd)
    finally:
        os.close(dfd)


def table_names_checked(names: Sequence[str]) -> list[str]:
    """Table names of a journal, each a plain SQL identifier; anything else is refused (never put in SQL)."""
    for name in names:
        if TABLE_NAME_RE.fullmatch(name) is None:
            raise Failure(f"unexpected table name {name!r} in the journal (refused)")
    return list(names)


def row_counts_conn(conn: sqlite3.Connection) -> dict[str, int]:
    tables = table_names_checked([
        str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
    ])
    return {t: int(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}  # noqa: S608


def inspect_journal_file(path: Path) -> dict[str, Any]:
    """Integrity and row counts of a journal file, parsed by the service user (root only reads the bytes)."""
    data = helper_as_service(["service-inspect"], read_bytes_safe(path))
    report = json.loads(data)
    if not isinstance(report, dict):
        raise Failure(f"{path.name}: no report")
    return report


# ----------------------------------------------------------------------------------------------------------------
# Service control
# ----------------------------------------------------------------------------------------------------------------
def unit_prop(name: str, unit: str | None = None) -> str:
    return run(["systemctl", "show", "-p", name, "--value", unit or L.unit], timeout=10).stdout.strip()


def engines_alive() -> list[int]:
    out = run(["pgrep", "-f", "^/opt/helios/.*/helios run"], timeout=10).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def refuse_planted_state_lock() -> None:
    """Before a helios command that opens the service's lock (``resume --direct``): that name belongs to the service
    user, and anything there but a regular file is a plant (a FIFO would block the command until its timeout)."""
    path = L.state_dir / "helios.lock"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise Failure(f"{path} is not a regular file (a FIFO or link was planted there); refused, nothing changed")


def state_lock_held() -> bool:
    path = L.state_dir / "helios.lock"
    try:
        fd = open_regular(path)  # a FIFO or symlink planted there is not a lock (and never blocks us)
    except Failure:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def stop_service(timeout: float = 45.0) -> None:
    """SIGTERM via systemd; return only when the process is gone and the state lock is free."""
    run(["systemctl", "stop", L.unit], timeout=timeout)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if unit_prop("MainPID") in ("0", "") and not engines_alive() and not state_lock_held():
            return
        time.sleep(0.05)
    raise Failure(f"helios did not stop: pids {engines_alive()}, state lock held={state_lock_held()}")


def start_service(timeout: float = 75.0) -> None:
    run(["systemctl", "reset-failed", L.unit], timeout=10)
    result = run(["systemctl", "start", L.unit], timeout=timeout)
    if result.returncode != 0:
        raise Failure(f"systemctl start {L.unit} failed ({unit_prop('Result') or 'unknown result'})")


def journal_tail(since_epoch: float, lines: int = 25) -> list[str]:
    run(["journalctl", "--sync"], timeout=10)
    out = run(
        ["journalctl", "-u", L.unit, "--since", f"@{int(since_epoch)}", "-n", str(lines), "--no-pager", "-o",
         "short-iso"],
        timeout=15,
    ).stdout
    return [line for line in out.splitlines() if line.strip()][-lines:]


def health_problem(mode: str, code: int, body: Mapping[str, Any]) -> str:
    """Why /api/health does not pass the gate ('' when it does)."""
    if code != 200:
        why = "; ".join(body.get("reasons", [])) or str(body.get("status", ""))
        return f"/api/health {code or 'no answer'}: {why}"
    if body.get("mode") != mode:
        return f"/api/health mode {body.get('mode')} != configured {mode}"
    age = body.get("heartbeat_age_seconds")
    if age is None or float(age) > 10:
        return f"heartbeat not fresh ({age}s)"
    reconciliation = body.get("reconciliation") or {}
    if mode == "LIVE" and reconciliation.get("ok") is False:
        return f"reconciliation with the exchange failed: {reconciliation.get('issues')}"
    return ""


GATE_POLL_SECONDS = 0.05


def heartbeat_epoch(body: Mapping[str, Any], now: float) -> float | None:
    """When the engine last completed a tick, on this host's clock (from /api/health's heartbeat age)."""
    age = body.get("heartbeat_age_seconds")
    return None if age is None else now - float(age)


def health_gate(mode: str, soak: float, timeout: float) -> dict[str, Any]:
    """/api/health 200 + mode, /api/mode/current = mode, heartbeat fresh (the new process completed a tick and
    wrote its journal). With ``soak`` > 0, then: still healthy after ``soak`` seconds, the engine ticked again (a
    newer heartbeat) and the main process is the same. The endpoint is polled every 50 ms (no fixed sleep)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    first_ok: float | None = None
    first_beat: float | None = None
    pid = ""
    while time.monotonic() < deadline:
        code, body = http_json("/api/health")
        problem = health_problem(mode, code, body)
        if not problem and first_ok is None:
            mcode, mbody = http_json("/api/mode/current")
            if mcode != 200 or mbody.get("mode") != mode:
                problem = f"/api/mode/current {mcode}: {mbody.get('mode')} != {mode}"
        if problem:
            last = problem
            if first_ok is not None:
                raise Failure(f"health gate: {problem}")
            if unit_prop("ActiveState") == "failed":
                raise Failure(f"health gate: the unit failed ({unit_prop('Result')}); last: {problem}")
            time.sleep(GATE_POLL_SECONDS)
            continue
        beat = heartbeat_epoch(body, time.time())
        if first_ok is None:
            first_ok, first_beat, pid = time.monotonic(), beat, unit_prop("MainPID")
        if soak <= 0 or (time.monotonic() - first_ok >= soak and beat is not None and first_beat is not None
                         and beat > first_beat + 0.05):
            if soak > 0 and unit_prop("MainPID") != pid:
                raise Failure("health gate: the service restarted during the soak")
            return {"mode": mode, "release": body.get("release"), "trading_state": body.get("trading_state"),
                    "heartbeat_age_seconds": body.get("heartbeat_age_seconds"), "first_ok_monotonic": first_ok,
                    "soak_seconds": round(time.monotonic() - first_ok, 3)}
        time.sleep(GATE_POLL_SECONDS)
    raise Failure(f"health gate: not healthy within {timeout:g}s ({last})")


def switch_current(rid: str) -> None:
    """Atomic: a new symlink next to ``current``, renamed over it."""
    target = release_dir(rid)
    if not can_start(rid):
        raise Failure(f"release {rid} is not installed (no venv/bin/helios)", EXIT_REFUSED)
    tmp = L.base_dir / f".current.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, L.current_link)


def promote(rid: str) -> None:
    """The gate passed: new entries allowed for ``rid``, and it is the last good release."""
    write_text_atomic(L.promoted_file, rid + "\n")
    write_text_atomic(L.last_good_file, rid + "\n")
    with contextlib.suppress(FileNotFoundError):
        (L.releases_dir / rid / "BAD").unlink()


def unpromote() -> None:
    """Block new entries for whatever starts next (until promote)."""
    write_text_atomic(L.promoted_file, "none\n")


def helios_cli(rid: str | None = None) -> str:
    base = L.releases_dir / rid if rid else L.current_link
    return str(base / "venv" / "bin" / "helios")


def host_now() -> dict[str, Any]:
    """What the host runs now, read from the host."""
    code, body = http_json("/api/health", timeout=1.5)
    rid = current_release()
    return {
        "release": rid,
        "promoted": rid is not None and rid == promoted(),
        "last_good": last_good(),
        "mode": body.get("mode") or configured_mode(),
        "trading_state": body.get("trading_state") or ("unknown (service not answering)" if code == 0 else None),
        "unit": unit_prop("ActiveState"),
        "healthy": code == 200,
    }


def alert(message: str, detail: Mapping[str, Any]) -> None:
    run(["logger", "-p", "user.crit", "-t", "helios-deploy", message], timeout=10)
    helios = Path(helios_cli())
    if helios.is_file():
        service_cli(["alert", "--level=critical", f"--title={message}",
                     f"--detail-json={json.dumps(detail, default=str)}"], timeout=30)
    if L.alert_hook.is_file() and os.access(L.alert_hook, os.X_OK):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([str(L.alert_hook)], input=json.dumps({"message": message, **detail}, default=str),
                           text=True, timeout=20, check=False, capture_output=True)


# ----------------------------------------------------------------------------------------------------------------
# The deploy lock: held by a flow process; a lock whose process is gone is reported dead at once
# ----------------------------------------------------------------------------------------------------------------
def process_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_alive(owner: Mapping[str, Any]) -> bool:
    pid = owner.get("pid")
    return isinstance(pid, int) and pid > 0 and process_start_time(pid) == owner.get("pid_start")


def read_lock() -> dict[str, Any] | None:
    try:
        data = json.loads(L.lock_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"who": "unknown (unreadable lock file)", "at": "?", "epoch": 0.0}
    return data if isinstance(data, dict) else {"who": "unknown", "epoch": 0.0}


def acquire_lock(owner: Mapping[str, Any]) -> None:
    L.lock_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(L.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        held = read_lock() or {}
        raise Failure(lock_message(held, owner_alive(held), time.time()), EXIT_LOCKED, {"lock_owner": held}) from None
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(owner), handle)
        handle.write("\n")


def release_lock(flow_id: str) -> None:
    owner = read_lock()
    if owner is not None and owner.get("flow_id") == flow_id:
        L.lock_file.unlink(missing_ok=True)


def lock_status() -> dict[str, Any]:
    owner = read_lock()
    if owner is None:
        return {"held": False}
    alive = owner_alive(owner)
    return {"held": True, "alive": alive, "owner": owner, "message": lock_message(owner, alive, time.time())}


def break_lock(who: str, why: str) -> dict[str, Any]:
    owner = read_lock()
    if owner is None:
        return {"released": False, "note": "no lock was held"}
    L.lock_file.unlink(missing_ok=True)
    audit("lock_break", "ok", who, previous_owner=owner, previous_owner_alive=owner_alive(owner), why=why)
    return {"released": True, "forced": True, "previous_owner": owner}


# ----------------------------------------------------------------------------------------------------------------
# Flow records and the step context
# ----------------------------------------------------------------------------------------------------------------
def flow_path(flow_id: str) -> Path:
    if not is_flow_id(flow_id):
        raise Failure(f"not a flow id: {flow_id!r}", EXIT_REFUSED)
    return L.flow_dir / f"{flow_id}.json"


def read_flow(flow_id: str) -> dict[str, Any]:
    try:
        data = json.loads(flow_path(flow_id).read_text())
    except (OSError, ValueError):
        raise Failure(f"no flow record {flow_id}", EXIT_REFUSED) from None
    if not isinstance(data, dict):
        raise Failure(f"flow record {flow_id} is damaged", EXIT_FAILED)
    return data


def latest_flow_id() -> str | None:
    if not L.flow_dir.is_dir():
        return None
    ids = sorted(p.stem for p in L.flow_dir.glob("*.json") if is_flow_id(p.stem))
    return ids[-1] if ids else None


class Flow:
    """One running flow: its record (persisted at every step), steps, and the test-only pause points."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.id = str(record["flow_id"])
        self.name = str(record["flow"])
        self.who = str(record.get("who", "root"))
        self.detail: dict[str, Any] = record.setdefault("detail", {})

    def save(self) -> None:
        write_json_atomic(flow_path(self.id), self.record)

    def checkpoint(self, step: str) -> None:
        """A step boundary: record it, and wait while the test-only pause marker names it."""
        self.record["step"] = step
        self.save()
        while pause_requested(read_text(L.pause_file) or "", self.name, step):
            if self.record.get("paused_at") != step:
                self.record["paused_at"] = step
                self.save()
            time.sleep(0.05)
        if self.record.pop("paused_at", None) is not None:
            self.save()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.checkpoint(name)
        started = time.monotonic()
        entry: dict[str, Any] = {"step": name}
        try:
            yield
        except BaseException as exc:
            entry.update(ok=False, seconds=round(time.monotonic() - started, 3), error=str(exc))
            self.record.setdefault("steps", []).append(entry)
            self.save()
            say(f"step {name:<14} FAILED after {entry['seconds']:.2f}s: {exc}")
            raise
        entry.update(ok=True, seconds=round(time.monotonic() - started, 3))
        self.record.setdefault("steps", []).append(entry)
        self.save()
        say(f"step {name:<14} ok {entry['seconds']:6.2f}s")


@dataclass
class Outcome:
    """How a flow ended: the audit result, exit code and one line of what happened."""

    result: str
    code: int
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Backups
# ----------------------------------------------------------------------------------------------------------------
def parse_sums(text: str) -> dict[str, str]:
    """SHA256SUMS -> {name: digest}; a name that is not a plain file name of the backup (``../x``, ``/etc/x``,
    ``.hidden``, a newline) or a digest that is not 64 hex digits is refused."""
    files: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise Failure(f"malformed SHA256SUMS line {line!r}")
        digest, name = parts[0], parts[1].strip().removeprefix("*")
        if SHA256_RE.fullmatch(digest) is None:
            raise Failure(f"bad digest for {name!r} in SHA256SUMS")
        if BACKUP_FILE_RE.fullmatch(name) is None or name in files:
            raise Failure(f"bad file name {name!r} in SHA256SUMS")
        files[name] = digest
    return files


def verify_backup(path: Path) -> dict[str, Any]:
    if path.is_symlink() or not path.is_dir():
        raise Failure(f"backup {path.name}: not a directory")
    sums_file = path / "SHA256SUMS"
    try:
        files = parse_sums(read_bytes_safe(sums_file, 1 << 20).decode())
    except Failure as exc:
        raise Failure(f"backup {path.name}: {exc}") from None
    except UnicodeDecodeError:
        raise Failure(f"backup {path.name}: SHA256SUMS is not text") from None
    for name, digest in files.items():
        try:
            ok = sha256(path / name) == digest
        except Failure:
            ok = False
        if not ok:
            raise Failure(f"backup {path.name}: checksum mismatch for {name}")
    rows: dict[str, dict[str, int]] = {}
    expected = json.loads(read_bytes_safe(path / "rows.json")) if "rows.json" in files else {}
    for name in sorted(n for n in files if n.endswith(".sqlite")):
        report = inspect_journal_file(path / name)
        if report.get("integrity") != "ok":
            raise Failure(f"backup {path.name}: {name} integrity_check: {report.get('integrity')}")
        rows[name] = report["rows"]
        if name in expected and expected[name] != rows[name]:
            raise Failure(f"backup {path.name}: {name} row counts differ from the recorded ones")
    return {"backup": path.name, "verified": True, "files": files, "rows": rows,
            "release": read_text(path / "release")}


def make_backup(keep: int) -> dict[str, Any]:
    umask = os.umask(0o077)
    try:
        return _make_backup(keep)
    finally:
        os.umask(umask)


def _make_backup(keep: int) -> dict[str, Any]:
    L.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    while True:
        stamp = now_utc().strftime(TS_FORMAT)
        if not (L.backup_dir / stamp).exists():
            break
        time.sleep(0.1)
    partial = L.backup_dir / f".{stamp}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    rows: dict[str, dict[str, int]] = {}
    try:
        names = sorted(n for n in os.listdir(L.state_dir) if JOURNAL_NAME_RE.fullmatch(n))
        for name in names:  # read by the service user; root only writes the bytes into its own directory
            try:
                image = helper_as_service(["service-dump", name], None)
                write_exclusive(partial / name, image, 0o600)
                report = helper_as_service(["service-inspect"], image)
            except Failure as exc:
                raise Failure(f"{L.state_dir / name}: {exc}") from None
            rows[name] = json.loads(report)["rows"]
        if L.env_file.exists():
            write_exclusive(partial / "helios.env", read_bytes_safe(L.env_file, 1 << 20), 0o600)
        write_exclusive(partial / "release", ((current_release() or "none") + "\n").encode(), 0o600)
        write_exclusive(partial / "rows.json", (json.dumps(rows, sort_keys=True) + "\n").encode(), 0o600)
        sums = [f"{sha256(p)}  {p.name}" for p in sorted(partial.iterdir()) if p.is_file()]
        write_exclusive(partial / "SHA256SUMS", ("\n".join(sums) + "\n").encode(), 0o600)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.rename(partial, L.backup_dir / stamp)
    result = verify_backup(L.backup_dir / stamp)
    removed = []
    for old in backups_to_remove([p.name for p in L.backup_dir.iterdir() if p.is_dir()], keep):
        shutil.rmtree(L.backup_dir / old)
        removed.append(old)
    return {**result, "pruned": removed}


def list_backups() -> list[dict[str, Any]]:
    if not L.backup_dir.is_dir():
        return []
    out = []
    for path in sorted(L.backup_dir.iterdir()):
        if path.is_dir() and is_backup_id(path.name):
            out.append({"backup": path.name, "release": read_text(path / "release"),
                        "files": sorted(p.name for p in path.iterdir()),
                        "bytes": sum(p.stat().st_size for p in path.iterdir() if p.is_file())})
    return out


def restore_files(src: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """Service stopped. Journal(s) and env from a verified backup; checksums re-read after the copy."""
    owner = L.state_dir.lstat()
    if not stat.S_ISDIR(owner.st_mode):
        raise Failure(f"{L.state_dir} is not a directory")
    restored: dict[str, Any] = {}
    files: Mapping[str, str] = info["files"]
    for name in sorted(n for n in files if JOURNAL_NAME_RE.fullmatch(n)):
        data = read_bytes_safe(src / name)
        if hashlib.sha256(data).hexdigest() != files[name]:
            raise Failure(f"{name} checksum differs from the verified backup")
        for suffix in ("-wal", "-shm"):  # unlink never follows a link
            (L.state_dir / f"{name}{suffix}").unlink(missing_ok=True)
        # exclusive temp (a planted name makes it fail, never write through it), fchown on the open fd, rename
        write_exclusive(L.state_dir / name, data, 0o600, owner=(owner.st_uid, owner.st_gid))
        digest = sha256(L.state_dir / name)
        if digest != files[name]:
            raise Failure(f"{name} checksum differs after the copy")
        restored[name] = {"sha256": digest}
    fix_state_ownership()
    if "helios.env" in files:
        write_exclusive(L.env_file, read_bytes_safe(src / "helios.env", 1 << 20), 0o600, owner=(0, 0))
    return restored


# ----------------------------------------------------------------------------------------------------------------
# Releases
# ----------------------------------------------------------------------------------------------------------------
def list_releases() -> list[dict[str, Any]]:
    cur, good, bad = current_release(), last_good(), bad_releases()
    out = []
    for rid in reversed(all_releases()):
        m = manifest(rid)
        out.append({
            "release": rid, "current": rid == cur, "last_good": rid == good, "bad": rid in bad,
            "bad_reason": read_text(L.releases_dir / rid / "BAD") or "", "promoted": rid == promoted(),
            "git_sha": m.get("git_sha"), "version": m.get("version"), "schema_version": m.get("schema_version"),
            "deployed_at": m.get("deployed_at"), "deployed_by": m.get("deployed_by"), "dirty": m.get("dirty", False),
        })
    return out


def remove_half_built(keep_incoming: str | None = None) -> list[str]:
    """Leftovers of runs that died: release directories without release.json (never current), uploads of other
    runs, partial backups and wheelhouses."""
    removed: list[Path] = []
    cur = current_release()
    if L.releases_dir.is_dir():
        removed += [p for p in L.releases_dir.iterdir()
                    if p.is_dir() and is_release_id(p.name) and p.name != cur and not is_complete(p.name)]
    if L.incoming_dir.is_dir():
        removed += [p for p in L.incoming_dir.iterdir() if p.name != keep_incoming]
    for parent in (L.backup_dir, L.wheelhouse_dir):
        if parent.is_dir():
            removed += [p for p in parent.iterdir() if p.name.startswith(".") or p.name.endswith(".partial")]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return sorted(str(p) for p in removed)


def prune_releases(keep: int) -> dict[str, Any]:
    removed = []
    for rid in prune_plan(all_releases(), keep, current_release(), last_good(), bad_releases()):
        shutil.rmtree(L.releases_dir / rid)
        removed.append(rid)
    used = {str(manifest(r).get("deps_hash", "")) for r in all_releases()}
    wheelhouses = []
    if L.wheelhouse_dir.is_dir():
        for wh in L.wheelhouse_dir.iterdir():
            if wh.is_dir() and wh.name not in used and not wh.name.endswith(".partial"):
                shutil.rmtree(wh)
                wheelhouses.append(wh.name)
    return {"removed": removed, "removed_wheelhouses": wheelhouses}


def journal_readable(rid: str) -> tuple[bool, str]:
    """Can release ``rid`` read the journal of the configured mode?"""
    result = service_cli(["journal-info", "--json"], timeout=60, rid=rid)
    if result.returncode != 0:
        return False, last_line(result)
    journal = json_out(result).get("journals", {}).get(configured_mode())
    if journal is None or journal.get("readable_by_this_release", True):
        return True, "readable"
    return False, (f"journal schema v{journal['schema_version']} needs a reader >= v{journal['min_reader_version']}"
                   f"; release {rid} cannot read it")


def is_complete(rid: str) -> bool:
    """A release is installed once its release.json exists: the install writes it last."""
    return (L.releases_dir / rid / "release.json").is_file()


REQUIREMENT_LOCK_RE = re.compile(r"[a-z0-9][a-z0-9._-]*==[A-Za-z0-9.+!_-]+ --hash=sha256:[0-9a-f]{64}")


def requirements_lock(meta: Mapping[str, Any]) -> tuple[str, str]:
    """(all requirements, the helios wheel alone) as ``pip install --require-hashes`` files, from the manifest the
    operator's build wrote: every wheel pinned by version and sha256. A manifest without them is refused."""
    wheel, digest = str(meta.get("wheel", "")), str(meta.get("wheel_sha256", ""))
    parts = wheel.removesuffix(".whl").split("-")
    if not wheel.endswith(".whl") or len(parts) < 5 or re.fullmatch(r"[0-9a-f]{64}", digest) is None:
        raise Failure("the release manifest has no sha256 for its wheel (built without a hash lock): rebuild it",
                      EXIT_REFUSED)
    own = f"{parts[0].replace('_', '-').lower()}=={parts[1]} --hash=sha256:{digest}"
    deps = meta.get("requirements")
    if not isinstance(deps, list) or not all(REQUIREMENT_LOCK_RE.fullmatch(str(x)) for x in deps):
        raise Failure("the release manifest has no hash-locked requirements: rebuild it", EXIT_REFUSED)
    return "\n".join([own, *map(str, deps)]) + "\n", own + "\n"


def install_release(rid: str, incoming: Path, python: str, who: str) -> dict[str, Any]:
    """Offline virtualenv from the uploaded wheel and the host's wheelhouse, built in place (scripts carry absolute
    shebangs); release.json is written last, so a run that dies leaves a directory without it, which the next run
    removes (``remove_half_built``)."""
    meta = json.loads((incoming / "release.json").read_text())
    wheel = incoming / str(meta["wheel"])
    wheelhouse = L.wheelhouse_dir / str(meta["deps_hash"])
    if not (wheelhouse / ".complete").is_file():
        raise Failure(f"wheelhouse {wheelhouse.name} is not on the host (upload it first)", EXIT_REFUSED)
    final = release_dir(rid)
    if is_complete(rid):
        raise Failure(f"release {rid} is already installed on this host (release ids are unique per build: "
                      "build again)", EXIT_REFUSED)
    all_lock, own_lock = requirements_lock(meta)
    shutil.rmtree(final, ignore_errors=True)
    (final / "wheels").mkdir(parents=True)
    shutil.copy2(wheel, final / "wheels" / wheel.name)
    (final / "requirements.lock").write_text(all_lock)
    (final / "wheel.lock").write_text(own_lock)
    pip_locked = ["--no-index", "--require-hashes", "--no-cache-dir", "--disable-pip-version-check", "--quiet",
                  "--find-links", str(final / "wheels")]
    donor = venv_donor(str(meta["deps_hash"]))
    how = "new virtualenv"
    if donor is not None:
        try:
            clone_venv(L.releases_dir / donor / "venv", final / "venv")
            run([str(final / "venv" / "bin" / "pip"), "install", *pip_locked, "--no-deps", "--force-reinstall",
                 "-r", str(final / "wheel.lock")], timeout=300, check=True)
            how = f"virtualenv cloned from {donor} (same dependencies)"
        except (Failure, OSError) as exc:
            say(f"cloning the virtualenv of {donor} failed ({exc}); building a new one")
            shutil.rmtree(final / "venv", ignore_errors=True)
            donor = None
    if donor is None:
        run([python, "-m", "venv", str(final / "venv")], timeout=180, check=True)
        run([str(final / "venv" / "bin" / "pip"), "install", *pip_locked, "--find-links", str(wheelhouse),
             "-r", str(final / "requirements.lock")], timeout=600, check=True)
    write_json_atomic(final / "release.json", {**meta, "release": rid, "deployed_at": iso(), "deployed_by": who},
                      mode=0o644)
    return {"release": rid, "deps_hash": meta["deps_hash"], "venv": how}


def venv_donor(deps_hash: str) -> str | None:
    """The newest installed, not-BAD release whose dependencies are the same (its venv can be cloned)."""
    bad = bad_releases()
    for rid in reversed(all_releases()):
        if rid not in bad and can_start(rid) and str(manifest(rid).get("deps_hash", "")) == deps_hash:
            return rid
    return None


def clone_venv(src: Path, dst: Path) -> None:
    """Copy a virtualenv and point its scripts' shebangs (absolute paths) at the copy."""
    shutil.copytree(src, dst, symlinks=True)
    old, new = str(src).encode(), str(dst).encode()
    for script in (dst / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            head, _, rest = data.partition(b"\n")
            if head.startswith(b"#!") and old in head:
                script.write_bytes(head.replace(old, new) + b"\n" + rest)


# ----------------------------------------------------------------------------------------------------------------
# The flows: one function each. A flow raises Failure for "nothing changed / put back as it was", or returns an
# Outcome. The runner (run_flow) takes the lock, writes the one audit line and releases the lock.
# ----------------------------------------------------------------------------------------------------------------
def activate(flow: Flow, rid: str, mode: str, soak: float, timeout: float) -> Outcome:
    """stop -> switch -> start (entries blocked) -> gate -> promote; after a failure past the switch: back to the
    previous release (also gated and promoted) and ``rid`` marked BAD."""
    previous = current_release()
    t_stop = time.monotonic()
    switched = False
    started_epoch = time.time()
    try:
        with flow.step("stop"):
            unpromote()
            stop_service()
        with flow.step("switch"):
            switch_current(rid)
            switched = True
        started_epoch = time.time()
        with flow.step("start"):
            start_service()
        with flow.step("gate"):
            flow.detail["health"] = health_gate(mode, soak, timeout)
            flow.detail["no_engine_seconds"] = round(float(flow.detail["health"]["first_ok_monotonic"]) - t_stop, 3)
        with flow.step("promote"):
            promote(rid)
    except Failure as exc:
        flow.detail["error"] = str(exc)
        if not switched:
            with contextlib.suppress(Failure):
                start_service()
                health_gate(mode, 0, timeout)
                if previous:
                    promote(previous)
            raise Failure(f"failed before the switch: {exc}; the old release was restarted") from None
        flow.detail["journal_tail"] = journal_tail(started_epoch)
        mark_bad(rid, f"{flow.name} failed: {exc}")
        try:
            if previous is None or not can_start(previous):
                raise Failure("there is no previous release to go back to")
            with flow.step("back: stop"):
                stop_service()
            with flow.step("back: switch"):
                switch_current(previous)
            with flow.step("back: start"):
                start_service()
            with flow.step("back: gate"):
                health_gate(mode, 0, timeout)
                promote(previous)
        except Failure as exc2:
            alert(f"helios {flow.name} of {rid} failed AND going back to {previous} failed: {exc2}", flow.detail)
            return Outcome("rollback_failed", EXIT_FAILED,
                           f"{rid} failed ({exc}) and going back to {previous} failed too ({exc2}): ACT NOW")
        alert(f"helios {flow.name} of {rid} failed ({exc}); back on {previous}, healthy", flow.detail)
        return Outcome("rolled_back", EXIT_ROLLED_BACK,
                       f"{rid} failed after the switch ({exc}); rolled back to {previous} (healthy); {rid} marked BAD")
    return Outcome("ok", EXIT_OK, f"{rid} is live, healthy and promoted (no engine for "
                                  f"{flow.detail['no_engine_seconds']}s)")


def flow_deploy(flow: Flow, args: argparse.Namespace) -> Outcome:
    """clean -> backup -> install -> check-config -> stop -> switch -> start -> gate -> promote -> prune."""
    rid = str(args.release)
    release_dir(rid)
    incoming = L.incoming_dir / flow.id  # keyed by flow: two builds with one release id never share an upload
    flow.detail.update(release=rid, previous=current_release())
    with flow.step("clean"):
        flow.detail["removed_half_built"] = remove_half_built(keep_incoming=flow.id)
    if not (incoming / "release.json").is_file():
        raise Failure(f"release {rid} was not uploaded to {incoming}", EXIT_REFUSED)
    try:
        with flow.step("backup"):
            flow.detail["backup"] = make_backup(L.keep_backups)["backup"]
        with flow.step("install"):
            flow.detail["install"] = install_release(rid, incoming, args.python, flow.who)
        with flow.step("check-config"):
            result = service_cli(["check-config", "--json"], timeout=120, rid=rid)
            if result.returncode != 0:
                raise Failure(f"helios check-config of {rid} rejected the host's env: {last_line(result)}")
    except (Failure, OSError, sqlite3.Error, ValueError, KeyError) as exc:
        if isinstance(exc, Failure) and exc.code == EXIT_REFUSED:
            raise
        if rid != current_release():
            shutil.rmtree(release_dir(rid), ignore_errors=True)
        raise Failure(f"failed before the switch: {exc}; the old release kept running, untouched") from None
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    outcome = activate(flow, rid, configured_mode(), args.soak, args.timeout)
    with flow.step("prune"):
        flow.detail["prune"] = prune_releases(args.keep)
    return outcome


def flow_rollback(flow: Flow, args: argparse.Namespace) -> Outcome:
    """target -> (backup) -> stop -> (restore) -> switch -> start -> gate -> promote. A target that cannot start is
    marked BAD."""
    cur = current_release()
    flow.detail["previous"] = cur
    with flow.step("target"):
        remove_half_built()
        if args.to:
            target = str(args.to)
            if not release_dir(target).is_dir():
                raise Failure(f"no release {target} on this host (see `invoke releases`)", EXIT_REFUSED)
            if target == cur:
                raise Failure(f"{target} is already current", EXIT_REFUSED)
        else:
            found = pick_previous(all_releases(), cur, bad_releases())
            if found is None:
                raise Failure(f"no good release older than {cur} to roll back to", EXIT_REFUSED)
            target = found
        flow.detail["release"] = target
        if not can_start(target):
            mark_bad(target, "rollback target cannot start: no venv/bin/helios")
            raise Failure(f"rollback target {target} cannot start (no venv/bin/helios): marked BAD; run rollback "
                          "again for the next good release", EXIT_REFUSED)
        if args.restore_backup is None:
            ok, why = journal_readable(target)
            if not ok:
                raise Failure(f"refusing to roll back to {target}: {why}; pass --restore-backup TS to restore a "
                              "backup that release can read", EXIT_REFUSED)
    if args.restore_backup:
        return flow_restore_into(flow, str(args.restore_backup), target, args.soak, args.timeout)
    return activate(flow, target, configured_mode(), args.soak, args.timeout)


def trading_state_now() -> str | None:
    _code, body = http_json("/api/health", timeout=2)
    state = body.get("trading_state")
    return str(state) if state else None


def flow_restore_into(flow: Flow, ts: str, target: str | None, soak: float, timeout: float) -> Outcome:
    """verify -> safety backup -> stop -> restore -> keep-halt -> (switch) -> start -> gate. A restore never changes
    the trading state: a HALTED host is halted again in the restored journal before anything starts. A failure
    puts the safety backup back and starts the service as it was."""
    if not is_backup_id(ts):
        raise Failure(f"not a backup timestamp: {ts!r} (expected YYYYmmddTHHMMSSZ)", EXIT_REFUSED)
    src = L.backup_dir / ts
    if not src.is_dir():
        raise Failure(f"no backup {ts} on this host (see `invoke backups`)", EXIT_REFUSED)
    flow.detail["backup"] = ts
    with flow.step("verify"):
        try:
            info = verify_backup(src)
        except Failure as exc:
            raise Failure(f"{exc} (the backup is damaged; nothing was stopped)", EXIT_REFUSED) from None
    before_state = trading_state_now()
    flow.detail["trading_state_before"] = before_state
    with flow.step("safety-backup"):
        safety = make_backup(L.keep_backups + 1)["backup"]
        flow.detail["safety_backup"] = safety
    previous = current_release()
    mode_before = configured_mode()
    try:
        with flow.step("stop"):
            stop_service()
        with flow.step("restore"):
            flow.detail["restored"] = restore_files(src, info)
        with flow.step("keep-halt"):
            if before_state == "HALTED":
                halt_direct(flow, f"restore of {ts}: the host was HALTED before it; the emergency stop stays")
        if target is not None:
            outcome = activate(flow, target, configured_mode(), soak, timeout)
            return outcome
        with flow.step("start"):
            start_service()
        with flow.step("gate"):
            flow.detail["health"] = health_gate(configured_mode(), soak, timeout)
    except Failure as exc:
        with contextlib.suppress(Failure, OSError):
            stop_service()
            restore_files(L.backup_dir / safety, verify_backup(L.backup_dir / safety))
            if previous and current_release() != previous:
                switch_current(previous)
            start_service()
            health_gate(mode_before, 0, timeout)
        raise Failure(f"restore of {ts} failed ({exc}); put back the pre-restore state ({safety})") from None
    return Outcome("ok", EXIT_OK, f"restored backup {ts} (checksums verified; pre-restore backup {safety})")


def flow_restore(flow: Flow, args: argparse.Namespace) -> Outcome:
    return flow_restore_into(flow, str(args.backup), None, args.soak, args.timeout)


def halt_direct(flow: Flow, reason: str) -> None:
    """Service stopped: HALTED written to the journal (and open entry orders cancelled) by the current release."""
    result = service_cli(["emergency-stop", "--direct", "--json", f"--reason={reason}", f"--actor={flow.who}"],
                         timeout=60)
    if not json_out(result):
        raise Failure(f"could not re-apply the emergency stop: {last_line(result)}")


def flow_backup(flow: Flow, args: argparse.Namespace) -> Outcome:
    with flow.step("backup"):
        data = make_backup(args.keep)
    flow.detail.update(backup=data["backup"], release=data["release"])
    return Outcome("ok", EXIT_OK, f"backup {data['backup']} verified (release {data['release']})")


def flow_estop(flow: Flow, args: argparse.Namespace) -> Outcome:
    """Through the service's API; if it does not confirm, straight to the exchange and journal, then stop the unit.
    Never waits for the deploy lock."""
    started = time.monotonic()
    reason, who = str(args.reason), flow.who
    cancel_protective = bool(getattr(args, "cancel_protective", False))
    with flow.step("api"):
        code, data = api_post("/api/emergency-stop", {"reason": reason, "actor": who[:100],
                                                      "cancel_protective": cancel_protective}, timeout=40)
    path = "api"
    if code != 200 or not data:
        path = "direct"
        data = {}
        flow.detail["api_error"] = f"/api/emergency-stop answered {code or 'nothing'}"
        with flow.step("direct"):
            direct = service_cli(["emergency-stop", "--direct", "--json", f"--reason={reason}", f"--actor={who}",
                                  *(["--cancel-protective"] if cancel_protective else [])], timeout=60)
            data = json_out(direct)
            run(["systemctl", "stop", L.unit], timeout=60)
        if not data:
            raise Failure(f"emergency stop FAILED on both paths (api: {flow.detail['api_error']}; direct: "
                          f"{last_line(direct)}); unit stopped")
    report = {
        "path": path, "trading_state": data.get("trading_state"), "orders_cancelled": data.get("orders_cancelled"),
        "open_orders_remaining": data.get("open_orders_remaining"),
        "zero_open_orders_confirmed": bool(data.get("zero_open_orders_confirmed")),
        "open_positions": data.get("open_positions", []), "unit_stopped": path == "direct",
        "protective_exits_left": data.get("protective_exits_left", []),
        "cancel_protective": bool(data.get("cancel_protective", cancel_protective)),
        "seconds": round(time.monotonic() - started, 3),
    }
    flow.detail.update(report)
    if not report["zero_open_orders_confirmed"]:
        return Outcome("incomplete", EXIT_FAILED, f"{report['trading_state']} via {path}, but open orders remaining "
                                                  f"{report['open_orders_remaining']} (NOT confirmed zero)")
    return Outcome("ok", EXIT_OK, f"{report['trading_state']} via {path}; orders cancelled "
                                  f"{report['orders_cancelled']}, zero open orders confirmed; "
                                  f"{protective_line(report)}")


def flow_resume(flow: Flow, args: argparse.Namespace) -> Outcome:
    reason, who = str(args.reason), flow.who
    with flow.step("resume"):
        result = service_cli(["resume", "--json", f"--reason={reason}", f"--actor={who}"], timeout=30)
        path = "api"
        if result.returncode != 0 and unit_prop("ActiveState") != "active":
            path = "direct"
            refuse_planted_state_lock()
            result = service_cli(["resume", "--direct", "--json", f"--reason={reason}", f"--actor={who}"],
                                 timeout=30)
    if result.returncode != 0:
        raise Failure(f"resume failed: {last_line(result)}")
    if path == "direct":
        with flow.step("start"):
            start_service()
            health_gate(configured_mode(), 0, args.timeout)
    data = json_out(result)
    flow.detail.update(path=path, previous=data.get("previous"), trading_state=data.get("trading_state"))
    return Outcome("ok", EXIT_OK, f"{data.get('previous')} -> {data.get('trading_state')} (via {path})")


def flow_mode(flow: Flow, args: argparse.Namespace) -> Outcome:
    """read -> (LIVE->PAPER: estop) -> candidate -> (LIVE: audit, confirmation) -> write -> restart -> gate; a mode
    that does not come up puts the previous env file back and restarts in it."""
    mode = str(args.mode)
    before = configured_mode()
    old = env_text()
    new = rewrite_mode(old, mode)
    flow.detail.update({"from": before, "to": mode, "diff": masked_diff(old, new)})
    if mode == "PAPER" and before == "LIVE":
        with flow.step("estop"):
            result = service_cli(["emergency-stop", "--json", "--reason=switching to PAPER", f"--actor={flow.who}"],
                                 timeout=30)
            flow.detail["emergency_stop"] = json_out(result)
    if mode == "LIVE":
        with flow.step("audit"):
            result = service_cli(["audit"], timeout=120, env_text_override=new)
            flow.detail["audit"] = (result.stdout + result.stderr).splitlines()[-40:]
            if result.returncode != 0:
                fails = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("FAIL")]
                raise Failure(f"to-live refused: helios audit failed ({'; '.join(fails) or last_line(result)})",
                              EXIT_REFUSED)
        if args.preflight:
            return Outcome("ok", EXIT_OK, "to-live preflight passed (nothing changed)")
        if not args.confirmed:
            raise Failure("to-live refused: not confirmed by the operator", EXIT_REFUSED)
    if old == new:
        with flow.step("gate"):
            flow.detail["health"] = health_gate(mode, 0, args.timeout)
        return Outcome("ok", EXIT_OK, f"already {mode}; nothing changed")
    backup = L.env_file.with_name(f"{L.env_file.name}.{now_utc().strftime(TS_FORMAT)}.bak")
    try:
        with flow.step("write"):
            write_exclusive(backup, old.encode(), 0o600, owner=(0, 0))
            write_text_atomic(L.env_file, new, mode=0o600)
            flow.detail["previous_file"] = str(backup)
            for name in env_backups_to_remove(os.listdir(L.env_file.parent), L.keep_env_backups):
                (L.env_file.parent / name).unlink(missing_ok=True)
        with flow.step("restart"):
            stop_service()
            start_service()
        with flow.step("gate"):
            flow.detail["health"] = health_gate(mode, args.soak, args.timeout)
    except Failure as exc:
        with contextlib.suppress(Failure, OSError):
            write_text_atomic(L.env_file, old, mode=0o600)
            stop_service()
            start_service()
            health_gate(before, 0, args.timeout)
        raise Failure(f"switch to {mode} failed ({exc}); the previous env file ({before}) is back") from None
    stop = flow.detail.get("emergency_stop") or {}
    left = ""
    if stop:
        positions = ", ".join(f"{p.get('pair')} {p.get('quantity')}" for p in stop.get("open_positions", [])) or "none"
        left = (f"; LIVE emergency stop: {stop.get('orders_cancelled')} order(s) cancelled, "
                f"{stop.get('open_orders_remaining')} open order(s) remaining; positions still open: {positions}; "
                f"{protective_line(stop)}")
    return Outcome("ok", EXIT_OK, f"now {mode} (was {before}){left}")


@dataclass(frozen=True)
class FlowSpec:
    run: Callable[[Flow, argparse.Namespace], Outcome]
    event: str
    takes_lock: bool
    add_args: Callable[[argparse.ArgumentParser], None]
    #: run in a process forked from the helper and detached from SSH at once (its own session, SIGHUP ignored,
    #: stdio on /dev/null, re-parented to init) instead of a systemd unit: the emergency stop and resume, whose
    #: cancel must start at once (systemd-run + a new interpreter cost more than the stop itself)
    forked: bool = False


def _args_deploy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--release", required=True)
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--soak", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--keep", type=int, default=L.keep_releases)


def _args_rollback(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", default=None)
    p.add_argument("--restore-backup", default=None)
    p.add_argument("--soak", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=60.0)


def _args_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", required=True, choices=["PAPER", "LIVE"])
    p.add_argument("--preflight", action="store_true")
    p.add_argument("--confirmed", action="store_true")
    p.add_argument("--soak", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=60.0)


def _args_restore(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backup", required=True)
    p.add_argument("--soak", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=60.0)


def _args_backup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep", type=int, default=L.keep_backups)


OPERATOR_TEXT_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{0,500}")


def operator_text(value: str) -> str:
    """argparse type of every operator string (reason, who, why): data, <= 500 characters, no control characters."""
    if OPERATOR_TEXT_RE.fullmatch(value) is None:
        raise argparse.ArgumentTypeError("at most 500 characters and no control characters")
    return value


def _args_reason(required: bool) -> Callable[[argparse.ArgumentParser], None]:
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reason", type=operator_text, required=required,
                       default=None if required else "emergency stop")
        p.add_argument("--timeout", type=float, default=60.0)

    return add


def _args_estop(p: argparse.ArgumentParser) -> None:
    _args_reason(required=False)(p)
    p.add_argument("--cancel-protective", action="store_true",
                   help="also cancel the protective stop-loss exits held on the exchange (default: leave them)")


def protective_line(stop: dict[str, Any]) -> str:
    """What the operator must know after a stop: exchange-held exits still protect the open positions (or not)."""
    left = stop.get("protective_exits_left") or []
    if stop.get("cancel_protective"):
        return "protective exits cancelled too"
    return (f"{len(left)} protective exit(s) left working on the exchange (they can only sell what a position holds)"
            if left else "no protective exit on the exchange")


#: The dispatch table: flow name -> its one function, audit event and arguments.
FLOWS: dict[str, FlowSpec] = {
    "deploy": FlowSpec(flow_deploy, "deploy", True, _args_deploy),
    "rollback": FlowSpec(flow_rollback, "rollback", True, _args_rollback),
    "mode": FlowSpec(flow_mode, "mode_switch", True, _args_mode),
    "restore": FlowSpec(flow_restore, "restore", True, _args_restore),
    "backup": FlowSpec(flow_backup, "backup", True, _args_backup),
    "estop": FlowSpec(flow_estop, "emergency_stop", False, _args_estop, forked=True),
    "resume": FlowSpec(flow_resume, "resume", False, _args_reason(required=True), forked=True),
}

#: Each flow's steps, as ``--check`` prints them (the names are the pause points the tests use).
FLOW_STEPS: dict[str, tuple[tuple[str, str], ...]] = {
    "deploy": (
        ("lock", "take the deploy lock (refused and audited when held; a dead holder is named as dead)"),
        ("clean", "remove half-built releases and uploads left by runs that died"),
        ("backup", "verified backup: journals (SQLite online backup), env file, release id, SHA256SUMS"),
        ("install", "offline virtualenv of the uploaded wheel (pip --no-index, the host's wheelhouse)"),
        ("check-config", "helios check-config of the new release against the host's env (old one still running)"),
        ("stop", "block new entries for what starts next, stop the old service (process and state lock gone)"),
        ("switch", "switch current atomically (symlink + rename)"),
        ("start", "start helios.service: the new release runs with new entries blocked"),
        ("gate", "health gate: /api/health ok, mode, heartbeat fresh; soak: --soak seconds and one more engine tick"),
        ("promote", "promote: new entries allowed, last good = the new release"),
        ("prune", "prune releases (keep the newest good ones; BAD ones do not count)"),
        ("audit", "one audit line, the lock released, whatever happened"),
    ),
    "rollback": (
        ("lock", "take the deploy lock"),
        ("target", "previous good release (or --to); a target that cannot start is marked BAD"),
        ("stop", "block new entries, stop the service"),
        ("switch", "switch current"),
        ("start", "start, new entries blocked"),
        ("gate", "health gate"),
        ("promote", "promote"),
        ("audit", "one audit line, the lock released"),
    ),
    "mode": (
        ("lock", "take the deploy lock"),
        ("estop", "LIVE -> PAPER: emergency stop first"),
        ("audit", "-> LIVE: helios audit of the candidate env; refused unless it passes and the host is confirmed"),
        ("write", "change only TRADING_MODE and ENABLE_PAPER_TRADING (previous file kept)"),
        ("restart", "restart the service"),
        ("gate", "health gate in the new mode (failure: the previous env file goes back)"),
    ),
    "restore": (
        ("lock", "take the deploy lock"),
        ("verify", "verify the backup's checksums and row counts (nothing stopped yet)"),
        ("safety-backup", "a verified backup of the state now"),
        ("stop", "stop the service"),
        ("restore", "journals and env from the backup, checksums re-read"),
        ("keep-halt", "a HALTED host stays HALTED (the halt is written again into the restored journal)"),
        ("start", "start the service"),
        ("gate", "health gate (failure: the safety backup goes back, the service restarts as it was)"),
    ),
    "backup": (("backup", "verified backup"),),
    "estop": (("api", "emergency stop through the local API"),
              ("direct", "if the API did not confirm: straight to the exchange and journal, unit stopped")),
    "resume": (("resume", "authenticated resume (direct when the service is down)"),),
}


# ----------------------------------------------------------------------------------------------------------------
# Runner: start (operator side), run (the detached unit), follow (reattach), boot-check
# ----------------------------------------------------------------------------------------------------------------
def flow_parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"helios-deployctl start {name}")
    FLOWS[name].add_args(p)
    return p


def run_flow(flow_id: str) -> int:
    """What ``helios-flow-<id>`` runs: lock, the flow, one audit line, unlock -- whatever happens."""
    os.umask(0o022)  # releases are world-readable; secrets and backups set their own modes
    record = read_flow(flow_id)
    flow = Flow(record)
    spec = FLOWS[flow.name]
    args = flow_parser(flow.name).parse_args(record["argv"])
    me = os.getpid()
    record.update(state="running", pid=me, pid_start=process_start_time(me))
    flow.save()
    locked = False
    outcome: Outcome
    try:
        if spec.takes_lock:
            flow.checkpoint("lock")
            acquire_lock({"flow_id": flow.id, "flow": flow.name, "pid": me, "pid_start": record["pid_start"],
                          "who": flow.who, "what": f"{flow.name} {' '.join(record['argv'])}".strip(),
                          "why": record.get("why", ""), "at": iso(), "epoch": time.time()})
            locked = True
        outcome = spec.run(flow, args)
    except Failure as exc:
        result = {EXIT_LOCKED: "locked", EXIT_REFUSED: "refused"}.get(exc.code, "failed")
        flow.detail.update(exc.detail)
        outcome = Outcome(result, exc.code, str(exc) + ("; nothing was changed" if result != "failed" else ""))
    except Exception as exc:  # a bug must still end in an audit line and a free lock
        outcome = Outcome("failed", EXIT_FAILED, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if locked:
            release_lock(flow.id)
    try:
        flow.checkpoint("audit")
        audit(spec.event, outcome.result, flow.who, flow_id=flow.id, reason=record.get("why", ""),
              message=outcome.message,
              **{k: v for k, v in flow.detail.items() if k not in ("journal_tail", "audit", "health")})
    finally:
        record.update(state=outcome.result if outcome.result in FINAL_STATES else "failed", code=outcome.code,
                      result=outcome.result, message=outcome.message, ended_at=iso(), host_now=host_now(),
                      ended_epoch=time.time())
        flow.save()
        prune_flow_records()
    return outcome.code


def prune_flow_records() -> None:
    ids = sorted(p.stem for p in L.flow_dir.glob("*.json") if is_flow_id(p.stem))
    for old in ids[: max(0, len(ids) - L.keep_flows)]:
        (L.flow_dir / f"{old}.json").unlink(missing_ok=True)


def flow_process_alive(record: Mapping[str, Any], starter: Mapping[str, Any] | None = None) -> bool:
    """``starter``: the pid (and start time) of a forked flow process, known before it has written its record."""
    if record.get("state") == "starting":
        if starter is not None:
            return owner_alive(starter)
        unit = f"{L.flow_unit_prefix}{record.get('flow_id')}.service"
        return unit_prop("ActiveState", unit) in ("active", "activating")
    return owner_alive(record)


#: a flow record's own "host now" (read by the flow as it ended) is used when it is at most this old
HOST_NOW_FRESH_SECONDS = 2.0


def follow(flow_id: str, starter: Mapping[str, Any] | None = None) -> int:
    """Print the flow's steps as they happen and its outcome; a flow whose process died is reported as such."""
    printed = 0
    began = time.monotonic()
    while True:
        record = read_flow(flow_id)
        steps = record.get("steps", [])
        for entry in steps[printed:]:
            say(f"step {entry['step']:<14} {'ok' if entry.get('ok') else 'FAILED'} {entry.get('seconds', 0):6.2f}s"
                + ("" if entry.get("ok") else f": {entry.get('error')}"))
        printed = len(steps)
        if record.get("state") in FINAL_STATES:
            break
        if not flow_process_alive(record, starter):
            time.sleep(0.2)  # the final write may be racing the check
            record = read_flow(flow_id)
            if record.get("state") not in FINAL_STATES:
                record.update(state="interrupted", code=EXIT_FAILED,
                              message=f"the flow process died at step '{record.get('step')}'")
                break
        time.sleep(0.01 if time.monotonic() - began < 2 else 0.05)  # a stop's answer is read at once
    fresh = time.time() - float(record.get("ended_epoch") or 0) <= HOST_NOW_FRESH_SECONDS
    now = record["host_now"] if fresh and isinstance(record.get("host_now"), dict) else host_now()
    code = int(record.get("code", EXIT_FAILED))
    print(json.dumps({"ok": code == EXIT_OK, "code": code, "flow_id": flow_id, "flow": record.get("flow"),
                      "state": record.get("state"), "step": record.get("step"), "message": record.get("message"),
                      "detail": record.get("detail", {}), "host_now": now,
                      "line": final_line(record, now)}, default=str))
    return code


def start(name: str, argv: Sequence[str], who: str, why: str, detach: bool, flow_id: str | None = None) -> int:
    """Validate, write the flow record, run the flow as a transient unit, follow it. The operator may choose the
    flow id (to reattach by id after a dropped link); an id that exists is followed, never started twice."""
    flow_parser(name).parse_args(list(argv))  # bad input: one line, exit 2, nothing started
    if flow_id and flow_path(flow_id).exists():
        say(f"flow {flow_id} exists already: following it")
        return follow(flow_id)
    flow_id = flow_id or new_flow_id(now_utc(), secrets.token_hex(4))
    record: dict[str, Any] = {"flow_id": flow_id, "flow": name, "argv": list(argv), "who": who, "why": why,
                              "state": "starting", "started_at": iso(), "started_epoch": time.time(), "steps": [],
                              "detail": {}}
    write_json_atomic(flow_path(flow_id), record)
    if FLOWS[name].forked:
        pid = fork_detached(flow_id)
        return follow(flow_id, starter={"pid": pid, "pid_start": process_start_time(pid)})
    unit = f"{L.flow_unit_prefix}{flow_id}"
    result = run(["systemd-run", "--unit", unit, "--collect", "--quiet", "--description",
                  f"helios {name} flow {flow_id}", "--property", "KillMode=mixed", sys.executable, str(L.helper),
                  "run", flow_id], timeout=30)
    if result.returncode != 0:
        record.update(state="failed", code=EXIT_FAILED, message=f"could not start the flow unit: {last_line(result)}")
        write_json_atomic(flow_path(flow_id), record)
        audit(FLOWS[name].event, "failed", who, flow_id=flow_id, message=record["message"])
    if detach:
        print(json.dumps({"ok": True, "flow_id": flow_id, "unit": unit}))
        return EXIT_OK
    say(f"flow {flow_id} ({name}) runs on the host as {unit}; reattach: helios-deployctl follow {flow_id}")
    return follow(flow_id)


def fork_detached(flow_id: str) -> int:
    """Run the flow in a grandchild detached from this SSH session (double fork: its own session, SIGHUP ignored,
    stdio on /dev/null, re-parented to init, so no zombie stays 'alive'); return the grandchild's pid at once."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover -- runs in the forked processes
        code = EXIT_FAILED
        try:
            os.close(read_end)
            os.setsid()
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            if os.fork() != 0:
                os._exit(0)
            os.write(write_end, str(os.getpid()).encode())
            os.close(write_end)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            code = run_flow(flow_id)
        finally:
            os._exit(code)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    if not text.isdigit():
        raise Failure(f"could not start the {flow_id} flow process")
    return int(text)


def boot_check() -> dict[str, Any]:
    """ExecStartPre of helios.service (as root): a release that never passed its gate, with no live flow to finish
    it, goes back to the last good one before anything trades; the interrupted flow is closed (audit, lock)."""
    owner = read_lock()
    alive = owner is not None and owner_alive(owner)
    cur, good = current_release(), last_good()
    target = boot_recovery_plan(cur, good, promoted(), alive)
    report: dict[str, Any] = {"current": cur, "last_good": good, "action": "none"}
    if target is not None and can_start(target):
        if target != cur:
            if cur is not None:
                mark_bad(cur, "the host restarted before its gate passed")
            switch_current(target)
            report["action"] = f"switched back to {target}"
        else:
            report["action"] = f"promoted {target} again"
        write_text_atomic(L.promoted_file, target + "\n")
    if owner is not None and not alive:
        flow_id = str(owner.get("flow_id", ""))
        record: dict[str, Any] = {}
        with contextlib.suppress(Failure):
            record = read_flow(flow_id)
        if record and record.get("state") not in FINAL_STATES:
            message = (f"interrupted at step '{record.get('step')}' (host restarted); "
                       + (f"back on the last good release {target}" if target else f"running {cur}"))
            spec = FLOWS.get(str(record.get("flow")))
            audit(spec.event if spec else "flow", "interrupted", str(record.get("who", "?")), flow_id=flow_id,
                  message=message, release=cur)
            record.update(state="interrupted", code=EXIT_FAILED, result="interrupted", message=message,
                          ended_at=iso())
            write_json_atomic(flow_path(flow_id), record)
            release_lock(flow_id)
            report["closed_flow"] = flow_id
    return report


def first_release(rid: str, upload: str, python: str, who: str) -> dict[str, Any]:
    """Provisioning: a host without a release gets this one, current and promoted (the service is not running)."""
    if current_release() is not None:
        return {"installed": False, "current": current_release()}
    if not is_flow_id(upload):
        raise Failure(f"not an upload id: {upload!r}", EXIT_REFUSED)
    remove_half_built(keep_incoming=upload)
    try:
        install_release(rid, L.incoming_dir / upload, python, who)
    finally:
        shutil.rmtree(L.incoming_dir / upload, ignore_errors=True)
    switch_current(rid)
    promote(rid)
    return {"installed": True, "current": rid}


# ----------------------------------------------------------------------------------------------------------------
# The operator's upload, over the SSH stream that then starts and follows the deploy flow
# ----------------------------------------------------------------------------------------------------------------
UPLOAD_WHEEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}\.whl")
DEPS_HASH_RE = re.compile(r"[0-9a-f]{16}")
UPLOAD_MAX_FILE = 256 << 20  # one wheel
UPLOAD_MAX_TOTAL = 1 << 30  # the whole stream (wheel + manifest + a wheelhouse)
UPLOAD_MAX_FILES = 1000


def upload_target(name: str) -> tuple[str, str] | None:
    """Where a tar member of an upload goes: ("release", file) or ("wheelhouse", file); None = refused. Only
    ``release.json``, ``<wheel>.whl`` and ``wheelhouse/<wheel>.whl``: no directories, links, dot names or paths."""
    if name == "release.json" or UPLOAD_WHEEL_RE.fullmatch(name):
        return "release", name
    head, sep, tail = name.partition("/")
    if sep and head == "wheelhouse" and UPLOAD_WHEEL_RE.fullmatch(tail):
        return "wheelhouse", tail
    return None


def copy_member(source: Any, dest: Path, size: int) -> None:
    """A new root-owned 0644 file (O_EXCL, never through a planted name) from a tar member of ``size`` bytes."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        left = size
        while left > 0:
            block = source.read(min(1 << 20, left))
            if not block:
                raise Failure(f"upload: {dest.name} ends early")
            left -= len(block)
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view):]
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)


def receive_upload(flow_id: str, stream: Any) -> dict[str, Any]:
    """Read a tar stream (release.json, the wheel, optionally ``wheelhouse/*.whl``) into ``incoming/<flow id>``
    and, for a wheelhouse, ``wheelhouse/<deps_hash>`` (published complete, or not at all). Anything but regular
    files with validated names, or more than the caps, is refused and nothing is kept."""
    import tarfile

    if not is_flow_id(flow_id):
        raise Failure(f"not a flow id: {flow_id!r}", EXIT_REFUSED)
    incoming = L.incoming_dir / flow_id
    wheels_partial = L.wheelhouse_dir / f".{flow_id}.partial"
    for path in (incoming, wheels_partial):
        shutil.rmtree(path, ignore_errors=True)
    L.incoming_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    L.wheelhouse_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    incoming.mkdir(mode=0o755)
    total, count, wheelhouse = 0, 0, 0
    try:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    target = upload_target(member.name)
                    if target is None or not member.isreg():
                        raise Failure(f"upload: {member.name!r} refused (only release.json, a wheel and "
                                      "wheelhouse/*.whl, as regular files)", EXIT_REFUSED)
                    count, total = count + 1, total + member.size
                    if member.size > UPLOAD_MAX_FILE or total > UPLOAD_MAX_TOTAL or count > UPLOAD_MAX_FILES:
                        raise Failure(f"upload: larger than allowed at {member.name!r} (refused)", EXIT_REFUSED)
                    if target[0] == "wheelhouse":
                        wheels_partial.mkdir(mode=0o755, exist_ok=True)
                        wheelhouse += 1
                    source = archive.extractfile(member)
                    assert source is not None
                    copy_member(source, (incoming if target[0] == "release" else wheels_partial) / target[1],
                                member.size)
        except tarfile.TarError as exc:
            raise Failure(f"upload: not a complete tar stream ({exc})", EXIT_REFUSED) from None
        meta = json.loads(read_bytes_safe(incoming / "release.json", 1 << 20))
        deps = str(meta.get("deps_hash", "")) if isinstance(meta, dict) else ""
        wheel = str(meta.get("wheel", "")) if isinstance(meta, dict) else ""
        if DEPS_HASH_RE.fullmatch(deps) is None or UPLOAD_WHEEL_RE.fullmatch(wheel) is None:
            raise Failure("upload: release.json names no valid wheel and deps_hash", EXIT_REFUSED)
        os.close(open_regular(incoming / wheel))
        published = L.wheelhouse_dir / deps
        if wheelhouse and not (published / ".complete").is_file():
            (wheels_partial / ".complete").write_text(deps + "\n")
            shutil.rmtree(published, ignore_errors=True)
            os.rename(wheels_partial, published)
        if not (published / ".complete").is_file():
            raise Failure(f"upload: the host has no wheelhouse {deps} and none was sent", EXIT_REFUSED)
    except (Failure, OSError, ValueError) as exc:
        shutil.rmtree(incoming, ignore_errors=True)
        if isinstance(exc, Failure):
            raise
        raise Failure(f"upload failed: {exc}", EXIT_REFUSED) from None
    finally:
        shutil.rmtree(wheels_partial, ignore_errors=True)
    return {"files": count, "bytes": total, "wheelhouse_files": wheelhouse, "deps_hash": deps}


def receive(flow_id: str, argv: Sequence[str], who: str, why: str) -> int:
    """``receive --flow-id ID -- DEPLOY ARGS``: the upload on stdin, then the deploy flow started and followed (one
    SSH stream). A flow id that already ran is followed, never uploaded or started twice."""
    flow_parser("deploy").parse_args(list(argv))  # bad input: one line, exit 2, nothing received
    if flow_path(flow_id).exists():
        say(f"flow {flow_id} exists already: following it")
        return follow(flow_id)
    try:
        info = receive_upload(flow_id, sys.stdin.buffer)
    except Failure as exc:
        audit("deploy", "refused", who, flow_id=flow_id, reason=why, message=f"{exc}; nothing was changed")
        raise
    say(f"received {info['files']} file(s), {info['bytes'] / 1e6:.1f} MB"
        + (f" (wheelhouse {info['deps_hash']} included)" if info["wheelhouse_files"] else ""))
    return start("deploy", argv, who, why, detach=False, flow_id=flow_id)


def probe() -> dict[str, Any]:
    """Cheap facts for the operator's deploy: this host's Python, the helper's own digest, the wheelhouses it has."""
    import platform

    have = sorted(p.name for p in L.wheelhouse_dir.iterdir() if (p / ".complete").is_file()) \
        if L.wheelhouse_dir.is_dir() else []
    return {"python_version": f"{sys.version_info[0]}.{sys.version_info[1]}", "arch": platform.machine(),
            "helper_sha256": sha256(Path(__file__).resolve()), "wheelhouses": have}


def status() -> dict[str, Any]:
    result = service_cli(["status", "--json"], timeout=20)
    service = json_out(result)
    last_flow: dict[str, Any] | None = None
    latest = latest_flow_id()
    if latest:
        with contextlib.suppress(Failure):
            rec = read_flow(latest)
            last_flow = {k: rec.get(k) for k in ("flow_id", "flow", "state", "step", "message", "who", "started_at",
                                                 "ended_at", "paused_at")}
    return {
        "host": socket.gethostname(), "release": current_release(), "last_good": last_good(),
        "promoted": promoted(), "unit": unit_prop("ActiveState"), "configured_mode": configured_mode(),
        "service": service, "service_error": "" if service else last_line(result),
        "lock": lock_status(), "last_flow": last_flow, "host_now": host_now(),
    }


# ----------------------------------------------------------------------------------------------------------------
# Operator commands that need root (sudoers lets the deploy user run this helper and nothing else)
# ----------------------------------------------------------------------------------------------------------------
ZAR_AMOUNT_RE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,8})?")
REPORT_WINDOWS = ("day", "week", "month")
MAX_LOG_LINES = 100_000
JOURNALCTL = "/usr/bin/journalctl"


def zar_amount(value: str) -> str:
    """argparse type of ``ramp --to``: a plain positive decimal (digits, at most one point), nothing else."""
    if ZAR_AMOUNT_RE.fullmatch(value) is None or not any(c in "123456789" for c in value):
        raise argparse.ArgumentTypeError("a positive ZAR amount like 5000 or 2500.50")
    return value


def reason_text(value: str) -> str:
    if not operator_text(value).strip():
        raise argparse.ArgumentTypeError("a reason is required")
    return value


def log_lines(value: str) -> int:
    if re.fullmatch(r"[0-9]{1,6}", value) is None or not 1 <= int(value) <= MAX_LOG_LINES:
        raise argparse.ArgumentTypeError(f"a number of lines from 1 to {MAX_LOG_LINES}")
    return int(value)


def operator_cli_argv(args: argparse.Namespace) -> list[str]:
    """The ``helios`` arguments of ``audit`` / ``report`` / ``ramp`` (each value one argument, ``--name=VALUE``)."""
    if args.cmd == "report":
        return ["report", f"--window={args.window}", *(["--compare"] if args.compare else [])]
    if args.cmd == "ramp":
        return ["ramp", f"--to={args.to}", f"--reason={args.reason}", f"--actor={args.who}"]
    return ["audit"]


def operator_command(args: argparse.Namespace) -> int:
    """``audit`` / ``report`` / ``ramp``: the current release's ``helios`` CLI run as the service user with the
    host's configuration (root only reads the env file); its output and exit code are the answer. ``logs``:
    journalctl of the service's unit only."""
    if args.cmd == "logs":
        argv = [JOURNALCTL, "-u", L.unit, "-n", str(args.lines), "--no-pager", "-o", "short-iso",
                *(["-f"] if args.follow else [])]
        sys.stdout.flush()
        os.execv(JOURNALCTL, argv)  # noqa: S606 -- a fixed program, validated arguments
    result = service_cli(operator_cli_argv(args), timeout=180)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="helios-deployctl")
    sub = p.add_subparsers(dest="cmd", required=True)
    who = os.environ.get("HELIOS_ACTOR") or os.environ.get("SUDO_USER") or "root"
    s = sub.add_parser("start", help="start a flow on this host and follow it")
    s.add_argument("flow", choices=sorted(FLOWS))
    s.add_argument("--who", type=operator_text, default=who)
    s.add_argument("--why", type=operator_text, default="")
    s.add_argument("--detach", action="store_true")
    s.add_argument("--flow-id", default=None)
    r = sub.add_parser("run", help="(the flow unit) run a recorded flow")
    r.add_argument("flow_id")
    f = sub.add_parser("follow", help="reattach to a flow (default: the latest)")
    f.add_argument("flow_id", nargs="?")
    pl = sub.add_parser("plan", help="the steps a flow would run (--check)")
    pl.add_argument("flow", choices=sorted(FLOWS))
    lk = sub.add_parser("lock")
    lk.add_argument("lock_action", choices=["status", "break"])
    lk.add_argument("--who", default=who)
    lk.add_argument("--why", default="")
    rc = sub.add_parser("receive", help="read an upload (tar) from stdin, then start and follow its deploy flow")
    rc.add_argument("--flow-id", required=True)
    rc.add_argument("--who", type=operator_text, default=who)
    rc.add_argument("--why", type=operator_text, default="")
    for name in ("status", "releases", "backups", "boot-check", "probe"):
        sub.add_parser(name)
    bk = sub.add_parser("backup", help="(the hourly timer) a verified backup, no lock")
    bk.add_argument("--keep", type=int, default=L.keep_backups)
    bk.add_argument("--who", default=who)
    fr = sub.add_parser("first-release", help="(provisioning) install the uploaded release as the first one")
    fr.add_argument("--release", required=True)
    fr.add_argument("--upload", required=True)
    fr.add_argument("--python", default="/usr/bin/python3")
    fr.add_argument("--who", default=who)
    vb = sub.add_parser("verify-backup")
    vb.add_argument("backup")
    sub.add_parser("audit", help="helios audit (as the service user, with the host's configuration)")
    rp = sub.add_parser("report", help="helios report (as the service user)")
    rp.add_argument("--window", choices=REPORT_WINDOWS, default="week")
    rp.add_argument("--compare", action="store_true")
    rm = sub.add_parser("ramp", help="helios ramp (as the service user)")
    rm.add_argument("--to", type=zar_amount, required=True)
    rm.add_argument("--reason", type=reason_text, required=True)
    rm.add_argument("--who", type=operator_text, default=who)
    lg = sub.add_parser("logs", help=f"journalctl of {L.unit}")
    lg.add_argument("--lines", type=log_lines, default=100)
    lg.add_argument("--follow", action="store_true")
    return p


def query(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    handlers: dict[str, Callable[[], dict[str, Any]]] = {
        "status": status,
        "releases": lambda: {"releases": list_releases(), "current": current_release(), "last_good": last_good()},
        "backups": lambda: {"backups": list_backups()},
        "boot-check": boot_check,
        "probe": probe,
        "plan": lambda: {"flow": args.flow, "steps": flow_steps_text(args.flow)},
        "lock": lambda: lock_status() if args.lock_action == "status" else break_lock(args.who, args.why),
    }
    if args.cmd == "backup":
        return EXIT_OK, make_backup(args.keep)
    if args.cmd == "first-release":
        return EXIT_OK, first_release(args.release, args.upload, args.python, args.who)
    if args.cmd == "verify-backup":
        if not is_backup_id(args.backup):
            raise Failure(f"not a backup timestamp: {args.backup!r}", EXIT_REFUSED)
        return EXIT_OK, verify_backup(L.backup_dir / args.backup)
    return EXIT_OK, handlers[args.cmd]()


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] in (["service-dump"], ["service-inspect"]):  # run as the service user by root (as_service)
        return service_main(words[0], words[1] if len(words) > 1 else None)
    flow_args: list[str] = []
    if words[:1] in (["start"], ["receive"]) and "--" in words:  # CMD [options] -- FLOW ARGUMENTS (kept as data)
        cut = words.index("--")
        words, flow_args = words[:cut], words[cut + 1 :]
    args = build_parser().parse_args(words)
    if os.geteuid() != 0:
        print(json.dumps({"ok": False, "error": "helios-deployctl must run as root"}))
        return EXIT_REFUSED
    try:
        if args.cmd == "start":
            return start(args.flow, flow_args, args.who, args.why, args.detach, args.flow_id)
        if args.cmd == "receive":
            return receive(args.flow_id, flow_args, args.who, args.why)
        if args.cmd == "run":
            return run_flow(args.flow_id)
        if args.cmd == "follow":
            flow_id = args.flow_id or latest_flow_id()
            if flow_id is None:
                raise Failure("no flow has run on this host", EXIT_REFUSED)
            return follow(flow_id)
        if args.cmd in ("audit", "report", "ramp", "logs"):
            return operator_command(args)
        code, data = query(args)
    except Failure as exc:
        if args.cmd == "boot-check":  # never keep the service from starting
            say(f"helios-deployctl boot-check: {exc}")
            return EXIT_OK
        print(json.dumps({"ok": False, "error": str(exc), "code": exc.code, **exc.detail}, default=str))
        say(f"helios-deployctl {args.cmd}: {exc}")
        return exc.code
    print(json.dumps({"ok": code == EXIT_OK, "code": code, **data}, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
