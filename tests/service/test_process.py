"""The real ``helios run`` process: single instance, SIGTERM, sd_notify, a durable HALTED state across kill -9,
and the ``--direct`` emergency stop when the service is down."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from helios.journal import Journal
from helios.models import Mode, TradingState

from .conftest import ServiceProcess


def test_starts_paper_healthy_and_stops_cleanly_on_sigterm(service_factory: Callable[..., ServiceProcess]) -> None:
    service = service_factory()
    health = service.wait_healthy()
    assert health["mode"] == "PAPER"
    assert service.get("/api/mode/current").json()["mode"] == "PAPER"
    started = time.monotonic()
    assert service.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    log = service.log()
    assert "helios stopped" in log
    for line in log.splitlines():
        json.loads(line)  # structured: one JSON object per line


def test_a_second_instance_exits_before_doing_anything(service_factory: Callable[..., ServiceProcess],
                                                       tmp_path: Path) -> None:
    first = service_factory()
    first.wait_healthy()
    second = service_factory(state_dir=first.state_dir)
    assert second.proc.wait(timeout=30) == 3
    assert "another helios instance" in second.log()
    assert first.get("/api/health").status_code == 200, "the first one keeps running"


def test_sd_notify_ready_and_watchdog(tmp_path: Path) -> None:
    """Datagrams are drained by a reader thread all along: the kernel queues only net.unix.max_dgram_qlen (often 10)
    of them, and a slow shutdown under load must not block the service's notify or lose STOPPING=1."""
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    received: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        with contextlib.suppress(OSError):
            while True:
                data = sock.recv(4096)
                if not data:
                    return
                received.put(data.decode().split("\n")[0])

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    from .conftest import start_service

    service = start_service(tmp_path / "state", tmp_path / "h.log", extra_env={"NOTIFY_SOCKET": address})

    def wait_for(first_line: str) -> None:
        while received.get(timeout=60) != first_line:  # queue.Empty if it never comes
            pass

    try:
        wait_for("READY=1")
        wait_for("WATCHDOG=1")
        service.stop()
        wait_for("STOPPING=1")
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as wake:
            wake.sendto(b"", address)  # an empty datagram ends the reader
        reader.join(10)
        sock.close()


def test_emergency_stop_survives_kill_9_and_restart(service_factory: Callable[..., ServiceProcess]) -> None:
    service = service_factory()
    service.wait_healthy()
    response = service.post("/api/emergency-stop", json={"reason": "drill", "actor": "pytest"})
    assert response.status_code == 200 and response.json()["trading_state"] == "HALTED"
    service.stop(signal.SIGKILL)

    again = service_factory(state_dir=service.state_dir)
    health = again.wait_healthy()
    assert health["trading_state"] == "HALTED"
    assert again.post("/api/resume", json={"reason": "drill over"}).json()["trading_state"] == "ACTIVE"


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "helios.cli", *args], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env}, timeout=60, check=False)


def test_direct_emergency_stop_works_with_the_service_down(service_factory: Callable[..., ServiceProcess],
                                                           tmp_path: Path) -> None:
    service = service_factory()
    service.wait_healthy()
    env = {k: v for k, v in service.env.items()}
    service.stop(signal.SIGKILL)  # dead: the API does not answer

    through_api = _cli(["emergency-stop", "--reason", "api down"], env)
    assert through_api.returncode == 1
    assert "did not answer" in through_api.stderr and "--direct" in through_api.stderr

    direct = _cli(["emergency-stop", "--direct", "--reason", "api down", "--json"], env)
    assert direct.returncode == 0, direct.stderr
    report = json.loads(direct.stdout)
    assert report["trading_state"] == "HALTED" and report["zero_open_orders_confirmed"] is True

    journal = Journal.open(Path(env["HELIOS_STATE_DIR"]), Mode.PAPER)
    try:
        assert journal.read_state() is TradingState.HALTED
    finally:
        journal.close()
    again = service_factory(state_dir=service.state_dir)
    assert again.wait_healthy()["trading_state"] == "HALTED"
    refused = _cli(["resume", "--direct", "--reason", "x"], env)
    assert refused.returncode == 3 and "running" in refused.stderr


def test_cli_status_and_emergency_stop_through_the_api(service_factory: Callable[..., ServiceProcess]) -> None:
    service = service_factory()
    service.wait_healthy()
    status = _cli(["status"], service.env)
    assert status.returncode == 0, status.stderr
    assert "mode            PAPER" in status.stdout and "trading state   ACTIVE" in status.stdout
    stop = _cli(["emergency-stop", "--reason", "cli drill"], service.env)
    assert stop.returncode == 0, stop.stderr
    assert "HALTED" in stop.stdout and "open orders remaining  0 (confirmed by re-query)" in stop.stdout
    wrong = _cli(["resume", "--reason", "x"], {**service.env, "HELIOS_API_TOKEN": "not-the-token-123456"})
    assert wrong.returncode == 1 and "401" in wrong.stderr

