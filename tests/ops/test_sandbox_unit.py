"""Pure parts of helios_ops.sandbox: ports, names, cache key, inventory, safety checks (no root, no SSH)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from helios_ops import sandbox


def test_host_specs_give_each_host_its_own_ports() -> None:
    hosts = sandbox.host_specs(sandbox.SANDBOX_GROUP, 3)
    assert [(h.name, h.ssh_port, h.api_port) for h in hosts] == [
        ("helios1", 2221, 8101),
        ("helios2", 2222, 8102),
        ("helios3", 2223, 8103),
    ]


def test_groups_use_disjoint_port_ranges() -> None:
    ports: list[int] = []
    for spec in sandbox.GROUPS.values():
        for host in sandbox.host_specs(spec, spec.max_hosts):
            ports += [host.ssh_port, host.api_port]
    assert len(ports) == len(set(ports))
    assert 8100 not in ports  # the production default port stays free


@pytest.mark.parametrize("count", [0, -1, 10])
def test_host_count_is_bounded(count: int) -> None:
    with pytest.raises(sandbox.SandboxError, match="--hosts must be between 1 and 9"):
        sandbox.host_specs(sandbox.SANDBOX_GROUP, count)


def test_cache_key_is_stable_and_order_independent() -> None:
    a = sandbox.cache_key("bookworm", "http://m", ["b", "a", "c"])
    b = sandbox.cache_key("bookworm", "http://m", ["c", "b", "a", "a"])
    assert a == b and len(a) == 16
    assert a != sandbox.cache_key("bookworm", "http://m", ["a", "b"])
    assert a != sandbox.cache_key("trixie", "http://m", ["a", "b", "c"])
    path = sandbox.base_tarball_path(Path("/c"), "bookworm", "http://m", ["a"])
    assert path.parent == Path("/c") and path.name.startswith("bookworm-minbase-") and path.suffix == ".tar"


def test_base_packages_cover_the_role() -> None:
    for needed in ("systemd", "openssh-server", "python3-venv", "systemd-timesyncd", "sudo", "python3-apt"):
        assert needed in sandbox.BASE_PACKAGES


def test_nspawn_command_never_registers_and_boots_the_given_rootfs() -> None:
    cmd = sandbox.nspawn_command(Path("/x/rootfs"), "helios1")
    assert cmd[0] == "systemd-nspawn"
    assert {"-b", "--register=no", "--keep-unit"} <= set(cmd)
    assert cmd[cmd.index("-D") + 1] == "/x/rootfs"
    assert cmd[cmd.index("-M") + 1] == "helios1"


def test_check_rootfs_path_refuses_the_machine_root(tmp_path: Path) -> None:
    with pytest.raises(sandbox.SandboxError, match="refusing"):
        sandbox.check_rootfs_path(Path("/"), tmp_path)
    with pytest.raises(sandbox.SandboxError, match="refusing"):
        sandbox.check_rootfs_path(tmp_path / ".." / "elsewhere", tmp_path)
    with pytest.raises(sandbox.SandboxError, match="refusing"):
        sandbox.check_rootfs_path(tmp_path, tmp_path)
    inside = tmp_path / "hosts" / "h1" / "rootfs"
    assert sandbox.check_rootfs_path(inside, tmp_path) == inside.resolve()


def test_sshd_dropin_is_loopback_key_only() -> None:
    text = sandbox.sshd_dropin(2222)
    assert "Port 2222\n" in text
    assert "ListenAddress 127.0.0.1\n" in text
    assert "PasswordAuthentication no\n" in text


def test_inventory_has_per_host_ports_and_key(tmp_path: Path) -> None:
    hosts = sandbox.host_specs(sandbox.SANDBOX_GROUP, 2)
    key = tmp_path / "id_ed25519"
    data = yaml.safe_load(sandbox.render_inventory(hosts, key, known_hosts=tmp_path / "known_hosts"))
    group = data["all"]["children"]["sandbox"]
    assert group["vars"]["ansible_host"] == "127.0.0.1"
    assert group["vars"]["ansible_user"] == "root"
    assert group["vars"]["ansible_ssh_private_key_file"] == str(key)
    # issue 10 finding 4: host keys checked against the inventory's known_hosts, never accepted blindly
    assert group["vars"]["ansible_ssh_common_args"].split() == [
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "-o", "LogLevel=ERROR",
    ]
    assert group["hosts"]["helios1"] == {"ansible_port": 2221, "helios_api_port": 8101}
    assert group["hosts"]["helios2"] == {"ansible_port": 2222, "helios_api_port": 8102}


def test_molecule_instances(tmp_path: Path) -> None:
    hosts = sandbox.host_specs(sandbox.MOLECULE_GROUP, 1)
    [entry] = sandbox.molecule_instances(hosts, tmp_path / "k")
    assert entry == {
        "instance": "molecule1",
        "address": "127.0.0.1",
        "user": "root",
        "port": 2321,
        "identity_file": str(tmp_path / "k"),
    }


def test_port_in_use_detects_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert sandbox.port_in_use(port)
    assert not sandbox.port_in_use(port)


def test_taken_ports_names_port_and_host() -> None:
    hosts = sandbox.host_specs(sandbox.SANDBOX_GROUP, 2)
    problems = sandbox.taken_ports(hosts, probe=lambda port: port in {2222, 8101})
    assert problems == ["8101 (helios api of helios1)", "2222 (ssh of helios2)"]


def test_up_refuses_taken_port_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    monkeypatch.setattr(sandbox, "port_in_use", lambda port, host="127.0.0.1": port == 2221)
    box = sandbox.Sandbox(state_dir=tmp_path / "state", inventory_file=None)
    with pytest.raises(sandbox.SandboxError) as err:
        box.up(1)
    assert str(err.value) == "port(s) already in use on 127.0.0.1: 2221 (ssh of helios1)"
    assert "\n" not in str(err.value)


def test_up_requires_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    box = sandbox.Sandbox(state_dir=tmp_path, inventory_file=None)
    with pytest.raises(sandbox.SandboxError, match=r"^sandbox.up must run as root"):
        box.up(1)


def test_cli_reports_one_line_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    assert sandbox.main(["down"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "sandbox down failed: sandbox.down must run as root (debootstrap and systemd-nspawn need it)"


def test_is_alive_rejects_foreign_pid(tmp_path: Path) -> None:
    box = sandbox.Sandbox(state_dir=tmp_path, inventory_file=None)
    state = sandbox.HostState(name="h", pid=1, ssh_port=1, api_port=2, rootfs=str(tmp_path / "rootfs"))
    assert not box.is_alive(state)  # pid 1 is not our systemd-nspawn
    state.pid = 2**22 + 12345
    assert not box.is_alive(state)
