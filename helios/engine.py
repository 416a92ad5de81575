"""The trading engine: the tick recipe and the order router, on top of the order tracker (``helios.orders``), the
portfolio (``helios.portfolio``) and the durable trading state.

Trading states (durable, in the journal):

    ACTIVE   --daily loss limit-->  REDUCING   (no new entries; exits still run)
    ACTIVE | REDUCING --emergency stop-->  HALTED   (open orders cancelled; nothing new is sent)
    REDUCING | HALTED --authenticated resume-->  ACTIVE

One tick (``step``): follow the durable state -> prices -> day roll -> order/fill sync -> balances -> daily-loss
check -> balance check -> expire stale entries -> stop-loss/take-profit exits -> strategy -> heartbeat.

The router, for every order: build the intent with a fresh customerOrderId -> safety gates (pure, seeing every fill
any answer showed plus pending and lost quantity) -> journal the intent (SUBMITTING or REJECTED) -> re-read the
durable trading state under the send lock -> send -> the tracker records the answer. An answer that never arrived
makes the order UNKNOWN (lost): it is looked up by its customerOrderId, never re-sent, counts as exposure and blocks
new entries until the exchange answers about it.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections import deque
from contextlib import suppress
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from helios import gates, portfolio, promotion, report, trading_state
from helios.alerts import Alerter
from helios.config import Settings
from helios.exchange.base import ExchangeClient
from helios.exchange.errors import ExchangeError, OrderRejected, OutcomeUnknown
from helios.exchange.valr_ws import AccountEvent, Connected
from helios.journal import Journal, JournalError, OrderRecord
from helios.killswitch import Pending, cancel_everything, cancel_open_orders_once, record_cancellations
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
    PairInfo,
    Position,
    Side,
    Signal,
    Ticker,
    TradingState,
    utcnow,
)
from helios.orders import OrderTracker
from helios.protection import Protector
from helios.reconcile import (
    STARTING_BALANCES_KEY,
    ReconcileResult,
    capital_baseline,
    compare_balances,
    decode_balances,
    encode_balances,
    implied_balances,
    unknown_open_orders,
)
from helios.redflags import RedFlagLatch, act_on_red_flags, evaluate_red_flags
from helios.shadow import ShadowBook, ShadowTee
from helios.strategy import Strategy, StrategyContext

log = logging.getLogger("helios.engine")

JOHANNESBURG = ZoneInfo("Africa/Johannesburg")
QUOTE = "ZAR"
FILL_OVERLAP = timedelta(minutes=5)
BALANCE_REFRESH = timedelta(seconds=10)
#: A trading-state write waits this long for another process' journal write lock (a stop then retries later).
STATE_WRITE_BUSY_TIMEOUT_S = 0.25
#: An emergency stop's first journal attempt waits only this long; it then answers and retries in the background.
STOP_JOURNAL_FIRST_WAIT_S = 0.05
DAY_BASELINE_KEY = "day_baseline"
#: A failing exit is retried after 5 s, 10 s, 20 s, ... at most every 5 minutes.
EXIT_BACKOFF_BASE = timedelta(seconds=5)
EXIT_BACKOFF_MAX = timedelta(minutes=5)
#: Equity snapshots and the red-flag evaluation run about once a minute (red flags also at once when an input moves).
ROLLOUT_PERIOD = timedelta(minutes=1)
#: How often a LIVE engine re-checks the account guards (margin, futures, borrowed amounts).
ACCOUNT_GUARD_INTERVAL = timedelta(minutes=5)


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
        self.state, self._state_version = journal.read_state_version()
        self._halt_latch = False  # set by emergency_stop before it cancels: HALTED in memory even if not journaled
        self._halt_epoch = self._resume_epoch = 0  # a resume refuses when a stop arrived while it ran
        self._closing = False
        self.halt_journal_retry: threading.Thread | None = None  # retries a HALTED the journal refused
        self.orders = OrderTracker(journal)  # the one owner of order states
        self.positions: dict[str, Position] = journal.positions()  # built from fills by helios.portfolio
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
        self._day_baseline = self._stored_day_baseline(self._today_start) or Decimal(0)
        self._day_rolled = False
        self._pair_rules: dict[str, tuple[PairInfo, Decimal]] = {}
        self._exit_backoff: dict[str, tuple[int, datetime]] = {}
        self._dust_reported: set[str] = {str(e["detail"].get("key")) for e in journal.events("dust", limit=1000)}
        self.rejection_counts: dict[str, int] = journal.rejection_counts()
        self.reconciliation: ReconcileResult = ReconcileResult(ok=False, issues=["not reconciled yet"])
        self.balance_check: ReconcileResult | None = None
        self._balance_checked_at: datetime | None = None
        self._balance_mismatches = 0
        self.protection = Protector(self)
        self._guards_checked_at: datetime | None = None
        self.account_events: queue.SimpleQueue[AccountEvent | None] = queue.SimpleQueue()  # None: reconnected
        self.stream_fills_applied = 0

    @property
    def active(self) -> dict[str, OrderRecord]:
        """Orders that may still work on the exchange (the tracker's view)."""
        return self.orders.active

    @active.setter
    def active(self, _orders: dict[str, OrderRecord]) -> None:
        # Callers assign the journal's active orders after a cancel sweep: the tracker re-reads the journal.
        self.orders.reload()

    @property
    def unknown_fills(self) -> int:
        """Fills on the account that are not ours and that the operator has not classified yet (by trade id)."""
        return self.journal.unclassified_foreign_fills()

    # ---------------------------------------------------------------------------------------------------------
    # one tick
    # ---------------------------------------------------------------------------------------------------------
    def step(self) -> None:
        now = self.clock()
        self._follow_durable_state()
        self._sweep_if_halted()
        self._poll_prices()
        self._roll_day(now)
        self._drain_account_stream(now)  # LIVE: order/fill events from VALR's account WebSocket first
        self._sync_orders(now)
        self._refresh_balances(now)
        self._check_daily_loss(now)
        self._periodic_balance_check(now)
        self._check_account_guards(now)  # LIVE: margin/futures off, nothing borrowed, else HALT
        self._act_on_red_flags(now)  # rollout: the plan's red flags halt (or reduce) and alert
        self._expire_entries(now)
        self.protection.sync(now)  # exchange-held stop-loss in step with each position (LIVE)
        self._check_exits(now)
        self._feed_shadow()  # rollout: the paper shadow gets this tick's prices and the strategy's signals
        self._run_strategy()
        self.journal.touch(now)  # raises if the journal is not writable: no heartbeat then
        self._record_rollout_facts(now)  # rollout: heartbeat history, marked equity about once a minute
        self.last_heartbeat = now

    def _follow_durable_state(self) -> None:
        """Another process (``helios emergency-stop --direct``) may have changed the journal's state."""
        durable, version = self.journal.read_state_version()
        with self._state_lock:
            before = self.state
            self._adopt(durable, version)
            after = self.state
        if after is not before:
            log.warning("trading state changed outside this process: now %s", after.value)


    def _roll_day(self, now: datetime) -> None:
        """At the first tick of a Johannesburg day, record each position's mark: today's P&L starts there."""
        start = day_start(now)
        if start == self._today_start and self._day_rolled:
            return
        stored = self._stored_day_baseline(start)
        if stored is None:
            marks = {pair: t.bid for pair, t in self.tickers.items()}
            stored = portfolio.day_baseline(self.positions, marks)
            detail = {"day": start.isoformat(), "unrealised_zar": str(stored),
                      "marks": {p: str(marks[p]) for p in self.positions if p in marks}}
            self.journal.set_meta(DAY_BASELINE_KEY, json.dumps(detail, sort_keys=True))
            self.journal.record_event("day_start", detail, now)
        self._today_start = start
        self._day_baseline = stored
        self._realised_today = self.journal.realised_since(start)
        self._day_rolled = True

    def _stored_day_baseline(self, start: datetime) -> Decimal | None:
        raw = self.journal.get_meta(DAY_BASELINE_KEY)
        if raw is None:
            return None
        stored = json.loads(raw)
        return Decimal(stored["unrealised_zar"]) if stored.get("day") == start.isoformat() else None

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
            applied = self._apply_fill(fill, now) or applied
        if applied:
            self._refresh_balances(now, force=True)
        active = {cid: r for cid, r in self.orders.active.items() if not self.orders.is_sending(cid)}
        if not active:
            return
        try:
            open_now = {o.customer_order_id: o for o in self.client.open_orders() if o.customer_order_id}
        except ExchangeError as exc:
            self.last_error = f"open orders: {exc.message}"
            return
        for cid, record in active.items():
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
            self.orders.on_answer(cid, replace(eo, customer_order_id=cid), now)

    def on_account_event(self, event: AccountEvent) -> None:
        """Called from the account WebSocket's thread: queued, applied by the next tick (one thread owns state)."""
        self.account_events.put(event)

    def on_account_reconnect(self, connected: Connected) -> None:
        """After every (re)connection the tick runs a REST reconciliation that closes the gap."""
        self.account_events.put(None)

    def _drain_account_stream(self, now: datetime) -> None:
        """Apply the account stream's events: fills (de-duplicated by trade id with REST: the journal is the one
        record) and order status updates. A fill whose message carried no fee waits for REST. After a reconnect
        the REST sync that follows in this tick (trade history since the cursor, every live order by id) is the
        reconciliation; REST keeps polling as the safety net."""
        reconnected = False
        with self._sync_lock:
            while True:
                try:
                    event = self.account_events.get_nowait()
                except queue.Empty:
                    break
                if event is None:
                    reconnected = True
                elif event.fill is not None:
                    fresh = event.fee_known and not self.journal.has_fill(event.fill.trade_id)
                    if fresh and self._apply_fill(event.fill, now):
                        self.stream_fills_applied += 1
                elif event.order is not None and event.order.customer_order_id:
                    cid = event.order.customer_order_id
                    if cid in self.orders.active and not self.orders.is_sending(cid):
                        self.orders.on_answer(cid, event.order, now)
        if reconnected:
            self.journal.record_event("account_stream_connected", {"reconcile": "rest"}, now)
            self.reconcile_orders(now)

    def _order_not_on_exchange(self, record: OrderRecord, now: datetime) -> None:
        """The exchange has no order by this id (yet). Its outcome is unknown: it stays lost, never FAILED."""
        if record.status is OrderStatus.UNKNOWN:
            return
        why = ("not found by customerOrderId: it may still land" if record.status is OrderStatus.SUBMITTING
               else "the exchange no longer knows this order")
        self.orders.mark_lost(record.customer_order_id, why, now)
        self.journal.record_event("order_lost", {"customer_order_id": record.customer_order_id, "why": why}, now)

    def _apply_fill(self, fill: Fill, now: datetime) -> bool:
        """Apply one trade-history fill once (by trade id); returns whether it changed the portfolio."""
        record = None
        if fill.customer_order_id:
            record = self.journal.get_order(fill.customer_order_id)
        if record is None and fill.order_id:
            record = self.journal.find_order_by_exchange_id(fill.order_id)
        if record is None:
            # Not ours (manual trade, another bot, history from before go-live): never touch positions; flag it
            # once per trade id until the operator classifies it.
            if self.journal.record_foreign_fill(fill, now):
                self.journal.record_event("unknown_fill", {"trade_id": fill.trade_id, "pair": fill.pair,
                                                           "side": fill.side.value,
                                                           "quantity": str(fill.quantity)}, now)
            return False
        effect = portfolio.apply_fill(
            self.positions.get(fill.pair), fill, stop_loss=record.stop_loss, take_profit=record.take_profit,
            exit_quantity=record.quantity,
        )
        closed: dict[str, Any] | None = None
        if effect.closed is not None:
            earlier_realised, earlier_fees = self.journal.pair_fill_totals(fill.pair, effect.closed.opened_at)
            closed = {
                "pair": fill.pair, "quantity": effect.closed.quantity, "entry_price": effect.closed.entry_price,
                "exit_price": effect.closed.exit_price, "fees_zar": earlier_fees + effect.fee_zar,
                "realised_pnl_zar": earlier_realised + effect.realised_zar,
                "exit_reason": record.reason or "exit", "opened_at": effect.closed.opened_at,
                "closed_at": effect.closed.closed_at,
            }
        stored = self.journal.record_fill(
            fill, customer_order_id=record.customer_order_id, fee_zar=effect.fee_zar,
            realised_pnl_zar=effect.realised_zar, position=effect.position, position_pair=fill.pair,
            closed_trade=closed, now=now,
        )
        if not stored:
            return False
        if effect.position is None:
            self.positions.pop(fill.pair, None)
        else:
            self.positions[fill.pair] = effect.position
        self.orders.fill_applied(record.customer_order_id, fill.quantity)
        self._cash_follows_fill(fill)
        if fill.traded_at >= self._today_start:
            self._realised_today += effect.realised_zar
        log.info("fill", extra={"fill": {"pair": fill.pair, "side": fill.side.value, "price": str(fill.price),
                                         "quantity": str(fill.quantity), "realised_zar": str(effect.realised_zar)}})
        if closed is not None:
            log.info("position closed", extra={"trade": {k: str(v) for k, v in closed.items()}})
            if self.mode is Mode.LIVE:
                self.alerter.send("info", f"LIVE position closed: {fill.pair} ({closed['exit_reason']})",
                                  {"realised_pnl_zar": str(closed["realised_pnl_zar"])})
        return True

    def _cash_follows_fill(self, fill: Fill) -> None:
        """Move the cached ZAR cash by the fill's ZAR flow (and a fee paid in ZAR) until the next balance read
        replaces it: a failed read must never leave equity = the old cash + the position that cash bought."""
        if self._cash_zar is None or not fill.pair.endswith(QUOTE):
            return
        value = fill.quantity * fill.price
        fee = fill.fee if fill.fee_currency == QUOTE else Decimal(0)
        self._cash_zar += -value - fee if fill.side is Side.BUY else value - fee

    def _check_account_guards(self, now: datetime) -> None:
        """LIVE (VALR): every ACCOUNT_GUARD_INTERVAL, margin and futures must be disabled and nothing borrowed; a
        violation HALTs trading through the trading state (the emergency stop), with a critical alert."""
        guards = getattr(self.client, "account_guards", None)
        if guards is None or self.mode is not Mode.LIVE:
            return
        if self._guards_checked_at is not None and now - self._guards_checked_at < ACCOUNT_GUARD_INTERVAL:
            return
        self._guards_checked_at = now
        try:
            problems: list[str] = guards()
        except ExchangeError as exc:
            self.last_error = f"account guards: {exc.message}"
            return
        if not problems or self.state is TradingState.HALTED:
            return
        self.journal.record_event("account_guard", {"problems": problems}, now)
        self.alerter.send("critical", "Account guard failed: halting", {"problems": problems})
        self.emergency_stop("account guard: " + "; ".join(problems), "engine")

    # ---------------------------------------------------------------------------------------------------------
    # risk checks that act
    # ---------------------------------------------------------------------------------------------------------
    def _marks(self) -> dict[str, Decimal]:
        return {pair: t.bid for pair, t in self.tickers.items()}

    def unrealised_zar(self) -> Decimal:
        return portfolio.unrealised(self.positions, self._marks())

    def todays_pnl_zar(self) -> Decimal:
        """Since midnight in Johannesburg: positions held then count from their mark then (not their entry)."""
        return portfolio.todays_pnl(self._realised_today, self.positions, self._marks(), self._day_baseline)

    def todays_loss_zar(self) -> Decimal:
        return max(Decimal(0), -self.todays_pnl_zar())

    def _check_daily_loss(self, now: datetime) -> None:
        loss = self.todays_loss_zar()
        if loss >= self.settings.max_daily_loss_zar and self.state is TradingState.ACTIVE:
            with suppress(trading_state.TransitionRefused):  # compare-and-set: a HALT written meanwhile wins
                self.set_state(TradingState.REDUCING, f"daily loss R{loss:.2f} reached "
                               f"MAX_DAILY_LOSS_ZAR=R{self.settings.max_daily_loss_zar}", "engine")

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

    def pair_rules(self, pair: str) -> tuple[PairInfo, Decimal] | None:
        """The pair's trading rules and the fraction of a BUY the exchange may take as a fee (cached)."""
        if pair not in self._pair_rules:
            try:
                info = self.client.pair_info(pair)
                fee = self.client.fee_rates(pair)
            except ExchangeError as exc:
                self.last_error = f"pair rules {pair}: {exc.message}"
                return None
            self._pair_rules[pair] = (info, max(fee.maker_pct, fee.taker_pct) / 100)
        return self._pair_rules[pair]

    def _sellable(self, pair: str, quantity: Decimal) -> tuple[Decimal, bool]:
        """``quantity`` rounded down to the pair's step, and whether that can be sold (>= the pair's minimum)."""
        rules = self.pair_rules(pair)
        if rules is None:
            return quantity, True  # unknown rules: the exchange client still checks them before sending
        info = rules[0]
        rounded = portfolio.round_down(quantity, Decimal(1).scaleb(-info.base_decimal_places))
        return rounded, rounded >= info.min_base_amount and rounded > 0

    def is_dust(self, pair: str) -> bool:
        position = self.positions.get(pair)
        return position is not None and not self._sellable(pair, position.quantity)[1]

    def _check_exits(self, now: datetime) -> None:
        for pair, position in list(self.positions.items()):
            ticker = self.tickers.get(pair)
            if ticker is None or self.orders.exit_in_flight(pair):
                continue
            if ticker.bid <= position.stop_loss:
                reason = "stop_loss"
            elif position.take_profit > 0 and ticker.bid >= position.take_profit:
                reason = "take_profit"
            else:
                continue
            backoff = self._exit_backoff.get(pair)
            if backoff is not None and now < backoff[1]:
                continue
            quantity, sellable = self._sellable(pair, position.quantity)
            if not sellable:
                self._report_dust(pair, position, now)
                continue
            record = self.submit_order(
                pair=pair, side=Side.SELL, order_type=OrderType.MARKET, quantity=quantity, price=None,
                purpose=OrderPurpose.EXIT, reason=reason,
            )
            if record.status is OrderStatus.FAILED:  # refused by the exchange or its pair rules: back off
                self._exit_failed(pair, record, now)
            elif record.status is not OrderStatus.REJECTED:
                self._exit_backoff.pop(pair, None)

    def _report_dust(self, pair: str, position: Position, now: datetime) -> None:
        """A remainder below the pair's minimum cannot be sold: report it once, never retry it every tick."""
        key = f"{pair}:{position.quantity}"
        if key in self._dust_reported:
            return
        self._dust_reported.add(key)
        detail = {"key": key, "pair": pair, "quantity": str(position.quantity)}
        self.journal.record_event("dust", detail, now)
        self.alerter.send("critical", f"Helios {self.mode.value}: {pair} position {position.quantity} is below "
                                      "the pair's minimum and cannot be sold (dust)", detail)

    def _exit_failed(self, pair: str, record: OrderRecord, now: datetime) -> None:
        failures = self._exit_backoff.get(pair, (0, now))[0] + 1
        delay = min(EXIT_BACKOFF_MAX, EXIT_BACKOFF_BASE * 2 ** (failures - 1))
        self._exit_backoff[pair] = (failures, now + delay)
        detail = {"pair": pair, "customer_order_id": record.customer_order_id, "error": record.error,
                  "failures": failures, "next_attempt_in_s": delay.total_seconds()}
        self.journal.record_event("exit_failed", detail, now)
        if failures == 1:
            self.alerter.send("critical", f"Helios {self.mode.value}: {pair} exit failed; retrying with backoff",
                              detail)

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
        """Exposure = positions (applied fills) + every fill an answer showed but the trade history has not
        delivered yet + the pending quantity of live and lost entries."""
        ticker = self.tickers.get(pair)
        position = self.positions.get(pair)
        exposure = Decimal(0) if position is None else position.quantity * position.avg_entry_price
        risk = sum((p.risk_zar() for p in self.positions.values()), Decimal(0))
        entries, entry_risk = self.orders.entry_exposure()
        exposure += entries.get(pair, Decimal(0))
        risk += entry_risk
        exposed_pairs = {p for p in self.positions if not self.is_dust(p)} | set(entries)
        while self._sent_times and now - self._sent_times[0] > timedelta(minutes=1):
            self._sent_times.popleft()
        equity = (self._cash_zar if self._cash_zar is not None else Decimal(0))
        for pair_, position_ in self.positions.items():
            mark = self.tickers.get(pair_)
            equity += position_.quantity * (mark.bid if mark else position_.avg_entry_price)
        rules = self.pair_rules(pair)
        min_entry = Decimal(0)
        if rules is not None:  # the smallest entry whose remainder after a BUY fee in the coin can be sold
            step = Decimal(1).scaleb(-rules[0].base_decimal_places)
            min_entry = portfolio.round_up(rules[0].min_base_amount / (1 - rules[1]), step)
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
            unresolved_orders=self.orders.unresolved(),
            min_entry_quantity=min_entry,
            **self._capital_stage_context(),  # rollout: the capital stage gate's facts
        )

    def submit_signal(self, signal: Signal) -> OrderRecord:
        """A strategy's entry: a limit (or market) BUY carrying its stop-loss and take-profit, rounded down to the
        pair's quantity step."""
        quantity = signal.quantity
        rules = self.pair_rules(signal.pair)
        if rules is not None:
            quantity = portfolio.round_down(quantity, Decimal(1).scaleb(-rules[0].base_decimal_places))
        return self.submit_order(
            pair=signal.pair, side=signal.side,
            order_type=OrderType.LIMIT if signal.limit_price is not None else OrderType.MARKET,
            quantity=quantity, price=signal.limit_price, purpose=OrderPurpose.ENTRY,
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
            self._follow_durable_state()  # another process (a --direct stop) may have halted us
            with self._state_lock:  # an emergency stop sets HALTED under this lock before it cancels anything
                late = gates.trading_state(proposed, replace(context, trading_state=self.state))
                if late is None:
                    self.orders.sending(record)  # visible to the stop's pending list from here on
            if late is not None:
                self.journal.update_order(record.customer_order_id, status=OrderStatus.REJECTED, now=now,
                                          error=f"{late.gate}: {late.detail}")
                return self._rejected(replace(record, status=OrderStatus.REJECTED), late, journaled=False)
            self._sent_times.append(now)
            try:
                return self._send(record)
            finally:
                self.orders.sent(record.customer_order_id)

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
        cid = record.customer_order_id
        try:
            eo = self.client.place_order(request)
        except OrderRejected as exc:
            result = self.orders.not_placed(cid, f"exchange refused: {exc.code} {exc.message}", self.clock())
        except OutcomeUnknown as exc:
            result = self._mark_unknown(record, f"no answer: {exc.message}")
        except ExchangeError as exc:
            # Raised before the request could be accepted (connection refused, rate limited, auth).
            result = self.orders.not_placed(cid, f"not sent: {type(exc).__name__}: {exc.message}", self.clock())
        except Exception as exc:  # a bug must not leave an order untracked: treat the outcome as unknown
            log.exception("unexpected error placing %s", cid)
            result = self._mark_unknown(record, f"unexpected {type(exc).__name__}")
        else:
            # Whatever the answer shows filled counts as exposure from now on (before the trade history has it).
            result = self.orders.on_answer(cid, replace(eo, customer_order_id=cid), self.clock())
        if live:
            log.warning("LIVE ORDER RESULT", extra={"order": {**summary, "status": result.status.value}})
            self.alerter.send("info", f"LIVE order {result.status.value}: {record.side.value} {record.pair}",
                              summary)
        return result

    def _mark_unknown(self, record: OrderRecord, why: str) -> OrderRecord:
        now = self.clock()
        cid = record.customer_order_id
        unknown = self.orders.mark_lost(cid, why, now)
        self.journal.record_event("order_unknown", {"customer_order_id": cid, "why": why}, now)
        try:  # resolve at once by customerOrderId; never re-send
            eo = self.client.get_order(record.pair, cid)
        except ExchangeError:
            return unknown
        if eo is None:
            return unknown
        return self.orders.on_answer(cid, replace(eo, customer_order_id=cid), now)

    # ---------------------------------------------------------------------------------------------------------
    # reconciliation with the exchange
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
        unresolved = [o.customer_order_id for o in self.orders.lost()]
        if unresolved:
            result.ok = False
            result.issues.append(f"{len(unresolved)} order(s) with unknown outcome: {', '.join(unresolved[:5])}")
        foreign = self.unknown_fills
        if foreign:
            result.ok = False
            result.issues.append(f"{foreign} fill(s) on the account that the journal does not know (classify them: "
                                 "helios capital classify-history)")
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
            since = capital_baseline(self.journal)
            implied = implied_balances(decode_balances(recorded), self.journal.fills_since(since),
                                       self.journal.capital_flows(since))
            result = compare_balances(implied, actual, prices, self.settings.helios_balance_tolerance_zar)
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
        self.journal.record_baseline(encode_balances(balances), now)
        self.journal.record_event("starting_balances", {b.currency: str(b.total) for b in balances}, now)
        return {b.currency: str(b.total) for b in balances}

    # ---------------------------------------------------------------------------------------------------------
    # state machine
    # ---------------------------------------------------------------------------------------------------------
    def set_state(self, state: TradingState, reason: str, actor: str, *,
                  resume: trading_state.Resume | None = None) -> TradingState:
        """Every state write of this process, through ``trading_state.transition`` (compare-and-set, durable at
        return). Returns the previous state; raises ``TransitionRefused`` (then the engine follows the durable
        state it found)."""
        try:
            done = trading_state.transition(self.journal, state, reason=reason, actor=actor, now=self.clock(),
                                            resume=resume, busy_timeout_s=STATE_WRITE_BUSY_TIMEOUT_S)
        except trading_state.TransitionRefused as exc:
            if exc.current is not None:
                with self._state_lock:
                    self._adopt(exc.current, self._state_version)
            raise
        with self._state_lock:
            if resume is not None and state is TradingState.ACTIVE:
                if self._halt_epoch != self._resume_epoch:
                    # An emergency stop arrived in memory after the CAS read: it wins; its journal write follows.
                    raise trading_state.TransitionRefused(
                        trading_state.STATE_CHANGED, "an emergency stop arrived while the resume was committing",
                        TradingState.HALTED)
                self._halt_latch = False
            self._adopt(state, done.version)
        if done.changed:
            level = "critical" if state is TradingState.HALTED else "warning"
            log.warning("trading state %s -> %s", done.previous.value, state.value,
                        extra={"reason": reason, "actor": actor})
            self.alerter.send(level, f"Helios {self.mode.value} trading state {done.previous.value} -> {state.value}",
                              {"reason": reason, "actor": actor})
        return done.previous

    def _adopt(self, durable: TradingState, version: int) -> None:
        """Follow the durable state (caller holds ``_state_lock``). A halt not journaled yet keeps HALTED."""
        if version < self._state_version:
            return  # an older write finishing late
        self._state_version = version
        self.state = TradingState.HALTED if self._halt_latch else durable

    def _pending_orders(self) -> list[Pending]:
        """Our orders whose fate the exchange has not told us (the stop never confirms zero while one exists)."""
        return [(o.pair, o.customer_order_id) for o in list(self.active.values())
                if o.status in (OrderStatus.SUBMITTING, OrderStatus.UNKNOWN)]

    def _sweep_if_halted(self) -> None:
        """While HALTED every tick cancels whatever is open on the exchange (an order that landed late)."""
        if self.state is not TradingState.HALTED:
            return
        asked = cancel_open_orders_once(self.client)
        if asked:
            log.warning("HALTED: cancelled %d order(s) found open on the exchange", len(asked),
                        extra={"orders": asked})

    def emergency_stop(self, reason: str, actor: str, *, cancel_protective: bool = False) -> dict[str, Any]:
        """Block sending (in memory), cancel every open order that could add exposure and confirm zero by re-query,
        then journal HALTED. Protective exits held on the exchange stay (listed in ``protective_exits_left``)
        unless ``cancel_protective``.

        The journal never delays the cancels: a locked, full or corrupt journal is reported
        (``journal_recorded: false`` and why) and retried in the background with a critical alert. The wall time is
        bounded by HELIOS_EMERGENCY_STOP_TIMEOUT_SECONDS plus one request's slack.
        """
        started = time.monotonic()
        timeout = float(self.settings.helios_emergency_stop_timeout_seconds)
        with self._state_lock:  # 1. the router checks this under the same lock before it registers a send
            previous = self.state
            self._halt_latch = True
            self._halt_epoch += 1
            self.state = TradingState.HALTED
        sweep = cancel_everything(self.client, timeout_s=timeout, pending=self._pending_orders,  # 2. cancel
                                  cancel_protective=cancel_protective)
        now = self.clock()
        report: dict[str, Any] = {
            "trading_state": TradingState.HALTED.value,
            "previous": previous.value,
            "mode": self.mode.value,
            **sweep.to_json(),
            "open_positions": self.positions_json(),
            "reason": reason,
            "actor": actor,
            "at": now.isoformat(),
        }
        error = self._journal_halt(reason, actor, report)  # 3. journal (one short attempt, then in background)
        report["journal_recorded"] = error is None
        report["journal_error"] = error
        report["total_ms"] = round((time.monotonic() - started) * 1000, 1)
        if not sweep.confirmed:
            self.alerter.send("critical", "EMERGENCY STOP could not confirm zero open orders", report)
        return report

    def _journal_halt(self, reason: str, actor: str, report: dict[str, Any]) -> str | None:
        """Write HALTED and the stop's event; on failure retry in the background. Returns why it failed, or None."""
        def attempt(busy_timeout_s: float) -> None:
            trading_state.transition(self.journal, TradingState.HALTED, reason=reason, actor=actor,
                                     now=self.clock(), busy_timeout_s=busy_timeout_s)
            self.journal.record_event("emergency_stop", report, self.clock())

        try:
            attempt(STOP_JOURNAL_FIRST_WAIT_S)
        except Exception as exc:
            why = str(exc) if isinstance(exc, trading_state.TransitionRefused) else f"{type(exc).__name__}: {exc}"
        else:
            with self._state_lock:
                self._adopt(TradingState.HALTED, self.journal.read_state_version()[1])
            self.alerter.send("critical", f"Helios {self.mode.value} trading state {report['previous']} -> HALTED",
                              {"reason": reason, "actor": actor})
            return None
        log.critical("emergency stop: HALTED is not journaled yet (%s); retrying", why)
        self.alerter.send("critical", "EMERGENCY STOP: cancelled, but the journal cannot be written; retrying",
                          {"error": why, "reason": reason, "actor": actor})
        epoch = self._halt_epoch

        def retry() -> None:
            wait = 0.2
            while self._halt_latch and self._halt_epoch == epoch and not self._closing:
                time.sleep(wait)
                try:
                    attempt(STATE_WRITE_BUSY_TIMEOUT_S)
                except Exception as exc:
                    log.error("emergency stop: journal still unavailable: %s", exc)
                    wait = min(wait * 2, 1.0)
                    continue
                log.warning("emergency stop: HALTED journaled after retry")
                return

        self.halt_journal_retry = threading.Thread(target=retry, name="halt-journal-retry", daemon=True)
        self.halt_journal_retry.start()
        return why

    def resume(self, reason: str, actor: str) -> dict[str, Any]:
        """Authenticated resume (the caller checked the token): reconcile, then compare-and-set ACTIVE against the
        version seen before reconciling. A stop that arrived meanwhile wins (``TransitionRefused``)."""
        if not reason.strip():
            raise ValueError("a resume needs a reason")
        with self._state_lock:
            self._resume_epoch = self._halt_epoch
        seen = trading_state.read(self.journal)
        result = self.reconcile_orders(self.clock())
        if not result.ok:
            raise ResumeRefused("reconciliation: " + "; ".join(result.issues))
        with self._state_lock:
            if self._halt_epoch != self._resume_epoch:
                raise trading_state.TransitionRefused(
                    trading_state.STATE_CHANGED, "an emergency stop arrived while the resume was reconciling",
                    TradingState.HALTED)
        previous = self.set_state(TradingState.ACTIVE, reason, actor,
                                  resume=trading_state.Resume(actor=actor, seen_version=seen.version))
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
            with suppress(trading_state.TransitionRefused):  # a stop got there first: it wins
                self.set_state(TradingState.REDUCING, "reconciliation: " + "; ".join(result.issues), "engine")
        if self.state is TradingState.HALTED:
            sweep = cancel_everything(self.client, pending=self._pending_orders,
                                      timeout_s=float(self.settings.helios_emergency_stop_timeout_seconds))
            record_cancellations(self.journal, self.client, self.clock())
            self.active = {o.customer_order_id: o for o in self.journal.active_orders()}
            self.journal.record_event("halted_start_sweep", sweep.to_json(), self.clock())

    def shutdown(self) -> dict[str, Any]:
        """SIGTERM: stop sending, cancel resting entry orders (nobody watches them while we are down)."""
        self._closing = True  # ends a background HALTED-journal retry
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
    # rollout discipline (issue 12): heartbeat history, marked equity, clean balance checks, red flags that act
    # ---------------------------------------------------------------------------------------------------------
    _equity_recorded_at: datetime | None = None
    _equity_fill_cursor: datetime | None = None
    _red_flags_at: datetime | None = None
    _red_flag_inputs: tuple[object, ...] | None = None
    _balance_check_seen: ReconcileResult | None = None

    def _record_rollout_facts(self, now: datetime) -> None:
        """Each tick: this minute had a heartbeat (reliability). About once a minute, and on the tick after a
        fill: one marked-equity point (capital at go-live + realised + unrealised P&L, net of fees). After a clean
        balance reconciliation: a ``balance_check`` event (reports and the ramp count clean checks)."""
        self.journal.record_heartbeat(now)
        check = self.balance_check
        if check is not None and check is not self._balance_check_seen:
            self._balance_check_seen = check
            if check.ok:
                self.journal.record_event("balance_check", check.to_json(), now)
        if (self._equity_recorded_at is not None and now - self._equity_recorded_at < ROLLOUT_PERIOD
                and self._fill_cursor == self._equity_fill_cursor):
            return  # at most once a minute, and at once after a fill (a loss inside a minute still shows)
        capital = report.starting_capital(self.journal, self.settings.helios_paper_starting_zar)
        self.journal.record_equity(now, capital, self.journal.realised_total() + self.unrealised_zar())
        self._equity_recorded_at, self._equity_fill_cursor = now, self._fill_cursor

    def current_capital_stage(self) -> Decimal | None:
        """The stage in force: the last one ``helios ramp`` recorded; in LIVE without one, the first configured
        stage (HELIOS_CAPITAL_STAGES_ZAR, R1,000 by default); in PAPER without one, none."""
        recorded = self.journal.capital_stages()
        if recorded:
            return recorded[-1][0]
        return self.settings.capital_stages[0] if self.mode is Mode.LIVE else None

    def _capital_stage_context(self) -> dict[str, Any]:
        limit = self.current_capital_stage()
        marks = self._marks()
        positions = tuple((p.quantity, marks.get(pair, p.avg_entry_price)) for pair, p in self.positions.items())
        entries, _ = self.orders.entry_exposure()  # ZAR per pair: as (1, ZAR) pairs
        return {"stage_applies": limit is not None, "stage_limit_zar": limit, "positions_at_market": positions,
                "pending_entries": tuple((Decimal(1), zar) for zar in entries.values())}

    shadow: ShadowBook | None = None  # the paper shadow beside LIVE (attached by the service)

    def _feed_shadow(self) -> None:
        """The shadow sees the prices the engine saw this tick; the strategy's signals reach it through a tee."""
        if self.shadow is None:
            return
        if not isinstance(self.strategy, ShadowTee):
            self.strategy = ShadowTee(self.strategy, self.shadow)
        try:
            self.shadow.tick(self.tickers)
        except Exception:  # the shadow never stops the real book
            log.exception("shadow: tick failed")

    def red_flags_apply(self) -> bool:
        """LIVE always; PAPER only as a rehearsal (HELIOS_REDFLAG_PAPER=true)."""
        return self.mode is Mode.LIVE or self.settings.red_flags_in_paper

    def _act_on_red_flags(self, now: datetime) -> None:
        """The plan's red flags: evaluated about once a minute, and at once on the tick where one of their inputs
        changed (a fill, an order sent, a lost order, a balance check, a reconciliation, the daily loss reaching
        its limit): a flag acts before the tick's strategy can send anything more. Each
        newly fired flag is journaled (event ``red_flag``), alerted (critical) and acted on: HALT through the
        emergency stop (orders cancelled, HALTED journaled), REDUCE through the trading state's one writer.

        Which flags already acted is read from the journal (``red_flag`` events since the last resume), so a
        restart does not act twice and a resume lets a flag act again."""
        if not self.red_flags_apply():
            return
        inputs: tuple[object, ...] = (self._fill_cursor, len(self.orders.lost()), self._balance_mismatches,
                                      id(self.reconciliation), id(self.balance_check),
                                      self._sent_times[-1] if self._sent_times else None,
                                      self.todays_loss_zar() >= self.settings.max_daily_loss_zar)
        if (self._red_flags_at is not None and now - self._red_flags_at < ROLLOUT_PERIOD
                and inputs == self._red_flag_inputs):
            return
        self._red_flags_at, self._red_flag_inputs = now, inputs
        until = now + timedelta(microseconds=1)  # the window includes what this tick journaled at ``now``
        window = report.window_ending("week", until)
        try:
            facts = report.red_flag_facts(self.journal, window)  # restarts: unclean starts in the journal
            latched = {str(e["detail"].get("name")) for e in self.journal.events_between(
                ("red_flag",), report.since_last_resume(self.journal, window), until)}
        except (JournalError, sqlite3.Error):
            raise  # the journal itself: the tick fails and health reports it
        except Exception as exc:  # a bug in the evaluation must not stop exits; it is loud, retried each minute
            log.exception("red flags: evaluation failed")
            self.last_error = f"red flags: {type(exc).__name__}: {exc}"
            self.alerter.send("critical", "Red-flag evaluation failed (retried every minute)",
                              {"error": self.last_error})
            return
        # today's loss is the engine's own (the daily-loss gate's number), not one re-derived from snapshots
        facts = replace(facts, todays_loss_zar=self.todays_loss_zar())
        new = RedFlagLatch(latched).update(evaluate_red_flags(facts, report.redflag_config(self.settings)))
        for flag in new:
            self.journal.record_event("red_flag", flag.to_json(), now)
            log.critical("red flag %s: %s -> %s", flag.name, flag.reason, flag.action.value)
        act_on_red_flags(new, halt=self._red_flag_halt, reduce=self._red_flag_reduce, alert=self.alerter.send)

    def _red_flag_halt(self, reason: str) -> None:
        if self.state is not TradingState.HALTED:
            self.emergency_stop(reason, "red-flag")

    def _red_flag_reduce(self, reason: str) -> None:
        if self.state is TradingState.ACTIVE:
            with suppress(trading_state.TransitionRefused):  # a stop written meanwhile wins
                self.set_state(TradingState.REDUCING, reason, "red-flag")

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
                "exit_pending": self.protection.software_exit_pending(pair),
                "protected_on_exchange": self.protection.protected(pair),
                "dust": self.is_dust(pair),
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
            "today_start_unrealised_zar": str(round(self._day_baseline, 2)),
            "realised_total_zar": str(round(realised_total, 2)),
            "fees_total_zar": str(round(self.journal.fees_total(), 2)),
            "daily_loss_limit_zar": str(self.settings.max_daily_loss_zar),
            "today_starts_at": self._today_start.isoformat(),
            "cash_zar": None if self._cash_zar is None else str(self._cash_zar),
        }
