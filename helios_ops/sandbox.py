"""Local systemd test hosts ("sandbox") for the Helios ops toolkit.

Each sandbox host is a Debian bookworm root filesystem booted with ``systemd-nspawn -b``. The hosts share the
machine's network namespace, so every host gets its own sshd port and its own Helios API port on 127.0.0.1.

Layout (``state_dir`` defaults to ``<repo>/.sandbox/<group>``)::

    <state_dir>/id_ed25519[.pub]        key-only SSH for root on every host of the group
    <state_dir>/hosts.yml               Ansible inventory of the running hosts
    <state_dir>/hosts/<name>/rootfs/    the host's own copy of the base rootfs
    <state_dir>/hosts/<name>/host.json  what ``up`` started (pid of systemd-nspawn, ports)
    <state_dir>/hosts/<name>/console.log

The base rootfs is built once with debootstrap and cached as a tarball keyed by suite, mirror and package list
(``/var/cache/helios-sandbox/<suite>-<key>.tar``).

Pure functions (ports, names, cache key, inventory, sshd drop-in) are separated from the executor functions
(``up``, ``down``, ``status``) so they can be unit-tested without root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = Path("/var/cache/helios-sandbox")
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

#: Packages baked into the cached base rootfs. Everything the helios_server role installs is here, so
#: provisioning a sandbox host needs no package download.
BASE_PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "python3-apt",
    "sudo",
    "iproute2",
    "systemd-timesyncd",
    "ca-certificates",
    "procps",
)

#: Tools the sandbox needs on this machine, mapped to the Debian package that ships them.
HOST_TOOLS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}

#: ``systemctl is-system-running`` states accepted as "booted". ``degraded`` means some unit failed (inside
#: nspawn that is typically systemd-timesyncd, which cannot set the clock without CAP_SYS_TIME); the host is
#: usable, and ``status`` lists the failed units.
READY_STATES = frozenset({"running", "degraded"})

SSH_OPTIONS: tuple[str, ...] = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
)


class SandboxError(RuntimeError):
    """A sandbox operation failed; the message is one line naming what was wrong."""


# ------------------------------------------------------------------------------------------------------------
# Pure part
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupSpec:
    """A group of sandbox hosts that share a key, a state dir and a port range.

    Host ``i`` (1-based) is named ``<prefix><i>`` and gets ssh port ``ssh_base + i`` and API port
    ``api_base + i``. The ``sandbox`` group uses 2221.../8101...; Molecule uses its own group and range.
    """

    group: str = "sandbox"
    prefix: str = "helios"
    ssh_base: int = 2220
    api_base: int = 8100
    max_hosts: int = 9


SANDBOX_GROUP = GroupSpec()
MOLECULE_GROUP = GroupSpec(group="molecule", prefix="molecule", ssh_base=2320, api_base=8200)
DEPLOYTEST_GROUP = GroupSpec(group="deploytest", prefix="deploy", ssh_base=2420, api_base=8300)
PYTEST_GROUP = GroupSpec(group="pytest", prefix="pytest", ssh_base=2520, api_base=8400)
SECURITY_GROUP = GroupSpec(group="security", prefix="sec", ssh_base=2620, api_base=8500)
#: Every group and its port range, so concurrent test suites never collide on the shared loopback.
GROUPS: dict[str, GroupSpec] = {g.group: g for g in (SANDBOX_GROUP, MOLECULE_GROUP, DEPLOYTEST_GROUP, PYTEST_GROUP,
                                                   SECURITY_GROUP)}


@dataclass(frozen=True)
class HostSpec:
    """One sandbox host: its name and its two loopback ports."""

    name: str
    index: int
    ssh_port: int
    api_port: int


def host_specs(spec: GroupSpec, count: int) -> list[HostSpec]:
    """Return the specs of hosts 1..count of a group."""
    if not 1 <= count <= spec.max_hosts:
        raise SandboxError(f"--hosts must be between 1 and {spec.max_hosts}, got {count}")
    return [
        HostSpec(name=f"{spec.prefix}{i}", index=i, ssh_port=spec.ssh_base + i, api_port=spec.api_base + i)
        for i in range(1, count + 1)
    ]


def cache_key(suite: str, mirror: str, packages: Iterable[str]) -> str:
    """Stable short key of a base rootfs: suite, mirror and the sorted package list."""
    material = "\n".join([suite, mirror, *sorted(set(packages))])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def base_tarball_path(cache_dir: Path, suite: str, mirror: str, packages: Iterable[str]) -> Path:
    return cache_dir / f"{suite}-minbase-{cache_key(suite, mirror, packages)}.tar"


def debootstrap_command(suite: str, mirror: str, packages: Sequence[str], target: Path) -> list[str]:
    return [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        suite,
        str(target),
        mirror,
    ]


def nspawn_command(rootfs: Path, machine: str) -> list[str]:
    """The boot command. ``--register=no --keep-unit`` because this machine has no systemd of its own."""
    return [
        "systemd-nspawn",
        "--quiet",
        "-D",
        str(rootfs),
        "-b",
        "--register=no",
        "--keep-unit",
        "-M",
        machine,
    ]


def sshd_dropin(ssh_port: int) -> str:
    """sshd drop-in: loopback only, this host's port, keys only."""
    return (
        "# Managed by helios_ops.sandbox\n"
        f"Port {ssh_port}\n"
        "ListenAddress 127.0.0.1\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
    )


