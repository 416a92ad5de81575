"""Order round-trip overhead of ValrClient on top of the exchange double's injected latency.

    .venv/bin/python bench/bench_valr_roundtrip.py [--n 200] [--latency-ms 50]

For each call: overhead = measured wall time - injected latency x HTTP requests the call made (counted on the
double). What remains is the client (signing, JSON, requests/urllib3) plus the double's own work, on loopback.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # helios_double is imported from the checkout

from helios.exchange.valr import ValrClient
from helios.models import OrderRequest, OrderType, Side
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(double: ExchangeDouble, latency_ms: int, call: Callable[[], object]) -> tuple[float, int]:
    before = len(double.requests())
    started = time.perf_counter()
    call()
    elapsed_ms = (time.perf_counter() - started) * 1000
    made = len(double.requests()) - before
    return elapsed_ms - latency_ms * made, made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="orders per measurement")
    parser.add_argument("--latency-ms", type=int, default=50, help="latency injected by the double per request")
    args = parser.parse_args()

    double = ExchangeDouble(rate_limit_per_key=1_000_000, rate_limit_per_ip=1_000_000).start()
    double.set_balance("ZAR", "1000000000")
    client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)
    client.ping()
    client.pair_info("BTCZAR")
    for i in range(20):  # warm up connections and caches
        client.place_order(
            OrderRequest(f"warm-{i}", "BTCZAR", Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1000000"))
        )
    client.cancel_all_orders()
    double.inject_latency(args.latency_ms)

    results: dict[str, list[float]] = {
        "place_order (POST + status GET)": [],
        "get_order (GET)": [],
        "cancel_order (DELETE)": [],
    }
    requests_per_call: dict[str, int] = {}
    for i in range(args.n):
        cid = f"bench-{i}"
        request = OrderRequest(cid, "BTCZAR", Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1000000"))
        for name, call in (
            ("place_order (POST + status GET)", lambda r=request: client.place_order(r)),
            ("get_order (GET)", lambda c=cid: client.get_order("BTCZAR", c)),
            ("cancel_order (DELETE)", lambda c=cid: client.cancel_order("BTCZAR", c)),
        ):
            overhead, made = measure(double, args.latency_ms, call)
            results[name].append(overhead)
            requests_per_call[name] = made
    client.close()
    double.stop()

    print(f"ValrClient overhead over injected latency ({args.latency_ms} ms/request), n={args.n}, loopback")
    print(f"{'call':34} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in results.items():
        print(
            f"{name:34} {requests_per_call[name]:>8} {percentile(values, 50):>8.2f} "
            f"{percentile(values, 99):>8.2f} {statistics.fmean(values):>8.2f}"
        )


if __name__ == "__main__":
    main()
