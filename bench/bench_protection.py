"""Entry fill on the exchange -> protective order acknowledged by the exchange (issue 11): stop-limit vs OCO.

  python bench/bench_protection.py [--runs 20] [--latency-ms 0] [--kind both|stop-limit|oco]

A LIVE engine (the service's own wiring) against the exchange double on loopback: a resting limit BUY is filled by a
price move on the double (t0, the exchange's fill), then the engine's next tick runs; t1 is when the double
acknowledged the protective placement (its answer reached Helios): a STOP_LOSS_LIMIT (``POST /v2/orders/stop/limit``,
201; the pair's documented order types) or, with the double listing ``OT_OCO`` for the pair, a conditional TP/SL
(``POST /v1/orders/conditionals``, 202 "accepted for processing"). The pair's order types are asked before t0 (a
running service has them cached). Printed: t1 - t0 when the tick starts at
once (Helios' own work: fill sync + protection), p50/p99 over the runs. In production add the tick phase: up to
HELIOS_TICK_SECONDS (default 1 s) until the next tick starts. ``--latency-ms`` adds that much latency to every
exchange request (a real network).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import summary
from helios.config import load_settings
from helios.models import OrderPurpose, OrderType, Side
from helios.protection import OCO_PREFIX, PROTECTIVE_PREFIX
from helios.service import build_runtime
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from helios_double.book import DEFAULT_ORDER_TYPES
from tests.service.conftest import ScriptedStrategy


def one_run(latency_ms: int, kind: str) -> float:
    double = ExchangeDouble(port=0, prices={"BTCZAR": Decimal(1_000_000)}, balances={"ZAR": Decimal(100_000)}).start()
    if kind == "oco":
        double.set_order_types("BTCZAR", (*DEFAULT_ORDER_TYPES, "OT_OCO"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {"TRADING_MODE": "LIVE", "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": DEFAULT_KEY,
               "VALR_API_SECRET": DEFAULT_SECRET, "VALR_BASE_URL": double.url,
               "HELIOS_API_TOKEN": "bench-token-0123456789abcdef", "HELIOS_STATE_DIR": str(Path(tmp) / "state"),
               "MAX_POSITION_SIZE_ZAR": "100000", "MAX_PORTFOLIO_RISK_PCT": "100", "MAX_DAILY_LOSS_ZAR": "500",
               "HELIOS_MAX_ORDERS_PER_MINUTE": "1000"}
        runtime = build_runtime(load_settings(env), strategy=ScriptedStrategy())
        engine = runtime.engine
        try:
            engine.record_starting_balances(engine.clock())
            engine.start_up()
            engine.step()
            if engine.protection.oco_supported("BTCZAR") is not (kind == "oco"):
                raise SystemExit(f"the pair's order types do not match --kind {kind}")
            engine.submit_order(pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT, quantity=Decimal("0.0002"),
                                price=Decimal(990_000), purpose=OrderPurpose.ENTRY, stop_loss=Decimal(950_000),
                                take_profit=Decimal(1_200_000), reason="bench")
            if latency_ms:
                double.inject_latency(latency_ms, "/")
            double.set_price("BTCZAR", "985000")  # the exchange fills the entry now
            t0 = time.perf_counter()
            engine.step()
            if kind == "oco":
                acked = [c for c in double.conditionals() if str(c.get("customerOrderId", "")).startswith(OCO_PREFIX)]
            else:
                acked = [o for o in double.open_orders() if (o.customer_order_id or "").startswith(PROTECTIVE_PREFIX)]
            if not acked:
                raise SystemExit("no protective order after the tick")
            return (time.perf_counter() - t0) * 1000
        finally:
            double.clear_faults()
            engine.alerter.close()
            engine.client.close()
            engine.market.close()
            runtime.journal.close()
            double.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--kind", choices=["both", "stop-limit", "oco"], default="both")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    for kind in ("stop-limit", "oco") if args.kind == "both" else (args.kind,):
        values = [one_run(args.latency_ms, kind) for _ in range(args.runs)]
        print(summary(f"entry fill -> {kind} acked (latency {args.latency_ms} ms)", values, "ms",
                      "+ up to one tick (HELIOS_TICK_SECONDS)"))


if __name__ == "__main__":
    main()