def keygen_command(path: Path, comment: str) -> list[str]:
    """A passphrase-less ed25519 key (the sandbox's client key, a host's host key)."""
    return ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]


def ssh_command(key_file: Path, port: int, remote: Sequence[str] = (), *, tty: bool = False) -> list[str]:
    cmd = ["ssh", *SSH_OPTIONS, "-i", str(key_file), "-p", str(port)]
    if tty:
        cmd.append("-t")
    cmd.append("root@127.0.0.1")
    cmd.extend(remote)
    return cmd


def render_inventory(hosts: Sequence[HostSpec], key_file: Path, group: str = "sandbox",
                     known_hosts: Path | None = None) -> str:
    """Ansible YAML inventory for the given hosts; host keys checked against ``known_hosts`` (written by up())."""
    lines = [
        "# Generated by helios_ops.sandbox -- do not edit; `invoke sandbox.up` rewrites it.",
        "---",
        "all:",
        "  children:",
        f"    {group}:",
        "      vars:",
        "        ansible_host: 127.0.0.1",
        "        ansible_user: root",
        f"        ansible_ssh_private_key_file: {json.dumps(str(key_file))}",
        "        ansible_ssh_common_args: "
        + json.dumps("-o StrictHostKeyChecking=yes -o UserKnownHostsFile="
                     f"{known_hosts or key_file.parent / 'known_hosts'} -o LogLevel=ERROR"),
        "        ansible_python_interpreter: /usr/bin/python3",
        "      hosts:",
    ]
    for host in hosts:
        lines += [
            f"        {host.name}:",
            f"          ansible_port: {host.ssh_port}",
            f"          helios_api_port: {host.api_port}",
        ]
    return "\n".join(lines) + "\n"


