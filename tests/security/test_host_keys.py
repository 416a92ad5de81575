"""Issue 10 finding 4 without a host: the known_hosts file per inventory, fingerprints as OpenSSH prints them, and
a strict client that refuses an unknown or changed key (a real sshd-less paramiko server on loopback would need a
host; the sandbox suite covers that: tests/deploy/test_deploy_sandbox.py::test_changed_host_key_is_refused_everywhere).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import paramiko  # type: ignore[import-untyped]
import pytest

from helios_ops import commands as cmd
from helios_ops import hostkeys
from helios_ops.inventory import Host, OpsError, inventory_hosts


def _keypair(tmp_path: Path, name: str) -> Path:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key = _keypair(tmp_path, "k")
    ours = hostkeys.parse_public_key(Path(f"{key}.pub").read_text()).fingerprint
    theirs = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], capture_output=True, text=True, check=True)
    assert theirs.stdout.split()[1] == ours
    assert hostkeys.FINGERPRINT_RE.fullmatch(ours)


def test_record_replaces_only_that_host(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    a = hostkeys.parse_public_key(Path(f"{_keypair(tmp_path, 'a')}.pub").read_text())
    b = hostkeys.parse_public_key(Path(f"{_keypair(tmp_path, 'b')}.pub").read_text())
    hostkeys.record(known, "127.0.0.1", 2421, [a])
    hostkeys.record(known, "10.0.0.5", 22, [a])
    hostkeys.record(known, "127.0.0.1", 2421, [b])
    assert hostkeys.recorded(known, "127.0.0.1", 2421) == [b]
    assert hostkeys.recorded(known, "10.0.0.5", 22) == [a]
    assert hostkeys.recorded(known, "127.0.0.1", 2422) == []
    # the same file is what OpenSSH and paramiko read
    loaded = paramiko.HostKeys(str(known))
    assert loaded.lookup("[127.0.0.1]:2421") is not None and loaded.lookup("10.0.0.5") is not None


def test_strict_client_rejects_unknown_keys(tmp_path: Path) -> None:
    host = Host(name="h1", address="127.0.0.1", port=2421, known_hosts=str(tmp_path / "known_hosts"))
    client = hostkeys.strict_client(host)
    assert isinstance(client._policy, paramiko.RejectPolicy)
    assert len(client.get_host_keys()) == 0 and not client._system_host_keys.keys()  # nothing else trusted
    with pytest.raises(OpsError, match="no known_hosts"):
        hostkeys.strict_client(Host(name="h2", address="x"))


def test_refusals_are_one_line(tmp_path: Path) -> None:
    host = Host(name="h1", address="127.0.0.1", port=2421, known_hosts=str(tmp_path / "known_hosts"))
    got = paramiko.Ed25519Key.from_private_key_file(str(_keypair(tmp_path, "got")))
    expected = paramiko.Ed25519Key.from_private_key_file(str(_keypair(tmp_path, "exp")))
    changed = hostkeys.refusal(host, paramiko.BadHostKeyException("127.0.0.1", got, expected))
    assert changed is not None and "\n" not in changed and "CHANGED" in changed
    assert hostkeys.fingerprint(got.asbytes()) in changed and "nothing was sent" in changed
    unknown = hostkeys.refusal(host, paramiko.SSHException("Server '[127.0.0.1]:2421' not found in known_hosts"))
    assert unknown is not None and "not recorded" in unknown and "hosts.trust" in unknown
    assert hostkeys.refusal(host, OSError("connection refused")) is None
    out = "fatal: [deploy1]: UNREACHABLE! => ... Host key verification failed.\n"
    line = hostkeys.ansible_refusal(out)
    assert line is not None and line.startswith("REFUSED deploy1")


def test_no_inventory_turns_host_key_checking_off() -> None:
    assert cmd.playbook_env(Path("/tmp/r.json"), "me")["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    cfg = (cmd.ANSIBLE_DIR / "ansible.cfg").read_text()
    assert "host_key_checking = True" in cfg
    production = inventory_hosts("production")
    assert all(h.known_hosts and h.known_hosts.endswith("inventory/production/known_hosts") for h in production)
    prod_vars = (cmd.ANSIBLE_DIR.parent / "inventory/production/group_vars/all/main.yml").read_text()
    assert "StrictHostKeyChecking=yes" in prod_vars
    assert "UserKnownHostsFile={{ inventory_dir }}/known_hosts" in prod_vars


def test_ansible_reads_an_inventory_directory_without_taking_its_known_hosts_for_an_inventory(tmp_path: Path) -> None:
    """Seen in `make demo`: `-i inventory/<name>` made Ansible try known_hosts as a YAML and an INI inventory and
    print three "Failed to parse" warnings before every provision and playbook. Same config the ops commands use."""
    inventory = tmp_path / "inv"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    key = hostkeys.parse_public_key(Path(f"{_keypair(tmp_path, 'h')}.pub").read_text())
    hostkeys.record(inventory / "known_hosts", "127.0.0.1", 2421, [key])
    env = {**cmd.playbook_env(tmp_path / "r.json", "me"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    binary = Path(sys.executable).parent / "ansible-inventory"
    result = subprocess.run([str(binary), "-i", str(inventory), "--list"], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert '"h1"' in result.stdout
    assert "known_hosts" not in result.stderr and "WARNING" not in result.stderr, result.stderr
