"""The exchange double's state: pairs, prices, one account's balances, orders, trades, and the matching.

Deliberately simple and deterministic:

* one account (every API key acts on it);
* the top of book has unlimited depth at the current bid/ask, set by the test (``set_price``);
* a marketable limit order fills ``fill_ratio`` of its original quantity per *price step* (each ``set_price``
  or ``step`` call, and once on entry), so partial fills are easy to drive; market orders fill at once;
* fees (VALR, see docs/valr-contract.md): a taker pays in the currency received (BUY: base, SELL: quote); a maker
  pays in the currency it pays (maker BUY: quote/ZAR, maker SELL: base). A negative maker rate is a rebate, shown
  as ``makerReward``/``makerRewardCurrency`` instead of ``fee``/``feeCurrency`` (agent-skills fees.md);
* stop-limit orders (STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT) wait "Active" until the last price moves through their
  stop price, then rest as a limit order ("Placed") and match like one;
* conditional orders (``/v1/orders/conditionals``) are stored, listed, cancelled and TRIGGERED on the last price:
  a take-profit leg when it rises to ``takeProfitTriggerPrice``, a stop-loss leg when it falls to
  ``stopLossTriggerPrice`` (both legs: one-cancels-the-other, VALR API collection "Conditional Order" notes). The
  triggered leg becomes an order at its place price (``-1``: a market order) for ``quantity`` (0: everything held;
  more than held: what is held - the collection's "Quantity Behavior", read for a spot holding). What VALR does not
  document and the double assumes (docs/valr-contract.md): the triggered order carries the conditional's
  customerOrderId; a finished conditional stays in ``/v1/orders/conditionals/{pair}/history`` with status
  "Cancelled" (cancelled) or "Triggered" (and the other leg's cancellation is that same row); nothing is reserved
  until the trigger;
* a market order can be cut at the slippage limit (``set_slippage_cut``): it fills part and ends "Partially Filled
  and Cancelled Due To Slippage" (a documented status; no slippage model otherwise).

Error codes documented by VALR: -1 (Invalid Order), -6 (Insufficient Balance), -12007 (minimum order size),
-21403 (conditional would trigger immediately); the other codes are illustrative.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

CID_RE = re.compile(r"^[A-Za-z0-9-]{1,50}$")
FEE_STEP = Decimal("0.00000001")

ERR_BAD_REQUEST = -11001
ERR_UNKNOWN_PAIR = -11002
ERR_TICK_SIZE = -11003
ERR_DECIMALS = -11004
ERR_DUPLICATE_CID = -11005
ERR_BAD_CID = -11006
ERR_NOT_FOUND = -11007
ERR_READ_ONLY = -11010
ERR_MIN_SIZE = -12007  # VALR: minimum order size not met
ERR_MAX_SIZE = -12008
ERR_AUTH = -11100
ERR_EXPIRED = -11101
ERR_FORBIDDEN = -11102
ERR_INVALID_ORDER = -1  # VALR API collection: Order Status (customerOrderId) / "Invalid Order"
ERR_INSUFFICIENT_BALANCE = -6  # VALR API collection: Limit Order V2 / "placed unsuccessfully"
ERR_WOULD_TRIGGER = -21403  # VALR API collection: Conditional Order / "unsuccessful"
STOP_KINDS = {"STOP_LOSS_LIMIT": "stop-loss-limit", "TAKE_PROFIT_LIMIT": "take-profit-limit"}
# VALR API collection: Public APIs / Order Types for a currency pair (the example answer).
DEFAULT_ORDER_TYPES = ("LIMIT_POST_ONLY", "MARKET", "LIMIT", "SIMPLE", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")

OPEN_STATES = frozenset({"Placed", "Active", "Partially Filled", "Order Modified", "Repriced Due To Slippage"})
FAILED_PLACEMENT_CODES = {"Insufficient Balance": ERR_INSUFFICIENT_BALANCE}


class DoubleError(Exception):
    """An error the double answers with: HTTP status plus VALR's ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def dec(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise DoubleError(400, ERR_BAD_REQUEST, f"{name} is required and must be a number string")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise DoubleError(400, ERR_BAD_REQUEST, f"{name} is not a number: {value!r}") from None
    if not result.is_finite():
        raise DoubleError(400, ERR_BAD_REQUEST, f"{name} is not a finite number")
    return result