def molecule_instances(hosts: Sequence[HostSpec], key_file: Path) -> list[dict[str, object]]:
    """Molecule (delegated driver) instance config entries for ``hosts``."""
    return [
        {
            "instance": host.name,
            "address": "127.0.0.1",
            "user": "root",
            "port": host.ssh_port,
            "identity_file": str(key_file),
        }
        for host in hosts
    ]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already holds ``host:port`` (bind test, as a server would do it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def taken_ports(hosts: Sequence[HostSpec], probe: Callable[[int], bool] | None = None) -> list[str]:
    """Describe every port of ``hosts`` that is already in use, e.g. ``"2221 (ssh of helios1)"``."""
    probe = probe or port_in_use
    problems: list[str] = []
    for host in hosts:
        for kind, port in (("ssh", host.ssh_port), ("helios api", host.api_port)):
            if probe(port):
                problems.append(f"{port} ({kind} of {host.name})")
    return problems


def check_rootfs_path(rootfs: Path, state_dir: Path) -> Path:
    """Refuse any rootfs that is not a directory strictly inside the state dir (never boot the host's /)."""
    resolved = rootfs.resolve()
    state = state_dir.resolve()
    if resolved == Path("/") or resolved == Path("/").resolve() or state not in resolved.parents:
        raise SandboxError(f"refusing to use {resolved} as a sandbox rootfs: it is not inside {state}")
    return resolved


# ------------------------------------------------------------------------------------------------------------
# Executor part
# ------------------------------------------------------------------------------------------------------------


@dataclass
class HostState:
    """What ``up`` recorded for one host (``host.json``)."""

    name: str
    pid: int
    ssh_port: int
    api_port: int
    rootfs: str
    started_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Sandbox:
    """Executor for one group of sandbox hosts."""

    spec: GroupSpec = SANDBOX_GROUP
    state_dir: Path = REPO_ROOT / ".sandbox" / "sandbox"
    cache_dir: Path = DEFAULT_CACHE_DIR
    inventory_file: Path | None = REPO_ROOT / "inventory" / "sandbox" / "hosts.yml"
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    packages: tuple[str, ...] = BASE_PACKAGES
    boot_timeout: float = 120.0
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    # -- paths ----------------------------------------------------------------------------------------------

    @property
    def key_file(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def hosts_dir(self) -> Path:
        return self.state_dir / "hosts"

    def host_dir(self, name: str) -> Path:
        return self.hosts_dir / name

    def rootfs(self, name: str) -> Path:
        return self.host_dir(name) / "rootfs"

    @property
    def base_tarball(self) -> Path:
        return base_tarball_path(self.cache_dir, self.suite, self.mirror, self.packages)

    # -- state ----------------------------------------------------------------------------------------------

    def recorded(self) -> list[HostState]:
        """Every host with a ``host.json``, sorted by name."""
        states: list[HostState] = []
        if not self.hosts_dir.is_dir():
            return states
        for state_file in sorted(self.hosts_dir.glob("*/host.json")):
            try:
                data = json.loads(state_file.read_text())
                states.append(HostState(**data))
            except (OSError, ValueError, TypeError) as exc:
                raise SandboxError(f"unreadable sandbox state file {state_file}: {exc}") from exc
        return states

    def is_alive(self, state: HostState) -> bool:
        """True when ``state.pid`` is still our systemd-nspawn for this rootfs (guards against pid reuse)."""
        try:
            exe = os.readlink(f"/proc/{state.pid}/exe")
            cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
        except OSError:
            return False  # gone, or a zombie
        if not exe.endswith("/systemd-nspawn"):
            return False
        # nspawn briefly shows an empty cmdline while it sets itself up.
        args = [part.decode(errors="replace") for part in cmdline.split(b"\0")]
        return not cmdline or state.rootfs in args

    # -- up -------------------------------------------------------------------------------------------------

    def up(self, count: int) -> list[HostSpec]:
        """Bring hosts 1..count up (idempotent) and write the inventory. Returns the host specs."""
        require_root("sandbox.up")
        hosts = host_specs(self.spec, count)
        running = {s.name for s in self.recorded() if self.is_alive(s)}
        to_start = [h for h in hosts if h.name not in running]
        problems = taken_ports(to_start)
        if problems:
            raise SandboxError(f"port(s) already in use on 127.0.0.1: {', '.join(problems)}")
        ensure_host_tools(self.log)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ensure_key()
        if to_start:
            tarball = self.ensure_base_tarball()
            for host in to_start:
                self.prepare_rootfs(host, tarball)
                self.boot(host)
        for host in hosts:
            self.wait_ready(host)
        self.write_inventory(hosts)
        return hosts

    def ensure_key(self) -> None:
        if self.key_file.exists():
            return
        self.log(f"generating sandbox SSH key {self.key_file}")
        run(keygen_command(self.key_file, f"helios-{self.spec.group}"))

    def ensure_base_tarball(self) -> Path:
        tarball = self.base_tarball
        if tarball.exists():
            return tarball
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.log(f"building base rootfs with debootstrap ({self.suite}, {len(self.packages)} packages)...")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix="build-") as tmp:
            target = Path(tmp) / "rootfs"
            result = subprocess.run(
                debootstrap_command(self.suite, self.mirror, self.packages, target),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                tail = result.stdout.strip().splitlines()[-1:] or ["no output"]
                raise SandboxError(f"debootstrap failed (exit {result.returncode}): {tail[0]}")
            # Machine identity must be per host: empty machine-id and no host keys in the cached image.
            (target / "etc/machine-id").write_text("")
            for key in (target / "etc/ssh").glob("ssh_host_*"):
                key.unlink()
            partial = tarball.with_suffix(".tar.partial")
            run(["tar", "-C", str(target), "--numeric-owner", "--xattrs", "-cpf", str(partial), "."])
            partial.rename(tarball)
        self.log(f"base rootfs cached at {tarball} ({time.monotonic() - started:.0f}s)")
        return tarball

    def prepare_rootfs(self, host: HostSpec, tarball: Path) -> None:
        """Give the host its own rootfs copy (reused if present) and write its per-host configuration."""
        host_dir = self.host_dir(host.name)
        host_dir.mkdir(parents=True, exist_ok=True)
        rootfs = self.rootfs(host.name)
        if not (rootfs / "etc/os-release").exists():
            if rootfs.exists():
                shutil.rmtree(rootfs)
            partial = host_dir / "rootfs.partial"
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir()
            run(["tar", "-C", str(partial), "--numeric-owner", "--xattrs", "-xpf", str(tarball)])
            partial.rename(rootfs)
        rootfs = check_rootfs_path(rootfs, self.state_dir)
        etc = rootfs / "etc"
        (etc / "hostname").write_text(f"{host.name}\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {host.name}\n::1 localhost\n")
        machine_id = etc / "machine-id"
        if not machine_id.read_text().strip():
            machine_id.write_text(hashlib.md5(os.urandom(16), usedforsecurity=False).hexdigest() + "\n")
        dropin_dir = etc / "ssh/sshd_config.d"
        dropin_dir.mkdir(parents=True, exist_ok=True)
        (dropin_dir / "10-helios-sandbox.conf").write_text(sshd_dropin(host.ssh_port))
        if not (etc / "ssh/ssh_host_ed25519_key").exists():
            run(keygen_command(etc / "ssh/ssh_host_ed25519_key", f"root@{host.name}"))
        ssh_dir = rootfs / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        ssh_dir.chmod(0o700)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(Path(f"{self.key_file}.pub").read_text())
        authorized.chmod(0o600)

    def boot(self, host: HostSpec) -> None:
        rootfs = check_rootfs_path(self.rootfs(host.name), self.state_dir)
        if not (rootfs / "sbin/init").exists() and not (rootfs / "lib/systemd/systemd").exists():
            raise SandboxError(f"{rootfs} has no systemd; refusing to boot it")
        log_file = self.host_dir(host.name) / "console.log"
        self.log(f"booting {host.name} (ssh 127.0.0.1:{host.ssh_port}, helios api {host.api_port})")
        with open(log_file, "ab") as out, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(
                nspawn_command(rootfs, host.name),
                stdin=devnull,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        state = HostState(
            name=host.name, pid=proc.pid, ssh_port=host.ssh_port, api_port=host.api_port, rootfs=str(rootfs)
        )
        (self.host_dir(host.name) / "host.json").write_text(json.dumps(asdict(state), indent=2) + "\n")

    def ssh(self, port: int, *remote: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ssh_command(self.key_file, port, remote),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_ready(self, host: HostSpec) -> str:
        """Wait for sshd and ``systemctl is-system-running`` in running/degraded; return the state."""
        deadline = time.monotonic() + self.boot_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            state = next((s for s in self.recorded() if s.name == host.name), None)
            if state is None or not self.is_alive(state):
                log_file = self.host_dir(host.name) / "console.log"
                raise SandboxError(f"{host.name}: systemd-nspawn exited during boot; see {log_file}")
            try:
                result = self.ssh(host.ssh_port, "systemctl", "is-system-running", timeout=15)
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            else:
                answer = result.stdout.strip()
                if answer in READY_STATES:
                    return answer
                last = answer or result.stderr.strip().splitlines()[-1:].__str__()
            time.sleep(1)
        raise SandboxError(f"{host.name} not ready after {self.boot_timeout:.0f}s (last state: {last})")

    def write_inventory(self, hosts: Sequence[HostSpec]) -> None:
        """hosts.yml and known_hosts: each host's key read from its own rootfs (never over the network)."""
        from helios_ops import hostkeys

        for target in (self.state_dir / "hosts.yml", self.inventory_file):
            if target is not None:
                known = target.parent / hostkeys.KNOWN_HOSTS
                target.parent.mkdir(parents=True, exist_ok=True)
                for host in hosts:
                    pub = self.rootfs(host.name) / "etc/ssh/ssh_host_ed25519_key.pub"
                    hostkeys.record(known, "127.0.0.1", host.ssh_port, [hostkeys.parse_public_key(pub.read_text())])
                target.write_text(render_inventory(hosts, self.key_file, self.spec.group, known))

    # -- power cycle ----------------------------------------------------------------------------------------

    def power_cycle(self, name: str) -> HostSpec:
        """A power cut and a fresh boot of one host: SIGKILL the container's init (every process of the host dies
        at once: no shutdown, no unit stop, no clean-up) and its systemd-nspawn, then boot the same root
        filesystem again and wait for sshd and systemd. (The rootfs lives in this machine's page cache, so
        writes that were not fsynced survive, unlike on real hardware.)"""
        require_root("sandbox.power_cycle")
        state = next((s for s in self.recorded() if s.name == name), None)
        if state is None or not self.is_alive(state):
            raise SandboxError(f"{name} is not running")
        host = next((h for h in host_specs(self.spec, self.spec.max_hosts) if h.name == name), None)
        if host is None:
            raise SandboxError(f"{name} is not a host of group {self.spec.group}")
        power_cut(state.pid)
        self.log(f"power cut {name} (nspawn pid {state.pid}); booting it again")
        self.boot(host)
        self.wait_ready(host)
        return host

    # -- down -----------------------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop every host ``up`` started (by recorded pid) and remove its rootfs. Returns the names."""
        require_root("sandbox.down")
        stopped: list[str] = []
        for state in self.recorded():
            if self.is_alive(state):
                self.log(f"stopping {state.name} (pid {state.pid})")
                stop_nspawn(state.pid)
            host_dir = self.host_dir(state.name)
            rootfs = Path(state.rootfs)
            if rootfs.exists():
                shutil.rmtree(check_rootfs_path(rootfs, self.state_dir))
            shutil.rmtree(host_dir, ignore_errors=True)
            stopped.append(state.name)
        for leftover in (self.state_dir / "hosts.yml", self.inventory_file):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
                (leftover.parent / "known_hosts").unlink(missing_ok=True)
        return stopped

    # -- status ---------------------------------------------------------------------------------------------

    def status(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for state in self.recorded():
            alive = self.is_alive(state)
            system = "stopped"
            failed = ""
            if alive:
                try:
                    result = self.ssh(
                        state.ssh_port,
                        "systemctl is-system-running; "
                        "systemctl list-units --failed --plain --no-legend | cut -d' ' -f1",
                        timeout=10,
                    )
                    lines = result.stdout.split()
                    system = lines[0] if lines else "unreachable"
                    failed = ",".join(lines[1:])
                except subprocess.TimeoutExpired:
                    system = "unreachable"
            rows.append(
                {
                    "name": state.name,
                    "pid": state.pid if alive else None,
                    "ssh_port": state.ssh_port,
                    "api_port": state.api_port,
                    "system": system,
                    "failed_units": failed,
                }
            )
        return rows

    def ssh_argv(self, name: str | None) -> list[str]:
        """argv for an interactive ssh session into ``name`` (default: the first running host)."""
        states = [s for s in self.recorded() if self.is_alive(s)]
        if not states:
            raise SandboxError("no sandbox host is running; run `invoke sandbox.up` first")
        chosen = states[0] if name is None else next((s for s in states if s.name == name), None)
        if chosen is None:
            raise SandboxError(f"no running sandbox host named {name!r} (running: {', '.join(s.name for s in states)})")
        return ssh_command(self.key_file, chosen.ssh_port, tty=True)


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise SandboxError(f"{what} must run as root (debootstrap and systemd-nspawn need it)")


def run(cmd: Sequence[str]) -> None:
    result = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SandboxError(f"{cmd[0]} failed (exit {result.returncode}): {detail[0]}")


def ensure_host_tools(log: Callable[[str], None]) -> None:
    """Install debootstrap, systemd-container and openssh-client when a tool is missing."""
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise SandboxError(f"{' '.join(cmd[:2])} failed while installing {' '.join(missing)}")


def stop_nspawn(pid: int, timeout: float = 30.0) -> None:
    """Orderly container shutdown: SIGTERM to nspawn (it asks the container's systemd to power off);
    after ``timeout`` kill the container's init (which ends its whole pid namespace) and nspawn."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return
    power_cut(pid)


def power_cut(pid: int) -> None:
    """SIGKILL the container's init (the kernel then kills every process of its pid namespace at once) and the
    systemd-nspawn process ``pid``; return when nspawn is gone."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        for child in children.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 15):
        raise SandboxError(f"systemd-nspawn pid {pid} did not exit after SIGKILL")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished == pid:
                return True
        except ChildProcessError:
            # Not our child (started by an earlier `up`): poll /proc instead.
            stat = Path(f"/proc/{pid}/stat")
            try:
                if stat.read_text().split(") ", 1)[1].startswith("Z"):
                    return True
            except (OSError, IndexError):
                return True
        time.sleep(0.25)
    return False


def group_sandbox(group: str = "sandbox") -> Sandbox:
    """The executor for a named group. Its inventory goes to ``inventory/<group>/hosts.yml`` when that
    directory exists (sandbox, deploytest); otherwise only to ``.sandbox/<group>/hosts.yml``."""
    spec = GROUPS.get(group)
    if spec is None:
        raise SandboxError(f"unknown sandbox group {group!r} (known: {', '.join(sorted(GROUPS))})")
    inventory_dir = REPO_ROOT / "inventory" / group
    inventory = inventory_dir / "hosts.yml" if inventory_dir.is_dir() else None
    return Sandbox(spec=spec, state_dir=REPO_ROOT / ".sandbox" / group, inventory_file=inventory)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helios_ops.sandbox {up,down,status} [--group G] [--hosts N]`` (used by Molecule)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helios_ops.sandbox")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--group", default="sandbox", choices=sorted(GROUPS))
    parser.add_argument("--hosts", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        box = group_sandbox(args.group)
        if args.action == "up":
            hosts = box.up(args.hosts)
            print(
                json.dumps(
                    {
                        "key_file": str(box.key_file),
                        "hosts": [asdict(h) for h in hosts],
                        "instances": molecule_instances(hosts, box.key_file),
                    }
                )
            )
        elif args.action == "down":
            print(json.dumps({"stopped": box.down()}))
        else:
            print(json.dumps(box.status(), indent=2))
    except SandboxError as exc:
        print(f"sandbox {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
