"""The trading engine: the one place where the trading state machine, the order router, positions and
stop-loss / take-profit live.

Trading states (durable, in the journal):

    ACTIVE   --daily loss limit-->  REDUCING   (no new entries; exits still run)
    ACTIVE | REDUCING --emergency stop-->  HALTED   (open orders cancelled; nothing new is sent)
    REDUCING | HALTED --authenticated resume-->  ACTIVE

One tick (``step``): prices -> order/fill sync -> daily-loss check -> stop-loss/take-profit exits -> strategy.

The router, for every order: build the intent with a fresh customerOrderId -> safety gates (pure) -> journal the
intent (SUBMITTING or REJECTED) -> re-read the durable trading state under the send lock -> send -> journal the
result. An answer that never arrived makes the order UNKNOWN: it is looked up by its customerOrderId, never re-sent,
and no new entry is allowed while any order is UNKNOWN.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from helios import gates, promotion
from helios.alerts import Alerter
from helios.config import Settings
from helios.exchange.base import ExchangeClient
from helios.exchange.errors import ExchangeError, OrderRejected, OutcomeUnknown
from helios.journal import Journal, OrderRecord
from helios.killswitch import cancel_everything, record_cancellations
from helios.marketdata import MarketData, MarketDataError
from helios.models import (
    Clock,
    ExchangeOrder,
    Fill,
    Mode,
    OrderPurpose,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Signal,
    Ticker,
    TradingState,
    utcnow,
)
from helios.reconcile import (
    STARTING_BALANCES_KEY,
    ReconcileResult,
    compare_balances,
    decode_balances,
    encode_balances,
    implied_balances,
    unknown_open_orders,
)
from helios.strategy import Strategy, StrategyContext

log = logging.getLogger("helios.engine")

JOHANNESBURG = ZoneInfo("Africa/Johannesburg")
QUOTE = "ZAR"
DUST = Decimal("0.00000001")
#: An order we sent but the exchange has never heard of is declared FAILED after this long.
NEVER_ARRIVED_AFTER = timedelta(seconds=30)
FILL_OVERLAP = timedelta(minutes=5)
BALANCE_REFRESH = timedelta(seconds=10)


class ResumeRefused(Exception):
    """Resume is refused while reconciliation with the exchange fails."""


def new_customer_order_id() -> str:
    """VALR rules: letters, digits and '-', at most 50 characters."""
    return f"hl-{uuid.uuid4().hex}"


def day_start(now: datetime) -> datetime:
    """Midnight of ``now``'s calendar day in Africa/Johannesburg."""
    local = now.astimezone(JOHANNESBURG)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


