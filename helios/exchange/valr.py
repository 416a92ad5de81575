"""VALR REST client: the LIVE implementation of ``ExchangeClient``.

Thin and explicit, on ``requests``. The rules it follows (see docs/live-path.md for the why):

* Signing: lowercase hex HMAC-SHA512 keyed with the secret's UTF-8 bytes over
  ``timestamp + VERB + path(with query) + body + subaccountId``. The JSON body is serialised once; those exact
  bytes are signed and sent.
* Every number VALR sends is a JSON string and is parsed as ``Decimal``; floats never appear.
* Read-only calls (GET) and cancels (DELETE, idempotent in effect) are retried on 429 / 5xx / network errors
  with ``Retry-After`` or exponential backoff with jitter, a bounded number of times.
* Order placement is never re-sent blind. A placement whose answer never arrived (read timeout, connection
  dropped or reset after sending, 5xx) raises ``OutcomeUnknown``: the caller looks the order up by its
  customerOrderId. A 429 on placement means VALR refused it before processing, so it is retried after backoff
  with the same body (a duplicate is impossible anyway: the customerOrderId must be unique among open orders).
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn
from urllib.parse import quote, urlencode, urlsplit

import requests
import urllib3.exceptions

from helios.exchange.base import deadline_remaining  # call deadline
from helios.exchange.errors import (
    AuthenticationFailed,
    ExchangeError,
    ExchangeUnavailable,
    OrderRejected,
    OutcomeUnknown,
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

# VALR orderStatusType -> helios status. "Partially Filled" from the *history* endpoint (the order is no
# longer open) is mapped separately: see _parse_history_order.
_STATUS_MAP: dict[str, OrderStatus] = {
    "placed": OrderStatus.OPEN,
    "active": OrderStatus.OPEN,
    "partially filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "cancelled": OrderStatus.CANCELLED,
    "expired": OrderStatus.CANCELLED,
    "failed": OrderStatus.FAILED,
}

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


def _status(value: object) -> OrderStatus:
    status = _STATUS_MAP.get(str(value).strip().lower())
    if status is None:
        raise ExchangeError(f"VALR sent an unknown order status: {value!r}")
    return status


_NOT_SENT_ERRORS = (
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    requests.exceptions.ConnectTimeout,
)


def _capped_to_deadline(wait: float) -> float:
    """A retry's wait, never past the call deadline (helios.exchange.base.CALL_DEADLINE)."""
    left = deadline_remaining()
    return wait if left is None else max(0.0, min(wait, left))


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

    def __repr__(self) -> str:
        return f"ValrClient(base_url={self._base_url!r}, mode=LIVE, subaccount={bool(self._subaccount_id)})"

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
            # --- call deadline (helios.exchange.base.CALL_DEADLINE): no attempt, no wait past it ---
            left = deadline_remaining()
            if left is not None and left <= 0:
                raise ExchangeUnavailable(f"VALR {verb} {path}: call deadline passed, not sent")
            last = last or (left is not None and left < 0.05)
            # --- end call deadline ---
            try:
                return self._send_once(verb, path, body_text, signed=signed, retry=retry)
            except RateLimited as exc:
                wait = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                if last or wait > self._max_retry_after:
                    raise
                log.info("valr %s %s rate limited; retrying in %.3fs", verb, path, wait)
                self._sleep(_capped_to_deadline(wait))
            except ExchangeUnavailable:
                # Placement gets here only when nothing was sent (connect refused/timeout): retry-safe.
                if last:
                    raise
                wait = self._backoff(attempt)
                log.info("valr %s %s unavailable; retrying in %.3fs", verb, path, wait)
                self._sleep(_capped_to_deadline(wait))
        raise AssertionError("unreachable")  # pragma: no cover

    def _deadline_timeout(self) -> tuple[float, float]:
        """(connect, read) timeouts, capped to what is left of the call deadline (helios.exchange.base)."""
        left = deadline_remaining()
        if left is None:
            return self._timeout
        left = max(0.01, left)
        return (min(self._timeout[0], left), min(self._timeout[1], left))

    def _send_once(self, verb: str, path: str, body_text: str, *, signed: bool, retry: _Retry) -> Any:
        url = self._base_url + path
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
        try:
            response = self._session.send(prepared, timeout=self._deadline_timeout(), allow_redirects=False)
        except requests.RequestException as exc:
            self._connected = False
            elapsed = (time.perf_counter() - started) * 1000
            kind = type(exc).__name__
            if _nothing_sent(exc):
                log.warning("valr %s %s: not sent (%s) after %.0f ms", verb, path, kind, elapsed)
                raise ExchangeUnavailable(f"VALR unreachable for {verb} {path}: {kind}") from None
            log.warning("valr %s %s: no answer (%s) after %.0f ms", verb, path, kind, elapsed)
            if retry.on_failure:
                raise ExchangeUnavailable(f"VALR gave no answer to {verb} {path}: {kind}") from None
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
        if status >= 500:
            self._connected = False
            code, message = self._error_fields(response)
            detail = f"VALR {what} failed with HTTP {status}" + (f": {message}" if message else "")
            if retry.on_failure:
                raise ExchangeUnavailable(detail, code=code, http_status=status)
            raise OutcomeUnknown(detail + " (outcome unknown)", code=code, http_status=status)
        self._connected = True
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
        not_found = status == 404 or (error is not None and "not found" in error[1].lower())
        if not_found and retry is not _PLACEMENT:  # a placement is never "not found": it is rejected
            code, message = error if error is not None else (None, "not found")
            raise _NotFound(f"VALR {what}: {message}", code=code, http_status=status)
        if status >= 400 or (error is not None and status != 201):
            code, message = error if error is not None else (None, response.text[:200].strip())
            coded = f", code {code}" if code is not None else ""
            text = f"VALR refused {what} (HTTP {status}{coded}): {message}"
            if retry is _PLACEMENT:
                raise OrderRejected(text, code=code, http_status=status)
            raise ExchangeError(text, code=code, http_status=status)
        return parsed

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

    def place_order(self, request: OrderRequest) -> ExchangeOrder:
        """Place via the synchronous v2 endpoints; local pair rules first (nothing sent when they fail).

        Raises OrderRejected (definitely not placed), OutcomeUnknown (look it up with get_order), RateLimited
        (refused before processing, after the bounded retries), ExchangeUnavailable (never sent).
        """
        try:
            info = self.pair_info(request.pair)
        except (OrderRejected, OutcomeUnknown, ExchangeUnavailable, RateLimited, AuthenticationFailed):
            raise
        except ExchangeError as exc:
            raise OrderRejected(f"{request.customer_order_id}: {exc.message} (not sent)") from None
        check_pair_rules(request, info)
        endpoint = "/v2/orders/limit" if request.order_type is OrderType.LIMIT else "/v2/orders/market"
        data = self._call("POST", endpoint, body=order_body(request), retry=_PLACEMENT)
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

    def get_order(self, pair: str, customer_order_id: str) -> ExchangeOrder | None:
        """Open-order status by customerOrderId; on 404 the history summary; None when VALR never saw it."""
        cid = quote(customer_order_id, safe="")
        try:
            data = self._call("GET", f"/v1/orders/{quote(pair.upper(), safe='')}/customerorderid/{cid}")
            if isinstance(data, dict):
                return self._parse_status_order(data)
            raise ExchangeError("VALR order status has an unexpected shape")
        except _NotFound:
            pass
        try:
            data = self._call("GET", f"/v1/orders/history/summary/customerorderid/{cid}")
        except _NotFound:
            return None
        if not isinstance(data, dict):
            raise ExchangeError("VALR order history summary has an unexpected shape")
        return self._parse_history_order(data)

    @staticmethod
    def _parse_status_order(row: Mapping[str, Any]) -> ExchangeOrder:
        original = to_decimal(row.get("originalQuantity"), "originalQuantity")
        remaining = _opt_decimal(row, "remainingQuantity")
        status = _status(row.get("orderStatusType"))
        filled = original - remaining if remaining is not None else Decimal(0)
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
        # Reached only after the open-order call said 404: a "Partially Filled" order there is no longer
        # working (its remainder was cancelled/expired), so it is terminal for helios.
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
    "DEFAULT_BASE_URL",
    "ValrClient",
    "check_pair_rules",
    "iso_ms",
    "key_has_permission",
    "normalise_permission",
    "order_body",
    "sign_request",
    "to_decimal",
]
