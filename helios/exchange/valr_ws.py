"""VALR's WebSocket streams, on the ``websockets`` library (its threaded ``sync`` client).

* ``AccountStream`` - ``/ws/account``: order status, account trades, failed orders and balance updates, delivered to
  ``on_event`` as parsed ``AccountEvent``\\ s. Signed as VALR documents (the three ``X-VALR-*`` headers on the
  upgrade, signature over ``timestamp + "GET" + "/ws/account"`` [+ subaccount id]); ``{"type": "PING"}`` every
  ``ping_interval`` seconds; reconnects with exponential backoff and jitter. After EVERY connection (the first
  included) ``on_reconnect`` fires *after* the subscription is sent: the consumer reconciles the gap through REST
  (``ValrClient.fills``/``open_orders``/``get_order``); events from then on arrive on the stream. REST polling stays
  the safety net: a dedupe by trade id (``FillDeduper``) makes "stream + REST" deliver each fill exactly once.
* ``TradeStream`` - ``/ws/trade``: ``MARKET_SUMMARY_UPDATE`` after a ``SUBSCRIBE`` per pair (public, unsigned).

Message shapes (docs/valr-contract.md, "WebSocket"): VALR's texts disagree on whether the payload sits under
``"data"`` or at the top level, and whether an order's status field is ``orderStatusType`` or ``orderStatus``. The
parser accepts both; the double can serve both (``ExchangeDouble.ws_envelope``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from helios.exchange.errors import ExchangeError
from helios.exchange.valr import BalanceDetail, ValrClient, _opt_decimal, order_status, parse_time, sign_request
from helios.models import ExchangeOrder, Fill, OrderStatus, OrderType, Side, Ticker

log = logging.getLogger(__name__)

ACCOUNT_PATH = "/ws/account"
TRADE_PATH = "/ws/trade"
#: Events the account stream subscribes to (harmless if VALR sends them unasked; sources disagree).
ACCOUNT_EVENTS = (
    "ORDER_STATUS_UPDATE",
    "NEW_ACCOUNT_TRADE",
    "FAILED_ORDER",
    "BALANCE_UPDATE",
    "ORDER_PROCESSED",
    "FAILED_CANCEL_ORDER",
)


def ws_url(base_url: str, path: str) -> str:
    """``https://api.valr.com`` -> ``wss://api.valr.com/ws/account`` (``http`` -> ``ws`` for the double)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + path
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + path
    return base + path


def ws_auth_headers(
    api_key: str, api_secret: str, path: str = ACCOUNT_PATH, *, timestamp_ms: int | None = None,
    subaccount_id: str = "",
) -> dict[str, str]:
    """The upgrade's headers: signature over ``timestamp + "GET" + path`` (+ subaccount id), as for REST."""
    ts = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    headers = {
        "X-VALR-API-KEY": api_key,
        "X-VALR-SIGNATURE": sign_request(api_secret, ts, "GET", path, "", subaccount_id),
        "X-VALR-TIMESTAMP": ts,
    }
    if subaccount_id:
        headers["X-VALR-SUB-ACCOUNT-ID"] = subaccount_id
    return headers


# ---- parsing


@dataclass(frozen=True)
class AccountEvent:
    """One account-stream message. ``order``/``fill``/``balance`` are set when the message carries one.

    ``fee_known`` is False for a fill whose message had neither ``fee`` nor ``makerReward`` (one source's trade
    event has no fee fields): take that fill's fee from REST (``ValrClient.fills``) before booking P&L."""

    kind: str
    payload: Mapping[str, Any]
    order: ExchangeOrder | None = None
    fill: Fill | None = None
    balance: BalanceDetail | None = None
    fee_known: bool = True


def _payload(message: Mapping[str, Any]) -> Mapping[str, Any]:
    data = message.get("data")
    return data if isinstance(data, dict) else message


