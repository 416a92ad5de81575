"""The exchange double's HTTP side: VALR's paths and auth rules, rate limits, faults, admin endpoints.

Standard library only (``http.server.ThreadingHTTPServer``): starts in milliseconds, ships in the wheel.
Admin endpoints live under ``/_double/`` (never a VALR path) and need no auth: bind it to loopback only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import WebSocketException
from websockets.http11 import Request, Response
from websockets.sync.server import Server as WsServer
from websockets.sync.server import ServerConnection, serve

from helios_double.book import (
    DEFAULT_BALANCES,
    DEFAULT_ORDER_TYPES,
    DEFAULT_PRICES,
    ERR_AUTH,
    ERR_BAD_REQUEST,
    ERR_EXPIRED,
    ERR_FORBIDDEN,
    ERR_INVALID_ORDER,
    ERR_NOT_FOUND,
    ERR_READ_ONLY,
    FAILED_PLACEMENT_CODES,
    Book,
    DoubleError,
    Order,
    PairSpec,
    dec,
    iso,
    num,
)

log = logging.getLogger(__name__)

DEFAULT_KEY = "helios-double-key"
DEFAULT_SECRET = "helios-double-secret-not-a-real-valr-secret"  # noqa: S105 - the double's documented dev key
DEFAULT_PERMISSIONS = ("View access", "Trade")


@dataclass(frozen=True)
class KeySpec:
    secret: str
    permissions: tuple[str, ...] = DEFAULT_PERMISSIONS
    label: str = "helios-double"
    allowed_ip_cidr: str | None = None
    is_sub_account: bool = False


@dataclass(frozen=True)
class DoubleVariant:
    """Where VALR's sources disagree, which answer the double gives (docs/valr-contract.md, "Variants").

    * ``unknown_order``: ``"400"`` -> ``400 {"code": -1, "message": "Invalid Order. "}`` (API collection, Order Status
      (customerOrderId) / Invalid Order); ``"404"`` (agent-skills trading.md: "Use when active returns 404").
    * ``failed_placement``: ``"400"`` -> ``400 {orderId, code, message}`` (API collection, Limit Order V2 / placed
      unsuccessfully); ``"201"`` -> the same body with 201 (the other VALR text cited in valr-api.md).
    * ``placement_429``: ``"refused"`` -> a 429 on a placement was not processed; ``"processed"`` -> the order WAS
      placed and the answer is still 429 (nothing in VALR's material rules it out).
    """

    unknown_order: str = "400"
    failed_placement: str = "400"
    placement_429: str = "refused"

    @property
    def name(self) -> str:
        return f"unknown{self.unknown_order}-failed{self.failed_placement}-429{self.placement_429}"


#: Every combination of the documented disagreements: client tests parametrise over these.
VARIANTS: tuple[DoubleVariant, ...] = tuple(
    DoubleVariant(u, f, r) for u in ("400", "404") for f in ("400", "201") for r in ("refused", "processed")
)


@dataclass
class RequestRecord:
    """One request the double received on a VALR path (admin calls are not recorded).

    ``seq`` numbers requests from 1 in arrival order; ``customer_order_id`` is taken from the JSON body (or the
    path of a look-up) so a test can wait for "the exchange received order X" and act right then."""

    method: str
    path: str
    api_key: str | None
    body: str
    at: float
    outcome: str = ""  # HTTP status as text, or "dropped" / "reset"
    seq: int = 0  # 1, 2, ... in the order the double received them (GET /_double/requests shows it)
    customer_order_id: str | None = None


@dataclass
class FaultRule:
    """A counted fault: applies to the next ``count`` requests matching ``path_prefix``/``method``."""

    count: int
    path_prefix: str = ""
    method: str = ""
    status: int = 500
    retry_after: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.count > 0 and path.startswith(self.path_prefix) and (not self.method or self.method.upper() == method)
        )


@dataclass
class Faults:
    latency_ms: int = 0
    latency_path: str = ""
    clock_skew_ms: int = 0
    fail: list[FaultRule] = field(default_factory=list)
    rate_limit: list[FaultRule] = field(default_factory=list)
    drop: list[FaultRule] = field(default_factory=list)
    reset: list[FaultRule] = field(default_factory=list)

    def take(self, kind: str, method: str, path: str) -> FaultRule | None:
        rules: list[FaultRule] = getattr(self, kind)
        for rule in rules:
            if rule.matches(method, path):
                rule.count -= 1
                return rule
        return None


class RateLimiter:
    """Sliding one-window counter per bucket (``key:...`` or ``ip:...``)."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, bucket: str, limit: int, window: float, now: float) -> bool:
        with self._lock:
            hits = self._hits.setdefault(bucket, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return False
            hits.append(now)
            return True

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()


def _signature(secret: str, timestamp: str, verb: str, path: str, body: bytes, subaccount: str) -> str:
    # Independent of the client's signer on purpose: the double must not share the client's bugs.
    message = timestamp.encode() + verb.upper().encode() + path.encode() + body + subaccount.encode()
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha512).hexdigest()


def _permission(name: str) -> str:
    folded = " ".join(name.lower().split())
    return {"view access": "view", "internal transfer": "transfer"}.get(folded, folded)


def _json_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return num(value)
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, default=_json_default).encode("utf-8")


class _Server(ThreadingHTTPServer):
    """HTTP for VALR's REST paths; a connection whose request line is ``GET /ws/...`` is handed to the WebSocket
    server (``websockets``) on the same port, as VALR serves both from one host."""

    daemon_threads = True
    double: ExchangeDouble

    def finish_request(self, request: Any, client_address: Any) -> None:
        if _peek(request, 8) == b"GET /ws/":
            self.double._ws_server.handler(request, client_address)
            return
        super().finish_request(request, client_address)


