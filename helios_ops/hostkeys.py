"""SSH host keys: one ``known_hosts`` file per inventory (``inventory/<name>/known_hosts``), the only keys any ops
command accepts.

Ansible and every operator command (the system ``ssh``: ``StrictHostKeyChecking=yes`` + ``UserKnownHostsFile``) and
``hosts.trust`` (paramiko ``RejectPolicy`` with this file loaded and nothing else) verify against it. A host that is
not in it, or whose key differs, is refused with one line; ``invoke hosts.trust`` shows a new host's fingerprint and
records it after confirmation; ``invoke sandbox.up`` records its own hosts' keys from their root filesystems (never
over the network).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helios_ops.inventory import Host, OpsError

KNOWN_HOSTS = "known_hosts"
FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


@dataclass(frozen=True)
class HostKey:
    keytype: str
    b64: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(base64.b64decode(self.b64))


def fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def host_pattern(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_file(inventory_dir: Path) -> Path:
    return inventory_dir / KNOWN_HOSTS


def parse_public_key(text: str) -> HostKey:
    """``ssh-ed25519 AAAA... comment`` (a ``.pub`` file) -> HostKey."""
    parts = text.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise OpsError(f"not an SSH public key: {text[:40]!r}")
    base64.b64decode(parts[1], validate=True)
    return HostKey(parts[0], parts[1])


def recorded(path: Path, address: str, port: int) -> list[HostKey]:
    pattern = host_pattern(address, port)
    keys = []
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#") and pattern in parts[0].split(","):
                keys.append(HostKey(parts[1], parts[2]))
    return keys


def record(path: Path, address: str, port: int, keys: list[HostKey]) -> None:
    """Replace the lines of ``[address]:port`` with ``keys`` (other hosts' lines are kept)."""
    pattern = host_pattern(address, port)
    kept = []
    if path.is_file():
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and pattern not in (line.split() or [""])[0].split(",")]
    kept += [f"{pattern} {k.keytype} {k.b64}" for k in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(kept) + "\n")
    tmp.replace(path)


def scan(address: str, port: int, timeout: float = 10.0) -> HostKey:
    """The key a host presents now (paramiko, no login): for ``hosts.trust`` to show before anything is trusted."""
    import paramiko  # type: ignore[import-untyped]  # only here: every other command uses the system ssh client

    transport = paramiko.Transport((address, port))
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return HostKey(key.get_name(), key.get_base64())
    except (OSError, paramiko.SSHException) as exc:
        raise OpsError(f"cannot read the SSH host key of {address}:{port}: {exc}") from None
    finally:
        transport.close()


def strict_client(host: Host) -> Any:
    """A paramiko client that knows only the inventory's known_hosts and rejects every other key."""
    import paramiko

    if host.known_hosts is None:
        raise OpsError(f"{host.name}: no known_hosts file for its inventory; run `invoke hosts.trust`")
    client = paramiko.SSHClient()
    if Path(host.known_hosts).is_file():
        client.load_host_keys(host.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def refusal(host: Host, exc: BaseException) -> str | None:
    """One line for a host-key refusal (changed or unknown key), or None when ``exc`` is something else."""
    import paramiko

    where = f"{host.name} ({host.address}:{host.port})"
    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"REFUSED {where}: its SSH host key CHANGED (now {fingerprint(exc.key.asbytes())}, recorded "
                f"{fingerprint(exc.expected_key.asbytes())}); nothing was sent. If the host was rebuilt, check the "
                "new fingerprint out of band and run `invoke hosts.trust`")
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return (f"REFUSED {where}: its SSH host key is not recorded in {host.known_hosts}; nothing was sent. Run "
                "`invoke hosts.trust` to check its fingerprint and record it")
    return None


def ansible_refusal(output: str) -> str | None:
    """One line for OpenSSH's host-key refusal in Ansible's output."""
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in output or "Host key verification failed" in output:
        hosts = sorted(set(re.findall(r"\[([A-Za-z0-9_.-]+)\]: UNREACHABLE", output)))
        return (f"REFUSED {', '.join(hosts) or 'host'}: SSH host key changed or not recorded in the inventory's "
                "known_hosts (Host key verification failed); nothing was run. Check the fingerprint out of band and "
                "run `invoke hosts.trust`")
    return None
