"""``python -m helios_double --port 8200 [--price BTCZAR=1200000] [--key KEY:SECRET[:Perm,Perm]]``.

Prints the base URL on its first line, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from decimal import Decimal, InvalidOperation
from types import FrameType

from helios_double.book import DEFAULT_PRICES
from helios_double.server import (
    DEFAULT_KEY,
    DEFAULT_PERMISSIONS,
    DEFAULT_SECRET,
    DoubleVariant,
    ExchangeDouble,
    KeySpec,
)


def _pairs(values: list[str], what: str) -> dict[str, Decimal]:
    result: dict[str, Decimal] = {}
    for value in values:
        name, sep, amount = value.partition("=")
        try:
            if not sep:
                raise InvalidOperation
            result[name.strip().upper()] = Decimal(amount)
        except InvalidOperation:
            raise SystemExit(f"--{what} expects NAME=NUMBER, got {value!r}") from None
    return result


def _keys(values: list[str]) -> dict[str, KeySpec]:
    keys: dict[str, KeySpec] = {}
    for value in values:
        parts = value.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise SystemExit("--key expects KEY:SECRET or KEY:SECRET:Perm1,Perm2")
        perms = tuple(p.strip() for p in parts[2].split(",")) if len(parts) == 3 else DEFAULT_PERMISSIONS
        keys[parts[0]] = KeySpec(parts[1], perms)
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helios_double", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; keep it loopback)")
    parser.add_argument("--port", type=int, default=8200, help="port (0 = any free port)")
    parser.add_argument("--price", action="append", default=[], metavar="PAIR=PRICE", help="initial price")
    parser.add_argument("--balance", action="append", default=[], metavar="CUR=AMOUNT", help="initial balance")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY:SECRET[:PERMS]",
        help=f"API key (default: {DEFAULT_KEY} with the documented dev secret)",
    )
    parser.add_argument("--fill-ratio", default="1", help="share of an order filled per price step (0,1]")
    parser.add_argument("--spread-pct", default="0", help="bid/ask spread around the price, in percent")
    parser.add_argument("--latency-ms", type=int, default=0, help="added latency on every VALR path")
    parser.add_argument("--rate-limit-key", type=int, default=2000, help="requests per minute per key")
    parser.add_argument("--rate-limit-ip", type=int, default=1200, help="requests per minute per IP")
    parser.add_argument("--timestamp-tolerance-ms", type=int, default=10_000)
    parser.add_argument("--rate-limit-public", type=int, default=None,
                        help="public calls per minute per IP (VALR documents 30; default: unlimited)")
    parser.add_argument("--unknown-order", choices=("400", "404"), default="400",
                        help="answer for an unknown order (docs/valr-contract.md, Variants)")
    parser.add_argument("--failed-placement", choices=("400", "201"), default="400",
                        help="HTTP status of a failed v2 placement's {orderId, code, message} body")
    parser.add_argument("--placement-429", choices=("refused", "processed"), default="refused",
                        help="whether a placement answered 429 was processed")
    parser.add_argument("--ws-envelope", choices=("data", "flat"), default="data",
                        help="WebSocket message shape")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    prices = dict(DEFAULT_PRICES)
    prices.update(_pairs(args.price, "price"))
    double = ExchangeDouble(
        args.host,
        args.port,
        keys=_keys(args.key) or None,
        prices=prices,
        balances=_pairs(args.balance, "balance") or None,
        fill_ratio=Decimal(args.fill_ratio),
        spread_pct=Decimal(args.spread_pct),
        timestamp_tolerance_ms=args.timestamp_tolerance_ms,
        rate_limit_per_key=args.rate_limit_key,
        rate_limit_per_ip=args.rate_limit_ip,
        rate_limit_public=args.rate_limit_public,
        variant=DoubleVariant(args.unknown_order, args.failed_placement, args.placement_429),
    )
    double.ws_envelope = args.ws_envelope
    if args.latency_ms:
        double.inject_latency(args.latency_ms)
    try:
        double.start()
    except OSError as exc:
        print(f"exchange double: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(double.url, flush=True)
    print(
        f"exchange double (VALR look-alike) keys: {', '.join(sorted(double.keys))}; admin under {double.url}/_double/",
        file=sys.stderr,
        flush=True,
    )
    if DEFAULT_KEY in double.keys and double.keys[DEFAULT_KEY].secret == DEFAULT_SECRET:
        print(
            "using the documented dev key (helios_double.DEFAULT_KEY / DEFAULT_SECRET)",
            file=sys.stderr,
            flush=True,
        )
    stopped.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