def _peek(sock: socket.socket, size: int) -> bytes:
    """The first ``size`` bytes the client sent, left in the socket for whoever reads the request."""
    sock.settimeout(10)
    data = b""
    deadline = time.monotonic() + 10
    try:
        while len(data) < size and time.monotonic() < deadline:
            data = sock.recv(size, socket.MSG_PEEK)
            if not data:
                break
            if len(data) < size:
                time.sleep(0.001)
    except OSError:
        return b""
    finally:
        sock.settimeout(None)
    return data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in separate writes: avoid 40 ms delayed-ACK stalls

    def setup(self) -> None:
        super().setup()
        self.server.double._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.double._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("double %s - " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            self.server.double._serve(self, method, raw)
        finally:
            self.server.double._request_done()  # request received / answered: wakes wait_for_request

    def send_body(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def drop(self) -> None:
        """Close the connection without answering (FIN): the client sees its request vanish."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def reset(self) -> None:
        """Abort the connection with a TCP reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class ExchangeDouble:
    """A VALR look-alike HTTP server for tests, the demo and deploy checks. Loopback only.

    ``ExchangeDouble(port=0).start()`` picks a free port; ``url`` is the base URL to give ``ValrClient``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keys: dict[str, KeySpec] | None = None,
        prices: dict[str, Decimal] | None = None,
        balances: dict[str, Decimal] | None = None,
        pairs: dict[str, PairSpec] | None = None,
        fill_ratio: Decimal = Decimal(1),
        spread_pct: Decimal = Decimal(0),
        maker_pct: Decimal | None = None,
        taker_pct: Decimal | None = None,
        timestamp_tolerance_ms: int = 10_000,
        rate_limit_per_key: int = 2000,
        rate_limit_per_ip: int = 1200,
        rate_limit_window: float = 60.0,
        rate_limit_public: int | None = None,
        variant: DoubleVariant | None = None,
    ) -> None:
        self.variant = variant or DoubleVariant()
        #: VALR documents 30 public calls a minute (per IP). None = unlimited (the default, so old tests stay
        #: independent of the pacing they do not test); the pacing tests set it to 30.
        self.rate_limit_public = rate_limit_public
        self._seq = 0
        self._requests_cond = threading.Condition()  # guards _requests; notified on every request received/answered
        self.host = host
        self.port = port
        self.keys: dict[str, KeySpec] = dict(keys) if keys else {DEFAULT_KEY: KeySpec(DEFAULT_SECRET)}
        self.timestamp_tolerance_ms = timestamp_tolerance_ms
        self.rate_limit_per_key = rate_limit_per_key
        self.rate_limit_per_ip = rate_limit_per_ip
        self.rate_limit_window = rate_limit_window
        self.faults = Faults()
        self._faults_lock = threading.Lock()
        self._limiter = RateLimiter()
        self._requests: list[RequestRecord] = []
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._init = (prices, balances, pairs, fill_ratio, spread_pct, maker_pct, taker_pct)
        #: "data" -> {"type", "data": {...}} (VALR's API docs); "flat" -> fields at the top level (the TypeScript
        #: client's types, yashutanna/valr-typescript-client src/types/websocket.ts). The client reads both.
        self.ws_envelope = "data"
        self.ws_refuse = False  # True: new WebSocket upgrades answer 503 (to hold a gap open in tests)
        self._ws_conns: dict[ServerConnection, set[str]] = {}  # connection -> subscribed pairs (trade stream)
        self._ws_lock = threading.Lock()
        self._ws_listen = socket.create_server(("127.0.0.1", 0))  # never served: connections come from HTTP
        self._ws_server: WsServer = serve(
            self._ws_session, sock=self._ws_listen, process_request=self._ws_accept, ping_interval=None
        )
        self.book = self._new_book()

    def _new_book(self) -> Book:
        prices, balances, pairs, fill_ratio, spread_pct, maker_pct, taker_pct = self._init
        book = Book(now=self.now, fill_ratio=fill_ratio, spread_pct=spread_pct)
        if pairs is not None:
            book.pairs = dict(pairs)
        if maker_pct is not None:
            book.maker_pct = maker_pct
        if taker_pct is not None:
            book.taker_pct = taker_pct
        for pair, price in (prices if prices is not None else DEFAULT_PRICES).items():
            if pair.upper() in book.pairs:
                book.set_price(pair, Decimal(price))
        for currency, amount in (balances if balances is not None else DEFAULT_BALANCES).items():
            book.set_balance(currency, Decimal(amount))
        book.listeners.append(self._on_book_event)
        return book

    # ---- lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def start(self) -> ExchangeDouble:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.double = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"exchange-double-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("exchange double listening on %s", self.url)
        return self

    def go_down(self) -> None:
        """Stop listening and cut every open connection (clients get connection refused / reset)."""
        self.ws_drop_all()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        log.info("exchange double on port %d is down", self.port)

    def come_up(self) -> None:
        """Listen again on the same port (state is kept)."""
        self.start()

    def down_for(self, seconds: float) -> None:
        """Go down now and come back up after ``seconds`` (in the background)."""
        self.go_down()
        timer = threading.Timer(seconds, self.come_up)
        timer.daemon = True
        timer.start()

    def stop(self) -> None:
        self.ws_drop_all()
        self.go_down()
        self._ws_listen.close()

    def __enter__(self) -> ExchangeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # ---- control

    def now(self) -> datetime:
        """The exchange's clock (real time plus the injected skew)."""
        return datetime.now(UTC) + timedelta(milliseconds=self.faults.clock_skew_ms)

    def reset_state(self) -> None:
        """Fresh book, no faults, empty request log and rate-limit windows (keys are kept)."""
        self.clear_faults()
        self.book = self._new_book()
        self._limiter.clear()
        self.clear_requests()

    def add_key(
        self,
        key: str,
        secret: str,
        permissions: tuple[str, ...] = DEFAULT_PERMISSIONS,
        *,
        label: str = "helios-double",
        allowed_ip_cidr: str | None = None,
        is_sub_account: bool = False,
    ) -> None:
        self.keys[key] = KeySpec(secret, tuple(permissions), label, allowed_ip_cidr, is_sub_account)

    def set_price(
        self,
        pair: str,
        price: Decimal | str,
        bid: Decimal | str | None = None,
        ask: Decimal | str | None = None,
    ) -> None:
        """Move the market: a price step; resting orders that now cross fill ``fill_ratio`` of their size."""
        self.book.set_price(
            pair,
            Decimal(price),
            Decimal(bid) if bid is not None else None,
            Decimal(ask) if ask is not None else None,
        )

    def step(self, pair: str | None = None) -> None:
        self.book.step(pair)

    def set_fill_ratio(self, ratio: Decimal | str) -> None:
        value = Decimal(ratio)
        if not Decimal(0) < value <= 1:
            raise ValueError("fill ratio must be in (0, 1]")
        self.book.fill_ratio = value

    def set_balance(self, currency: str, available: Decimal | str) -> None:
        self.book.set_balance(currency, Decimal(available))

    def set_exchange_status(self, status: str) -> None:
        """``online`` or ``read-only`` (read-only refuses new orders)."""
        self.book.exchange_status = status

    def balances(self) -> dict[str, Decimal]:
        with self.book.lock:
            return {row["currency"]: Decimal(row["total"]) for row in self.book.balance_rows()}

    def orders(self) -> list[Order]:
        with self.book.lock:
            return list(self.book.orders)

    def open_orders(self) -> list[Order]:
        return self.book.open_orders()

    def seed_order(
        self,
        pair: str,
        side: str,
        quantity: Decimal | str,
        price: Decimal | str,
        customer_order_id: str | None = None,
    ) -> Order:
        """An open limit order nobody journaled (placed "by someone else" on the same account)."""
        body: dict[str, Any] = {"pair": pair, "side": side, "quantity": str(quantity), "price": str(price)}
        if customer_order_id:
            body["customerOrderId"] = customer_order_id
        return self.book.place_limit(body, seeded=True)

    def wait_for_request(
        self,
        path_prefix: str = "",
        method: str = "",
        *,
        predicate: Any = None,
        customer_order_id: str | None = None,
        answered: bool = False,
        after_seq: int = 0,
        timeout: float = 10.0,
    ) -> RequestRecord:
        """Block until a matching request has been RECEIVED (recorded before it is processed; with ``answered``,
        also finished) and return it. Synchronise tests on this instead of sleeping: e.g. kill a process right
        after the exchange got order X. TimeoutError after ``timeout``."""

        def find() -> RequestRecord | None:
            for record in self._requests:
                if record.seq <= after_seq or not record.path.startswith(path_prefix):
                    continue
                if method and record.method != method.upper():
                    continue
                if customer_order_id is not None and record.customer_order_id != customer_order_id:
                    continue
                if answered and not record.outcome:
                    continue
                if predicate is not None and not predicate(record):
                    continue
                return record
            return None

        with self._requests_cond:
            found = self._requests_cond.wait_for(find, timeout=timeout)
        if found is None:
            raise TimeoutError(f"no request matching {method or '*'} {path_prefix or '/'} within {timeout}s")
        return found

    def force_status(self, customer_order_id: str, status: str, failed_reason: str = "") -> Order:
        """Make the double report one of VALR's documented statuses for an order (e.g. "Partially Filled Due To
        Slippage", which its simple matching never produces). Releases the reservation of a finished order."""
        with self.book.lock:
            order = self.book.find_latest(cid=customer_order_id)
            if order is None:
                raise KeyError(customer_order_id)
            if status not in ("Placed", "Active", "Partially Filled", "Order Modified", "Repriced Due To Slippage"):
                self.book._release(order)
            self.book._finish(order, status, failed_reason)
            return order

    def set_order_types(self, pair: str, order_types: tuple[str, ...] | list[str]) -> None:
        """What ``GET /v1/public/{pair}/ordertypes`` lists for ``pair`` (default: the collection's example)."""
        with self.book.lock:
            self.book.order_types[self.book.pair(pair).symbol] = tuple(str(t) for t in order_types)

    def set_slippage_cut(self, count: int = 1, fraction: Decimal | str = "0.5") -> None:
        """The next ``count`` market orders fill ``fraction`` and end "Partially Filled and Cancelled Due To
        Slippage" (``fraction`` 0: they fail, "...outside of slippage price band")."""
        with self.book.lock:
            self.book.slippage_cut = (count, Decimal(fraction))

    def conditionals(self) -> list[dict[str, Any]]:
        """The open conditional orders (as ``GET /v1/orders/conditionals`` lists them)."""
        with self.book.lock:
            return [dict(c) for c in self.book.conditionals]

    def requests(self, path_prefix: str = "", method: str = "") -> list[RequestRecord]:
        with self._requests_cond:
            return [
                r
                for r in self._requests
                if r.path.startswith(path_prefix) and (not method or r.method == method.upper())
            ]

    def order_placements(self) -> list[RequestRecord]:
        """Every placement request received (POST to /v1/orders... or /v2/orders...)."""
        return [r for r in self.requests(method="POST") if "/orders" in r.path]

    def clear_requests(self) -> None:
        with self._requests_cond:
            self._requests.clear()

    # ---- faults

    def inject_latency(self, ms: int, path_prefix: str = "") -> None:
        """Delay every answer (on paths starting with ``path_prefix``) by ``ms`` milliseconds."""
        with self._faults_lock:
            self.faults.latency_ms = ms
            self.faults.latency_path = path_prefix

    def fail_next(self, count: int = 1, status: int = 500, path_prefix: str = "", method: str = "") -> None:
        """The next ``count`` matching requests answer ``status`` (5xx) without being processed."""
        with self._faults_lock:
            self.faults.fail.append(FaultRule(count, path_prefix, method, status))

    def rate_limit_next(
        self, count: int, retry_after: float | None = None, path_prefix: str = "", method: str = ""
    ) -> None:
        """A 429 storm: the next ``count`` matching requests get 429 + ``x-valr-ratelimited: true``."""
        value = (
            None
            if retry_after is None
            else (str(int(retry_after)) if retry_after == int(retry_after) else str(retry_after))
        )
        with self._faults_lock:
            self.faults.rate_limit.append(FaultRule(count, path_prefix, method, 429, value))

    def drop_response_after_accept(self, count: int = 1, path_prefix: str = "/v2/orders", method: str = "POST") -> None:
        """Process the next matching request(s) normally, then close the connection without answering."""
        with self._faults_lock:
            self.faults.drop.append(FaultRule(count, path_prefix, method))

    def reset_next(self, count: int = 1, path_prefix: str = "", method: str = "") -> None:
        """Reset (TCP RST) the next matching connection(s) before processing the request."""
        with self._faults_lock:
            self.faults.reset.append(FaultRule(count, path_prefix, method))

    def set_clock_skew(self, ms: int) -> None:
        """The exchange's clock runs ``ms`` ahead (negative: behind) of real time."""
        self.faults.clock_skew_ms = ms

    def clear_faults(self) -> None:
        with self._faults_lock:
            self.faults = Faults()

    # ---- serving

    def _record(self, record: RequestRecord) -> None:
        with self._requests_cond:
            self._seq += 1
            record.seq = self._seq
            self._requests.append(record)
            self._requests_cond.notify_all()

    def _request_done(self) -> None:
        """Called once a request has been answered (or dropped): wakes ``wait_for_request(answered=True)``."""
        with self._requests_cond:
            self._requests_cond.notify_all()

    def _serve(self, handler: _Handler, method: str, raw: bytes) -> None:
        path = handler.path
        if path.startswith("/_double/"):
            try:
                status, payload = self._admin(method, path, raw)
            except DoubleError as exc:
                status, payload = exc.status, exc.body()
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                status, payload = 400, {"code": ERR_BAD_REQUEST, "message": f"bad admin request: {exc}"}
            handler.send_body(status, _dumps(payload), "application/json")
            return
        record = RequestRecord(
            method,
            path,
            handler.headers.get("X-VALR-API-KEY"),
            raw.decode("utf-8", "replace"),
            time.time(),
            customer_order_id=_customer_order_id(path, raw),
        )
        self._record(record)
        with self._faults_lock:
            reset = self.faults.take("reset", method, path)
            latency = self.faults.latency_ms if path.startswith(self.faults.latency_path) else 0
            limited = self.faults.take("rate_limit", method, path) if reset is None else None
            failed = self.faults.take("fail", method, path) if reset is None and limited is None else None
        if reset is not None:
            record.outcome = "reset"
            handler.reset()
            return
        if latency:
            time.sleep(latency / 1000)
        if limited is not None:
            placement = method == "POST" and "/orders" in path
            if placement and self.variant.placement_429 == "processed":
                with contextlib.suppress(DoubleError, _RateLimitedError):
                    self._route(method, path, raw, handler)  # processed, and still answered 429
                record.outcome = "429 (processed)"
            else:
                record.outcome = "429"
            self._send_rate_limited(handler, limited.retry_after)
            return
        if failed is not None:
            record.outcome = str(failed.status)
            if failed.status == 500:
                body = _dumps({"code": -1, "message": "Internal server error"})
                handler.send_body(failed.status, body, "application/json")
            else:
                handler.send_body(failed.status, b"<html><body>Service Unavailable</body></html>", "text/html")
            return
        try:
            status, payload = self._route(method, path, raw, handler)
        except DoubleError as exc:
            status, payload = exc.status, exc.body()
        except _RateLimitedError:
            record.outcome = "429"
            self._send_rate_limited(handler, "1")
            return
        if status < 300:
            with self._faults_lock:
                dropped = self.faults.take("drop", method, path)
            if dropped is not None:
                record.outcome = "dropped"
                handler.drop()
                return
        record.outcome = str(status)
        handler.send_body(status, _dumps(payload) if payload is not None else b"", "application/json")

    @staticmethod
    def _send_rate_limited(handler: _Handler, retry_after: str | None) -> None:
        headers = {"x-valr-ratelimited": "true"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        handler.send_body(429, b"Rate limit exceeded", "text/plain", headers)

    def _authenticate(self, method: str, path: str, raw: bytes, handler: _Handler) -> tuple[str, KeySpec]:
        key = handler.headers.get("X-VALR-API-KEY")
        signature = handler.headers.get("X-VALR-SIGNATURE")
        timestamp = handler.headers.get("X-VALR-TIMESTAMP")
        if not key or not signature or not timestamp:
            raise DoubleError(401, ERR_AUTH, "Unauthorized: API key, signature and timestamp are required")
        spec = self.keys.get(key)
        if spec is None:
            raise DoubleError(401, ERR_AUTH, "Unauthorized: unknown API key")
        subaccount = handler.headers.get("X-VALR-SUB-ACCOUNT-ID") or ""
        expected = _signature(spec.secret, timestamp, method, path, raw, subaccount)
        if not hmac.compare_digest(expected, signature.lower()):
            raise DoubleError(401, ERR_AUTH, "Unauthorized: invalid request signature")
        try:
            ts = int(timestamp)
        except ValueError:
            raise DoubleError(401, ERR_AUTH, "Unauthorized: invalid timestamp") from None
        now_ms = int(self.now().timestamp() * 1000)
        if abs(now_ms - ts) > self.timestamp_tolerance_ms:
            raise DoubleError(401, ERR_EXPIRED, "Request has expired: timestamp too far from server time")
        return key, spec

    def _route(self, method: str, path: str, raw: bytes, handler: _Handler) -> tuple[int, Any]:
        split = urlsplit(path)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        now = time.monotonic()
        ip = handler.client_address[0]
        if not self._limiter.allow(f"ip:{ip}", self.rate_limit_per_ip, self.rate_limit_window, now):
            raise _RateLimitedError()
        if parts[:2] == ["v1", "public"]:
            if self.rate_limit_public is not None and not self._limiter.allow(
                f"public:{ip}", self.rate_limit_public, self.rate_limit_window, now
            ):
                raise _RateLimitedError()
            return self._public(method, parts[2:])
        key, spec = self._authenticate(method, path, raw, handler)
        if self.book.exchange_status == "read-only":
            # valr-api.md: in read-only mode private calls answer 503 (the body is not documented).
            raise DoubleError(503, ERR_READ_ONLY, "VALR is in read-only mode")
        if not self._limiter.allow(f"key:{key}", self.rate_limit_per_key, self.rate_limit_window, now):
            raise _RateLimitedError()
        perms = {_permission(p) for p in spec.permissions}
        trading = method in ("POST", "DELETE", "PUT")
        needed = "trade" if trading else "view"
        if needed not in perms:
            raise DoubleError(403, ERR_FORBIDDEN, f"Forbidden: API key lacks the {needed.title()} permission")
        body: dict[str, Any] = {}
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise DoubleError(400, ERR_BAD_REQUEST, "Request body is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise DoubleError(400, ERR_BAD_REQUEST, "Request body must be a JSON object")
            body = parsed
        return self._private(method, parts, query, body, spec)

    def _public(self, method: str, rest: list[str]) -> tuple[int, Any]:
        book = self.book
        if method != "GET":
            raise DoubleError(404, ERR_NOT_FOUND, "Not found")
        if rest == ["time"]:
            now = self.now()
            return 200, {"epochTime": int(now.timestamp()), "time": iso(now)}
        if rest == ["status"]:
            return 200, {"status": book.exchange_status}
        if rest == ["pairs"]:
            return 200, [p.as_json() for p in book.pairs.values()]
        if rest == ["marketsummary"]:
            return 200, [self._summary(symbol) for symbol in book.quotes]
        if len(rest) == 2 and rest[1] == "marketsummary":
            return 200, self._summary(book.pair(rest[0]).symbol)
        if len(rest) == 2 and rest[1] == "ordertypes":
            symbol = book.pair(rest[0]).symbol
            return 200, list(book.order_types.get(symbol, DEFAULT_ORDER_TYPES))
        raise DoubleError(404, ERR_NOT_FOUND, "Not found")

    def _summary(self, symbol: str) -> dict[str, Any]:
        quote = self.book.quote(symbol)
        return {
            "currencyPair": symbol,
            "askPrice": num(quote.ask),
            "bidPrice": num(quote.bid),
            "lastTradedPrice": num(quote.last),
            "previousClosePrice": num(quote.last),
            "baseVolume": "0",
            "quoteVolume": "0",
            "highPrice": num(quote.last),
            "lowPrice": num(quote.last),
            "created": iso(quote.at),
            "changeFromPrevious": "0",
            "markPrice": num(quote.last),
        }

    def _private(
        self, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any], spec: KeySpec
    ) -> tuple[int, Any]:
        book = self.book
        route = (method, *parts)
        if route == ("GET", "v1", "account", "balances"):
            return 200, book.balance_rows()
        if route == ("GET", "v1", "account", "api-keys", "current"):
            info: dict[str, Any] = {
                "label": spec.label,
                "permissions": list(spec.permissions),
                "addedAt": "2024-01-01T00:00:00.000Z",
                "isSubAccount": spec.is_sub_account,
            }
            if spec.allowed_ip_cidr:
                info["allowedIpAddressCidr"] = spec.allowed_ip_cidr
            return 200, info
        if route == ("GET", "v1", "account", "fees", "trade"):
            return 200, [
                {
                    "currencyPair": s,
                    "makerPercentage": num(book.maker_pct),
                    "takerPercentage": num(book.taker_pct),
                    "simplePercentage": "0.75",
                }
                for s in book.pairs
            ]
        if route == ("GET", "v1", "account", "tradehistory"):
            limit = min(100, int(query.get("limit", "100")))
            start = datetime.fromisoformat(query["startTime"]) if query.get("startTime") else None
            return 200, book.trade_rows(start=start, before_id=query.get("beforeId"), limit=limit)
        if route == ("POST", "v2", "orders", "limit"):
            return self._placed(book.place_limit(body))
        if route == ("POST", "v2", "orders", "market"):
            return self._placed(book.place_market(body))
        if route == ("POST", "v2", "orders", "stop", "limit"):
            return self._placed(book.place_stop_limit(body))
        if route == ("GET", "v1", "margin", "account", "status"):
            # API collection: Margin / Account Margin Status.
            return 200, {
                "marginEnabled": book.margin_enabled,
                "inLiquidation": False,
                "futuresEnabled": book.futures_enabled,
            }
        if route == ("POST", "v1", "orders", "conditionals"):
            return 202, {"id": book.place_conditional(body)["orderId"]}
        if route == ("GET", "v1", "orders", "conditionals"):
            with book.lock:
                return 200, [dict(c) for c in book.conditionals]
        if route == ("DELETE", "v1", "orders", "conditionals"):
            return 200, [self._cancelled_conditional(c) for c in book.cancel_conditionals()]
        if route == ("DELETE", "v1", "orders", "conditionals", "conditional"):
            book.pair(str(body.get("pair", "")))
            gone = book.cancel_conditionals(
                order_id=str(body["orderId"]) if body.get("orderId") else None,
                cid=str(body["customerOrderId"]) if body.get("customerOrderId") else None,
            )
            if not gone:
                raise self._unknown_order()
            return 202, None
        if method == "GET" and len(parts) == 7 and parts[:4] == ["v1", "orders", "conditionals", "conditional"] \
                and parts[5] == "orderid":
            # API collection: Conditional Order Status (orderId).
            symbol = book.pair(parts[4]).symbol
            with book.lock:
                for row in book.conditional_history:
                    if row["currencyPair"] == symbol and row["orderId"] == parts[6]:
                        return 200, dict(row)
            raise self._unknown_order()
        if method == "GET" and len(parts) == 5 and parts[:3] == ["v1", "orders", "conditionals"] \
                and parts[4] == "history":
            # API collection: Conditional Order Status History (per pair).
            symbol = book.pair(parts[3]).symbol
            with book.lock:
                return 200, [dict(r) for r in reversed(book.conditional_history) if r["currencyPair"] == symbol]
        if method == "DELETE" and len(parts) == 4 and parts[:3] == ["v1", "orders", "conditionals"]:
            symbol = book.pair(parts[3]).symbol
            return 200, [self._cancelled_conditional(c) for c in book.cancel_conditionals(symbol)]
        if route == ("GET", "v1", "orders", "open"):
            return 200, [o.open_row() for o in book.open_orders()]
        if method == "GET" and len(parts) == 5 and parts[:2] == ["v1", "orders"] and parts[2] != "history":
            pair, kind, ident = parts[2], parts[3], parts[4]
            # valr-api.md: a finished order still answers 200 with its final status.
            found = self._lookup(pair, kind, ident, open_only=False)
            return 200, found.status_row()
        if method == "GET" and len(parts) == 6 and parts[:4] == ["v1", "orders", "history", "summary"]:
            found = self._lookup(None, parts[4], parts[5], open_only=False)
            return 200, found.history_row()
        if route == ("DELETE", "v2", "orders", "order"):
            pair = str(body.get("pair", ""))
            cid, order_id = body.get("customerOrderId"), body.get("orderId")
            if (cid is None) == (order_id is None):
                raise DoubleError(400, ERR_BAD_REQUEST, "Specify exactly one of orderId or customerOrderId")
            book.pair(pair)
            order = book.cancel(pair, cid=str(cid) if cid else None, order_id=str(order_id) if order_id else None)
            return 200, {"id": str(cid) if cid else order.order_id}
        if route == ("DELETE", "v1", "orders"):
            return 200, [{"orderId": o.order_id} for o in book.cancel_all()]
        if method == "DELETE" and len(parts) == 3 and parts[:2] == ["v1", "orders"]:
            symbol = book.pair(parts[2]).symbol
            return 200, [{"orderId": o.order_id} for o in book.cancel_all(symbol)]
        raise DoubleError(404, ERR_NOT_FOUND, "Not found")

    def _lookup(self, pair: str | None, kind: str, ident: str, *, open_only: bool) -> Order:
        if kind not in ("customerorderid", "orderid"):
            raise DoubleError(404, ERR_NOT_FOUND, "Not found")
        cid, order_id = (ident, None) if kind == "customerorderid" else (None, ident)
        if open_only:
            assert pair is not None
            found = self.book.find_open(self.book.pair(pair).symbol, cid=cid, order_id=order_id)
        else:
            found = self.book.find_latest(cid=cid, order_id=order_id)
        if found is None:
            raise self._unknown_order()
        return found

    def _unknown_order(self) -> DoubleError:
        if self.variant.unknown_order == "404":
            return DoubleError(404, ERR_NOT_FOUND, "Order not found")
        # API collection: Order Status (customerOrderId) / Invalid Order (the trailing ". " is VALR's).
        return DoubleError(400, ERR_INVALID_ORDER, "Invalid Order. ")

    def _placed(self, order: Order) -> tuple[int, Any]:
        """A v2 placement's answer: 201 ``{id}``, or for an order that failed in the matching engine the
        ``{orderId, code, message}`` body with 400 or 201 (the variant)."""
        if order.status != "Failed":
            if order.is_open and order.filled == 0:
                self.book.emit("order", {"order": order})  # ORDER_STATUS_UPDATE "Placed" / "Active"
            return 201, {"id": order.order_id}
        status = 201 if self.variant.failed_placement == "201" else 400
        code = FAILED_PLACEMENT_CODES.get(order.failed_reason, ERR_BAD_REQUEST)
        return status, {"orderId": order.order_id, "code": code, "message": order.failed_reason}

    @staticmethod
    def _cancelled_conditional(row: dict[str, Any]) -> dict[str, Any]:
        out = {"orderId": row["orderId"]}
        if row.get("customerOrderId"):
            out["customerOrderId"] = row["customerOrderId"]
        return out

    # ---- WebSockets (/ws/account signed like REST over timestamp + "GET" + "/ws/account"; /ws/trade public)

    def ws_connections(self, path: str = "") -> int:
        with self._ws_lock:
            return sum(1 for c in self._ws_conns if c.request is not None and c.request.path.startswith(path))

    def wait_ws_connections(self, count: int, path: str = "", timeout: float = 10.0) -> None:
        """Block until ``count`` WebSocket connections on ``path`` are open (subscribed or not)."""
        deadline = time.monotonic() + timeout
        while self.ws_connections(path) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} WebSocket connection(s) on {path or '/ws'} not open within {timeout}s")
            time.sleep(0.005)

    def ws_drop_all(self) -> None:
        """Cut every WebSocket connection abruptly (no close frame): the client sees the stream die."""
        with self._ws_lock:
            conns = list(self._ws_conns)
            self._ws_conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.socket.shutdown(socket.SHUT_RDWR)

    def _ws_accept(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.ws_refuse:
            return connection.respond(503, "Service Unavailable\n")
        if request.path not in ("/ws/account", "/ws/trade"):
            return connection.respond(404, "Not found\n")
        if request.path == "/ws/account":
            headers: Headers = request.headers
            key, signature, ts = (headers.get(h) for h in ("X-VALR-API-KEY", "X-VALR-SIGNATURE", "X-VALR-TIMESTAMP"))
            spec = self.keys.get(key or "")
            if spec is None or not signature or not ts:
                return connection.respond(401, "Unauthorized\n")
            sub = headers.get("X-VALR-SUB-ACCOUNT-ID") or ""
            expected = _signature(spec.secret, ts, "GET", "/ws/account", b"", sub)
            if not hmac.compare_digest(expected, signature.lower()):
                return connection.respond(401, "Unauthorized\n")
        return None

    def _ws_session(self, connection: ServerConnection) -> None:
        with self._ws_lock:
            self._ws_conns[connection] = set()
        try:
            for raw in connection:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                kind = message.get("type") if isinstance(message, dict) else None
                if kind == "PING":
                    connection.send(json.dumps({"type": "PONG"}))
                elif kind == "SUBSCRIBE":
                    self._ws_subscribe(connection, message)
        except (OSError, WebSocketException):
            pass
        finally:
            with self._ws_lock:
                self._ws_conns.pop(connection, None)

    def _ws_subscribe(self, connection: ServerConnection, message: dict[str, Any]) -> None:
        pairs: set[str] = set()
        for sub in message.get("subscriptions") or []:
            if isinstance(sub, dict) and sub.get("event") == "MARKET_SUMMARY_UPDATE":
                pairs.update(str(p).upper() for p in sub.get("pairs") or [])
        with self._ws_lock:
            if connection in self._ws_conns:
                self._ws_conns[connection] |= pairs
        for symbol in sorted(pairs):
            if symbol in self.book.quotes:
                self._ws_send(connection, self._ws_message("MARKET_SUMMARY_UPDATE", self._summary(symbol), symbol))

    def _ws_message(self, kind: str, payload: dict[str, Any], pair: str | None = None) -> str:
        if self.ws_envelope == "flat":
            return json.dumps({"type": kind, **payload}, default=_json_default)
        message: dict[str, Any] = {"type": kind}
        if pair is not None:
            message["currencyPairSymbol"] = pair
        message["data"] = payload
        return json.dumps(message, default=_json_default)

    @staticmethod
    def _ws_send(connection: ServerConnection, text: str) -> None:
        with contextlib.suppress(OSError, WebSocketException):
            connection.send(text)

    def _ws_targets(self, account: bool, symbol: str | None = None) -> list[ServerConnection]:
        with self._ws_lock:
            return [
                c
                for c, pairs in self._ws_conns.items()
                if c.request is not None
                and (c.request.path == "/ws/account" if account else symbol in pairs)
            ]

    def _on_book_event(self, kind: str, event: dict[str, Any]) -> None:
        """Book -> WebSocket messages (called under the book's lock, so messages keep the book's order)."""
        if kind == "price":
            symbol = str(event["symbol"])
            text = self._ws_message("MARKET_SUMMARY_UPDATE", self._summary(symbol), symbol)
            for conn in self._ws_targets(False, symbol):
                self._ws_send(conn, text)
            return
        targets = self._ws_targets(True)
        if not targets:
            return
        order: Order = event["order"]
        texts = []
        if kind == "trade":
            texts.append(self._ws_message("NEW_ACCOUNT_TRADE", event["trade"].row(), order.pair))
        texts.append(self._ws_message("ORDER_STATUS_UPDATE", order.status_row()))
        if kind == "trade":
            spec = self.book.pairs[order.pair]
            for row in self.book.balance_rows():
                if row["currency"] in (spec.base, spec.quote):
                    update = dict(row)
                    update["currency"] = {"symbol": row["currency"]}  # BALANCE_UPDATE nests the currency
                    texts.append(self._ws_message("BALANCE_UPDATE", update))
        for conn in targets:
            for text in texts:
                self._ws_send(conn, text)

    # ---- admin

    def state(self) -> dict[str, Any]:
        book = self.book
        with book.lock:
            return {
                "url": self.url,
                "exchangeStatus": book.exchange_status,
                "prices": {
                    s: {"bid": num(q.bid), "ask": num(q.ask), "last": num(q.last)} for s, q in book.quotes.items()
                },
                "balances": book.balance_rows(),
                "openOrders": len(book.open_orders()),
                "orders": len(book.orders),
                "trades": len(book.trades),
                "fillRatio": num(book.fill_ratio),
                "faults": asdict(self.faults),
                "keys": sorted(self.keys),
            }

    def _admin(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        split = urlsplit(path)
        route = split.path.rstrip("/")[len("/_double") :]
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        body: dict[str, Any] = json.loads(raw) if raw else {}
        if method == "GET" and route in ("", "/health"):
            return 200, {"ok": True, "url": self.url}
        if method == "GET" and route == "/state":
            return 200, self.state()
        if method == "POST" and route == "/price":
            self.set_price(str(body["pair"]), dec(body["price"], "price"), body.get("bid"), body.get("ask"))
            return 200, self.state()["prices"]
        if method == "POST" and route == "/step":
            self.step(body.get("pair"))
            return 200, {"ok": True}
        if method == "POST" and route == "/balance":
            items = body.get("balances") or {body["currency"]: body["available"]}
            for currency, amount in items.items():
                self.set_balance(str(currency), dec(amount, "available"))
            return 200, self.book.balance_rows()
        if method == "POST" and route == "/fill-ratio":
            self.set_fill_ratio(dec(body["ratio"], "ratio"))
            return 200, {"fillRatio": num(self.book.fill_ratio)}
        if method == "POST" and route == "/exchange-status":
            self.set_exchange_status(str(body["status"]))
            return 200, {"status": self.book.exchange_status}
        if method == "GET" and route == "/orders":
            orders = self.open_orders() if query.get("open") in ("1", "true") else self.orders()
            return 200, [o.admin_row() for o in orders]
        if method == "POST" and route == "/orders/seed":
            order = self.seed_order(
                str(body["pair"]),
                str(body["side"]),
                str(body["quantity"]),
                str(body["price"]),
                body.get("customerOrderId"),
            )
            return 201, order.admin_row()
        if method == "GET" and route == "/trades":
            return 200, [t.row() for t in self.book.trades]
        if method == "GET" and route == "/requests":
            after = int(query.get("after", "0"))
            rows = self.requests(query.get("path", ""), query.get("method", ""))
            return 200, [asdict(r) for r in rows if r.seq > after]
        if method == "POST" and route == "/ws/drop":
            self.ws_drop_all()
            return 200, {"ok": True}
        if method == "POST" and route == "/order-status":
            order = self.force_status(str(body["customerOrderId"]), str(body["status"]), str(body.get("reason", "")))
            return 200, order.admin_row()
        if method == "POST" and route == "/ordertypes":
            self.set_order_types(str(body["pair"]), list(body["orderTypes"]))
            return 200, {"pair": str(body["pair"]).upper(), "orderTypes": list(body["orderTypes"])}
        if method == "POST" and route == "/slippage-cut":
            self.set_slippage_cut(int(body.get("count", 1)), str(body.get("fraction", "0.5")))
            return 200, {"ok": True}
        if method == "GET" and route == "/conditionals":
            return 200, self.conditionals()
        if method == "POST" and route == "/variant":
            self.variant = DoubleVariant(
                str(body.get("unknown_order", self.variant.unknown_order)),
                str(body.get("failed_placement", self.variant.failed_placement)),
                str(body.get("placement_429", self.variant.placement_429)),
            )
            return 200, asdict(self.variant)
        if method == "POST" and route == "/margin":
            self.book.margin_enabled = bool(body.get("marginEnabled", self.book.margin_enabled))
            self.book.futures_enabled = bool(body.get("futuresEnabled", self.book.futures_enabled))
            for currency, amount in (body.get("borrowed") or {}).items():
                self.book.borrowed[str(currency).upper()] = dec(amount, "borrowed")
            return 200, {"ok": True}
        if method == "DELETE" and route == "/requests":
            self.clear_requests()
            return 200, {"ok": True}
        if method == "POST" and route == "/faults":
            self._apply_faults(body)
            return 200, asdict(self.faults)
        if method == "DELETE" and route == "/faults":
            self.clear_faults()
            return 200, asdict(self.faults)
        if method == "POST" and route == "/down":
            seconds = float(body.get("seconds", 5))
            timer = threading.Timer(0.05, self.down_for, args=(seconds,))
            timer.daemon = True
            timer.start()
            return 200, {"down_for_seconds": seconds}
        if method == "POST" and route == "/reset":
            self.reset_state()
            return 200, self.state()
        if method == "POST" and route == "/keys":
            self.add_key(
                str(body["key"]),
                str(body["secret"]),
                tuple(body.get("permissions", DEFAULT_PERMISSIONS)),
                label=str(body.get("label", "helios-double")),
                allowed_ip_cidr=body.get("allowedIpAddressCidr"),
            )
            return 200, {"keys": sorted(self.keys)}
        raise DoubleError(404, ERR_NOT_FOUND, f"unknown admin endpoint {method} {route}")

    def _apply_faults(self, body: dict[str, Any]) -> None:
        if "latency_ms" in body:
            self.inject_latency(int(body["latency_ms"]), str(body.get("latency_path", "")))
        if "clock_skew_ms" in body:
            self.set_clock_skew(int(body["clock_skew_ms"]))

        def rule(name: str) -> dict[str, Any] | None:
            value = body.get(name)
            return value if isinstance(value, dict) else None

        if (spec := rule("fail_next")) is not None:
            self.fail_next(
                int(spec.get("count", 1)),
                int(spec.get("status", 500)),
                str(spec.get("path", "")),
                str(spec.get("method", "")),
            )
        if (spec := rule("rate_limit_next")) is not None:
            retry = spec.get("retry_after")
            self.rate_limit_next(
                int(spec.get("count", 1)),
                float(retry) if retry is not None else None,
                str(spec.get("path", "")),
                str(spec.get("method", "")),
            )
        if (spec := rule("drop_after_accept")) is not None:
            self.drop_response_after_accept(
                int(spec.get("count", 1)),
                str(spec.get("path", "/v2/orders")),
                str(spec.get("method", "POST")),
            )
        if (spec := rule("reset_next")) is not None:
            self.reset_next(int(spec.get("count", 1)), str(spec.get("path", "")), str(spec.get("method", "")))


class _RateLimitedError(Exception):
    pass


def _customer_order_id(path: str, raw: bytes) -> str | None:
    """The customerOrderId a request is about: from its JSON body, or from a ``.../customerorderid/<cid>`` path."""
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("customerOrderId"):
            return str(parsed["customerOrderId"])
    parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
    if "customerorderid" in parts and parts.index("customerorderid") + 1 < len(parts):
        return parts[parts.index("customerorderid") + 1]
    return None
