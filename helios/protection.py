"""Protection held on the exchange (LIVE only): each position's stop-loss (and take-profit) held by VALR.

Once an entry has filled (partly or fully), the engine's tick calls ``Protector.sync``: every position that can be
sold gets ONE protective order on VALR for the sellable quantity (the position rounded down to the pair's step):

* when the pair's ``/v1/public/{pair}/ordertypes`` include the conditional TP/SL type
  (``ValrClient.supports_conditional_tpsl``), take-profit AND stop-loss as one conditional order
  (``POST /v1/orders/conditionals``, both triggers: one-cancels-the-other; customerOrderId prefix ``hp-oco-``,
  reason ``protective_oco``);
* else a STOP_LOSS_LIMIT SELL (``POST /v2/orders/stop/limit``) at the stop-loss; the take-profit stays a software
  exit (the stop-limit reserves the coins, so a second exchange-held SELL cannot be placed for the same quantity):
  when the price reaches it, the stop-limit is cancelled and the software exit sells on the next tick.

VALR's documentation lists no conditional entry in any pair's order types (see docs/valr-contract.md): against
VALR as documented today every pair gets the stop-limit. The protective order is kept in step with the position:
after a partial fill, an exit or a fee it is cancelled and re-placed for the new quantity; a position that is dust
(below the pair's minimum) or closed has none.

The protective order is journaled like any order (purpose EXIT, reason ``protective_stop_loss``), so its fill - even
one made while Helios was down - is applied to the position by the ordinary fill sync on the next start. While it is
live the engine's software exit waits (``exit_in_flight``); if the price gapped below the order's limit price (it
cannot fill), or has been through the stop for ``SOFTWARE_EXIT_GRACE`` without a fill, the order is cancelled and
the software exit - the second line - sells on the next tick.

Protective orders are recognised on the exchange by their customerOrderId prefix ``hp-`` and side SELL
(``is_protective``): the emergency stop and the while-HALTED sweep leave them working (they can only sell what the
position holds) unless the operator asks for ``cancel_protective``. PAPER has no stop orders: nothing is placed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from helios.exchange.errors import ExchangeError, OrderRejected, OutcomeUnknown
from helios.exchange.valr import CONDITIONAL_CID_PREFIX, ConditionalRequest, StopLimitRequest
from helios.journal import OrderRecord
from helios.models import ExchangeOrder, Mode, OrderPurpose, OrderStatus, OrderType, Side, TradingState

if TYPE_CHECKING:
    from helios.engine import Engine

log = logging.getLogger("helios.protection")

PROTECTIVE_PREFIX = "hp-"
OCO_PREFIX = CONDITIONAL_CID_PREFIX  # "hp-oco-": a protective conditional TP/SL (one-cancels-the-other)
PROTECTIVE_REASON = "protective_stop_loss"
PROTECTIVE_OCO_REASON = "protective_oco"
#: The stop-limit's limit price sits this fraction below its trigger, so that it fills in a falling market.
LIMIT_BELOW_STOP = Decimal("0.01")
#: Once the price is through the stop, the exchange-held order has this long to fill before the software exit acts.
SOFTWARE_EXIT_GRACE = timedelta(seconds=10)
#: A refused protective placement is retried no sooner than this.
RETRY_AFTER = timedelta(seconds=60)
_PENDING = (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN)


def is_protective_id(customer_order_id: str | None) -> bool:
    return bool(customer_order_id) and str(customer_order_id).startswith(PROTECTIVE_PREFIX)


def is_protective(order: ExchangeOrder) -> bool:
    """An order held on the exchange that can only reduce a position: our protective SELL (by its id)."""
    return order.side is Side.SELL and is_protective_id(order.customer_order_id)


def new_protective_id(oco: bool = False) -> str:
    return f"{OCO_PREFIX if oco else PROTECTIVE_PREFIX}{uuid.uuid4().hex}"


def is_oco_id(customer_order_id: str | None) -> bool:
    return bool(customer_order_id) and str(customer_order_id).startswith(OCO_PREFIX)


def take_profit_trigger(take_profit: Decimal, tick: Decimal) -> Decimal:
    """The take-profit trigger rounded DOWN to the tick (it fires no later than the take-profit); the leg's limit
    price is the trigger itself (a SELL at or under the market once it is reached)."""
    return _to_tick(take_profit, tick, ROUND_FLOOR)


def _to_tick(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    if tick <= 0:
        return value
    return (value / tick).to_integral_value(rounding=rounding) * tick


def stop_prices(stop_loss: Decimal, tick: Decimal) -> tuple[Decimal, Decimal]:
    """(trigger, limit): the trigger rounded UP to the tick (it fires no later than the stop-loss), the limit
    ``LIMIT_BELOW_STOP`` under it rounded down."""
    trigger = _to_tick(stop_loss, tick, ROUND_CEILING)
    return trigger, _to_tick(trigger * (1 - LIMIT_BELOW_STOP), tick, ROUND_FLOOR)


@dataclass
class ProtectionEvent:
    pair: str
    action: str  # placed | cancelled | refused
    customer_order_id: str
    quantity: Decimal
    at: datetime


class Protector:
    """Keeps one exchange-held stop-loss per sellable position. Owned by the engine; runs inside its tick."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._through_since: dict[str, datetime] = {}
        self._tp_since: dict[str, datetime] = {}
        self._retry_at: dict[str, datetime] = {}
        self.events: list[ProtectionEvent] = []  # recent actions (tests, bench), newest last
        self.placed_at: dict[str, datetime] = {}  # customerOrderId -> when its placement was acknowledged
        self._oco: dict[str, bool] = {}  # pair -> its order types offer conditional TP/SL (asked once per pair)

    @property
    def enabled(self) -> bool:
        return self.engine.mode is Mode.LIVE and hasattr(self.engine.client, "place_stop_limit")

    def oco_supported(self, pair: str) -> bool:
        """The pair's order types include the conditional TP/SL type (asked once; an error answers False this
        time and asks again next tick)."""
        if pair not in self._oco:
            check = getattr(self.engine.client, "supports_conditional_tpsl", None)
            if check is None:
                return False
            try:
                self._oco[pair] = bool(check(pair))
            except ExchangeError as exc:
                self.engine.last_error = f"order types {pair}: {exc.message}"
                return False
        return self._oco[pair]

    def live_orders(self, pair: str | None = None) -> list[OrderRecord]:
        return [r for r in list(self.engine.orders.active.values())
                if is_protective_id(r.customer_order_id) and (pair is None or r.pair == pair)]

    def protected(self, pair: str) -> bool:
        """A protective stop-loss for ``pair`` is working on the exchange (as far as the tracker knows)."""
        return any(r.status.is_live_on_exchange for r in self.live_orders(pair))

    def software_exit_pending(self, pair: str) -> bool:
        """An exit other than the protective stop is in flight (what the operator calls "exit pending")."""
        return any(r.pair == pair and r.purpose is OrderPurpose.EXIT and not is_protective_id(r.customer_order_id)
                   for r in list(self.engine.orders.active.values()))

    def sync(self, now: datetime) -> None:
        if not self.enabled:
            return
        engine = self.engine
        for record in self.live_orders():
            if record.pair not in engine.positions and record.status not in _PENDING:
                self._cancel(record, "the position is closed", now)
        for pair, position in list(engine.positions.items()):
            self._sync_pair(pair, position.quantity, position.stop_loss, position.take_profit, now)

    def _sync_pair(self, pair: str, held: Decimal, stop_loss: Decimal, take_profit: Decimal, now: datetime) -> None:
        engine = self.engine
        mine = self.live_orders(pair)
        if any(r.status in _PENDING for r in mine):
            return  # its fate is not known yet: never place a second one
        if any(e.pair == pair and e.purpose is OrderPurpose.EXIT and e.filled_unapplied > 0
               for e in engine.orders.exposures()):
            return  # an exit's fills are not in the position yet: wait for them
        others = [r for r in engine.orders.active.values() if r.pair == pair and r.purpose is OrderPurpose.EXIT
                  and not is_protective_id(r.customer_order_id)]
        if others:
            for record in mine:  # a software exit is selling: it needs the coins the stop-limit reserves
                self._cancel(record, "a software exit is selling", now)
            return
        quantity, sellable = engine._sellable(pair, held)
        ticker = engine.tickers.get(pair)
        through = ticker is not None and stop_loss > 0 and ticker.bid <= stop_loss
        if through:
            self._through_since.setdefault(pair, now)
        else:
            self._through_since.pop(pair, None)
        if not sellable or stop_loss <= 0:
            for record in mine:
                self._cancel(record, "the position cannot be sold (dust)", now)
            return
        at_take_profit = ticker is not None and take_profit > 0 and ticker.bid >= take_profit
        if at_take_profit:
            self._tp_since.setdefault(pair, now)
        else:
            self._tp_since.pop(pair, None)
        if at_take_profit and not any(is_oco_id(r.customer_order_id) for r in mine):
            for record in mine:  # the take-profit is a software exit: it needs the coins the stop-limit reserves
                self._cancel(record, "take-profit reached: the software exit sells", now)
            return
        if mine:
            record = mine[0]
            remaining = record.quantity - record.filled_quantity
            oco = is_oco_id(record.customer_order_id)
            if len(mine) > 1 or (record.filled_quantity == 0 and remaining != quantity) or \
                    (record.filled_quantity > 0 and remaining > quantity) or record.stop_loss != stop_loss or \
                    (oco and record.take_profit != take_profit):
                for extra in mine:
                    self._cancel(extra, f"re-sizing to {quantity}", now)
            elif through and ticker is not None and record.price is not None and ticker.bid < record.price:
                self._cancel(record, "the price gapped below the stop's limit: the software exit takes over", now)
            elif through and now - self._through_since[pair] >= SOFTWARE_EXIT_GRACE:
                self._cancel(record, "price through the stop and not filled: the software exit takes over", now)
            elif oco and at_take_profit and now - self._tp_since[pair] >= SOFTWARE_EXIT_GRACE:
                self._cancel(record, "price at the take-profit and not filled: the software exit takes over", now)
            return
        if through or at_take_profit or engine.state is TradingState.HALTED:
            return  # an order at or through the price would trigger at once: the software exit handles it
        retry = self._retry_at.get(pair)
        if retry is not None and now < retry:
            return
        self._place(pair, quantity, stop_loss, take_profit if self.oco_supported(pair) else None, now)

    def _place(self, pair: str, quantity: Decimal, stop_loss: Decimal, take_profit: Decimal | None,
               now: datetime) -> None:
        """Place the pair's protective order: a conditional TP/SL (OCO) when ``take_profit`` is given, else a
        stop-limit stop-loss."""
        engine = self.engine
        rules = engine.pair_rules(pair)
        if rules is None:
            return
        tick = rules[0].tick_size
        trigger, limit = stop_prices(stop_loss, tick)
        oco = take_profit is not None and take_profit > 0
        tp_trigger = take_profit_trigger(take_profit, tick) if take_profit is not None and oco else None
        cid = new_protective_id(oco)
        record = OrderRecord(
            customer_order_id=cid, exchange_order_id=None, pair=pair, side=Side.SELL, order_type=OrderType.LIMIT,
            purpose=OrderPurpose.EXIT, quantity=quantity, price=limit, reference_price=trigger,
            stop_loss=stop_loss, take_profit=take_profit if oco else None, status=OrderStatus.SUBMITTING,
            filled_quantity=Decimal(0), average_price=None, fee_total=Decimal(0),
            reason=PROTECTIVE_OCO_REASON if oco else PROTECTIVE_REASON, error=None, created_at=now, updated_at=now,
        )
        engine.journal.record_order(record, None)
        with engine._send_lock:
            engine._follow_durable_state()
            with engine._state_lock:
                halted = engine.state is TradingState.HALTED
                if not halted:
                    engine.orders.sending(record)
            if halted:
                engine.journal.update_order(cid, status=OrderStatus.REJECTED, now=now, error="trading_state: HALTED")
                return
            try:
                if tp_trigger is not None:
                    order_id = engine.client.place_conditional(ConditionalRequest(  # type: ignore[attr-defined]
                        customer_order_id=cid, pair=pair, quantity=quantity, take_profit_trigger=tp_trigger,
                        take_profit_price=tp_trigger, stop_loss_trigger=trigger, stop_loss_price=limit))
                    eo = ExchangeOrder(customer_order_id=cid, order_id=order_id, pair=pair, side=Side.SELL,
                                       order_type=OrderType.LIMIT, status=OrderStatus.OPEN, price=limit,
                                       original_quantity=quantity)
                else:
                    eo = engine.client.place_stop_limit(StopLimitRequest(  # type: ignore[attr-defined]
                        customer_order_id=cid, pair=pair, side=Side.SELL, quantity=quantity, price=limit,
                        stop_price=trigger))
            except OrderRejected as exc:
                engine.orders.not_placed(cid, f"exchange refused: {exc.code} {exc.message}", engine.clock())
                self._retry_at[pair] = now + RETRY_AFTER
                self._event(pair, "refused", cid, quantity, now)
                engine.journal.record_event("protection_refused", {"pair": pair, "customer_order_id": cid,
                                                                   "error": exc.message}, now)
                return
            except OutcomeUnknown as exc:
                engine.orders.mark_lost(cid, f"no answer: {exc.message}", engine.clock())
                return
            except ExchangeError as exc:
                engine.orders.not_placed(cid, f"not sent: {type(exc).__name__}: {exc.message}", engine.clock())
                self._retry_at[pair] = now + timedelta(seconds=5)
                return
            finally:
                engine.orders.sent(cid)
            engine.orders.on_answer(cid, replace(eo, customer_order_id=cid), engine.clock())
        self._retry_at.pop(pair, None)
        self.placed_at[cid] = engine.clock()
        self._event(pair, "placed", cid, quantity, now)
        detail = {"pair": pair, "customer_order_id": cid, "kind": "oco" if oco else "stop_limit",
                  "quantity": str(quantity), "stop_price": str(trigger), "limit_price": str(limit)}
        if tp_trigger is not None:
            detail["take_profit_price"] = str(tp_trigger)
        engine.journal.record_event("protection_placed", detail, now)
        log.info("protective order placed on the exchange", extra={"protection": detail})

    def _cancel(self, record: OrderRecord, why: str, now: datetime) -> None:
        engine = self.engine
        try:
            if is_oco_id(record.customer_order_id):
                self._cancel_oco(record)
            else:
                engine.client.cancel_order(record.pair, record.customer_order_id)
        except ExchangeError as exc:
            engine.last_error = f"protection cancel {record.customer_order_id}: {exc.message}"
            return
        self._event(record.pair, "cancelled", record.customer_order_id, record.quantity, now)
        engine.journal.record_event("protection_cancelled", {"pair": record.pair, "why": why,
                                                             "customer_order_id": record.customer_order_id}, now)
        # the next sync records its final status (cancelled, or filled just before)

    def _cancel_oco(self, record: OrderRecord) -> None:
        """A conditional still waiting is cancelled as a conditional; one that has triggered is a regular order by
        then (same customerOrderId): cancel that."""
        client = self.engine.client
        try:
            client.cancel_conditional(record.pair, customer_order_id=record.customer_order_id)  # type: ignore[attr-defined]
        except OrderRejected:
            client.cancel_order(record.pair, record.customer_order_id)

    def _event(self, pair: str, action: str, cid: str, quantity: Decimal, now: datetime) -> None:
        self.events.append(ProtectionEvent(pair, action, cid, quantity, now))
        del self.events[:-200]
