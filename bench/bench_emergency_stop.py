"""API emergency stop -> "HALTED, zero open orders confirmed", with 50 open orders.

  python bench/bench_emergency_stop.py            PAPER: 50 open paper orders (target <= 100 ms)
  python bench/bench_emergency_stop.py --live     LIVE against the exchange double with 50 ms injected latency
                                                  per request (target <= 300 ms)
  python bench/bench_emergency_stop.py --live --journal-locked
                                                  the same while another process holds the journal's write lock
                                                  (the stop cancels first; its answer says journal_recorded false)
  python bench/bench_emergency_stop.py --hanging  LIVE, every exchange request hangs, stop timeout 5 s, the
                                                  production client (10 s read timeout, 4 attempts): the stop's
                                                  wall time (target <= 5 s + one request timeout)

Measured from the operator's side: POST /api/emergency-stop on a real uvicorn server until its answer, which the
service sends only after the exchange re-query returned zero open orders. Also prints the service's own
``elapsed_ms`` (cancel-all + re-query).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import free_port, summary
from helios.config import load_settings
from helios.marketdata import ScriptedMarketData
from helios.models import OrderPurpose, OrderStatus, OrderType, Side
from helios.service import ApiServer, bind_socket, build_runtime
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from tests.service.conftest import ScriptedStrategy

TOKEN = "bench-token-0123456789abcdef"


LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def hold_journal_lock(path: Path) -> subprocess.Popen[str]:
    """Another process holding the journal's write lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def main() -> None:
    logging.disable(logging.CRITICAL)
    hanging = "--hanging" in sys.argv
    live = "--live" in sys.argv or hanging
    locked = "--journal-locked" in sys.argv
    rounds = 3 if hanging else 10
    double = None
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {"HELIOS_STATE_DIR": tmp, "HELIOS_API_PORT": str(port), "HELIOS_API_TOKEN": TOKEN,
               "MAX_POSITION_SIZE_ZAR": "10000000", "MAX_PORTFOLIO_RISK_PCT": "100",
               "HELIOS_MAX_ORDERS_PER_MINUTE": "100000", "HELIOS_PAPER_STARTING_ZAR": "10000000",
               "HELIOS_MAX_TICKER_AGE_SECONDS": "100000", "HELIOS_EMERGENCY_STOP_TIMEOUT_SECONDS": "5",
               "HELIOS_CAPITAL_STAGES_ZAR": "100000000"}  # the rollout stage limit is not what is measured
        if live:
            # VALR's request limits (the double enforces them) are not what is measured: rounds of 50 placements
            # plus the stop's cancels would pass 1,200 requests a minute
            double = ExchangeDouble(port=0, prices={"BTCZAR": Decimal(1_000_000)},
                                    balances={"ZAR": Decimal(10_000_000)}, rate_limit_per_ip=10**9,
                                    rate_limit_per_key=10**9).start()
            env.update({"TRADING_MODE": "LIVE", "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": DEFAULT_KEY,
                        "VALR_API_SECRET": DEFAULT_SECRET, "VALR_BASE_URL": double.url})
        settings = load_settings(env)
        runtime = build_runtime(settings, market=ScriptedMarketData({"BTCZAR": [Decimal(1_000_000)]}),
                                strategy=ScriptedStrategy())
        runtime.engine.record_starting_balances(runtime.engine.clock())
        runtime.engine.start_up()
        runtime.tick_once()
        server = ApiServer(runtime, bind_socket("127.0.0.1", port))
        server.start()
        session = requests  # a fresh connection per call, as the CLI makes
        url = f"http://127.0.0.1:{port}"
        totals, internal = [], []
        try:
            for round_ in range(rounds):
                if double is not None:
                    double.clear_faults()
                for i in range(50 if round_ == 0 or not hanging else 0):
                    record = runtime.engine.submit_order(
                        pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT, quantity=Decimal("0.0002"),
                        price=Decimal(900_000 + i), purpose=OrderPurpose.ENTRY, stop_loss=Decimal(800_000),
                        take_profit=Decimal(1_100_000))
                    assert record.status is OrderStatus.OPEN, record.error
                if double is not None:
                    double.inject_latency(30_000 if hanging else 50)
                locker = hold_journal_lock(runtime.journal.path) if locked else None
                t0 = time.perf_counter()
                response = session.post(f"{url}/api/emergency-stop", json={"reason": "bench"},
                                        headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
                totals.append((time.perf_counter() - t0) * 1000)
                report = response.json()
                if not hanging:
                    assert report["zero_open_orders_confirmed"] and report["open_orders_remaining"] == 0, report
                    assert report["journal_recorded"] is not locked, report
                internal.append(float(report["elapsed_ms"]))
                if locker is not None:
                    locker.communicate("")
                    retry = runtime.engine.halt_journal_retry
                    assert retry is not None
                    retry.join(30)
                if hanging:
                    continue  # stays HALTED; the next round stops again against the hanging exchange
                if double is not None:
                    double.clear_faults()
                runtime.tick_once()
                session.post(f"{url}/api/resume", json={"reason": "bench"},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).raise_for_status()
        finally:
            server.stop()
            runtime.client.close()
            runtime.journal.close()
            if double is not None:
                double.stop()
    mode = "LIVE (double, 50 ms latency/request)" if live else "PAPER"
    target = "<= 300 ms" if live else "<= 100 ms"
    if locked:
        mode += ", journal locked by another process"
    if hanging:
        mode, target = "LIVE, hanging exchange, 5 s stop timeout", "<= 5 s + one request timeout (10 s)"
    print(summary(f"{mode}: POST e-stop -> zero confirmed", totals, "ms", target))
    print(summary(f"{mode}: service cancel-all + re-query", internal, "ms"))


if __name__ == "__main__":
    main()