def _order_from(payload: Mapping[str, Any]) -> ExchangeOrder | None:
    status_value = payload.get("orderStatusType") or payload.get("orderStatus")
    if status_value is None or payload.get("originalQuantity") in (None, ""):
        return None
    original = Decimal(str(payload["originalQuantity"]))
    remaining = _opt_decimal(payload, "remainingQuantity")
    filled = original - remaining if remaining is not None else Decimal(0)
    kind = str(payload.get("orderType") or payload.get("type") or "").lower()
    tif = str(payload.get("timeInForce") or "").upper()
    status = order_status(status_value, immediate="market" in kind or tif in ("IOC", "FOK"), filled=filled,
                          remaining=remaining)
    side_text = str(payload.get("orderSide") or payload.get("side") or "").upper()
    price = _opt_decimal(payload, "originalPrice")
    updated = payload.get("orderUpdatedAt")
    return ExchangeOrder(
        customer_order_id=str(payload["customerOrderId"]) if payload.get("customerOrderId") else None,
        order_id=str(payload["orderId"]) if payload.get("orderId") else None,
        pair=str(payload.get("currencyPair") or payload.get("currencyPairSymbol") or ""),
        side=Side(side_text) if side_text in ("BUY", "SELL") else Side.BUY,
        order_type=OrderType.MARKET if "market" in kind else OrderType.LIMIT,
        status=status,
        price=price if price else None,
        original_quantity=original,
        filled_quantity=filled if status is not OrderStatus.FILLED or remaining is not None else original,
        failed_reason=str(payload["failedReason"]) if payload.get("failedReason") else None,
        updated_at=parse_time(updated) if isinstance(updated, str) and updated else None,
    )


def _balance_from(payload: Mapping[str, Any]) -> BalanceDetail | None:
    currency = payload.get("currency")
    symbol = currency.get("symbol") if isinstance(currency, dict) else currency
    if not symbol or payload.get("total") in (None, ""):
        return None
    return BalanceDetail(
        currency=str(symbol),
        available=_opt_decimal(payload, "available") or Decimal(0),
        reserved=_opt_decimal(payload, "reserved") or Decimal(0),
        total=_opt_decimal(payload, "total") or Decimal(0),
        borrowed=_opt_decimal(payload, "borrowedAmount") or Decimal(0),
    )


def parse_account_message(raw: str | bytes) -> AccountEvent | None:
    """One account-stream message -> ``AccountEvent``; None for keep-alive/acknowledgement messages."""
    try:
        message = json.loads(raw)
    except ValueError:
        log.warning("valr account stream sent a non-JSON message")
        return None
    if not isinstance(message, dict):
        return None
    kind = str(message.get("type", ""))
    if kind in ("PONG", "SUBSCRIBED", "UNSUBSCRIBED", "AUTHENTICATED", ""):
        return None
    payload = _payload(message)
    try:
        if kind == "NEW_ACCOUNT_TRADE":
            row = dict(payload)
            row.setdefault("currencyPair", message.get("currencyPairSymbol", ""))
            fee_known = row.get("fee") not in (None, "") or row.get("makerReward") not in (None, "")
            return AccountEvent(kind, payload, fill=ValrClient._parse_fill(row), fee_known=fee_known)
        if kind == "BALANCE_UPDATE":
            return AccountEvent(kind, payload, balance=_balance_from(payload))
        return AccountEvent(kind, payload, order=_order_from(payload))
    except (ExchangeError, ArithmeticError, KeyError, ValueError) as exc:
        log.warning("valr account stream: unreadable %s message (%s)", kind, type(exc).__name__)
        return AccountEvent(kind, payload)


