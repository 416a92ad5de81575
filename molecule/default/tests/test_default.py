"""Verify a host converged by the helios_server role (run by `molecule verify` through testinfra)."""

from __future__ import annotations

import json
import re
from typing import Any

MAX_EXPOSURE = 1.5


def test_helios_user_has_no_login_shell(host: Any) -> None:
    user = host.user("helios")
    assert user.exists
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin")


def test_directory_layout(host: Any) -> None:
    expected = {
        "/opt/helios/releases": ("root", 0o755),
        "/etc/helios": ("root", 0o700),
        "/var/lib/helios": ("helios", 0o700),
        "/var/backups/helios": ("root", 0o700),
        "/var/log/helios": ("root", 0o750),
    }
    for path, (owner, mode) in expected.items():
        item = host.file(path)
        assert item.is_directory, path
        assert item.user == owner, path
        assert item.mode == mode, f"{path}: {oct(item.mode)}"
    audit = host.file("/var/log/helios/audit.jsonl")
    assert audit.is_file and audit.user == "root"


def test_current_release(host: Any) -> None:
    current = host.file("/opt/helios/current")
    assert current.is_symlink
    target = current.linked_to
    assert re.fullmatch(r"/opt/helios/releases/\d{8}T\d{6}Z-[0-9a-f]{7}", target), target
    manifest = json.loads(host.file(f"{target}/release.json").content_string)
    assert {"version", "git_sha", "schema_version", "built_at", "deployed_by"} <= manifest.keys()
    assert host.file(f"{target}/venv/bin/helios").is_file
    assert host.file(target).user == "root"
    # the first release is promoted (new entries allowed) and is the last good one
    assert host.file("/opt/helios/promoted").content_string.strip() == target.rsplit("/", 1)[1]
    assert host.file("/opt/helios/last-good").content_string.strip() == target.rsplit("/", 1)[1]
    assert host.file("/usr/local/lib/helios/layout.json").is_file


def test_env_file_is_root_only(host: Any) -> None:
    env = host.file("/etc/helios/helios.env")
    assert env.is_file
    assert env.user == "root" and env.group == "root"
    assert env.mode == 0o600
    assert env.mode & 0o077 == 0  # never group/world readable
    content = env.content_string
    assert "TRADING_MODE='PAPER'" in content
    assert "HELIOS_MARKET_DATA='sim'" in content


def test_units_active(host: Any) -> None:
    service = host.service("helios.service")
    assert service.is_enabled
    assert service.is_running
    assert host.service("helios-backup.timer").is_enabled
    show = host.check_output("systemctl show helios.service -p User -p Type -p WatchdogUSec -p NRestarts")
    assert "User=helios" in show
    assert "Type=notify" in show
    assert "WatchdogUSec=30s" in show
    main_pid = host.check_output("systemctl show helios.service -p MainPID --value")
    assert host.check_output(f"ps -o user= -p {main_pid}").strip() == "helios"


def test_security_exposure(host: Any) -> None:
    out = host.check_output("systemd-analyze security helios.service --no-pager | tail -n 1")
    match = re.search(r"exposure level for helios\.service:\s*([0-9.]+)", out)
    assert match, out
    assert float(match.group(1)) <= MAX_EXPOSURE, out


def test_unit_verifies(host: Any) -> None:
    result = host.run("systemd-analyze verify /etc/systemd/system/helios.service")
    assert result.rc == 0, result.stderr


def test_health_endpoint(host: Any) -> None:
    env = host.file("/etc/helios/helios.env").content_string
    match = re.search(r"^HELIOS_API_PORT='(\d+)'$", env, re.MULTILINE)
    assert match, "HELIOS_API_PORT missing from the env file"
    port = match.group(1)
    assert port == "8201"  # molecule host_vars: each host its own port on the shared loopback
    code = host.check_output(
        'python3 -c "import urllib.request,sys; '
        f"r=urllib.request.urlopen('http://127.0.0.1:{port}/api/health', timeout=5); print(r.status)\""
    )
    assert code.strip() == "200"


def test_journald_retention_and_backup(host: Any) -> None:
    assert host.file("/etc/systemd/journald.conf.d/50-helios.conf").contains("MaxRetentionSec=")
    host.run_test("systemctl start helios-backup.service")
    backups = host.check_output("ls -1 /var/backups/helios").split()
    assert backups, "no backup snapshot was written"
    latest = backups[-1]
    assert host.file(f"/var/backups/helios/{latest}/SHA256SUMS").is_file
    assert host.file(f"/var/backups/helios/{latest}/helios.env").mode == 0o600
