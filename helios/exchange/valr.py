"""VALR REST client: the LIVE implementation of ``ExchangeClient``.

Thin and explicit, on ``requests``. The rules it follows (see docs/live-path.md for the why):

* Signing: lowercase hex HMAC-SHA512 keyed with the secret's UTF-8 bytes over
  ``timestamp + VERB + path(with query) + body + subaccountId``. The JSON body is serialised once; those exact
  bytes are signed and sent.
* Every number VALR sends is a JSON string and is parsed as ``Decimal``; floats never appear.
* Read-only calls (GET) and cancels (DELETE, idempotent in effect) are retried on 429 / 5xx / network errors
  with ``Retry-After`` or exponential backoff with jitter, a bounded number of times, within the caller's overall
  deadline (``with client.deadline(seconds):`` or ``deadline=`` on the order calls).
* Order placement is never re-sent blind. A placement whose outcome is unclear (read timeout, connection dropped
  or reset after sending, 5xx, **429** - nothing in VALR's material says a 429 was not processed, and a market /
  IOC / FOK order is never "open", so customerOrderId uniqueness would not stop a duplicate) raises
  ``OutcomeUnknown``: the caller looks it up by customerOrderId (``get_order``). Only a request proven never sent
  (connect refused) is retried.
* An unknown order answers ``400 {"code": -1, "message": "Invalid Order"}`` (VALR's collection) or 404 (one VALR
  text): both mean "not found". A failed v2 placement's ``{orderId, code, message}`` body is a rejection whether
  it comes with 400 or 201. Read-only mode (private calls 503, status ``read-only``) raises ``ExchangeReadOnly``.
* Pair rules (``GET /v1/public/pairs``, a public call limited to 30/min) are cached: a placement never fetches
  them when a cached copy exists (``refresh_pairs()`` refreshes them explicitly).
* Fees (docs/valr-contract.md): a fill's ``fee``/``feeCurrency`` are VALR's; a maker rebate (``makerReward`` /
  ``makerRewardCurrency``) is surfaced as a NEGATIVE ``fee`` in ``makerRewardCurrency``.
* The secret and the signatures never appear in logs, exception messages or ``repr``.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn
from urllib.parse import quote, urlencode, urlsplit

import requests
import urllib3.exceptions

from helios.exchange.base import deadline_remaining  # call deadline
from helios.exchange.errors import (
    AuthenticationFailed,
    DeadlineExceeded,
    ExchangeError,
    ExchangeReadOnly,
    ExchangeUnavailable,
    OrderRejected,
    OutcomeUnknown,
    PlacementDeadlineExceeded,
    PlacementRateLimited,
    RateLimited,
)
from helios.models import (
    Balance,
    ExchangeOrder,
    FeeRates,
    Fill,
    KeyInfo,
    Mode,
    OrderRequest,
    OrderStatus,
    OrderType,
    PairInfo,
    Side,
    Ticker,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.valr.com"
CUSTOMER_ORDER_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,50}$")
TRADE_HISTORY_PAGE = 100

# VALR orderStatusType -> helios status (docs/valr-contract.md, "Order statuses"). Statuses that depend on the
# order's kind (a "partially filled" market/IOC/FOK order is finished: its remainder was cancelled) are resolved
# in order_status(). "Partially Filled" from the *history* endpoint is mapped in _parse_history_order.
_STATUS_MAP: dict[str, OrderStatus] = {
    "placed": OrderStatus.OPEN,
    "active": OrderStatus.OPEN,  # a stop-limit waiting for its trigger
    "order modified": OrderStatus.OPEN,  # refined by fill state in order_status()
    "repriced due to slippage": OrderStatus.OPEN,  # refined by fill state in order_status()
    "partially filled": OrderStatus.PARTIALLY_FILLED,
    "partially filled due to slippage": OrderStatus.PARTIALLY_FILLED,  # finished for market/IOC/FOK
    "partially filled and cancelled due to slippage": OrderStatus.CANCELLED,
    "filled": OrderStatus.FILLED,
    "cancelled": OrderStatus.CANCELLED,
    "expired": OrderStatus.CANCELLED,
    "failed": OrderStatus.FAILED,
}
#: Every orderStatusType VALR documents (trading.md / history.md / the API collection); see tests/contract.
DOCUMENTED_STATUSES: tuple[str, ...] = (
    "Placed",
    "Active",
    "Partially Filled",
    "Filled",
    "Cancelled",
    "Failed",
    "Expired",
    "Partially Filled Due To Slippage",
    "Partially Filled and Cancelled Due To Slippage",
    "Order Modified",
    "Repriced Due To Slippage",
)
#: VALR's "unknown order" error code (``400 {"code": -1, "message": "Invalid Order. "}`` in the API collection).
CODE_INVALID_ORDER = -1

# Permission spellings VALR has used, folded to one canonical lowercase name.
_PERMISSION_ALIASES: dict[str, str] = {
    "view access": "view",
    "internal transfer": "transfer",
}


# ---- signing


def sign_request(
    secret: str,
    timestamp_ms: int | str,
    verb: str,
    path: str,
    body: str | bytes = "",
    subaccount_id: str = "",
) -> str:
    """VALR signature: lowercase hex HMAC-SHA512 over ``timestamp + VERB + path + body + subaccountId``.

    ``path`` starts at ``/v1`` (or ``/v2``) and includes the query string; ``body`` is the exact bytes sent.
    """
    body_bytes = body if isinstance(body, bytes) else body.encode("utf-8")
    message = (
        str(timestamp_ms).encode("ascii")
        + verb.upper().encode("ascii")
        + path.encode("utf-8")
        + body_bytes
        + subaccount_id.encode("utf-8")
    )
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha512).hexdigest()


# ---- helpers


class _Secret:
    """Holds the API secret; its repr/str never reveal it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


def normalise_permission(name: str) -> str:
    """Canonical lowercase name: ``View access`` -> ``view``, ``Internal Transfer`` -> ``transfer``."""
    folded = " ".join(name.strip().lower().split())
    return _PERMISSION_ALIASES.get(folded, folded)


def key_has_permission(key: KeyInfo, permission: str) -> bool:
    """Case-insensitive permission check that also folds VALR's alternative spellings."""
    wanted = normalise_permission(permission)
    return any(normalise_permission(p) == wanted for p in key.permissions)