def parse_market_summary(raw: str | bytes) -> Ticker | None:
    """A ``MARKET_SUMMARY_UPDATE`` -> ``Ticker`` (timestamp = the summary's ``created``); None for anything else."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "MARKET_SUMMARY_UPDATE":
        return None
    payload = _payload(message)
    pair = payload.get("currencyPairSymbol") or payload.get("currencyPair") or message.get("currencyPairSymbol")
    try:
        created = payload.get("created")
        return Ticker(
            pair=str(pair),
            bid=Decimal(str(payload["bidPrice"])),
            ask=Decimal(str(payload["askPrice"])),
            last=Decimal(str(payload["lastTradedPrice"])),
            timestamp=parse_time(created) if created else datetime.now(UTC),
        )
    except (KeyError, ArithmeticError, ExchangeError):
        log.warning("valr trade stream sent an unreadable market summary for %s", pair)
        return None


class FillDeduper:
    """Each fill exactly once, whichever way it arrived (stream or REST reconciliation): keyed by trade id."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def add(self, fill: Fill) -> bool:
        """True the first time this trade id is seen."""
        with self._lock:
            if fill.trade_id in self._seen:
                return False
            self._seen.add(fill.trade_id)
            return True


# ---- the reconnecting stream


@dataclass(frozen=True)
class Connected:
    """Passed to ``on_reconnect``: the n-th connection (1 = the first). Reconcile through REST now."""

    count: int
    downtime_s: float

    @property
    def first(self) -> bool:
        return self.count == 1


class _Stream:
    """A background thread that keeps one WebSocket open: connect, greet, read, PING, back off, reconnect."""

    path = ""

    def __init__(
        self,
        url: str,
        *,
        on_reconnect: Callable[[Connected], None] | None = None,
        ping_interval: float = 30.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        open_timeout: float = 10.0,
        name: str = "valr-ws",
        pong_timeout: float | None = None,
    ) -> None:
        self._url = url
        self._on_reconnect = on_reconnect
        self._ping_interval = ping_interval
        # silence after a PING for this long means a dead link (never shorter than 5 s unless asked: a slow PONG
        # on a busy host is not a dead link)
        self._pong_timeout = pong_timeout if pong_timeout is not None else max(ping_interval, 5.0)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._open_timeout = open_timeout
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._ws: ClientConnection | None = None
        self._thread: threading.Thread | None = None
        self._name = name
        self.connections = 0
        self.pings_sent = 0
        self.last_error: str | None = None

    # -- lifecycle

    def start(self) -> _Stream:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            ws = self._ws
        if ws is not None:
            ws.close()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def send(self, message: Mapping[str, Any]) -> None:
        with self._lock:
            ws = self._ws
        if ws is None:
            raise ConnectionError("not connected")
        ws.send(json.dumps(message))

    # -- to override

    def _headers(self) -> dict[str, str]:
        return {}

    def _greet(self, ws: ClientConnection) -> None:
        pass

    def _handle(self, raw: str | bytes) -> None:
        raise NotImplementedError

    # -- loop

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def _run(self) -> None:
        attempt = 0
        down_since = time.monotonic()
        while not self._stop.is_set():
            try:
                with connect(
                    self._url,
                    additional_headers=self._headers(),
                    open_timeout=self._open_timeout,
                    ping_interval=None,  # VALR's keep-alive is the application PING below
                    close_timeout=2,
                ) as ws:
                    with self._lock:
                        self._ws = ws
                    self._greet(ws)
                    attempt = 0
                    self.connections += 1
                    self._connected.set()
                    downtime = time.monotonic() - down_since
                    log.info("valr %s connected (#%d)", self.path, self.connections)
                    if self._on_reconnect is not None:
                        self._on_reconnect(Connected(self.connections, downtime))
                    self._read(ws)
            except (OSError, WebSocketException, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not self._stop.is_set():
                    log.warning("valr %s disconnected: %s", self.path, self.last_error)
            finally:
                if self._connected.is_set():
                    down_since = time.monotonic()
                self._connected.clear()
                with self._lock:
                    self._ws = None
            if self._stop.is_set():
                break
            delay = self._backoff(attempt)
            attempt += 1
            self._stop.wait(delay)

    def _read(self, ws: ClientConnection) -> None:
        """Read until stopped. A PING goes out every ``ping_interval``; VALR answers it with PONG, so a connection
        that has said nothing for ``pong_timeout`` after a PING is dead though the socket looks open: it is closed
        (``connected`` clears, REST polls every tick again) and the loop reconnects."""
        last_ping = time.monotonic()
        unanswered_since: float | None = None  # when the first PING since the last message went out
        while not self._stop.is_set():
            wait = max(0.0, last_ping + self._ping_interval - time.monotonic())
            try:
                raw = ws.recv(timeout=min(wait, 0.5))
            except TimeoutError:
                now = time.monotonic()
                if unanswered_since is not None and now - unanswered_since >= self._pong_timeout:
                    raise TimeoutError(f"no answer to PING for {now - unanswered_since:.1f}s") from None
                if now - last_ping >= self._ping_interval:
                    ws.send(json.dumps({"type": "PING"}))
                    self.pings_sent += 1
                    last_ping = time.monotonic()
                    if unanswered_since is None:
                        unanswered_since = last_ping
                continue
            unanswered_since = None
            self._handle(raw)


class AccountStream(_Stream):
    """``/ws/account``: ``on_event(AccountEvent)`` for every order/trade/balance message; ``on_reconnect(Connected)``
    after every connection (first included) - reconcile via REST then. Callbacks run on the stream's thread: keep
    them short (e.g. put the event on a queue the engine drains)."""

    path = ACCOUNT_PATH

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        on_event: Callable[[AccountEvent], None],
        on_reconnect: Callable[[Connected], None] | None = None,
        subaccount_id: str = "",
        ping_interval: float = 30.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        pong_timeout: float | None = None,
    ) -> None:
        super().__init__(
            ws_url(base_url, ACCOUNT_PATH),
            on_reconnect=on_reconnect,
            ping_interval=ping_interval,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            name="valr-account-ws",
            pong_timeout=pong_timeout,
        )
        self._api_key = api_key
        self._secret = api_secret
        self._subaccount_id = subaccount_id
        self._on_event = on_event

    def __repr__(self) -> str:
        return f"AccountStream(url={self._url!r}, connected={self.connected})"

    def _headers(self) -> dict[str, str]:
        return ws_auth_headers(self._api_key, self._secret, ACCOUNT_PATH, subaccount_id=self._subaccount_id)

    def _greet(self, ws: ClientConnection) -> None:
        ws.send(json.dumps({"type": "SUBSCRIBE", "subscriptions": [{"event": e} for e in ACCOUNT_EVENTS]}))

    def _handle(self, raw: str | bytes) -> None:
        event = parse_account_message(raw)
        if event is not None:
            self._on_event(event)