class Engine:
    def __init__(
        self,
        *,
        settings: Settings,
        journal: Journal,
        client: ExchangeClient,
        market: MarketData,
        strategy: Strategy,
        clock: Clock = utcnow,
        alerter: Alerter | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.client = client
        self.market = market
        self.strategy = strategy
        self.clock = clock
        self.alerter = alerter or Alerter([])
        self.mode: Mode = client.mode
        self.state: TradingState = journal.read_state()
        self.positions: dict[str, Position] = journal.positions()
        self.active: dict[str, OrderRecord] = {o.customer_order_id: o for o in journal.active_orders()}
        self.tickers: dict[str, Ticker] = {}
        self.last_heartbeat: datetime | None = None
        self.last_error: str | None = None
        self.started_at = clock()
        self._send_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._sync_lock = threading.RLock()  # the engine tick and an API resume may both reconcile
        self._fill_cursor: datetime | None = journal.last_fill_time()
        self._sent_times: deque[datetime] = deque()
        self._cash_zar: Decimal | None = None
        self._balances_at: datetime | None = None
        self._today_start = day_start(self.started_at)
        self._realised_today = journal.realised_since(self._today_start)
        self.rejection_counts: dict[str, int] = journal.rejection_counts()
        self.unknown_fills = 0
        self.reconciliation: ReconcileResult = ReconcileResult(ok=False, issues=["not reconciled yet"])
        self.balance_check: ReconcileResult | None = None
        self._balance_checked_at: datetime | None = None
        self._balance_mismatches = 0

    # ---------------------------------------------------------------------------------------------------------
    # one tick
    # ---------------------------------------------------------------------------------------------------------
    def step(self) -> None:
        now = self.clock()
        self._follow_durable_state()
        self._roll_day(now)
        self._poll_prices()
        self._sync_orders(now)
        self._refresh_balances(now)
        self._check_daily_loss(now)
        self._periodic_balance_check(now)
        self._expire_entries(now)
        self._check_exits()
        self._run_strategy()
        self.journal.touch(now)  # raises if the journal is not writable: no heartbeat then
        self.last_heartbeat = now

    def _follow_durable_state(self) -> None:
        """Another process (``helios emergency-stop --direct``) may have changed the journal's state."""
        durable = self.journal.read_state()
        if durable is self.state:
            return
        with self._state_lock:
            self.state = durable
        log.warning("trading state changed outside this process: now %s", durable.value)
        if durable is TradingState.HALTED:
            with self._send_lock:
                cancel_everything(self.client, timeout_s=float(self.settings.helios_emergency_stop_timeout_seconds))
                record_cancellations(self.journal, self.client, self.clock())
            self.active = {o.customer_order_id: o for o in self.journal.active_orders()}

    def _roll_day(self, now: datetime) -> None:
        start = day_start(now)
        if start != self._today_start:
            self._today_start = start
            self._realised_today = self.journal.realised_since(start)

    def _poll_prices(self) -> None:
        try:
            self.market.poll()
        except MarketDataError as exc:
            self.last_error = f"market data: {exc}"
        for pair in self.settings.pairs:
            try:
                ticker = self.market.ticker(pair)
            except MarketDataError as exc:
                self.last_error = f"market data: {exc}"
                continue  # keep the last ticker: its age trips the market_data_fresh gate
            self.tickers[pair] = ticker
            self.client.on_market_price(ticker)

    def _refresh_balances(self, now: datetime, force: bool = False) -> None:
        if not force and self._balances_at is not None and now - self._balances_at < BALANCE_REFRESH:
            return
        try:
            balances = self.client.balances()
        except ExchangeError as exc:
            self.last_error = f"balances: {exc.message}"
            return
        self._cash_zar = next((b.total for b in balances if b.currency == QUOTE), Decimal(0))
        self._balances_at = now

    # ---------------------------------------------------------------------------------------------------------
    # order and fill synchronisation
    # ---------------------------------------------------------------------------------------------------------
    def _sync_orders(self, now: datetime) -> None:
        with self._sync_lock:
            self._sync_orders_locked(now)

    def _sync_orders_locked(self, now: datetime) -> None:
        try:
            since = None if self._fill_cursor is None else self._fill_cursor - FILL_OVERLAP
            fills = self.client.fills(since)
        except ExchangeError as exc:
            self.last_error = f"fills: {exc.message}"
            fills = []
        applied = False
        for fill in fills:
            if self._fill_cursor is None or fill.traded_at > self._fill_cursor:
                self._fill_cursor = fill.traded_at
            if self.journal.has_fill(fill.trade_id):
                continue
            self._apply_fill(fill, now)
            applied = True
        if applied:
            self._refresh_balances(now, force=True)
        if not self.active:
            return
        try:
            open_now = {o.customer_order_id: o for o in self.client.open_orders() if o.customer_order_id}
        except ExchangeError as exc:
            self.last_error = f"open orders: {exc.message}"
            return
        for cid, record in list(self.active.items()):
            eo: ExchangeOrder | None = open_now.get(cid)
            if eo is None:
                try:
                    eo = self.client.get_order(record.pair, cid)
                except ExchangeError as exc:
                    self.last_error = f"order {cid}: {exc.message}"
                    continue
            if eo is None:
                self._order_not_on_exchange(record, now)
                continue
            self._apply_order_update(record, eo, now)

    def _order_not_on_exchange(self, record: OrderRecord, now: datetime) -> None:
        if record.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN):
            if now - record.updated_at >= NEVER_ARRIVED_AFTER:
                self.journal.update_order(record.customer_order_id, status=OrderStatus.FAILED, now=now,
                                          error="never reached the exchange (looked up by customerOrderId)")
                self._forget(record)
        else:
            self.journal.update_order(record.customer_order_id, status=OrderStatus.UNKNOWN, now=now,
                                      error="the exchange no longer knows this order")
            self.active[record.customer_order_id] = replace(record, status=OrderStatus.UNKNOWN, updated_at=now)
            self.journal.record_event("order_lost", {"customer_order_id": record.customer_order_id}, now)

    def _apply_order_update(self, record: OrderRecord, eo: ExchangeOrder, now: datetime) -> None:
        self.journal.update_from_exchange(replace(eo, customer_order_id=record.customer_order_id), now)
        updated = replace(record, status=eo.status, exchange_order_id=eo.order_id or record.exchange_order_id,
                          filled_quantity=eo.filled_quantity, updated_at=now)
        if eo.status.is_terminal:
            self._forget(updated)
        else:
            self.active[record.customer_order_id] = updated

    def _forget(self, record: OrderRecord) -> None:
        self.active.pop(record.customer_order_id, None)
        if record.purpose is OrderPurpose.EXIT:
            position = self.positions.get(record.pair)
            if position is not None:
                position.exit_pending = False  # an exit that ended without closing: the next tick re-checks

    def _apply_fill(self, fill: Fill, now: datetime) -> None:
        record = None
        if fill.customer_order_id:
            record = self.journal.get_order(fill.customer_order_id)
        if record is None and fill.order_id:
            record = self.journal.find_order_by_exchange_id(fill.order_id)
        if record is None:
            # Not ours (manual trade, another bot): never touch positions; flag it.
            self.unknown_fills += 1
            self.journal.record_event("unknown_fill", {"trade_id": fill.trade_id, "pair": fill.pair,
                                                       "side": fill.side.value, "quantity": str(fill.quantity)},
                                      now)
            return
        base = fill.pair.removesuffix(QUOTE)
        quantity = fill.quantity
        if fill.fee_currency == QUOTE:
            fee_zar = fill.fee
        else:
            fee_zar = fill.fee * fill.price
            if fill.fee_currency == base and fill.side is Side.BUY:
                quantity -= fill.fee  # VALR takes a BUY's fee from the bought coins
        existing = self.positions.get(fill.pair)
        position = None if existing is None else replace(existing)  # changed in memory only once journaled
        realised = Decimal(0)
        closed: dict[str, Any] | None = None
        if fill.side is Side.BUY:
            if position is None:
                position = Position(
                    pair=fill.pair, quantity=quantity, avg_entry_price=fill.price, entry_fees_zar=fee_zar,
                    stop_loss=record.stop_loss or Decimal(0), take_profit=record.take_profit or Decimal(0),
                    opened_at=fill.traded_at,
                )
            else:
                total = position.quantity + quantity
                position.avg_entry_price = (position.avg_entry_price * position.quantity
                                            + fill.price * quantity) / total
                position.quantity = total
                position.entry_fees_zar += fee_zar
                if record.stop_loss is not None:
                    position.stop_loss = record.stop_loss
                if record.take_profit is not None:
                    position.take_profit = record.take_profit
        else:
            if position is None:
                realised = -fee_zar
            else:
                sold = min(quantity, position.quantity)
                entry_fee_share = position.entry_fees_zar * sold / position.quantity
                realised = (fill.price - position.avg_entry_price) * sold - fee_zar - entry_fee_share
                position.quantity -= sold
                position.entry_fees_zar -= entry_fee_share
                if position.quantity <= DUST:
                    earlier = self._realised_for_open_position(position)
                    closed = {
                        "pair": fill.pair,
                        "quantity": record.quantity,
                        "entry_price": position.avg_entry_price,
                        "exit_price": fill.price,
                        "fees_zar": self._fees_for_open_position(position) + fee_zar,
                        "realised_pnl_zar": earlier + realised,
                        "exit_reason": record.reason or "exit",
                        "opened_at": position.opened_at,
                        "closed_at": fill.traded_at,
                    }
                    position = None
        stored = self.journal.record_fill(
            fill, customer_order_id=record.customer_order_id, fee_zar=fee_zar, realised_pnl_zar=realised,
            position=position, position_pair=fill.pair, closed_trade=closed, now=now,
        )
        if not stored:
            return
        if position is None:
            self.positions.pop(fill.pair, None)
        else:
            self.positions[fill.pair] = position
        if fill.traded_at >= self._today_start:
            self._realised_today += realised
        log.info("fill", extra={"fill": {"pair": fill.pair, "side": fill.side.value, "price": str(fill.price),
                                         "quantity": str(fill.quantity), "realised_zar": str(realised)}})
        if closed is not None:
            log.info("position closed", extra={"trade": {k: str(v) for k, v in closed.items()}})
            if self.mode is Mode.LIVE:
                self.alerter.send("info", f"LIVE position closed: {fill.pair} ({closed['exit_reason']})",
                                  {"realised_pnl_zar": str(closed["realised_pnl_zar"])})

    def _realised_for_open_position(self, position: Position) -> Decimal:
        return self.journal.pair_fill_totals(position.pair, position.opened_at)[0]

    def _fees_for_open_position(self, position: Position) -> Decimal:
        return self.journal.pair_fill_totals(position.pair, position.opened_at)[1]

    # ---------------------------------------------------------------------------------------------------------
    # risk checks that act
    # ---------------------------------------------------------------------------------------------------------
    def unrealised_zar(self) -> Decimal:
        total = Decimal(0)
        for pair, position in self.positions.items():
            ticker = self.tickers.get(pair)
            if ticker is not None:
                total += position.unrealised(ticker.bid)
        return total

    def todays_pnl_zar(self) -> Decimal:
        return self._realised_today + self.unrealised_zar()

    def todays_loss_zar(self) -> Decimal:
        return max(Decimal(0), -self.todays_pnl_zar())

    def _check_daily_loss(self, now: datetime) -> None:
        loss = self.todays_loss_zar()
        if loss >= self.settings.max_daily_loss_zar and self.state is TradingState.ACTIVE:
            self.set_state(TradingState.REDUCING,
                           f"daily loss R{loss:.2f} reached MAX_DAILY_LOSS_ZAR=R{self.settings.max_daily_loss_zar}",
                           "engine")

    def _expire_entries(self, now: datetime) -> None:
        """An entry that has rested longer than HELIOS_ENTRY_ORDER_TTL_SECONDS is stale: cancel it."""
        ttl = timedelta(seconds=float(self.settings.helios_entry_order_ttl_seconds))
        for record in list(self.active.values()):
            if record.purpose is not OrderPurpose.ENTRY or record.status is not OrderStatus.OPEN:
                continue
            if now - record.created_at < ttl:
                continue
            try:
                with self._send_lock:
                    self.client.cancel_order(record.pair, record.customer_order_id)
            except ExchangeError as exc:
                self.last_error = f"expire {record.customer_order_id}: {exc.message}"
                continue
            # the next tick's sync records the final status (cancelled, or filled just before)
            self.journal.record_event("entry_expired", {"customer_order_id": record.customer_order_id}, now)

    def _check_exits(self) -> None:
        for pair, position in list(self.positions.items()):
            ticker = self.tickers.get(pair)
            if ticker is None or position.exit_pending:
                continue
            if ticker.bid <= position.stop_loss:
                reason = "stop_loss"
            elif position.take_profit > 0 and ticker.bid >= position.take_profit:
                reason = "take_profit"
            else:
                continue
            record = self.submit_order(
                pair=pair, side=Side.SELL, order_type=OrderType.MARKET, quantity=position.quantity, price=None,
                purpose=OrderPurpose.EXIT, reason=reason,
            )
            if record.status.is_live_on_exchange or record.status is OrderStatus.FILLED:
                position.exit_pending = True

    def _run_strategy(self) -> None:
        if self.state is not TradingState.ACTIVE:
            return
        for pair in self.settings.pairs:
            ticker = self.tickers.get(pair)
            if ticker is None:
                continue
            ctx = StrategyContext(
                has_position=pair in self.positions,
                has_pending_entry=any(o.pair == pair and o.purpose is OrderPurpose.ENTRY
                                      for o in self.active.values()),
                order_size_zar=self.settings.order_size_zar,
                stop_loss_pct=self.settings.helios_stop_loss_pct,
                take_profit_pct=self.settings.helios_take_profit_pct,
            )
            signal = self.strategy.on_tick(ticker, ctx)
            if signal is not None:
                self.submit_signal(signal)

    # ---------------------------------------------------------------------------------------------------------
    # the router
    # ---------------------------------------------------------------------------------------------------------
    def gate_context(self, pair: str, now: datetime) -> gates.GateContext:
        ticker = self.tickers.get(pair)
        exposure = Decimal(0)
        risk = Decimal(0)
        exposed_pairs = set(self.positions)
        unresolved = 0
        position = self.positions.get(pair)
        if position is not None:
            exposure += position.quantity * position.avg_entry_price
        for position_ in self.positions.values():
            risk += position_.risk_zar()
        for order in self.active.values():
            if order.status is OrderStatus.UNKNOWN:
                unresolved += 1
            if order.purpose is not OrderPurpose.ENTRY:
                continue
            remaining = order.quantity - order.filled_quantity
            price = order.price if order.price is not None else order.reference_price
            exposed_pairs.add(order.pair)
            if order.pair == pair:
                exposure += remaining * price
            if order.stop_loss is not None:
                risk += max(Decimal(0), price - order.stop_loss) * remaining
            else:
                risk += remaining * price
        while self._sent_times and now - self._sent_times[0] > timedelta(minutes=1):
            self._sent_times.popleft()
        equity = (self._cash_zar if self._cash_zar is not None else Decimal(0))
        for pair_, position_ in self.positions.items():
            mark = self.tickers.get(pair_)
            equity += position_.quantity * (mark.bid if mark else position_.avg_entry_price)
        return gates.GateContext(
            trading_state=promotion.effective_state(self.state),  # issue 9 hook: un-promoted release -> no new entries
            client_is_live=self.client.mode is Mode.LIVE,
            live_explicitly_enabled=self.settings.live_explicitly_enabled,
            exchange_connected=self.client.is_connected(),
            ticker_age_seconds=None if ticker is None else (now - ticker.timestamp).total_seconds(),
            max_ticker_age_seconds=float(self.settings.helios_max_ticker_age_seconds),
            orders_last_minute=len(self._sent_times),
            max_orders_per_minute=self.settings.helios_max_orders_per_minute,
            max_position_size_zar=self.settings.max_position_size_zar,
            pair_exposure_zar=exposure,
            todays_loss_zar=self.todays_loss_zar(),
            max_daily_loss_zar=self.settings.max_daily_loss_zar,
            open_positions=len(exposed_pairs),
            pair_has_exposure=pair in exposed_pairs,
            max_open_positions=self.settings.max_open_positions,
            portfolio_risk_zar=risk,
            equity_zar=equity,
            max_portfolio_risk_pct=self.settings.max_portfolio_risk_pct,
            unresolved_orders=unresolved,
        )

    def submit_signal(self, signal: Signal) -> OrderRecord:
        """A strategy's entry: a limit (or market) BUY carrying its stop-loss and take-profit."""
        return self.submit_order(
            pair=signal.pair, side=signal.side,
            order_type=OrderType.LIMIT if signal.limit_price is not None else OrderType.MARKET,
            quantity=signal.quantity, price=signal.limit_price, purpose=OrderPurpose.ENTRY,
            stop_loss=signal.stop_loss, take_profit=signal.take_profit, reason=signal.reason or "signal",
        )

    def submit_order(
        self,
        *,
        pair: str,
        side: Side,
        order_type: OrderType,
        quantity: Decimal,
        price: Decimal | None,
        purpose: OrderPurpose,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        reason: str = "",
    ) -> OrderRecord:
        now = self.clock()
        ticker = self.tickers.get(pair)
        if price is not None:
            reference = price
        elif ticker is not None:
            reference = ticker.ask if side is Side.BUY else ticker.bid
        else:
            reference = Decimal(0)
        proposed = gates.ProposedOrder(pair=pair, side=side, purpose=purpose, quantity=quantity,
                                       price=reference, stop_loss=stop_loss)
        context = self.gate_context(pair, now)
        rejection = gates.evaluate(proposed, context)
        record = OrderRecord(
            customer_order_id=new_customer_order_id(), exchange_order_id=None, pair=pair, side=side,
            order_type=order_type, purpose=purpose, quantity=quantity, price=price, reference_price=reference,
            stop_loss=stop_loss, take_profit=take_profit,
            status=OrderStatus.REJECTED if rejection else OrderStatus.SUBMITTING,
            filled_quantity=Decimal(0), average_price=None, fee_total=Decimal(0), reason=reason,
            error=None if rejection is None else f"{rejection.gate}: {rejection.detail}",
            created_at=now, updated_at=now,
        )
        # The intent is durable before anything can reach the exchange.
        self.journal.record_order(record, None if rejection is None else (rejection.gate, rejection.detail))
        if rejection is not None:
            return self._rejected(record, rejection)
        with self._send_lock:
            durable_state = self.journal.read_state()  # another process (a --direct stop) may have halted us
            if durable_state is not self.state:
                with self._state_lock:
                    self.state = durable_state
            late = gates.trading_state(proposed, replace(context, trading_state=durable_state))
            if late is not None:
                self.journal.update_order(record.customer_order_id, status=OrderStatus.REJECTED, now=now,
                                          error=f"{late.gate}: {late.detail}")
                return self._rejected(replace(record, status=OrderStatus.REJECTED), late, journaled=False)
            self.active[record.customer_order_id] = record
            self._sent_times.append(now)
            return self._send(record)

    def _rejected(self, record: OrderRecord, rejection: gates.Rejection, journaled: bool = True) -> OrderRecord:
        if not journaled:
            self.journal.record_event("gate_rejection", {"customer_order_id": record.customer_order_id,
                                                         "gate": rejection.gate, "detail": rejection.detail},
                                      self.clock())
        self.rejection_counts[rejection.gate] = self.rejection_counts.get(rejection.gate, 0) + 1
        log.info("order rejected", extra={"gate": rejection.gate, "detail": rejection.detail,
                                          "customer_order_id": record.customer_order_id})
        return record

    def _send(self, record: OrderRecord) -> OrderRecord:
        request = OrderRequest(
            customer_order_id=record.customer_order_id, pair=record.pair, side=record.side,
            order_type=record.order_type, quantity=record.quantity, price=record.price,
        )
        live = self.client.mode is Mode.LIVE
        summary = {"customer_order_id": record.customer_order_id, "pair": record.pair, "side": record.side.value,
                   "type": record.order_type.value, "quantity": str(record.quantity),
                   "price": None if record.price is None else str(record.price), "purpose": record.purpose.value}
        if live:
            log.warning("LIVE ORDER SENDING", extra={"order": summary})
        now = self.clock
        try:
            eo = self.client.place_order(request)
        except OrderRejected as exc:
            self.journal.update_order(record.customer_order_id, status=OrderStatus.FAILED, now=now(),
                                      error=f"exchange refused: {exc.code} {exc.message}")
            self._forget(record)
            result = replace(record, status=OrderStatus.FAILED)
        except OutcomeUnknown as exc:
            result = self._mark_unknown(record, f"no answer: {exc.message}")
        except ExchangeError as exc:
            # Raised before the request could be accepted (connection refused, rate limited, auth).
            self.journal.update_order(record.customer_order_id, status=OrderStatus.FAILED, now=now(),
                                      error=f"not sent: {type(exc).__name__}: {exc.message}")
            self._forget(record)
            result = replace(record, status=OrderStatus.FAILED)
        except Exception as exc:  # a bug must not leave an order untracked: treat the outcome as unknown
            log.exception("unexpected error placing %s", record.customer_order_id)
            result = self._mark_unknown(record, f"unexpected {type(exc).__name__}")
        else:
            self._apply_order_update(record, replace(eo, customer_order_id=record.customer_order_id), now())
            result = replace(record, status=eo.status, exchange_order_id=eo.order_id,
                             filled_quantity=eo.filled_quantity)
        if live:
            log.warning("LIVE ORDER RESULT", extra={"order": {**summary, "status": result.status.value}})
            self.alerter.send("info", f"LIVE order {result.status.value}: {record.side.value} {record.pair}",
                              summary)
        return result

    def _mark_unknown(self, record: OrderRecord, why: str) -> OrderRecord:
        now = self.clock()
        self.journal.update_order(record.customer_order_id, status=OrderStatus.UNKNOWN, now=now, error=why)
        unknown = replace(record, status=OrderStatus.UNKNOWN, updated_at=now)
        self.active[record.customer_order_id] = unknown
        self.journal.record_event("order_unknown", {"customer_order_id": record.customer_order_id, "why": why}, now)
        try:  # resolve at once by customerOrderId; never re-send
            eo = self.client.get_order(record.pair, record.customer_order_id)
        except ExchangeError:
            return unknown
        if eo is None:
            return unknown
        self._apply_order_update(unknown, eo, now)
        return replace(unknown, status=eo.status, exchange_order_id=eo.order_id)

    # ---------------------------------------------------------------------------------------------------------
    # state machine
    # ---------------------------------------------------------------------------------------------------------
    def reconcile_orders(self, now: datetime) -> ReconcileResult:
        """Match the account's open orders and fills to the journal; resolve every order in an unknown state."""
        try:
            open_now = self.client.open_orders()
        except ExchangeError as exc:
            return ReconcileResult(ok=False, issues=[f"exchange unreachable: {type(exc).__name__}: {exc.message}"])
        result = ReconcileResult(ok=True)
        for order in unknown_open_orders(open_now, self.journal.order_ids()):
            result.ok = False
            result.unknown_orders.append({"pair": order.pair, "order_id": order.order_id,
                                          "customer_order_id": order.customer_order_id, "side": order.side.value})
        if result.unknown_orders:
            result.issues.append(f"{len(result.unknown_orders)} open order(s) on the account that the journal "
                                 "does not know: cancel or adopt them, then resume")
        self._sync_orders(now)  # resolves SUBMITTING/UNKNOWN by customerOrderId and adopts fills made while down
        unresolved = [o.customer_order_id for o in self.active.values() if o.status is OrderStatus.UNKNOWN]
        if unresolved:
            result.ok = False
            result.issues.append(f"{len(unresolved)} order(s) with unknown outcome: {', '.join(unresolved[:5])}")
        if self.unknown_fills:
            result.ok = False
            result.issues.append(f"{self.unknown_fills} fill(s) on the account that the journal does not know")
        self.reconciliation = result
        self.journal.record_event("reconciliation", result.to_json(), now)
        return result

    def check_balances(self, now: datetime) -> ReconcileResult:
        """Compare the balances the journal implies with the exchange's. Two misses in a row halt trading."""
        recorded = self.journal.get_meta(STARTING_BALANCES_KEY)
        if recorded is None:
            result = ReconcileResult(ok=False, issues=["no starting balances recorded (run helios audit)"])
        else:
            try:
                actual = self.client.balances()
            except ExchangeError as exc:
                return ReconcileResult(ok=False, issues=[f"balances unavailable: {exc.message}"])
            prices = {pair.removesuffix(QUOTE): t.bid for pair, t in self.tickers.items()}
            result = compare_balances(implied_balances(decode_balances(recorded), self.journal.all_fills()),
                                      actual, prices, self.settings.helios_balance_tolerance_zar)
        self.balance_check = result
        self._balance_checked_at = now
        if result.ok:
            self._balance_mismatches = 0
            return result
        self._balance_mismatches += 1
        self.journal.record_event("balance_mismatch", {**result.to_json(), "streak": self._balance_mismatches}, now)
        if self._balance_mismatches >= 2 and self.state is not TradingState.HALTED and recorded is not None:
            # A fill between our two reads can explain one miss; two in a row is a real discrepancy.
            self.alerter.send("critical", "Balance reconciliation failed: halting", result.to_json())
            self.emergency_stop("balance reconciliation: " + "; ".join(result.issues), "engine")
        return result

    def _periodic_balance_check(self, now: datetime) -> None:
        interval = timedelta(seconds=float(self.settings.helios_balance_check_seconds))
        if self._balance_checked_at is None or now - self._balance_checked_at >= interval:
            self.check_balances(now)

    def record_starting_balances(self, now: datetime, *, overwrite: bool = False) -> dict[str, str]:
        """Record the account's balances as the starting point of balance reconciliation (go-live)."""
        existing = self.journal.get_meta(STARTING_BALANCES_KEY)
        if existing is not None and not overwrite:
            return {k: str(v) for k, v in decode_balances(existing).items()}
        balances = self.client.balances()
        self.journal.set_meta(STARTING_BALANCES_KEY, encode_balances(balances))
        self.journal.record_event("starting_balances", {b.currency: str(b.total) for b in balances}, now)
        return {b.currency: str(b.total) for b in balances}

    def set_state(self, state: TradingState, reason: str, actor: str) -> TradingState:
        with self._state_lock:
            previous = self.journal.record_state(state, reason, actor, self.clock())
            self.state = state
        level = "critical" if state is TradingState.HALTED else "warning"
        log.warning("trading state %s -> %s", previous.value, state.value,
                    extra={"reason": reason, "actor": actor})
        self.alerter.send(level, f"Helios {self.mode.value} trading state {previous.value} -> {state.value}",
                          {"reason": reason, "actor": actor})
        return previous

    def emergency_stop(self, reason: str, actor: str) -> dict[str, Any]:
        """HALT, cancel every open order, and confirm zero open orders by re-query (bounded time)."""
        started = time.monotonic()
        self.set_state(TradingState.HALTED, reason, actor)
        with self._send_lock:  # waits for an order being sent right now; every later send sees HALTED
            sweep = cancel_everything(self.client,
                                      timeout_s=float(self.settings.helios_emergency_stop_timeout_seconds))
        # The journal learns each order's final status (cancelled, or filled just before) on the engine's next
        # tick, by customerOrderId: the stop itself answers as soon as the exchange confirmed zero open orders.
        now = self.clock()
        report = {
            "trading_state": self.state.value,
            "mode": self.mode.value,
            **sweep.to_json(),
            "open_positions": self.positions_json(),
            "reason": reason,
            "actor": actor,
            "at": now.isoformat(),
            "total_ms": round((time.monotonic() - started) * 1000, 1),
        }
        self.journal.record_event("emergency_stop", report, now)
        if not sweep.confirmed:
            self.alerter.send("critical", "EMERGENCY STOP could not confirm zero open orders", report)
        return report

    def resume(self, reason: str, actor: str) -> dict[str, Any]:
        if not reason.strip():
            raise ValueError("a resume needs a reason")
        result = self.reconcile_orders(self.clock())
        if not result.ok:
            raise ResumeRefused("reconciliation: " + "; ".join(result.issues))
        previous = self.set_state(TradingState.ACTIVE, reason, actor)
        self.journal.record_event("resume", {"previous": previous.value, "reason": reason, "actor": actor},
                                  self.clock())
        return {"trading_state": self.state.value, "previous": previous.value, "reason": reason, "actor": actor}

    def start_up(self) -> None:
        """Boot in the durable state. A HALTED service sweeps the account again: nothing may be left working."""
        now = self.clock()
        self._refresh_balances(now, force=True)
        self.journal.record_event("start", {"mode": self.mode.value, "state": self.state.value}, now)
        if self.mode is Mode.PAPER:
            self.record_starting_balances(now)  # LIVE records them in the pre-live audit
        result = self.reconcile_orders(now)
        if not result.ok and self.state is TradingState.ACTIVE:
            self.set_state(TradingState.REDUCING, "reconciliation: " + "; ".join(result.issues), "engine")
        if self.state is TradingState.HALTED:
            with self._send_lock:
                sweep = cancel_everything(self.client,
                                          timeout_s=float(self.settings.helios_emergency_stop_timeout_seconds))
                record_cancellations(self.journal, self.client, self.clock())
            self.active = {o.customer_order_id: o for o in self.journal.active_orders()}
            self.journal.record_event("halted_start_sweep", sweep.to_json(), self.clock())

    def shutdown(self) -> dict[str, Any]:
        """SIGTERM: stop sending, cancel resting entry orders (nobody watches them while we are down)."""
        cancelled: list[str] = []
        with self._send_lock:
            for record in list(self.active.values()):
                if record.purpose is not OrderPurpose.ENTRY or record.status is OrderStatus.UNKNOWN:
                    continue
                try:
                    self.client.cancel_order(record.pair, record.customer_order_id)
                    cancelled.append(record.customer_order_id)
                except ExchangeError as exc:
                    log.error("shutdown: cancel %s failed: %s", record.customer_order_id, exc.message)
            now = self.clock()
            record_cancellations(self.journal, self.client, now)
        detail = {"entry_orders_cancelled": cancelled, "open_positions": self.positions_json()}
        self.journal.record_event("shutdown", detail, now)
        return detail

    # ---------------------------------------------------------------------------------------------------------
    # read-only views for the API
    # ---------------------------------------------------------------------------------------------------------
    def positions_json(self) -> list[dict[str, Any]]:
        out = []
        for pair, position in sorted(self.positions.items()):
            ticker = self.tickers.get(pair)
            out.append({
                "pair": pair,
                "quantity": str(position.quantity),
                "avg_entry_price": str(position.avg_entry_price),
                "stop_loss": str(position.stop_loss),
                "take_profit": str(position.take_profit),
                "mark_price": None if ticker is None else str(ticker.bid),
                "unrealised_pnl_zar": None if ticker is None else str(round(position.unrealised(ticker.bid), 2)),
                "opened_at": position.opened_at.isoformat(),
                "exit_pending": position.exit_pending,
            })
        return out

    def heartbeat_age(self, now: datetime) -> float | None:
        return None if self.last_heartbeat is None else (now - self.last_heartbeat).total_seconds()

    def pnl_json(self) -> dict[str, Any]:
        realised_total = self.journal.realised_total()
        return {
            "currency": QUOTE,
            "today_realised_zar": str(round(self._realised_today, 2)),
            "unrealised_zar": str(round(self.unrealised_zar(), 2)),
            "today_total_zar": str(round(self.todays_pnl_zar(), 2)),
            "realised_total_zar": str(round(realised_total, 2)),
            "fees_total_zar": str(round(self.journal.fees_total(), 2)),
            "daily_loss_limit_zar": str(self.settings.max_daily_loss_zar),
            "today_starts_at": self._today_start.isoformat(),
            "cash_zar": None if self._cash_zar is None else str(self._cash_zar),
        }
