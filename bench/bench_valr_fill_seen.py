"""How long after the exchange fills an order Helios sees the fill: account WebSocket vs REST polling.

    .venv/bin/python bench/bench_valr_fill_seen.py [--n 40] [--poll-seconds 1.0] [--runs 3]

Against the exchange double on loopback. Each sample: a resting limit BUY, then the double's price moves through it
(the fill happens inside ``set_price``; t0 is taken just before). WebSocket: until ``NEW_ACCOUNT_TRADE`` for that
order reaches ``AccountStream.on_event``. REST: a poller calling ``ValrClient.fills()`` every ``--poll-seconds``
(the engine's default tick is 1 s) until the fill shows up. Median of ``--runs`` runs' p50/p99 is printed.
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import percentile
from helios.exchange.valr import ValrClient
from helios.exchange.valr_ws import AccountEvent, AccountStream
from helios.models import OrderRequest, OrderType, Side
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble

BTC = "BTCZAR"


def _orders(
    client: ValrClient,
    double: ExchangeDouble,
    n: int,
    tag: str,
    wait_seen: Callable[[str], None],
    jitter: float = 0.0,
) -> list[float]:
    latencies: list[float] = []
    for i in range(n):
        cid = f"{tag}-{i}"
        client.place_order(OrderRequest(cid, BTC, Side.BUY, OrderType.LIMIT, Decimal("0.001"), Decimal("1190000")))
        time.sleep(random.uniform(0, jitter))  # the fill lands at a random phase of the poller's cycle
        started = time.perf_counter()
        double.set_price(BTC, "1189000")  # fills our resting BUY now
        wait_seen(cid)
        latencies.append((time.perf_counter() - started) * 1000)
        double.set_price(BTC, "1200000")
    return latencies


def run_ws(n: int) -> list[float]:
    with ExchangeDouble(balances={"ZAR": Decimal(10_000_000)}) as double:
        client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)
        events: queue.Queue[AccountEvent] = queue.Queue()
        stream = AccountStream(double.url, DEFAULT_KEY, DEFAULT_SECRET, on_event=events.put).start()
        stream.wait_connected()
        double.wait_ws_connections(1, "/ws/account")

        def seen(cid: str) -> None:
            while True:
                event = events.get(timeout=10)
                if event.fill is not None and event.fill.customer_order_id == cid:
                    return

        try:
            return _orders(client, double, n, "ws", seen)
        finally:
            stream.stop()
            client.close()


def run_rest(n: int, poll_seconds: float) -> list[float]:
    with ExchangeDouble(balances={"ZAR": Decimal(10_000_000)}) as double:
        client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)
        poller = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)
        known: set[str] = set()
        found = threading.Condition()
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                cids = {f.customer_order_id for f in poller.fills() if f.customer_order_id}
                with found:
                    known.update(cids)
                    found.notify_all()
                stop.wait(poll_seconds)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()

        def seen(cid: str) -> None:
            with found:
                found.wait_for(lambda: cid in known, timeout=30)

        try:
            return _orders(client, double, n, "rest", seen, jitter=poll_seconds)
        finally:
            stop.set()
            thread.join(timeout=10)
            client.close()
            poller.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runners = (("websocket", lambda: run_ws(args.n)), ("rest-poll", lambda: run_rest(args.n, args.poll_seconds)))
    for name, runner in runners:
        p50s, p99s = [], []
        for _ in range(args.runs):
            values = runner()
            p50s.append(percentile(values, 50))
            p99s.append(percentile(values, 99))
        print(f"fill seen after the exchange filled it, {name:<9}: p50={statistics.median(p50s):8.2f} ms "
              f"p99={statistics.median(p99s):8.2f} ms  (n={args.n} x {args.runs} runs, median of runs)")


if __name__ == "__main__":
    main()
