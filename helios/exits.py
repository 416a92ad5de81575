"""Stop-loss and take-profit exits (the software exit, the second line behind ``helios.protection``), dust and
the pair's trading rules, and the expiry of stale entries.

Exits are rounded down to the pair's quantity step; a remainder below the pair's minimum is dust: reported once
(journal event ``dust`` and a critical alert), never retried every tick. A failing exit backs off (5 s, 10 s, 20 s,
... at most every 5 minutes). Plain functions taking the engine.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from helios import portfolio
from helios.exchange.errors import ExchangeError
from helios.journal import OrderRecord
from helios.models import OrderPurpose, OrderStatus, OrderType, PairInfo, Position, Side

if TYPE_CHECKING:
    from helios.engine import Engine

#: A failing exit is retried after 5 s, 10 s, 20 s, ... at most every 5 minutes.
EXIT_BACKOFF_BASE = timedelta(seconds=5)
EXIT_BACKOFF_MAX = timedelta(minutes=5)


def check_exits(engine: Engine, now: datetime) -> None:
    for pair, position in list(engine.positions.items()):
        ticker = engine.tickers.get(pair)
        if ticker is None or engine.orders.exit_in_flight(pair):
            continue
        if ticker.bid <= position.stop_loss:
            reason = "stop_loss"
        elif position.take_profit > 0 and ticker.bid >= position.take_profit:
            reason = "take_profit"
        else:
            continue
        backoff = engine._exit_backoff.get(pair)
        if backoff is not None and now < backoff[1]:
            continue
        quantity, can_sell = sellable(engine, pair, position.quantity)
        if not can_sell:
            _report_dust(engine, pair, position, now)
            continue
        record = engine.submit_order(
            pair=pair, side=Side.SELL, order_type=OrderType.MARKET, quantity=quantity, price=None,
            purpose=OrderPurpose.EXIT, reason=reason,
        )
        if record.status is OrderStatus.FAILED:  # refused by the exchange or its pair rules: back off
            _exit_failed(engine, pair, record, now)
        elif record.status is not OrderStatus.REJECTED:
            engine._exit_backoff.pop(pair, None)


def _report_dust(engine: Engine, pair: str, position: Position, now: datetime) -> None:
    """A remainder below the pair's minimum cannot be sold: report it once, never retry it every tick."""
    key = f"{pair}:{position.quantity}"
    if key in engine._dust_reported:
        return
    engine._dust_reported.add(key)
    detail = {"key": key, "pair": pair, "quantity": str(position.quantity)}
    engine.journal.record_event("dust", detail, now)
    engine.alerter.send("critical", f"Helios {engine.mode.value}: {pair} position {position.quantity} is below "
                                    "the pair's minimum and cannot be sold (dust)", detail)


def _exit_failed(engine: Engine, pair: str, record: OrderRecord, now: datetime) -> None:
    failures = engine._exit_backoff.get(pair, (0, now))[0] + 1
    delay = min(EXIT_BACKOFF_MAX, EXIT_BACKOFF_BASE * 2 ** (failures - 1))
    engine._exit_backoff[pair] = (failures, now + delay)
    detail = {"pair": pair, "customer_order_id": record.customer_order_id, "error": record.error,
              "failures": failures, "next_attempt_in_s": delay.total_seconds()}
    engine.journal.record_event("exit_failed", detail, now)
    if failures == 1:
        engine.alerter.send("critical", f"Helios {engine.mode.value}: {pair} exit failed; retrying with backoff",
                            detail)


def sellable(engine: Engine, pair: str, quantity: Decimal) -> tuple[Decimal, bool]:
    """``quantity`` rounded down to the pair's step, and whether that can be sold (>= the pair's minimum)."""
    rules = pair_rules(engine, pair)
    if rules is None:
        return quantity, True  # unknown rules: the exchange client still checks them before sending
    info = rules[0]
    rounded = portfolio.round_down(quantity, Decimal(1).scaleb(-info.base_decimal_places))
    return rounded, rounded >= info.min_base_amount and rounded > 0


def is_dust(engine: Engine, pair: str) -> bool:
    position = engine.positions.get(pair)
    return position is not None and not sellable(engine, pair, position.quantity)[1]


def pair_rules(engine: Engine, pair: str) -> tuple[PairInfo, Decimal] | None:
    """The pair's trading rules and the fraction of a BUY the exchange may take as a fee (cached)."""
    if pair not in engine._pair_rules:
        try:
            info = engine.client.pair_info(pair)
            fee = engine.client.fee_rates(pair)
        except ExchangeError as exc:
            engine.last_error = f"pair rules {pair}: {exc.message}"
            return None
        engine._pair_rules[pair] = (info, max(fee.maker_pct, fee.taker_pct) / 100)
    return engine._pair_rules[pair]


def expire_entries(engine: Engine, now: datetime) -> None:
    """An entry that has rested longer than HELIOS_ENTRY_ORDER_TTL_SECONDS is stale: cancel it."""
    ttl = timedelta(seconds=float(engine.settings.helios_entry_order_ttl_seconds))
    for record in list(engine.active.values()):
        if record.purpose is not OrderPurpose.ENTRY or record.status is not OrderStatus.OPEN:
            continue
        if now - record.created_at < ttl:
            continue
        try:
            with engine._send_lock:
                engine.client.cancel_order(record.pair, record.customer_order_id)
        except ExchangeError as exc:
            engine.last_error = f"expire {record.customer_order_id}: {exc.message}"
            continue
        # the next tick's sync records the final status (cancelled, or filled just before)
        engine.journal.record_event("entry_expired", {"customer_order_id": record.customer_order_id}, now)