def num(value: Decimal) -> str:
    """Decimal -> VALR-style JSON string number (no exponent, no trailing zeros)."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class PairSpec:
    symbol: str
    base: str
    quote: str
    min_base: Decimal
    max_base: Decimal
    min_quote: Decimal
    max_quote: Decimal
    tick: Decimal
    base_decimal_places: int
    active: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "baseCurrency": self.base,
            "quoteCurrency": self.quote,
            "shortName": f"{self.base}/{self.quote}",
            "active": self.active,
            "minBaseAmount": num(self.min_base),
            "maxBaseAmount": num(self.max_base),
            "minQuoteAmount": num(self.min_quote),
            "maxQuoteAmount": num(self.max_quote),
            "tickSize": num(self.tick),
            "baseDecimalPlaces": str(self.base_decimal_places),
            "marginTradingAllowed": False,
            "currencyPairType": "SPOT",
        }


def _pair(symbol: str, base: str, mn: str, mx: str, tick: str, places: int) -> PairSpec:
    return PairSpec(
        symbol,
        base,
        "ZAR",
        Decimal(mn),
        Decimal(mx),
        Decimal("10"),
        Decimal("5000000"),
        Decimal(tick),
        places,
    )


# Plausible ZAR pair rules (shape as VALR's /v1/public/pairs; the numbers are illustrative, not VALR's).
DEFAULT_PAIRS: dict[str, PairSpec] = {
    p.symbol: p
    for p in (
        _pair("BTCZAR", "BTC", "0.0001", "5", "1", 8),
        _pair("ETHZAR", "ETH", "0.001", "100", "1", 8),
        _pair("SOLZAR", "SOL", "0.01", "2000", "1", 8),
        _pair("XRPZAR", "XRP", "1", "200000", "0.01", 6),
        _pair("USDTZAR", "USDT", "1", "500000", "0.01", 2),
    )
}
DEFAULT_PRICES: dict[str, Decimal] = {
    "BTCZAR": Decimal("1200000"),
    "ETHZAR": Decimal("60000"),
    "SOLZAR": Decimal("3000"),
    "XRPZAR": Decimal("40.00"),
    "USDTZAR": Decimal("18.50"),
}
DEFAULT_BALANCES: dict[str, Decimal] = {"ZAR": Decimal("100000"), "BTC": Decimal("0.05"), "ETH": Decimal("1")}
DEFAULT_MAKER_PCT = Decimal("0.05")
DEFAULT_TAKER_PCT = Decimal("0.1")


@dataclass
class Quote:
    bid: Decimal
    ask: Decimal
    last: Decimal
    at: datetime


@dataclass
class Order:
    order_id: str
    customer_order_id: str | None
    pair: str
    side: str  # BUY / SELL
    kind: str  # limit / post-only limit / market
    price: Decimal | None
    quantity: Decimal
    time_in_force: str
    created_at: datetime
    updated_at: datetime
    status: str = "Placed"
    filled: Decimal = Decimal(0)
    failed_reason: str = ""
    total_fee: Decimal = Decimal(0)
    fee_currency: str = ""
    quote_total: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)  # what is still locked for this order (quote for BUY, base for SELL)
    seeded: bool = False
    stop_price: Decimal | None = None  # stop-limit orders only
    stop_type: str = ""  # STOP_LOSS_LIMIT / TAKE_PROFIT_LIMIT

    @property
    def waiting_for_trigger(self) -> bool:
        return self.status == "Active"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATES

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    def open_row(self) -> dict[str, Any]:
        """Row of ``GET /v1/orders/open`` (its own field names)."""
        row: dict[str, Any] = {
            "orderId": self.order_id,
            "side": self.side.lower(),
            "remainingQuantity": num(self.remaining),
            "price": num(self.price) if self.price is not None else "0",
            "currencyPair": self.pair,
            "createdAt": iso(self.created_at),
            "originalQuantity": num(self.quantity),
            "filledPercentage": f"{(self.filled / self.quantity * 100):.2f}",
            "updatedAt": iso(self.updated_at),
            "status": self.status,
            "type": self.kind,
            "timeInForce": self.time_in_force,
            "allowMargin": False,
        }
        if self.customer_order_id:
            row["customerOrderId"] = self.customer_order_id
        if self.stop_price is not None:
            row["stopPrice"] = num(self.stop_price)
            row.pop("allowMargin", None)  # VALR's stop-order example rows carry no allowMargin
        return row

    def status_row(self) -> dict[str, Any]:
        """Body of ``GET /v1/orders/{pair}/customerorderid/{cid}``."""
        row: dict[str, Any] = {
            "orderId": self.order_id,
            "orderStatusType": self.status,
            "currencyPair": self.pair,
            "originalPrice": num(self.price) if self.price is not None else "0",
            "remainingQuantity": num(self.remaining),
            "originalQuantity": num(self.quantity),
            "orderSide": self.side.lower(),
            "orderType": self.kind,
            "failedReason": self.failed_reason,
            "orderUpdatedAt": iso(self.updated_at),
            "orderCreatedAt": iso(self.created_at),
            "timeInForce": self.time_in_force,
        }
        if self.customer_order_id:
            row["customerOrderId"] = self.customer_order_id
        if self.stop_price is not None:
            row["stopPrice"] = num(self.stop_price)
        return row

    def history_row(self) -> dict[str, Any]:
        """Body of ``GET /v1/orders/history/summary/...``."""
        row = self.status_row()
        average = self.quote_total / self.filled if self.filled else Decimal(0)
        row.update(
            {
                "averagePrice": num(average.quantize(FEE_STEP)) if self.filled else "0",
                "total": num(self.quote_total),
                "totalExecutedQuantity": num(self.filled),
                "totalFee": num(self.total_fee),
                "feeCurrency": self.fee_currency,
            }
        )
        return row

    def admin_row(self) -> dict[str, Any]:
        row = self.history_row()
        row["seeded"] = self.seeded
        row["open"] = self.is_open
        return row


@dataclass
class Trade:
    trade_id: str
    order_id: str
    customer_order_id: str | None
    pair: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    maker: bool
    traded_at: datetime
    sequence: int

    def row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.trade_id,
            "orderId": self.order_id,
            "currencyPair": self.pair,
            "price": num(self.price),
            "quantity": num(self.quantity),
            "side": self.side.lower(),
            "tradedAt": iso(self.traded_at),
            "sequenceId": self.sequence,
        }
        if self.fee < 0:  # a maker rebate (agent-skills fees.md / history.md)
            row["makerReward"] = num(-self.fee)
            row["makerRewardCurrency"] = self.fee_currency
        else:
            row["fee"] = num(self.fee)
            row["feeCurrency"] = self.fee_currency
        if self.customer_order_id:
            row["customerOrderId"] = self.customer_order_id
        return row


@dataclass
class Book:
    """All exchange state behind one lock."""

    now: Callable[[], datetime]
    pairs: dict[str, PairSpec] = field(default_factory=lambda: dict(DEFAULT_PAIRS))
    fill_ratio: Decimal = Decimal(1)
    spread_pct: Decimal = Decimal(0)
    maker_pct: Decimal = DEFAULT_MAKER_PCT
    taker_pct: Decimal = DEFAULT_TAKER_PCT
    exchange_status: str = "online"
    quotes: dict[str, Quote] = field(default_factory=dict)
    available: dict[str, Decimal] = field(default_factory=dict)
    reserved: dict[str, Decimal] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    conditionals: list[dict[str, Any]] = field(default_factory=list)
    order_types: dict[str, tuple[str, ...]] = field(default_factory=dict)
    margin_enabled: bool = False
    futures_enabled: bool = False
    borrowed: dict[str, Decimal] = field(default_factory=dict)
    listeners: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)
    conditional_history: list[dict[str, Any]] = field(default_factory=list)
    #: the next N market orders fill only this fraction, then end "Partially Filled and Cancelled Due To Slippage"
    slippage_cut: tuple[int, Decimal] = (0, Decimal(0))
    _sequence: int = 0

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        """Tell listeners (the account WebSocket) about an account event."""
        for listener in list(self.listeners):
            listener(kind, payload)

    # ---- setup

    def pair(self, symbol: str) -> PairSpec:
        spec = self.pairs.get(symbol.upper())
        if spec is None:
            raise DoubleError(400, ERR_UNKNOWN_PAIR, f"Invalid currency pair: {symbol}")
        return spec

    def set_price(self, symbol: str, price: Decimal, bid: Decimal | None = None, ask: Decimal | None = None) -> None:
        """Move the market: new last price and top of book, then one matching step for resting orders."""
        with self.lock:
            spec = self.pair(symbol)
            half = price * self.spread_pct / 200
            if bid is None:
                bid = ((price - half) / spec.tick).to_integral_value(ROUND_FLOOR) * spec.tick
            if ask is None:
                ask = ((price + half) / spec.tick).to_integral_value(ROUND_CEILING) * spec.tick
            self.quotes[spec.symbol] = Quote(bid=bid, ask=ask, last=price, at=self.now())
            triggered = self._trigger_stops(spec.symbol, price)
            triggered |= self._trigger_conditionals(spec.symbol, price)
            self._match_resting(spec.symbol, skip=triggered)
            self.emit("price", {"symbol": spec.symbol})

    def step(self, symbol: str | None = None) -> None:
        """One more matching step at unchanged prices (for driving partial fills)."""
        with self.lock:
            for name in [symbol.upper()] if symbol else list(self.quotes):
                self._match_resting(name)

    def quote(self, symbol: str) -> Quote:
        spec = self.pair(symbol)
        found = self.quotes.get(spec.symbol)
        if found is None:
            raise DoubleError(400, ERR_UNKNOWN_PAIR, f"No market for {spec.symbol}")
        return found

    def set_balance(self, currency: str, amount: Decimal) -> None:
        """Set the *available* balance of one currency (reserved amounts are left alone)."""
        with self.lock:
            self.available[currency.upper()] = amount

    def balance_rows(self) -> list[dict[str, Any]]:
        with self.lock:
            currencies = sorted(set(self.available) | set(self.reserved))
            rows = []
            for cur in currencies:
                avail = self.available.get(cur, Decimal(0))
                res = self.reserved.get(cur, Decimal(0))
                borrowed = self.borrowed.get(cur, Decimal(0))
                rows.append(
                    {
                        "currency": cur,
                        "available": num(avail),
                        "reserved": num(res),
                        "total": num(avail + res - borrowed),
                        "updatedAt": iso(self.now()),
                        "borrowedAmount": num(borrowed),
                    }
                )
            return rows

    # ---- orders

    def open_orders(self) -> list[Order]:
        with self.lock:
            return [o for o in self.orders if o.is_open]

    def find_open(self, symbol: str, *, cid: str | None = None, order_id: str | None = None) -> Order | None:
        with self.lock:
            for order in self.orders:
                if order.is_open and order.pair == symbol.upper() and self._matches(order, cid, order_id):
                    return order
            return None

    def find_latest(self, *, cid: str | None = None, order_id: str | None = None) -> Order | None:
        with self.lock:
            for order in reversed(self.orders):
                if self._matches(order, cid, order_id):
                    return order
            return None

    @staticmethod
    def _matches(order: Order, cid: str | None, order_id: str | None) -> bool:
        if cid is not None:
            return order.customer_order_id == cid
        return order.order_id == order_id

    def _validate_common(self, body: dict[str, Any]) -> tuple[PairSpec, str, str | None]:
        spec = self.pair(str(body.get("pair", "")))
        if not spec.active:
            raise DoubleError(400, ERR_UNKNOWN_PAIR, f"Currency pair {spec.symbol} is not active")
        side = str(body.get("side", "")).upper()
        if side not in ("BUY", "SELL"):
            raise DoubleError(400, ERR_BAD_REQUEST, "side must be BUY or SELL")
        cid_value = body.get("customerOrderId")
        cid = str(cid_value) if cid_value not in (None, "") else None
        if cid is not None:
            if not CID_RE.match(cid):
                raise DoubleError(
                    400,
                    ERR_BAD_CID,
                    "customerOrderId may contain letters, digits and '-' only, at most 50 characters",
                )
            if any(o.customer_order_id == cid for o in self.orders if o.is_open):
                raise DoubleError(400, ERR_DUPLICATE_CID, f"Duplicate customerOrderId {cid} among open orders")
        return spec, side, cid

    @staticmethod
    def _check_size(spec: PairSpec, quantity: Decimal, price: Decimal | None) -> None:
        if quantity <= 0:
            raise DoubleError(400, ERR_BAD_REQUEST, "quantity must be positive")
        step = Decimal(1).scaleb(-spec.base_decimal_places)
        if quantity % step != 0:
            raise DoubleError(400, ERR_DECIMALS, f"quantity has more than {spec.base_decimal_places} decimal places")
        if quantity < spec.min_base:
            raise DoubleError(
                400, ERR_MIN_SIZE, f"Minimum order size not met: minimum is {num(spec.min_base)} {spec.base}"
            )
        if quantity > spec.max_base:
            raise DoubleError(400, ERR_MAX_SIZE, f"Maximum order size exceeded: {num(spec.max_base)} {spec.base}")
        if price is not None:
            value = quantity * price
            if value < spec.min_quote:
                raise DoubleError(
                    400,
                    ERR_MIN_SIZE,
                    f"Minimum order size not met: minimum is {num(spec.min_quote)} {spec.quote}",
                )
            if value > spec.max_quote:
                raise DoubleError(
                    400, ERR_MAX_SIZE, f"Maximum order value exceeded: {num(spec.max_quote)} {spec.quote}"
                )

    def _new_order(
        self,
        spec: PairSpec,
        side: str,
        cid: str | None,
        kind: str,
        price: Decimal | None,
        quantity: Decimal,
        tif: str,
    ) -> Order:
        now = self.now()
        order = Order(
            order_id=str(uuid.uuid4()),
            customer_order_id=cid,
            pair=spec.symbol,
            side=side,
            kind=kind,
            price=price,
            quantity=quantity,
            time_in_force=tif,
            created_at=now,
            updated_at=now,
        )
        self.orders.append(order)
        return order

    def place_limit(self, body: dict[str, Any], *, seeded: bool = False) -> Order:
        with self.lock:
            spec, side, cid = self._validate_common(body)
            quantity = dec(body.get("quantity"), "quantity")
            price = dec(body.get("price"), "price")
            if price <= 0 or price % spec.tick != 0:
                raise DoubleError(400, ERR_TICK_SIZE, f"price must be a multiple of tickSize {num(spec.tick)}")
            self._check_size(spec, quantity, price)
            tif = str(body.get("timeInForce") or "GTC").upper()
            if tif not in ("GTC", "IOC", "FOK"):
                raise DoubleError(400, ERR_BAD_REQUEST, "timeInForce must be GTC, IOC or FOK")
            post_only = body.get("postOnly") in (True, "true", "True")
            kind = "post-only limit" if post_only else "limit"
            order = self._new_order(spec, side, cid, kind, price, quantity, tif)
            order.seeded = seeded
            order.fee_currency = spec.base if side == "BUY" else spec.quote
            lock_cur, lock_amount = (spec.quote, quantity * price) if side == "BUY" else (spec.base, quantity)
            if self.available.get(lock_cur, Decimal(0)) < lock_amount:
                self._finish(order, "Failed", "Insufficient Balance")
                return order
            self._move(lock_cur, lock_amount, to_reserved=True)
            order.reserved = lock_amount
            quote = self.quotes.get(spec.symbol)
            marketable = quote is not None and self._crosses(order, quote)
            if post_only and marketable:
                self._release(order)
                self._finish(order, "Failed", "Post-only order would have matched")
                return order
            if marketable and quote is not None:
                if tif == "FOK":
                    self._fill(order, order.remaining, quote.ask if side == "BUY" else quote.bid, maker=False)
                else:
                    self._fill(
                        order,
                        self._step_quantity(order, spec),
                        quote.ask if side == "BUY" else quote.bid,
                        maker=False,
                    )
            if order.is_open and tif in ("IOC", "FOK"):
                self._release(order)
                self._finish(
                    order,
                    "Failed" if tif == "FOK" else "Cancelled",
                    "Fill or kill could not be filled" if tif == "FOK" else "",
                )
            return order

    @staticmethod
    def _stop_triggered(order: Order, last: Decimal) -> bool:
        """STOP_LOSS_LIMIT triggers when the price moves against the order's side past the stop (a SELL: falls
        to it); TAKE_PROFIT_LIMIT when it moves in favour (a SELL: rises to it). Agent-skills trading.md."""
        assert order.stop_price is not None
        falls_to = last <= order.stop_price
        rises_to = last >= order.stop_price
        if order.stop_type == "STOP_LOSS_LIMIT":
            return falls_to if order.side == "SELL" else rises_to
        return rises_to if order.side == "SELL" else falls_to

    def place_stop_limit(self, body: dict[str, Any]) -> Order:
        with self.lock:
            spec, side, cid = self._validate_common(body)
            stop_type = str(body.get("type", "")).upper()
            if stop_type not in STOP_KINDS:
                raise DoubleError(400, ERR_BAD_REQUEST, "type must be STOP_LOSS_LIMIT or TAKE_PROFIT_LIMIT")
            quantity = dec(body.get("quantity"), "quantity")
            price = dec(body.get("price"), "price")
            stop = dec(body.get("stopPrice"), "stopPrice")
            for value in (price, stop):
                if value <= 0 or value % spec.tick != 0:
                    raise DoubleError(400, ERR_TICK_SIZE, f"price must be a multiple of tickSize {num(spec.tick)}")
            self._check_size(spec, quantity, price)
            order = self._new_order(spec, side, cid, STOP_KINDS[stop_type], price, quantity, "GTC")
            order.stop_price, order.stop_type = stop, stop_type
            order.fee_currency = spec.base if side == "BUY" else spec.quote
            quote = self.quotes.get(spec.symbol)
            if quote is not None and self._stop_triggered(order, quote.last):
                self._finish(order, "Failed", "Stop order failed as it would have been triggered immediately")
                return order
            lock_cur, lock_amount = (spec.quote, quantity * price) if side == "BUY" else (spec.base, quantity)
            if self.available.get(lock_cur, Decimal(0)) < lock_amount:
                self._finish(order, "Failed", "Insufficient Balance")
                return order
            self._move(lock_cur, lock_amount, to_reserved=True)
            order.reserved = lock_amount
            self._finish(order, "Active", "")
            return order

    def _trigger_stops(self, symbol: str, last: Decimal) -> set[str]:
        """Triggered stops become limit orders: one that crosses the book fills a step at once as a taker."""
        triggered: set[str] = set()
        quote = self.quotes[symbol]
        for order in list(self.orders):
            if order.pair == symbol and order.waiting_for_trigger and self._stop_triggered(order, last):
                self._finish(order, "Placed", "")
                triggered.add(order.order_id)
                if self._crosses(order, quote):
                    fill_price = quote.ask if order.side == "BUY" else quote.bid
                    self._fill(order, self._step_quantity(order, self.pairs[symbol]), fill_price, maker=False)
        return triggered

    def place_conditional(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            spec = self.pair(str(body.get("pair", "")))
            quantity = dec(body.get("quantity"), "quantity")
            tp = body.get("takeProfitTriggerPrice")
            sl = body.get("stopLossTriggerPrice")
            if tp is None and sl is None:
                raise DoubleError(400, ERR_BAD_REQUEST, "takeProfitTriggerPrice or stopLossTriggerPrice is required")
            cid_value = body.get("customerOrderId")
            if cid_value and (
                any(c.get("customerOrderId") == cid_value for c in self.conditionals)
                or any(o.customer_order_id == cid_value for o in self.orders if o.is_open)
            ):
                raise DoubleError(400, ERR_DUPLICATE_CID, f"Duplicate customerOrderId {cid_value} among open orders")
            quote = self.quotes.get(spec.symbol)
            if quote is not None and (
                (tp is not None and quote.last >= dec(tp, "takeProfitTriggerPrice"))
                or (sl is not None and quote.last <= dec(sl, "stopLossTriggerPrice"))
            ):
                raise DoubleError(
                    400, ERR_WOULD_TRIGGER, "Could not place conditional order as it would have triggered immediately"
                )
            now = iso(self.now())
            row: dict[str, Any] = {
                "orderId": str(uuid.uuid4()),
                "triggerOrderSide": "sell",
                "triggerOrderType": "limit",
                "currencyPair": spec.symbol,
                "createdAt": now,
                "updatedAt": now,
                "triggerType": str(body.get("triggerType", "LAST_TRADED")),
                "conditionalType": "OT_OCO" if tp is not None and sl is not None else
                ("TAKE_PROFIT" if tp is not None else "STOP_LOSS"),
                "orderStatusType": "Placed",
                "quantity": num(quantity),
            }
            if cid_value:
                row["customerOrderId"] = str(cid_value)
            if tp is not None:
                row["takeProfitTriggerPrice"] = str(tp)
                row["takeProfitPlacePrice"] = str(body.get("takeProfitOrderPrice", tp))
            if sl is not None:
                row["stopLossTriggerPrice"] = str(sl)
                row["stopLossPlacePrice"] = str(body.get("stopLossOrderPrice", sl))
            self.conditionals.append(row)
            self.conditional_history.append(row)
            return row

    def _trigger_conditionals(self, symbol: str, last: Decimal) -> set[str]:
        """A conditional whose take-profit (last >= trigger) or stop-loss (last <= trigger) is reached leaves the
        open list (the other leg is cancelled with it) and becomes a SELL at its place price."""
        triggered: set[str] = set()
        for row in list(self.conditionals):
            if row["currencyPair"] != symbol:
                continue
            tp, sl = row.get("takeProfitTriggerPrice"), row.get("stopLossTriggerPrice")
            if tp is not None and last >= Decimal(tp):
                place = Decimal(row["takeProfitPlacePrice"])
            elif sl is not None and last <= Decimal(sl):
                place = Decimal(row["stopLossPlacePrice"])
            else:
                continue
            self.conditionals.remove(row)
            row["orderStatusType"] = "Triggered"
            row["updatedAt"] = iso(self.now())
            order = self._conditional_order(row, place)
            if order is not None:
                triggered.add(order.order_id)
        return triggered

    def _conditional_order(self, row: dict[str, Any], place: Decimal) -> Order | None:
        spec = self.pairs[row["currencyPair"]]
        held = self.available.get(spec.base, Decimal(0))
        wanted = Decimal(row["quantity"])
        quantity = held if wanted <= 0 or wanted > held else wanted
        step = Decimal(1).scaleb(-spec.base_decimal_places)
        quantity = quantity.quantize(step, ROUND_DOWN)
        if quantity <= 0:
            return None
        cid = row.get("customerOrderId")
        kind, price, tif = ("market", None, "IOC") if place < 0 else ("limit", place, "GTC")
        order = self._new_order(spec, "SELL", cid, kind, price, quantity, tif)
        order.fee_currency = spec.quote
        quote = self.quotes[spec.symbol]
        if kind == "market":
            self._fill_market(order, quantity, quote.bid)
            return order
        self._move(spec.base, quantity, to_reserved=True)
        order.reserved = quantity
        if self._crosses(order, quote):
            self._fill(order, self._step_quantity(order, spec), quote.bid, maker=False)
        else:
            self._finish(order, "Placed", "")
        return order

    def cancel_conditionals(self, symbol: str | None = None, *, order_id: str | None = None,
                            cid: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            gone = [
                c for c in self.conditionals
                if (symbol is None or c["currencyPair"] == symbol)
                and (order_id is None or c["orderId"] == order_id)
                and (cid is None or c.get("customerOrderId") == cid)
            ]
            self.conditionals = [c for c in self.conditionals if c not in gone]
            for row in gone:
                row["orderStatusType"] = "Cancelled"
                row["updatedAt"] = iso(self.now())
            return gone

    def place_market(self, body: dict[str, Any]) -> Order:
        with self.lock:
            spec, side, cid = self._validate_common(body)
            base_amount, quote_amount = body.get("baseAmount"), body.get("quoteAmount")
            if (base_amount is None) == (quote_amount is None):
                raise DoubleError(400, ERR_BAD_REQUEST, "Specify exactly one of baseAmount or quoteAmount")
            quote = self.quote(spec.symbol)
            price = quote.ask if side == "BUY" else quote.bid
            step = Decimal(1).scaleb(-spec.base_decimal_places)
            if base_amount is not None:
                quantity = dec(base_amount, "baseAmount")
            else:
                quantity = (dec(quote_amount, "quoteAmount") / price).quantize(step, ROUND_DOWN)
            self._check_size(spec, quantity, price)
            order = self._new_order(spec, side, cid, "market", None, quantity, "IOC")
            order.fee_currency = spec.base if side == "BUY" else spec.quote
            need_cur, need = (spec.quote, quantity * price) if side == "BUY" else (spec.base, quantity)
            if self.available.get(need_cur, Decimal(0)) < need:
                self._finish(order, "Failed", "Insufficient Balance")
                return order
            self._fill_market(order, quantity, price)
            return order

    def _fill_market(self, order: Order, quantity: Decimal, price: Decimal) -> None:
        """A market order fills in full, unless a slippage cut is armed: then it fills that fraction and ends
        "Partially Filled and Cancelled Due To Slippage" (VALR status, docs/valr-contract.md)."""
        count, fraction = self.slippage_cut
        if count <= 0:
            self._fill(order, quantity, price, maker=False)
            return
        self.slippage_cut = (count - 1, fraction)
        spec = self.pairs[order.pair]
        part = (quantity * fraction).quantize(Decimal(1).scaleb(-spec.base_decimal_places), ROUND_DOWN)
        if part > 0:
            self._fill(order, part, price, maker=False)
        self._finish(order, "Partially Filled and Cancelled Due To Slippage" if part > 0 else "Failed",
                     "" if part > 0 else "Order cancelled as it would have matched outside of slippage price band")

    def cancel(self, symbol: str, *, cid: str | None = None, order_id: str | None = None) -> Order:
        with self.lock:
            order = self.find_open(symbol, cid=cid, order_id=order_id)
            if order is None:
                raise DoubleError(400, ERR_NOT_FOUND, "Order not found or no longer open")
            self._release(order)
            self._finish(order, "Cancelled", "")
            return order

    def cancel_all(self, symbol: str | None = None) -> list[Order]:
        with self.lock:
            cancelled = []
            for order in self.open_orders():
                if symbol is None or order.pair == symbol.upper():
                    self._release(order)
                    self._finish(order, "Cancelled", "")
                    cancelled.append(order)
            return cancelled

    # ---- matching

    @staticmethod
    def _crosses(order: Order, quote: Quote) -> bool:
        assert order.price is not None
        return quote.ask <= order.price if order.side == "BUY" else quote.bid >= order.price

    def _step_quantity(self, order: Order, spec: PairSpec) -> Decimal:
        step = Decimal(1).scaleb(-spec.base_decimal_places)
        amount = (order.quantity * self.fill_ratio).quantize(step, ROUND_CEILING)
        return max(step, min(order.remaining, amount))

    def _match_resting(self, symbol: str, skip: set[str] | None = None) -> None:
        quote = self.quotes.get(symbol)
        if quote is None:
            return
        spec = self.pairs[symbol]
        for order in list(self.orders):
            if (
                order.is_open
                and not order.waiting_for_trigger
                and order.order_id not in (skip or set())
                and order.pair == symbol
                and order.kind != "market"
                and self._crosses(order, quote)
            ):
                assert order.price is not None
                self._fill(order, self._step_quantity(order, spec), order.price, maker=True)

    def _fill(self, order: Order, quantity: Decimal, price: Decimal, *, maker: bool) -> None:
        spec = self.pairs[order.pair]
        pct = self.maker_pct if maker else self.taker_pct
        value = quantity * price
        # Taker: fee in the currency received. Maker: fee in the currency paid (maker BUY pays ZAR).
        if maker:
            fee_currency = spec.quote if order.side == "BUY" else spec.base
        else:
            fee_currency = spec.base if order.side == "BUY" else spec.quote
        order.fee_currency = fee_currency
        if order.side == "BUY":
            fee = (quantity * pct / 100).quantize(FEE_STEP)
            if fee_currency == spec.quote:
                fee = (value * pct / 100).quantize(FEE_STEP)
            if order.kind == "market":
                self._add(spec.quote, -value)
            else:
                assert order.price is not None
                locked = quantity * order.price
                self._add_reserved(spec.quote, -locked)
                order.reserved -= locked
                self._add(spec.quote, locked - value)  # price improvement comes back
            self._add(spec.base, quantity - (fee if fee_currency == spec.base else 0))
            if fee_currency == spec.quote:
                self._add(spec.quote, -fee)
        else:
            fee = (value * pct / 100).quantize(FEE_STEP)
            if fee_currency == spec.base:
                fee = (quantity * pct / 100).quantize(FEE_STEP)
            if order.kind == "market":
                self._add(spec.base, -quantity)
            else:
                self._add_reserved(spec.base, -quantity)
                order.reserved -= quantity
            self._add(spec.quote, value - (fee if fee_currency == spec.quote else 0))
            if fee_currency == spec.base:
                self._add(spec.base, -fee)
        order.filled += quantity
        order.total_fee += fee
        order.quote_total += value
        now = self.now()
        order.updated_at = now
        order.status = "Filled" if order.remaining <= 0 else "Partially Filled"
        if order.status == "Filled":
            self._release(order)
        self._sequence += 1
        self.trades.append(
            Trade(
                trade_id=str(uuid.uuid4()),
                order_id=order.order_id,
                customer_order_id=order.customer_order_id,
                pair=order.pair,
                side=order.side,
                price=price,
                quantity=quantity,
                fee=fee,
                fee_currency=order.fee_currency,
                maker=maker,
                traded_at=now,
                sequence=self._sequence,
            )
        )
        self.emit("trade", {"trade": self.trades[-1], "order": order})

    def _finish(self, order: Order, status: str, reason: str) -> None:
        order.status = status
        order.failed_reason = reason
        order.updated_at = self.now()
        self.emit("order", {"order": order})

    def _release(self, order: Order) -> None:
        if order.reserved:
            spec = self.pairs[order.pair]
            cur = spec.quote if order.side == "BUY" else spec.base
            self._move(cur, order.reserved, to_reserved=False)
            order.reserved = Decimal(0)

    def _add(self, currency: str, amount: Decimal) -> None:
        self.available[currency] = self.available.get(currency, Decimal(0)) + amount

    def _add_reserved(self, currency: str, amount: Decimal) -> None:
        self.reserved[currency] = self.reserved.get(currency, Decimal(0)) + amount

    def _move(self, currency: str, amount: Decimal, *, to_reserved: bool) -> None:
        sign = 1 if to_reserved else -1
        self._add(currency, -sign * amount)
        self._add_reserved(currency, sign * amount)

    # ---- history

    def trade_rows(self, *, start: datetime | None, before_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first, like VALR."""
        with self.lock:
            trades = sorted(self.trades, key=lambda t: t.sequence, reverse=True)
            if before_id is not None:
                ids = [t.trade_id for t in trades]
                trades = trades[ids.index(before_id) + 1 :] if before_id in ids else []
            if start is not None:
                trades = [t for t in trades if t.traded_at >= start]
            return [t.row() for t in trades[:limit]]
