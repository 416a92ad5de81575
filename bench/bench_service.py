"""Service start to healthy (target <= 2 s) and resident memory after simulated trading (target <= 100 MB).

  python bench/bench_service.py startup [RUNS]
  python bench/bench_service.py memory [SECONDS] [TICK]    default 600 s at a 0.1 s tick (10x the default rate)

Runs the real ``helios run`` process (PAPER, simulated prices, real uvicorn, real SQLite) on a loopback port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import free_port, summary


def start(state: str, tick: str = "1") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "HELIOS_STATE_DIR": state, "HELIOS_MARKET_DATA": "sim", "HELIOS_API_PORT": str(port),
           "HELIOS_TICK_SECONDS": tick, "HELIOS_API_TOKEN": "bench-token-0123456789", "MAX_POSITION_SIZE_ZAR": "1000",
           "HELIOS_PAPER_STARTING_ZAR": "100000"}
    proc = subprocess.Popen([sys.executable, "-m", "helios.cli", "run"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/api/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.005)
    raise SystemExit("service never became healthy")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def startup(runs: int) -> None:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc, url = start(tmp)
            wait_healthy(url)
            times.append(time.perf_counter() - t0)
            proc.terminate()
            proc.wait(30)
    print(summary("process start -> /api/health 200", times, "s", "<= 2 s"))


def memory(seconds: float, tick: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start(tmp, tick)
        wait_healthy(url)
        first = rss_mb(proc.pid)
        time.sleep(seconds)
        last = rss_mb(proc.pid)
        status = requests.get(url + "/api/status", timeout=5).json()
        orders = requests.get(url + "/api/orders?limit=1000", timeout=5).json()["orders"]
        proc.terminate()
        proc.wait(30)
    print(f"RSS after start {first:.1f} MB; after {seconds:.0f} s at a {tick} s tick: {last:.1f} MB "
          f"(target <= 100 MB); orders journaled {len(orders)}, open positions {len(status['positions'])}, "
          f"P&L today R{status['pnl']['today_total_zar']}")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "startup"
    if what == "startup":
        startup(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    else:
        memory(float(sys.argv[2]) if len(sys.argv) > 2 else 600, sys.argv[3] if len(sys.argv) > 3 else "0.1")