def to_decimal(value: object, field: str = "value") -> Decimal:
    """VALR numbers arrive as JSON strings; accept str/int/Decimal, never float."""
    if isinstance(value, bool | float):
        raise ExchangeError(f"VALR sent a non-string number for {field}: {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ExchangeError(f"VALR sent an invalid number for {field}: {value!r}") from None
    raise ExchangeError(f"VALR sent an invalid number for {field}: {value!r}")


def _opt_decimal(row: Mapping[str, Any], key: str) -> Decimal | None:
    value = row.get(key)
    if value is None or value == "":
        return None
    return to_decimal(value, key)


def parse_time(value: object) -> datetime:
    """ISO-8601 from VALR (``...Z``, or naive meaning UTC) -> aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise ExchangeError(f"VALR sent an invalid timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ExchangeError(f"VALR sent an invalid timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _opt_time(row: Mapping[str, Any], key: str) -> datetime | None:
    value = row.get(key)
    return parse_time(value) if value else None


def iso_ms(moment: datetime) -> str:
    """The timestamp format VALR uses in query strings: ``2024-01-01T00:00:00.000Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _side(value: object) -> Side:
    text = str(value).upper()
    if text not in ("BUY", "SELL"):
        raise ExchangeError(f"VALR sent an unknown side: {value!r}")
    return Side(text)


def _order_type(value: object) -> OrderType:
    return OrderType.MARKET if "market" in str(value).lower() else OrderType.LIMIT


def order_status(
    value: object,
    *,
    immediate: bool = False,
    filled: Decimal = Decimal(0),
    remaining: Decimal | None = None,
) -> OrderStatus:
    """VALR ``orderStatusType`` -> helios status. Never raises: an undocumented value maps to UNKNOWN (keep
    looking the order up) with a warning. ``immediate``: a market, IOC or FOK order (never rests on the book)."""
    text = " ".join(str(value).strip().lower().split())
    status = _STATUS_MAP.get(text)
    if status is None:
        log.warning("valr sent an undocumented order status %r: treating the order as UNKNOWN", value)
        return OrderStatus.UNKNOWN
    if status is OrderStatus.OPEN and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED  # "Order Modified" / "Repriced..." after a partial fill
    if status is OrderStatus.PARTIALLY_FILLED and remaining is not None and remaining <= 0:
        status = OrderStatus.FILLED
    if immediate and (status is OrderStatus.PARTIALLY_FILLED or "slippage" in text) and not status.is_terminal:
        status = OrderStatus.CANCELLED  # a partly filled market/IOC/FOK order (e.g. cut at slippage) is finished
    return status


def _status(value: object) -> OrderStatus:
    return order_status(value)


def _is_immediate(row: Mapping[str, Any]) -> bool:
    """A market, IOC or FOK order: it never rests on the book, so "partially filled" means finished."""
    kind = str(row.get("orderType") or row.get("type") or "").lower()
    tif = str(row.get("timeInForce") or "").upper()
    return "market" in kind or tif in ("IOC", "FOK")


_NOT_SENT_ERRORS = (
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    requests.exceptions.ConnectTimeout,
)


def _nothing_sent(exc: BaseException) -> bool:
    """True when a requests exception proves the request never left (connect refused / connect timeout)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _NOT_SENT_ERRORS):
            return True
        if isinstance(current, urllib3.exceptions.MaxRetryError):
            stack.append(current.reason)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        stack.append(current.__cause__)
        stack.append(current.__context__)
    return False


def _retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def check_pair_rules(request: OrderRequest, info: PairInfo, reference_price: Decimal | None = None) -> None:
    """Validate an order against VALR's pair rules before sending. Raises OrderRejected with a clear reason.

    ``reference_price`` is used for the quote-amount check of market orders (limit orders use their own
    price); without it that check is left to the exchange.
    """

    def reject(reason: str) -> NoReturn:
        who = f"{request.pair} {request.customer_order_id}"
        raise OrderRejected(f"{who}: {reason} (local pair rules, not sent)")

    if not CUSTOMER_ORDER_ID_RE.match(request.customer_order_id):
        reject("customerOrderId must be 1-50 letters, digits or '-'")
    if request.pair.upper() != info.symbol.upper():
        reject(f"pair rules are for {info.symbol}")
    if not info.active:
        reject("pair is not active on VALR")
    qty = request.quantity
    if not qty.is_finite() or qty <= 0:
        reject(f"quantity must be > 0, got {qty}")
    step = Decimal(1).scaleb(-info.base_decimal_places)
    if qty % step != 0:
        reject(f"quantity {qty} has more than {info.base_decimal_places} decimal places")
    if qty < info.min_base_amount:
        reject(f"quantity {qty} is below minBaseAmount {info.min_base_amount}")
    if qty > info.max_base_amount:
        reject(f"quantity {qty} is above maxBaseAmount {info.max_base_amount}")
    price: Decimal | None
    if request.order_type is OrderType.LIMIT:
        if request.price is None or not request.price.is_finite() or request.price <= 0:
            reject("limit order needs a price > 0")
        price = request.price
        if price % info.tick_size != 0:
            reject(f"price {price} is not a multiple of tickSize {info.tick_size}")
    else:
        price = reference_price if reference_price is not None else request.price
    if price is not None:
        notional = qty * price
        value = f"order value {notional} {info.quote_currency}"
        if notional < info.min_quote_amount:
            reject(f"{value} is below minQuoteAmount {info.min_quote_amount}")
        if notional > info.max_quote_amount:
            reject(f"{value} is above maxQuoteAmount {info.max_quote_amount}")


def order_body(request: OrderRequest) -> dict[str, Any]:
    """The v2 JSON body for a placement. Market orders always use ``baseAmount`` (quantity is in base)."""
    body: dict[str, Any] = {
        "side": request.side.value,
        "pair": request.pair.upper(),
        "customerOrderId": request.customer_order_id,
    }
    if request.order_type is OrderType.LIMIT:
        assert request.price is not None  # checked by check_pair_rules
        body["quantity"] = str(request.quantity)
        body["price"] = str(request.price)
        body["postOnly"] = request.post_only
        body["timeInForce"] = request.time_in_force.value
    else:
        body["baseAmount"] = str(request.quantity)
    return body


@dataclass(frozen=True)
class _Retry:
    """How one call may be retried."""

    name: str
    on_failure: bool  # retry 5xx / timeouts / dropped connections (only safe when the call is idempotent)


_IDEMPOTENT = _Retry("idempotent", on_failure=True)
_PLACEMENT = _Retry("placement", on_failure=False)


class _NotFound(ExchangeError):
    pass


# ---- VALR-specific value types (the ExchangeClient protocol keeps helios.models' types)


@dataclass(frozen=True)
class BalanceDetail:
    currency: str
    available: Decimal
    reserved: Decimal
    total: Decimal
    borrowed: Decimal


@dataclass(frozen=True)
class MarginStatus:
    margin_enabled: bool
    futures_enabled: bool
    in_liquidation: bool

    @property
    def spot_only(self) -> bool:
        return not (self.margin_enabled or self.futures_enabled or self.in_liquidation)


@dataclass(frozen=True)
class AccountIdentity:
    """``kind``: ``main-account``, ``subaccount-key`` or ``subaccount-via-main-key``."""

    kind: str
    subaccount_id: str | None
    key: KeyInfo


@dataclass(frozen=True)
class StopLimitRequest:
    """A protective stop-limit held on VALR. ``kind``: STOP_LOSS_LIMIT (triggers when the price falls to
    ``stop_price`` for a SELL) or TAKE_PROFIT_LIMIT (rises to it)."""

    customer_order_id: str
    pair: str
    side: Side
    quantity: Decimal
    price: Decimal
    stop_price: Decimal
    kind: str = "STOP_LOSS_LIMIT"

    def __post_init__(self) -> None:
        if self.kind not in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
            raise ValueError(f"stop-limit kind must be STOP_LOSS_LIMIT or TAKE_PROFIT_LIMIT, got {self.kind!r}")


@dataclass(frozen=True)
class ConditionalRequest:
    """Conditional TP/SL (``/v1/orders/conditionals``); both triggers -> one-cancels-the-other."""

    customer_order_id: str
    pair: str
    quantity: Decimal
    take_profit_trigger: Decimal | None = None
    take_profit_price: Decimal | None = None
    stop_loss_trigger: Decimal | None = None
    stop_loss_price: Decimal | None = None
    trigger_type: str = "LAST_TRADED"  # or MARK_PRICE


#: ``/v1/public/{pair}/ordertypes`` entries that mean "conditional TP/SL (OCO) is offered for this pair". VALR's
#: documentation lists NO such entry for any pair (the collection's ETHZAR and BTCUSDTPERP lists, agent-skills
#: market-data.md); ``OT_OCO`` is the name VALR gives an OCO conditional (``conditionalType`` in the collection's
#: Conditional Order Status example). Until VALR lists it for a pair, Helios protects with a stop-limit.
CONDITIONAL_TPSL_ORDER_TYPES = frozenset({"OT_OCO"})
#: customerOrderIds Helios gives its conditional orders: ``get_order`` looks these up among conditional orders too
#: when the regular status and history calls do not know them (a conditional is not a regular order until it
#: triggers).
CONDITIONAL_CID_PREFIX = "hp-oco-"


@dataclass(frozen=True)
class ConditionalOrder:
    order_id: str
    customer_order_id: str | None
    pair: str
    conditional_type: str
    quantity: Decimal
    take_profit_trigger: Decimal | None
    stop_loss_trigger: Decimal | None
    status: str


# ---- client


class ValrClient:
    """LIVE ``ExchangeClient`` for VALR's REST API."""

    mode: Mode = Mode.LIVE

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        subaccount_id: str = "",
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        max_attempts: int = 4,
        max_placement_attempts: int = 3,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        max_retry_after: float = 30.0,
        pairs_ttl: float = 3600.0,
        auto_clock_sync: bool = True,
        clock_sync_interval: float = 600.0,
        confirm_placement: bool = True,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        public_pacer: Any = None,
    ) -> None:
        if not api_key or not api_secret:
            raise AuthenticationFailed("VALR API key and secret are required")
        if max_attempts < 1 or max_placement_attempts < 1:
            raise ValueError("max_attempts and max_placement_attempts must be >= 1")
        self._api_key = api_key
        self._secret = _Secret(api_secret)
        self._base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self._base_url).path.rstrip("/")
        self._subaccount_id = subaccount_id
        self._timeout = (connect_timeout, read_timeout)
        self._max_attempts = max_attempts
        self._max_placement_attempts = max_placement_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_retry_after = max_retry_after
        self._pairs_ttl = pairs_ttl
        self._auto_clock_sync = auto_clock_sync
        self._clock_sync_interval = clock_sync_interval
        self._confirm_placement = confirm_placement
        self._session = session or requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._offset_ms = 0
        self._offset_synced_at: float | None = None
        self._connected = False
        self._last_status: str | None = None
        self._pairs: dict[str, PairInfo] = {}
        self._pairs_loaded_at: float | None = None
        self._order_types: dict[str, tuple[float, frozenset[str]]] = {}
        # Shared budget of VALR's 30 public calls a minute (helios.marketdata.PublicCallPacer): every unsigned
        # call this client sends is recorded there, so market data paces itself around them.
        self._public_pacer = public_pacer
        self._local = threading.local()  # per-thread overall deadline (time.monotonic() value)
        self._read_only = False

    def __repr__(self) -> str:
        return f"ValrClient(base_url={self._base_url!r}, mode=LIVE, subaccount={bool(self._subaccount_id)})"

    # ---- deadline

    @contextmanager
    def deadline(self, seconds: float | None) -> Iterator[None]:
        """Bound every call made inside (by this thread) to ``seconds`` of wall time in total, retries and backoff
        included. Nested deadlines keep the earlier one. ``None`` leaves the current deadline as it is."""
        previous: float | None = getattr(self._local, "deadline", None)
        if seconds is None:
            yield
            return
        ends = time.monotonic() + max(0.0, seconds)
        self._local.deadline = ends if previous is None else min(previous, ends)
        try:
            yield
        finally:
            self._local.deadline = previous

    def _remaining(self) -> float | None:
        """Seconds left of the nearer of this thread's ``deadline()`` and the caller's ``call_deadline()``."""
        ends: float | None = getattr(self._local, "deadline", None)
        mine = None if ends is None else ends - time.monotonic()
        theirs = deadline_remaining()
        if mine is None or theirs is None:
            return theirs if mine is None else mine
        return min(mine, theirs)

    @property
    def read_only(self) -> bool:
        """True after VALR answered that it is in read-only mode, until a call succeeds again."""
        return self._read_only

    # ---- clock

    @property
    def clock_offset_ms(self) -> int:
        """Server time minus local time, as last measured (0 before the first sync)."""
        return self._offset_ms

    def server_time(self) -> datetime:
        """VALR's clock (``GET /v1/public/time``)."""
        data = self._call("GET", "/v1/public/time", signed=False)
        return self._parse_server_time(data)

    @staticmethod
    def _parse_server_time(data: Any) -> datetime:
        if not isinstance(data, dict):
            raise ExchangeError("VALR /v1/public/time answered with an unexpected body")
        if data.get("time"):
            return parse_time(data["time"])
        epoch = to_decimal(data.get("epochTime"), "epochTime")
        if epoch > 10**11:  # milliseconds, just in case
            epoch = epoch / 1000
        return datetime.fromtimestamp(float(epoch), UTC)

    def sync_clock(self, attempts: int | None = None) -> int:
        """Measure the offset to VALR's clock (midpoint of the round trip) and apply it to every timestamp."""
        before = self._clock()
        data = self._call("GET", "/v1/public/time", signed=False, attempts=attempts)
        after = self._clock()
        server_ms = int(self._parse_server_time(data).timestamp() * 1000)
        local_ms = int((before + after) / 2 * 1000)
        with self._lock:
            self._offset_ms = server_ms - local_ms
            self._offset_synced_at = after
        log.debug("valr clock offset measured: %d ms", self._offset_ms)
        return self._offset_ms

    def _timestamp_ms(self) -> str:
        return str(int(self._clock() * 1000) + self._offset_ms)

    def _maybe_sync_clock(self) -> None:
        if not self._auto_clock_sync:
            return
        synced_at = self._offset_synced_at
        if synced_at is None or self._clock() - synced_at > self._clock_sync_interval:
            self.sync_clock()

    # ---- transport

    def _call(
        self,
        verb: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        signed: bool = True,
        retry: _Retry = _IDEMPOTENT,
        attempts: int | None = None,
    ) -> Any:
        """One logical call with the retry policy; re-syncs the clock once on an auth failure."""
        if signed:
            self._maybe_sync_clock()
        call = (verb, path, body, signed, retry, attempts)
        try:
            return self._call_with_retries(*call)
        except AuthenticationFailed:
            if not (signed and self._auto_clock_sync):
                raise
            old = self._offset_ms
            try:
                new = self.sync_clock()
            except ExchangeError:
                raise AuthenticationFailed(f"VALR refused {verb} {path}: authentication failed") from None
            if abs(new - old) < 1000:
                raise
            log.warning("valr clock offset changed by %d ms; retrying %s %s once", new - old, verb, path)
            return self._call_with_retries(*call)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def _call_with_retries(
        self,
        verb: str,
        path: str,
        body: Mapping[str, Any] | None,
        signed: bool,
        retry: _Retry,
        attempts: int | None,
    ) -> Any:
        if attempts is None:
            attempts = self._max_attempts if retry.on_failure else self._max_placement_attempts
        body_text = "" if body is None else json.dumps(body, separators=(",", ":"))
        for attempt in range(attempts):
            last = attempt == attempts - 1
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(f"deadline passed before {verb} {path} could be sent (nothing sent)")
            try:
                return self._send_once(verb, path, body_text, signed=signed, retry=retry)
            except ExchangeReadOnly:
                raise
            except RateLimited as exc:
                if retry is _PLACEMENT:
                    raise  # never re-sent: _place looks it up by customerOrderId (finding 4)
                wait = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                if last or wait > self._max_retry_after or not self._time_left_for(wait):
                    raise
                log.info("valr %s %s rate limited; retrying in %.3fs", verb, path, wait)
                self._sleep(wait)
            except ExchangeUnavailable:
                # Placement gets here only when nothing was sent (connect refused/timeout): retry-safe.
                wait = self._backoff(attempt)
                if last or not self._time_left_for(wait):
                    raise
                log.info("valr %s %s unavailable; retrying in %.3fs", verb, path, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def use_public_pacer(self, pacer: Any) -> None:
        """Count this client's public calls in ``pacer`` (``helios.marketdata.PublicCallPacer``), the budget the
        service shares with its market data: VALR allows 30 public calls a minute across everything."""
        self._public_pacer = pacer

    def _time_left_for(self, wait: float) -> bool:
        remaining = self._remaining()
        return remaining is None or remaining > wait

    def _send_once(self, verb: str, path: str, body_text: str, *, signed: bool, retry: _Retry) -> Any:
        url = self._base_url + path
        if not signed and self._public_pacer is not None:
            self._public_pacer.record()
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body_text:
            data = body_text.encode("utf-8")
            headers["Content-Type"] = "application/json"
        if signed:
            timestamp = self._timestamp_ms()
            headers["Content-Type"] = "application/json"
            headers["X-VALR-API-KEY"] = self._api_key
            headers["X-VALR-TIMESTAMP"] = timestamp
            headers["X-VALR-SIGNATURE"] = sign_request(
                self._secret.reveal(), timestamp, verb, path, data or b"", self._subaccount_id
            )
            if self._subaccount_id:
                headers["X-VALR-SUB-ACCOUNT-ID"] = self._subaccount_id
        prepared = self._session.prepare_request(requests.Request(verb, url, headers=headers, data=data))
        if prepared.path_url != self._base_path + path:
            raise ExchangeError(f"internal: URL normalisation changed the signed path {path!r}")
        started = time.perf_counter()
        timeout = self._timeout
        remaining = self._remaining()
        if remaining is not None:
            bound = max(0.001, remaining)
            timeout = (min(timeout[0], bound), min(timeout[1], bound))
        try:
            response = self._session.send(prepared, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            self._connected = False
            elapsed = (time.perf_counter() - started) * 1000
            kind = type(exc).__name__
            if _nothing_sent(exc):
                log.warning("valr %s %s: not sent (%s) after %.0f ms", verb, path, kind, elapsed)
                raise ExchangeUnavailable(f"VALR unreachable for {verb} {path}: {kind}") from None
            log.warning("valr %s %s: no answer (%s) after %.0f ms", verb, path, kind, elapsed)
            out_of_time = remaining is not None and self._remaining() is not None and (self._remaining() or 0) <= 0
            if retry.on_failure:
                if out_of_time:
                    raise DeadlineExceeded(f"deadline passed waiting for {verb} {path}") from None
                raise ExchangeUnavailable(f"VALR gave no answer to {verb} {path}: {kind}") from None
            if out_of_time:
                raise PlacementDeadlineExceeded(f"deadline passed waiting for {verb} {path}: outcome unknown") from None
            raise OutcomeUnknown(f"VALR gave no answer to {verb} {path} ({kind}): outcome unknown") from None
        elapsed = (time.perf_counter() - started) * 1000
        log.debug("valr %s %s -> %d in %.1f ms", verb, path, response.status_code, elapsed)
        return self._handle_response(verb, path, response, retry)

    def _handle_response(self, verb: str, path: str, response: requests.Response, retry: _Retry) -> Any:
        status = response.status_code
        what = f"{verb} {path}"
        if status == 429:
            self._connected = True
            wait = _retry_after_seconds(response.headers.get("Retry-After"), self._clock())
            raise RateLimited(f"VALR rate limited {what} (HTTP 429)", retry_after=wait)
        if status == 503 and self._is_read_only():
            self._connected = True
            self._read_only = True
            # Read-only mode refuses orders: a placement answered like this was not placed.
            raise ExchangeReadOnly(f"VALR is in read-only mode: {what} refused (HTTP 503)", http_status=status)
        if status >= 500:
            self._connected = False
            code, message = self._error_fields(response)
            detail = f"VALR {what} failed with HTTP {status}" + (f": {message}" if message else "")
            if retry.on_failure:
                raise ExchangeUnavailable(detail, code=code, http_status=status)
            raise OutcomeUnknown(detail + " (outcome unknown)", code=code, http_status=status)
        self._connected = True
        if status < 400:
            self._read_only = False
        if status in (401, 403):
            code, message = self._error_fields(response)
            raise AuthenticationFailed(
                f"VALR refused {what} (HTTP {status}): {message or 'authentication failed'}",
                code=code,
                http_status=status,
            )
        # Error bodies may not be JSON; success bodies must be.
        if status >= 400:
            parsed = self._json_or_none(response)
        elif retry is _PLACEMENT:
            try:
                parsed = self._json(response)
            except ExchangeError:  # accepted (2xx) but unreadable: the order may well exist
                raise OutcomeUnknown(f"VALR accepted {what} with an unreadable body", http_status=status) from None
        else:
            parsed = self._json(response)
        error = self._embedded_error(parsed)
        not_found = (
            status == 404
            or (error is not None and error[0] == CODE_INVALID_ORDER)
            or (error is not None and "not found" in error[1].lower())
        )
        if not_found and retry is not _PLACEMENT:  # a placement is never "not found": it is rejected
            code, message = error if error is not None else (None, "not found")
            raise _NotFound(f"VALR {what}: {message}", code=code, http_status=status)
        # A failed v2 placement answers {orderId, code, message} with 400 (API collection) or 201 (another VALR
        # source): a rejection either way. The order exists on VALR with status Failed.
        if status >= 400 or error is not None:
            code, message = error if error is not None else (None, response.text[:200].strip())
            coded = f", code {code}" if code is not None else ""
            text = f"VALR refused {what} (HTTP {status}{coded}): {message}"
            if retry is _PLACEMENT:
                rejected = OrderRejected(text, code=code, http_status=status)
                if isinstance(parsed, dict) and parsed.get("orderId"):
                    rejected.order_id = str(parsed["orderId"])
                raise rejected
            raise ExchangeError(text, code=code, http_status=status)
        return parsed

    def _is_read_only(self) -> bool:
        """After a 503: is VALR in read-only mode? (one unsigned ``/v1/public/status`` call, no retries)."""
        try:
            data = self._send_once("GET", "/v1/public/status", "", signed=False, retry=_IDEMPOTENT)
        except ExchangeError:
            return False
        value = str(data.get("status", "")) if isinstance(data, dict) else ""
        self._last_status = value
        return value == "read-only"

    @staticmethod
    def _json(response: requests.Response) -> Any:
        if not response.content:
            return None
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise ExchangeError(
                f"VALR sent a non-JSON body (HTTP {response.status_code})", http_status=response.status_code
            ) from None

    @staticmethod
    def _json_or_none(response: requests.Response) -> Any:
        try:
            return json.loads(response.content, parse_float=Decimal) if response.content else None
        except ValueError:
            return None

    @staticmethod
    def _embedded_error(parsed: Any) -> tuple[int | None, str] | None:
        if isinstance(parsed, dict) and "message" in parsed and "code" in parsed and "id" not in parsed:
            code = parsed.get("code")
            return (code if isinstance(code, int) else None, str(parsed.get("message")))
        return None

    def _error_fields(self, response: requests.Response) -> tuple[int | None, str]:
        try:
            parsed = json.loads(response.content, parse_float=Decimal) if response.content else None
        except ValueError:
            return None, response.text[:200].strip()
        found = self._embedded_error(parsed)
        return found if found is not None else (None, "")

    # ---- public

    def status(self, attempts: int | None = None) -> str:
        """``online`` or ``read-only`` (``GET /v1/public/status``)."""
        data = self._call("GET", "/v1/public/status", signed=False, attempts=attempts)
        value = str(data.get("status", "")) if isinstance(data, dict) else ""
        self._last_status = value
        self._read_only = value == "read-only"
        return value

    def ticker(self, pair: str) -> Ticker:
        """Best bid/ask and last price (public, unsigned ``GET /v1/public/{pair}/marketsummary``)."""
        data = self._call("GET", f"/v1/public/{quote(pair.upper(), safe='')}/marketsummary", signed=False)
        if not isinstance(data, dict):
            raise ExchangeError(f"VALR market summary for {pair} has an unexpected shape")
        return Ticker(
            pair=str(data.get("currencyPair", pair.upper())),
            bid=to_decimal(data.get("bidPrice"), "bidPrice"),
            ask=to_decimal(data.get("askPrice"), "askPrice"),
            last=to_decimal(data.get("lastTradedPrice"), "lastTradedPrice"),
            timestamp=_opt_time(data, "created") or datetime.now(UTC),
        )

    def pairs(self, refresh: bool = False) -> dict[str, PairInfo]:
        """Every pair's trading rules (``GET /v1/public/pairs``), cached for ``pairs_ttl`` seconds."""
        loaded_at = self._pairs_loaded_at
        if refresh or loaded_at is None or self._clock() - loaded_at > self._pairs_ttl:
            data = self._call("GET", "/v1/public/pairs", signed=False)
            if not isinstance(data, list):
                raise ExchangeError("VALR /v1/public/pairs has an unexpected shape")
            parsed: dict[str, PairInfo] = {}
            for row in data:
                info = self._parse_pair(row)
                parsed[info.symbol.upper()] = info
            self._pairs = parsed
            self._pairs_loaded_at = self._clock()
        return dict(self._pairs)

    @staticmethod
    def _parse_pair(row: Mapping[str, Any]) -> PairInfo:
        try:
            places = int(str(row.get("baseDecimalPlaces")))
        except ValueError:
            raise ExchangeError(f"VALR pair {row.get('symbol')} has invalid baseDecimalPlaces") from None
        return PairInfo(
            symbol=str(row["symbol"]),
            base_currency=str(row.get("baseCurrency", "")),
            quote_currency=str(row.get("quoteCurrency", "")),
            min_base_amount=to_decimal(row.get("minBaseAmount"), "minBaseAmount"),
            max_base_amount=to_decimal(row.get("maxBaseAmount"), "maxBaseAmount"),
            min_quote_amount=to_decimal(row.get("minQuoteAmount"), "minQuoteAmount"),
            max_quote_amount=to_decimal(row.get("maxQuoteAmount"), "maxQuoteAmount"),
            tick_size=to_decimal(row.get("tickSize"), "tickSize"),
            base_decimal_places=places,
            active=bool(row.get("active", True)),
        )

    def refresh_pairs(self) -> dict[str, PairInfo]:
        """Re-read every pair's rules now (one public call). Call it rarely (e.g. hourly), never per order."""
        return self.pairs(refresh=True)

    def _cached_pair_info(self, pair: str) -> PairInfo:
        """Pair rules for a placement: the cached copy whatever its age; fetched only when never loaded.

        Never spends the public quota (30/min) on the order path when rules are cached (finding 6)."""
        key = pair.upper()
        info = self._pairs.get(key)
        if info is not None:
            return info
        try:
            return self.pair_info(pair)
        except (OrderRejected, OutcomeUnknown, ExchangeUnavailable, RateLimited, AuthenticationFailed):
            raise
        except ExchangeError as exc:
            raise OrderRejected(f"{pair}: {exc.message} (not sent)") from None

    def pair_info(self, pair: str) -> PairInfo:
        key = pair.upper()
        info = self.pairs().get(key)
        if info is None:
            info = self.pairs(refresh=True).get(key)
        if info is None:
            raise ExchangeError(f"VALR does not list pair {pair}")
        return info

    # ---- account

    def balances(self) -> list[Balance]:
        data = self._call("GET", "/v1/account/balances")
        return [
            Balance(
                currency=str(row["currency"]),
                available=to_decimal(row.get("available"), "available"),
                reserved=to_decimal(row.get("reserved"), "reserved"),
                total=to_decimal(row.get("total"), "total"),
            )
            for row in self._rows(data, "balances")
        ]

    def key_info(self) -> KeyInfo:
        """The current key (``GET /v1/account/api-keys/current``); compare with key_has_permission."""
        data = self._call("GET", "/v1/account/api-keys/current")
        if not isinstance(data, dict):
            raise ExchangeError("VALR key info has an unexpected shape")
        cidr = data.get("allowedIpAddressCidr")
        return KeyInfo(
            label=str(data.get("label", "")),
            permissions=tuple(str(p) for p in data.get("permissions") or ()),
            is_sub_account=bool(data.get("isSubAccount", False)),
            allowed_ip_cidr=str(cidr) if cidr else None,
        )

    def fee_rates(self, pair: str) -> FeeRates:
        data = self._call("GET", "/v1/account/fees/trade")
        for row in self._rows(data, "fees"):
            if str(row.get("currencyPair", "")).upper() == pair.upper():
                if row.get("makerPercentage") is None or row.get("takerPercentage") is None:
                    raise ExchangeError(f"VALR has no order-book fees for {pair}")
                return FeeRates(
                    maker_pct=to_decimal(row["makerPercentage"], "makerPercentage"),
                    taker_pct=to_decimal(row["takerPercentage"], "takerPercentage"),
                )
        raise ExchangeError(f"VALR lists no trade fees for {pair}")

    def fills(self, since: datetime | None = None) -> list[Fill]:
        """Trade history, oldest first (``GET /v1/account/tradehistory``, paged back with ``beforeId``)."""
        rows: list[Mapping[str, Any]] = []
        before_id: str | None = None
        for _ in range(100):  # at most 10,000 fills per call
            query: dict[str, str] = {"limit": str(TRADE_HISTORY_PAGE)}
            if since is not None:
                query["startTime"] = iso_ms(since)
            if before_id is not None:
                query["beforeId"] = before_id
            answer = self._call("GET", "/v1/account/tradehistory?" + urlencode(query))
            page = self._rows(answer, "tradehistory")
            rows.extend(page)
            if len(page) < TRADE_HISTORY_PAGE:
                break
            before_id = str(page[-1]["id"])
        # VALR answers newest first: reverse, then a stable sort by time keeps VALR's order within a millisecond.
        unique: dict[str, Fill] = {}
        for row in reversed(rows):
            fill = self._parse_fill(row)
            if since is None or fill.traded_at >= since:
                unique.setdefault(fill.trade_id, fill)
        return sorted(unique.values(), key=lambda f: f.traded_at)

    @staticmethod
    def _parse_fill(row: Mapping[str, Any]) -> Fill:
        """One trade-history row. A maker rebate (``makerReward``/``makerRewardCurrency``, present instead of
        ``fee``) becomes a NEGATIVE fee in the reward's currency, so P&L adds it back (docs/valr-contract.md)."""
        reward = row.get("makerReward")
        if reward not in (None, "") and row.get("fee") in (None, ""):
            amount = to_decimal(reward, "makerReward")
            currency = str(row.get("makerRewardCurrency") or row.get("feeCurrency") or "")
            return replace(ValrClient._parse_fill({**row, "fee": "0"}), fee=-amount, fee_currency=currency)
        fee = row.get("fee")
        return Fill(
            trade_id=str(row["id"]),
            order_id=str(row["orderId"]) if row.get("orderId") else None,
            customer_order_id=str(row["customerOrderId"]) if row.get("customerOrderId") else None,
            pair=str(row.get("currencyPair", "")),
            side=_side(row.get("side")),
            price=to_decimal(row.get("price"), "price"),
            quantity=to_decimal(row.get("quantity"), "quantity"),
            fee=to_decimal(fee, "fee") if fee not in (None, "") else Decimal(0),
            fee_currency=str(row.get("feeCurrency") or ""),
            traded_at=parse_time(row.get("tradedAt")),
        )

    @staticmethod
    def _rows(data: Any, what: str) -> list[Mapping[str, Any]]:
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            raise ExchangeError(f"VALR {what} answer has an unexpected shape")
        return data

    # ---- orders

    def place_order(self, request: OrderRequest, *, deadline: float | None = None) -> ExchangeOrder:
        """Place via the synchronous v2 endpoints; local pair rules first (nothing sent when they fail).

        Raises OrderRejected (definitely not placed, or placed and Failed: ``order_id`` set), OutcomeUnknown (the
        answer was unclear - timeout, 5xx, 429, read-only 503 - and a look-up by customerOrderId did not find it:
        keep looking it up, never re-send), ExchangeUnavailable (never sent). ``deadline``: seconds for the whole
        call, look-up included.
        """
        with self.deadline(deadline):
            info = self._cached_pair_info(request.pair)
            check_pair_rules(request, info)
            endpoint = "/v2/orders/limit" if request.order_type is OrderType.LIMIT else "/v2/orders/market"
            data = self._place(request.pair, request.customer_order_id, endpoint, order_body(request))
            order_id = str(data.get("id")) if isinstance(data, dict) and data.get("id") else None
            log.info(
                "valr order accepted: %s %s %s %s cid=%s id=%s",
                request.pair,
                request.side.value,
                request.order_type.value,
                request.quantity,
                request.customer_order_id,
                order_id,
            )
            accepted = ExchangeOrder(
                customer_order_id=request.customer_order_id,
                order_id=order_id,
                pair=request.pair.upper(),
                side=request.side,
                order_type=request.order_type,
                status=OrderStatus.OPEN,
                price=request.price,
                original_quantity=request.quantity,
            )
            if not self._confirm_placement:
                return accepted
            try:
                found = self.get_order(request.pair, request.customer_order_id)
            except ExchangeError as exc:
                cid = request.customer_order_id
                log.warning("valr order %s accepted but its status look-up failed: %s", cid, exc)
                return accepted
            return found if found is not None else accepted

    def _place(self, pair: str, cid: str, endpoint: str, body: Mapping[str, Any]) -> Any:
        """Send one placement exactly once (only a request proven never sent is retried).

        An unclear outcome - no answer, 5xx, or 429 (nothing in VALR's material says a 429 was not processed; a
        market/IOC/FOK order is never "open", so customerOrderId uniqueness would not stop a duplicate) - raises
        ``OutcomeUnknown`` (``PlacementRateLimited`` for a 429): the caller looks the order up by customerOrderId
        with ``get_order`` and never re-sends it blind."""
        try:
            return self._call("POST", endpoint, body=body, retry=_PLACEMENT)
        except RateLimited as exc:
            log.warning("valr placement %s (%s) answered 429: outcome unknown, look it up", cid, pair)
            raise PlacementRateLimited(
                f"VALR rate limited placement {cid} (HTTP 429): outcome unknown - look it up by customerOrderId, "
                "never re-send",
                retry_after=exc.retry_after,
            ) from None

    def get_order(
        self, pair: str, customer_order_id: str, *, deadline: float | None = None
    ) -> ExchangeOrder | None:
        """Order status by customerOrderId; None when VALR never saw it.

        The status call answers finished orders too (200 with the final status); "not found" in either form
        (``400 {"code": -1}`` or 404) falls back to the history summary. A finished order with fills is completed
        from the history summary (average price, total fee and fee currency)."""
        with self.deadline(deadline):
            cid = quote(customer_order_id, safe="")
            order: ExchangeOrder | None = None
            try:
                data = self._call("GET", f"/v1/orders/{quote(pair.upper(), safe='')}/customerorderid/{cid}")
            except _NotFound:
                data = None
            if data is not None:
                if not isinstance(data, dict):
                    raise ExchangeError("VALR order status has an unexpected shape")
                order = self._parse_status_order(data)
                if not (order.status.is_terminal and order.filled_quantity > 0):
                    return order
            try:
                summary = self._call("GET", f"/v1/orders/history/summary/customerorderid/{cid}")
            except _NotFound:
                if order is None and customer_order_id.startswith(CONDITIONAL_CID_PREFIX):
                    return self._conditional_as_order(pair, customer_order_id)
                return order
            if not isinstance(summary, dict):
                raise ExchangeError("VALR order history summary has an unexpected shape")
            if data is None and not self._parse_status_order(summary).status.is_terminal:
                # The summary says it is working, the status call said "not found": the order may have landed
                # between the two calls (a request still in flight). Ask the status call again before calling it
                # finished.
                try:
                    again = self._call("GET", f"/v1/orders/{quote(pair.upper(), safe='')}/customerorderid/{cid}")
                except _NotFound:
                    again = None
                if isinstance(again, dict):
                    return self._parse_status_order(again)
            return self._parse_history_order(summary)

    @staticmethod
    def _parse_status_order(row: Mapping[str, Any]) -> ExchangeOrder:
        original = to_decimal(row.get("originalQuantity"), "originalQuantity")
        remaining = _opt_decimal(row, "remainingQuantity")
        filled = original - remaining if remaining is not None else Decimal(0)
        status = order_status(
            row.get("orderStatusType"), immediate=_is_immediate(row), filled=filled, remaining=remaining
        )
        if status is OrderStatus.FILLED and remaining is None:
            filled = original
        price = _opt_decimal(row, "originalPrice")
        return ExchangeOrder(
            customer_order_id=str(row["customerOrderId"]) if row.get("customerOrderId") else None,
            order_id=str(row["orderId"]) if row.get("orderId") else None,
            pair=str(row.get("currencyPair", "")),
            side=_side(row.get("orderSide")),
            order_type=_order_type(row.get("orderType")),
            status=status,
            price=price if price else None,
            original_quantity=original,
            filled_quantity=filled,
            failed_reason=str(row["failedReason"]) if row.get("failedReason") else None,
            updated_at=_opt_time(row, "orderUpdatedAt"),
        )

    @staticmethod
    def _parse_history_order(row: Mapping[str, Any]) -> ExchangeOrder:
        base = ValrClient._parse_status_order(row)
        executed = _opt_decimal(row, "totalExecutedQuantity")
        average = _opt_decimal(row, "averagePrice")
        status = base.status
        # Reached only after the status call said "not found" or "finished": a "Partially Filled" order here is
        # no longer working (its remainder was cancelled/expired), so it is terminal for helios.
        if status in (OrderStatus.PARTIALLY_FILLED, OrderStatus.OPEN):
            status = OrderStatus.CANCELLED
        return ExchangeOrder(
            customer_order_id=base.customer_order_id,
            order_id=base.order_id,
            pair=base.pair,
            side=base.side,
            order_type=base.order_type,
            status=status,
            price=base.price,
            original_quantity=base.original_quantity,
            filled_quantity=executed if executed is not None else base.filled_quantity,
            average_price=average if average else None,
            total_fee=_opt_decimal(row, "totalFee") or Decimal(0),
            fee_currency=str(row["feeCurrency"]) if row.get("feeCurrency") else None,
            failed_reason=base.failed_reason,
            updated_at=base.updated_at,
        )

    def open_orders(self) -> list[ExchangeOrder]:
        """``GET /v1/orders/open`` (note: its field names differ from the order-status call)."""
        result = []
        for row in self._rows(self._call("GET", "/v1/orders/open"), "open orders"):
            original = to_decimal(row.get("originalQuantity"), "originalQuantity")
            remaining = _opt_decimal(row, "remainingQuantity")
            status = _status(row.get("status") or "Placed")
            result.append(
                ExchangeOrder(
                    customer_order_id=str(row["customerOrderId"]) if row.get("customerOrderId") else None,
                    order_id=str(row["orderId"]) if row.get("orderId") else None,
                    pair=str(row.get("currencyPair", "")),
                    side=_side(row.get("side")),
                    order_type=_order_type(row.get("type")),
                    status=status,
                    price=_opt_decimal(row, "price"),
                    original_quantity=original,
                    filled_quantity=original - remaining if remaining is not None else Decimal(0),
                    updated_at=_opt_time(row, "updatedAt"),
                )
            )
        return result

    def cancel_order(self, pair: str, customer_order_id: str) -> None:
        """``DELETE /v2/orders/order`` by customerOrderId; OrderRejected when VALR refuses (e.g. not open)."""
        body = {"customerOrderId": customer_order_id, "pair": pair.upper()}
        try:
            self._call("DELETE", "/v2/orders/order", body=body)
        except _NotFound as exc:
            raise OrderRejected(exc.message, code=exc.code, http_status=exc.http_status) from None
        except ExchangeError as exc:
            if type(exc) is ExchangeError and exc.http_status is not None and 400 <= exc.http_status < 500:
                raise OrderRejected(exc.message, code=exc.code, http_status=exc.http_status) from None
            raise

    def cancel_all_orders(self) -> list[str]:
        """``DELETE /v1/orders``: the ids VALR accepted to cancel. Not proof: re-query open_orders()."""
        data = self._call("DELETE", "/v1/orders")
        return [str(row["orderId"]) for row in self._rows(data, "cancel all") if row.get("orderId")]

    # ---- account guards

    def balance_details(self) -> list[BalanceDetail]:
        """Balances with VALR's margin fields (``borrowedAmount``): a borrowed amount or a negative total is an
        alarm for a spot bot (see ``account_guards``)."""
        data = self._call("GET", "/v1/account/balances")
        return [
            BalanceDetail(
                currency=str(row["currency"]),
                available=to_decimal(row.get("available"), "available"),
                reserved=to_decimal(row.get("reserved"), "reserved"),
                total=to_decimal(row.get("total"), "total"),
                borrowed=_opt_decimal(row, "borrowedAmount") or Decimal(0),
            )
            for row in self._rows(data, "balances")
        ]

    def margin_status(self) -> MarginStatus:
        """``GET /v1/margin/account/status``: all three must be false for a spot bot."""
        data = self._call("GET", "/v1/margin/account/status")
        if not isinstance(data, dict):
            raise ExchangeError("VALR margin status has an unexpected shape")
        return MarginStatus(
            margin_enabled=data.get("marginEnabled") is True,
            futures_enabled=data.get("futuresEnabled") is True,
            in_liquidation=data.get("inLiquidation") is True,
        )

    def account_identity(self) -> AccountIdentity:
        """Which account the key acts for: the key's own account (main or subaccount), or - when this client was
        given ``subaccount_id`` - a subaccount reached with a main-account key (``X-VALR-SUB-ACCOUNT-ID``)."""
        key = self.key_info()
        if self._subaccount_id and key.is_sub_account:
            raise ExchangeError(
                "a subaccount's own key must not send X-VALR-SUB-ACCOUNT-ID: unset the subaccount id for this key"
            )
        if self._subaccount_id:
            return AccountIdentity(kind="subaccount-via-main-key", subaccount_id=self._subaccount_id, key=key)
        return AccountIdentity(kind="subaccount-key" if key.is_sub_account else "main-account", subaccount_id=None,
                               key=key)

    def account_guards(self) -> list[str]:
        """Named reasons this account is unfit for a spot bot ([] = fine): margin/futures enabled, liquidation,
        borrowed amounts, negative totals. Pure reads; ``allowMargin`` is never sent by this client."""
        problems: list[str] = []
        margin = self.margin_status()
        if margin.margin_enabled:
            problems.append("margin trading is enabled on the account")
        if margin.futures_enabled:
            problems.append("futures trading is enabled on the account")
        if margin.in_liquidation:
            problems.append("the account is in liquidation")
        for row in self.balance_details():
            if row.borrowed > 0:
                problems.append(f"{row.currency} has a borrowed amount of {row.borrowed}")
            if row.total < 0:
                problems.append(f"{row.currency} total is negative ({row.total})")
        return problems

    # ---- protection held on the exchange

    def order_types(self, pair: str) -> frozenset[str]:
        """``GET /v1/public/{pair}/ordertypes`` (public; cached for ``pairs_ttl``): e.g. STOP_LOSS_LIMIT."""
        key = pair.upper()
        cached = self._order_types.get(key)
        if cached is not None and self._clock() - cached[0] <= self._pairs_ttl:
            return cached[1]
        data = self._call("GET", f"/v1/public/{quote(key, safe='')}/ordertypes", signed=False)
        if isinstance(data, dict):  # agent-skills market-data.md shows {"currencyPair", "orderTypes": [...]}
            data = data.get("orderTypes")
        if not isinstance(data, list):
            raise ExchangeError(f"VALR order types for {pair} have an unexpected shape")
        types = frozenset(str(t).upper() for t in data)
        self._order_types[key] = (self._clock(), types)
        return types

    def place_stop_limit(self, request: StopLimitRequest, *, deadline: float | None = None) -> ExchangeOrder:
        """``POST /v2/orders/stop/limit`` (STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT). Status "Active" (OPEN) until
        triggered. Same never-re-send rule as place_order."""
        with self.deadline(deadline):
            info = self._cached_pair_info(request.pair)
            as_limit = OrderRequest(request.customer_order_id, request.pair, request.side, OrderType.LIMIT,
                                    request.quantity, request.price)
            check_pair_rules(as_limit, info)
            if request.stop_price <= 0 or request.stop_price % info.tick_size != 0:
                raise OrderRejected(f"{request.customer_order_id}: stopPrice {request.stop_price} is not a positive "
                                    f"multiple of tickSize {info.tick_size} (local pair rules, not sent)")
            body = {
                "side": request.side.value,
                "quantity": str(request.quantity),
                "price": str(request.price),
                "stopPrice": str(request.stop_price),
                "pair": request.pair.upper(),
                "type": request.kind,
                "timeInForce": "GTC",
                "customerOrderId": request.customer_order_id,
            }
            data = self._place(request.pair, request.customer_order_id, "/v2/orders/stop/limit", body)
            order_id = str(data.get("id")) if isinstance(data, dict) and data.get("id") else None
            found = None
            if self._confirm_placement:
                try:
                    found = self.get_order(request.pair, request.customer_order_id)
                except ExchangeError as exc:
                    cid = request.customer_order_id
                    log.warning("valr stop order %s accepted; status look-up failed: %s", cid, exc)
            return found or ExchangeOrder(
                customer_order_id=request.customer_order_id, order_id=order_id, pair=request.pair.upper(),
                side=request.side, order_type=OrderType.LIMIT, status=OrderStatus.OPEN, price=request.price,
                original_quantity=request.quantity,
            )

    def place_conditional(self, request: ConditionalRequest, *, deadline: float | None = None) -> str:
        """``POST /v1/orders/conditionals`` (take-profit and/or stop-loss, one-cancels-the-other when both are
        given). Answers 202 ``{id}``: accepted for processing; confirm with ``conditional_orders()``. Returns the
        id. Never re-sent blind: an unclear answer raises OutcomeUnknown - look among ``conditional_orders()``."""
        body: dict[str, Any] = {
            "pair": request.pair.upper(),
            "quantity": str(request.quantity),
            "triggerType": request.trigger_type,
            "customerOrderId": request.customer_order_id,
        }
        if request.take_profit_trigger is not None:
            body["takeProfitTriggerPrice"] = str(request.take_profit_trigger)
            body["takeProfitOrderPrice"] = str(request.take_profit_price or request.take_profit_trigger)
        if request.stop_loss_trigger is not None:
            body["stopLossTriggerPrice"] = str(request.stop_loss_trigger)
            body["stopLossOrderPrice"] = str(request.stop_loss_price or request.stop_loss_trigger)
        if len(body) == 4:
            raise OrderRejected(f"{request.customer_order_id}: a conditional order needs a take-profit or a "
                                "stop-loss trigger (not sent)")
        with self.deadline(deadline):
            data = self._place(request.pair, request.customer_order_id, "/v1/orders/conditionals", body)
        if not isinstance(data, dict) or not data.get("id"):
            raise OutcomeUnknown(f"VALR accepted conditional {request.customer_order_id} without an id")
        return str(data["id"])

    def supports_conditional_tpsl(self, pair: str) -> bool:
        """The pair's order types include a conditional TP/SL entry (``CONDITIONAL_TPSL_ORDER_TYPES``)."""
        return bool(self.order_types(pair) & CONDITIONAL_TPSL_ORDER_TYPES)

    def conditional_orders(self) -> list[ConditionalOrder]:
        """``GET /v1/orders/conditionals``: the account's open conditional orders."""
        return self._conditional_rows(self._call("GET", "/v1/orders/conditionals"), "conditional orders")

    def conditional_history(self, pair: str) -> list[ConditionalOrder]:
        """``GET /v1/orders/conditionals/{pair}/history``: the pair's conditional orders, finished ones included."""
        data = self._call("GET", f"/v1/orders/conditionals/{quote(pair.upper(), safe='')}/history")
        return self._conditional_rows(data, "conditional order history")

    def _conditional_as_order(self, pair: str, customer_order_id: str) -> ExchangeOrder | None:
        """A conditional order (not a regular one) by customerOrderId, as an ExchangeOrder: "Placed" (waiting for
        its trigger) is OPEN, "Cancelled" CANCELLED. A triggered conditional is followed through the order its leg
        placed (the regular status call), so it is not looked for here."""
        for row in self.conditional_history(pair):
            if row.customer_order_id != customer_order_id:
                continue
            return ExchangeOrder(
                customer_order_id=customer_order_id, order_id=row.order_id, pair=row.pair or pair.upper(),
                side=Side.SELL, order_type=OrderType.LIMIT, status=order_status(row.status or "Placed"),
                price=row.stop_loss_trigger, original_quantity=row.quantity,
            )
        return None

    def _conditional_rows(self, data: Any, what: str) -> list[ConditionalOrder]:
        rows = self._rows(data, what)
        return [
            ConditionalOrder(
                order_id=str(row.get("orderId", "")),
                customer_order_id=str(row["customerOrderId"]) if row.get("customerOrderId") else None,
                pair=str(row.get("currencyPair", "")),
                conditional_type=str(row.get("conditionalType", "")),
                quantity=_opt_decimal(row, "quantity") or Decimal(0),
                take_profit_trigger=_opt_decimal(row, "takeProfitTriggerPrice"),
                stop_loss_trigger=_opt_decimal(row, "stopLossTriggerPrice"),
                status=str(row.get("orderStatusType") or ""),
            )
            for row in rows
        ]

    def cancel_conditional(self, pair: str, *, order_id: str | None = None,
                           customer_order_id: str | None = None) -> None:
        """``DELETE /v1/orders/conditionals/conditional`` by orderId or customerOrderId (202: re-query)."""
        if (order_id is None) == (customer_order_id is None):
            raise ValueError("give exactly one of order_id or customer_order_id")
        body: dict[str, str] = {"pair": pair.upper()}
        if order_id is not None:
            body["orderId"] = order_id
        else:
            assert customer_order_id is not None
            body["customerOrderId"] = customer_order_id
        try:
            self._call("DELETE", "/v1/orders/conditionals/conditional", body=body)
        except _NotFound as exc:
            raise OrderRejected(exc.message, code=exc.code, http_status=exc.http_status) from None

    def cancel_all_conditionals(self) -> list[str]:
        """``DELETE /v1/orders/conditionals``: the ids VALR accepted to cancel (re-query to confirm)."""
        data = self._call("DELETE", "/v1/orders/conditionals")
        return [str(row["orderId"]) for row in self._rows(data, "cancel conditionals") if row.get("orderId")]

    def cancel_everything(self, *, deadline: float | None = None) -> list[str]:
        """Cancel every regular order (``DELETE /v1/orders``, stop-limits included) AND every conditional order
        (``DELETE /v1/orders/conditionals``: ``DELETE /v1/orders`` does not cover them). Accepted is not proof:
        re-query ``open_orders()`` and ``conditional_orders()``."""
        with self.deadline(deadline):
            return self.cancel_all_orders() + self.cancel_all_conditionals()

    def cancel_open_orders_except(
        self, keep: Callable[[ExchangeOrder], bool], *, deadline: float | None = None
    ) -> list[ExchangeOrder]:
        """Cancel, one by one, every open regular order for which ``keep(order)`` is False (e.g. keep the
        protective stop-limits during an emergency stop; ``DELETE /v1/orders`` would cancel them too). Returns
        the orders asked to cancel; conditional orders are untouched. Re-query to confirm."""
        asked: list[ExchangeOrder] = []
        with self.deadline(deadline):
            for order in self.open_orders():
                if keep(order):
                    continue
                body: dict[str, str] = {"pair": order.pair.upper()}
                if order.order_id:
                    body["orderId"] = order.order_id
                elif order.customer_order_id:
                    body["customerOrderId"] = order.customer_order_id
                else:
                    continue
                try:
                    self._call("DELETE", "/v2/orders/order", body=body)
                except _NotFound:
                    continue  # finished meanwhile
                asked.append(order)
        return asked

    # ---- health

    def is_connected(self) -> bool:
        return self._connected

    def ping(self) -> bool:
        """Re-measure the clock offset and read ``/v1/public/status``; connected = reachable and online."""
        try:
            if self._auto_clock_sync:
                self.sync_clock(attempts=1)
            online = self.status(attempts=1) == "online"
        except RateLimited:
            self._connected = True  # reachable, just busy
            return True
        except ExchangeError:
            self._connected = False
            return False
        self._connected = online
        return online

    @property
    def last_status(self) -> str | None:
        return self._last_status

    def on_market_price(self, ticker: Ticker) -> None:
        """Real exchanges match orders themselves."""

    def close(self) -> None:
        self._session.close()


__all__ = [
    "CONDITIONAL_CID_PREFIX",
    "CONDITIONAL_TPSL_ORDER_TYPES",
    "DEFAULT_BASE_URL",
    "DOCUMENTED_STATUSES",
    "AccountIdentity",
    "BalanceDetail",
    "ConditionalOrder",
    "ConditionalRequest",
    "MarginStatus",
    "StopLimitRequest",
    "ValrClient",
    "check_pair_rules",
    "iso_ms",
    "key_has_permission",
    "normalise_permission",
    "order_body",
    "order_status",
    "sign_request",
    "to_decimal",
]