class TradeStream(_Stream):
    """``/ws/trade``: ``on_ticker(Ticker)`` for every ``MARKET_SUMMARY_UPDATE`` of the subscribed pairs."""

    path = TRADE_PATH

    def __init__(
        self,
        base_url: str,
        pairs: list[str],
        *,
        on_ticker: Callable[[Ticker], None],
        on_reconnect: Callable[[Connected], None] | None = None,
        ping_interval: float = 30.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        pong_timeout: float | None = None,
    ) -> None:
        super().__init__(
            ws_url(base_url, TRADE_PATH),
            on_reconnect=on_reconnect,
            ping_interval=ping_interval,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            name="valr-trade-ws",
            pong_timeout=pong_timeout,
        )
        self._pairs = [p.upper() for p in pairs]
        self._on_ticker = on_ticker

    def _greet(self, ws: ClientConnection) -> None:
        ws.send(json.dumps({
            "type": "SUBSCRIBE",
            "subscriptions": [{"event": "MARKET_SUMMARY_UPDATE", "pairs": self._pairs}],
        }))

    def _handle(self, raw: str | bytes) -> None:
        ticker = parse_market_summary(raw)
        if ticker is not None:
            self._on_ticker(ticker)


__all__ = [
    "ACCOUNT_EVENTS",
    "AccountEvent",
    "AccountStream",
    "Connected",
    "FillDeduper",
    "TradeStream",
    "parse_account_message",
    "parse_market_summary",
    "ws_auth_headers",
    "ws_url",
]
