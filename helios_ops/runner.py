"""The one runner of the operator tasks: single SSH calls with the system ``ssh`` client (every flow and query; the
deploy's upload streams through the same call; provisioning runs ansible-playbook via ``helios_ops.provision``). The
commands come from ``helios_ops.commands``, the hosts from ``helios_ops.inventory``. ``run_flow`` starts a host-side
flow and, when the link drops, reattaches until it knows the flow's real outcome.

SSH: ``BatchMode=yes``, only the inventory's ``known_hosts`` (``StrictHostKeyChecking=yes``), and a ControlMaster
socket in a private directory (0700) whose name is a digest of the host, port, user, key and the known_hosts
CONTENT: repeated commands reuse one verified connection (an emergency stop skips the key exchange), a connection
is only ever reused by the same user for the same recorded key, and a changed known_hosts opens a fresh, checked one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from helios_ops import commands as cmd
from helios_ops.inventory import Host, OpsError


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


def new_flow_id() -> str:
    return cmd.new_flow_id(datetime.now(UTC), uuid.uuid4().hex[:8])


# ----------------------------------------------------------------------------------------------------------------
CONTROL_PERSIST_SECONDS = 120


def control_dir() -> Path:
    """The operator's private directory of SSH master sockets (created 0700; refused if anyone else can enter)."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or Path.home() / ".cache")
    path = base / f"helios-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not path.is_dir() or path.is_symlink():
        raise OpsError(f"{path}: not a private directory of this user (mode {st.st_mode & 0o777:o}); remove it")
    return path


def control_path(host: Host) -> Path:
    """One master socket per (user, host, port, key, known_hosts content): a changed known_hosts never reuses a
    connection that was verified against the old one."""
    known = Path(host.known_hosts) if host.known_hosts else None
    recorded = known.read_bytes() if known is not None and known.is_file() else b""
    material = "\0".join([host.user, host.address, str(host.port), host.key_file or "", str(known)]).encode()
    return control_dir() / hashlib.sha256(material + b"\0" + recorded).hexdigest()[:24]


def ssh_argv(host: Host, command: str, tty: bool = False, multiplex: bool = True) -> list[str]:
    """The system ssh client: batch mode, the inventory's known_hosts only, strict host key checking."""
    if host.known_hosts is None:
        raise OpsError(f"{host.name}: no known_hosts file for its inventory; run `invoke hosts.trust`")
    argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={host.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR"]
    if multiplex:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_path(host)}",
                 "-o", f"ControlPersist={CONTROL_PERSIST_SECONDS}"]
    else:
        argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    if host.key_file:
        argv += ["-o", "IdentitiesOnly=yes", "-i", host.key_file]
    argv += ["-tt" if tty else "-T", "-p", str(host.port), "-l", host.user, host.address, "--", command]
    return argv


def host_key_refusal(host: Host, stderr: str) -> str | None:
    """One line for OpenSSH's host-key refusal (changed or unknown key), else None."""
    if "Host key verification failed" not in stderr and "REMOTE HOST IDENTIFICATION HAS CHANGED" not in stderr:
        return None
    what = "CHANGED" if "HAS CHANGED" in stderr else "is not the recorded one (or not recorded)"
    return (f"REFUSED {host.name} ({host.address}:{host.port}): its SSH host key {what} "
            f"({host.known_hosts}); nothing was sent. If the host was rebuilt, check the new fingerprint out of "
            "band and run `invoke hosts.trust`")


