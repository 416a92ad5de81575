"""Private REST calls per minute of a LIVE engine, account WebSocket up vs down (issue 11: REST as the slower safety
net).

  python bench/rest_polling.py [--runs 5] [--minutes 3]

A LIVE engine (the service's own wiring, the account stream attached as the service attaches it) against the
exchange double on loopback, with one resting entry order (so the full poll reads trade history, open orders and the
order). Simulated time: one tick per simulated second (the default HELIOS_TICK_SECONDS), the default
HELIOS_REST_SAFETY_POLL_SECONDS. Counted: the signed (private) requests the double received, per simulated minute.
Printed: the median over the runs, WebSocket up and down (the stream stopped).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import threading
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helios.config import load_settings
from helios.exchange.valr_ws import AccountStream, Connected
from helios.models import OrderPurpose, OrderType, Side
from helios.service import build_runtime
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from tests.safety.conftest import live_env
from tests.service.conftest import FakeClock, ScriptedStrategy


def one_run(minutes: int, stream_up: bool) -> float:
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        double = ExchangeDouble(port=0, prices={"BTCZAR": Decimal(1_000_000)}, balances={"ZAR": Decimal(100_000)})
        stack.callback(double.stop)
        double.start()
        env = live_env(double, Path(tmp) / "state", HELIOS_ENTRY_ORDER_TTL_SECONDS="86400")
        runtime = build_runtime(load_settings(env), strategy=ScriptedStrategy())
        engine = runtime.engine
        for close in (runtime.journal.close, engine.market.close, engine.client.close, engine.alerter.close):
            stack.callback(close)
        clock = FakeClock(engine.clock())
        engine.clock = clock
        connected = threading.Event()

        def on_reconnect(c: Connected) -> None:
            engine.on_account_reconnect(c)
            connected.set()

        stream = AccountStream(double.url, DEFAULT_KEY, DEFAULT_SECRET, on_event=engine.on_account_event,
                               on_reconnect=on_reconnect).start()
        stack.callback(stream.stop)
        engine.account_stream = stream
        engine.record_starting_balances(engine.clock())
        engine.start_up()
        if not connected.wait(10):
            raise SystemExit("the account stream never connected")
        engine.step()  # drains the connection: the REST reconciliation
        engine.submit_order(pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT, quantity=Decimal("0.0002"),
                            price=Decimal(990_000), purpose=OrderPurpose.ENTRY, stop_loss=Decimal(950_000),
                            take_profit=Decimal(1_200_000), reason="bench")
        if not stream_up:
            stream.stop()
        double.clear_requests()
        for _ in range(minutes * 60):
            clock.now += timedelta(seconds=1)
            engine.step()
        return sum(1 for r in double.requests() if r.api_key is not None) / minutes


def main() -> None:
    parser = argparse.ArgumentParser(description="private REST calls per minute, account WebSocket up vs down")
    parser.add_argument("--runs", type=int, default=5, help="runs per case (the median is printed)")
    parser.add_argument("--minutes", type=int, default=3, help="simulated minutes per run")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    for up in (True, False):
        values = [one_run(args.minutes, up) for _ in range(args.runs)]
        label = "account WebSocket up" if up else "account WebSocket down"
        print(f"private REST calls per minute, {label:<24} median {statistics.median(values):7.1f}  "
              f"(runs: {', '.join(f'{v:.1f}' for v in values)}; {args.minutes} min each, 1 tick/s)")


if __name__ == "__main__":
    main()