def ssh_run(
    host: Host, command: str, timeout: float = 60, pty: bool = False, stream: bool = False, show_stdout: bool = True,
    send: Callable[[IO[bytes]], None] | None = None,
) -> SshResult:
    """One command on one host over SSH. ``stream``: print the remote stderr (step lines) as it comes (and stdout
    unless ``show_stdout`` is False); ``send``: writes the command's stdin (the deploy's upload), then it is closed.
    ``timeout`` 0 means none."""
    started = time.monotonic()
    try:
        argv = ssh_argv(host, command, tty=pty)
    except OpsError as exc:
        return SshResult(host.name, 255, "", str(exc), 0.0, refused=True)
    out: list[bytes] = []
    err: list[bytes] = []

    def pump(source: IO[bytes], into: list[bytes], echo: IO[str] | None) -> None:
        for line in iter(source.readline, b""):
            into.append(line)
            if echo is not None:
                echo.write(line.decode(errors="replace"))
                echo.flush()

    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if send else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=False)
    assert proc.stdout is not None and proc.stderr is not None
    readers = [threading.Thread(target=pump, args=(proc.stdout, out, sys.stdout if stream and show_stdout else None),
                                daemon=True),
               # the helper's step lines (its stderr) go to the operator's stdout, in order with the final line
               threading.Thread(target=pump, args=(proc.stderr, err, sys.stdout if stream else None), daemon=True)]
    for reader in readers:
        reader.start()
    send_error = ""
    if send is not None:
        assert proc.stdin is not None
        try:
            send(proc.stdin)
            proc.stdin.close()
        except OSError as exc:  # the link dropped (or the host refused) during the upload
            send_error = f"upload interrupted: {exc}"
    try:
        rc = proc.wait(timeout=timeout or None)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
        err.append(f"ssh to {host.name}: no answer within {timeout:g}s\n".encode())
    for reader in readers:
        reader.join(5)
    stderr = b"".join(err).decode(errors="replace") + (f"\n{send_error}" if send_error else "")
    refusal = host_key_refusal(host, stderr) if rc == 255 else None
    if refusal is not None:
        return SshResult(host.name, 255, "", refusal, round(time.monotonic() - started, 3), refused=True)
    return SshResult(host.name, rc, b"".join(out).decode(errors="replace"), stderr,
                     round(time.monotonic() - started, 3))


def ssh_all(hosts: Sequence[Host], build: Callable[[Host], str], timeout: float = 60) -> list[SshResult]:
    """The same kind of command on every host at once (emergency stop, status)."""
    return parallel(hosts, lambda h: ssh_run(h, build(h), timeout))


def parallel(hosts: Sequence[Host], work: Callable[[Host], Any]) -> list[Any]:
    """``work`` for every host at once (one thread each), results in host order."""
    results: list[Any] = [None] * len(hosts)

    def one(i: int, h: Host) -> None:
        results[i] = work(h)

    threads = [threading.Thread(target=one, args=(i, h)) for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


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
             stream: bool = True, send: Callable[[IO[bytes]], None] | None = None) -> FlowResult:
    """Start one flow on the host and follow it; a dropped link is followed by a reattach, never by a guess.
    ``send`` (deploy only): the upload, streamed into ``helios-deployctl receive`` on the same connection, which
    then starts the deploy flow."""
    flow_id = flow_id or new_flow_id()
    command = (cmd.receive_command(flow_id, who, why, args, sudo=host.become) if send is not None
               else cmd.flow_command(flow, flow_id, who, why, args, sudo=host.become))
    res = ssh_run(host, command, timeout=900, stream=stream, show_stdout=False, send=send)
    if res.refused:
        return FlowResult(host.name, 255, {"error": res.stderr}, 0)
    data = res.json()
    if res.rc != 255 and data.get("flow_id") == flow_id:
        return FlowResult(host.name, res.rc, data, 0)
    if res.rc != 255 and data.get("error"):  # refused before a flow existed (bad input, a refused upload)
        return FlowResult(host.name, res.rc, data, 0)
    print(f"{host.name}: lost the link to flow {flow_id} ({first_error(res)}); reattaching", flush=True)
    followed = follow_flow(host, flow_id)
    if "no flow record" in str(followed.data.get("error", "")):
        followed.data["error"] = (f"the link dropped before flow {flow_id} started on the host: nothing was changed "
                                  "there; run the command again")
    return followed


def upload_writer(members: Sequence[tuple[str, Path | bytes]]) -> Callable[[IO[bytes]], None]:
    """The deploy's upload as a tar stream (regular files, 0644): what ``helios-deployctl receive`` accepts."""
    import io
    import tarfile

    def write(stream: IO[bytes]) -> None:
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, source in members:
                info = tarfile.TarInfo(name)
                info.mode, info.mtime = 0o644, int(time.time())
                if isinstance(source, bytes):
                    info.size = len(source)
                    tar.addfile(info, io.BytesIO(source))
                else:
                    info.size = source.stat().st_size
                    with source.open("rb") as handle:
                        tar.addfile(info, handle)

    return write


def run_flow_all(hosts: Sequence[Host], flow: str, args: Sequence[str], who: str, why: str) -> list[FlowResult]:
    """The same flow on every host at once (emergency stop, resume)."""
    flow_id = new_flow_id()
    if len(hosts) == 1:
        return [run_flow(hosts[0], flow, args, who, why, flow_id, False)]
    return parallel(hosts, lambda h: run_flow(h, flow, args, who, why, flow_id, False))
