"""The trading engine: the tick recipe (``step``) and the order router, on top of the trading state's one writer
(``helios.trading_state``), the order tracker (``helios.orders``) and the portfolio (``helios.portfolio``).

Each part of the tick has one owner module; the engine holds the state they share and calls them in order:

* ``helios.control``       the trading state as this process sees it: set_state (through ``trading_state.transition``),
                           following the durable state, the emergency stop, the while-HALTED sweep, resume,
                           start-up and shutdown (cancels through ``helios.killswitch``);
* ``helios.sync``          orders, fills (REST and the account WebSocket), balances, reconciliation, account guards;
* ``helios.daily_loss``    the Johannesburg day's baseline, today's P&L and the daily loss limit;
* ``helios.exits``         stop-loss/take-profit exits, dust, pair rules, stale entries;
* ``helios.protection``    stop-loss orders held on the exchange (LIVE);
* ``helios.rollout_hooks`` heartbeat history, marked equity, the capital stage, the paper shadow, red flags that act;
* ``helios.views``         read-only views for the API.

Trading states (durable, in the journal; transitions in ``helios.trading_state``): ACTIVE, REDUCING (no new
entries; exits still run), HALTED (open orders cancelled; nothing new is sent; only a resume leaves it).

The router, for every order: build the intent with a fresh customerOrderId -> safety gates (pure, seeing every fill
any answer showed plus pending and lost quantity) -> journal the intent (SUBMITTING or REJECTED) -> re-read the
durable trading state under the send lock -> send -> the tracker records the answer. An answer that never arrived
makes the order UNKNOWN (lost): it is looked up by its customerOrderId, never re-sent, counts as exposure and blocks
new entries until the exchange answers about it.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from helios import control, daily_loss, exits, gates, portfolio, promotion, rollout_hooks, sync, trading_state
from helios.alerts import Alerter
from helios.config import Settings
from helios.control import ResumeRefused
from helios.exchange.base import ExchangeClient
from helios.exchange.errors import ExchangeError, OrderRejected, OutcomeUnknown
from helios.exchange.valr_ws import AccountEvent, Connected
from helios.journal import Journal, OrderRecord
from helios.marketdata import MarketData, MarketDataError
from helios.models import (
    Clock,
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
from helios.reconcile import ReconcileResult
from helios.shadow import ShadowBook
from helios.strategy import Strategy, StrategyContext

__all__ = ["Engine", "ResumeRefused", "new_customer_order_id"]

log = logging.getLogger("helios.engine")


def new_customer_order_id() -> str:
    """VALR rules: letters, digits and '-', at most 50 characters."""
    return f"hl-{uuid.uuid4().hex}"


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
        self._today_start = daily_loss.day_start(self.started_at)
        self._realised_today = journal.realised_since(self._today_start)
        self._day_baseline = daily_loss.stored_day_baseline(self, self._today_start) or Decimal(0)
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
        self.account_stream: sync.StreamState | None = None  # LIVE: VALR's account WebSocket (the service sets it)
        self._rest_polled_at: datetime | None = None  # the last full REST poll that completed (the safety net)
        # rollout hooks (helios.rollout_hooks): heartbeat history, marked equity, red flags
        self.shadow: ShadowBook | None = None  # the paper shadow beside LIVE (attached by the service)
        self._equity_recorded_at: datetime | None = None
        self._equity_fill_cursor: datetime | None = None
        self._red_flags_at: datetime | None = None
        self._red_flag_inputs: tuple[object, ...] | None = None
        self._balance_check_seen: ReconcileResult | None = None

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
        control.follow_durable_state(self)
        control.sweep_if_halted(self)
        self._poll_prices()
        daily_loss.roll_day(self, now)
        sync.drain_account_stream(self, now)  # LIVE: order/fill events from VALR's account WebSocket first
        sync.sync_orders(self, now, full=sync.rest_poll_due(self, now))  # REST: the safety net behind the stream
        sync.refresh_balances(self, now)
        daily_loss.check_daily_loss(self, now)
        sync.periodic_balance_check(self, now)
        sync.check_account_guards(self, now)  # LIVE: margin/futures off, nothing borrowed, else HALT
        rollout_hooks.act_on_red_flags(self, now)  # rollout: the plan's red flags halt (or reduce) and alert
        exits.expire_entries(self, now)
        self.protection.sync(now)  # exchange-held stop-loss in step with each position (LIVE)
        exits.check_exits(self, now)
        rollout_hooks.feed_shadow(self)  # rollout: the paper shadow gets this tick's prices and the strategy's signals
        self._run_strategy()
        self.journal.touch(now)  # raises if the journal is not writable: no heartbeat then
        rollout_hooks.record_rollout_facts(self, now)  # rollout: heartbeat history, marked equity about once a minute
        self.last_heartbeat = now

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
        exposed_pairs = {p for p in self.positions if not exits.is_dust(self, p)} | set(entries)
        while self._sent_times and now - self._sent_times[0] > timedelta(minutes=1):
            self._sent_times.popleft()
        equity = (self._cash_zar if self._cash_zar is not None else Decimal(0))
        for pair_, position_ in self.positions.items():
            mark = self.tickers.get(pair_)
            equity += position_.quantity * (mark.bid if mark else position_.avg_entry_price)
        rules = exits.pair_rules(self, pair)
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
            todays_loss_zar=daily_loss.todays_loss_zar(self),
            max_daily_loss_zar=self.settings.max_daily_loss_zar,
            open_positions=len(exposed_pairs),
            pair_has_exposure=pair in exposed_pairs,
            max_open_positions=self.settings.max_open_positions,
            portfolio_risk_zar=risk,
            equity_zar=equity,
            max_portfolio_risk_pct=self.settings.max_portfolio_risk_pct,
            unresolved_orders=self.orders.unresolved(),
            min_entry_quantity=min_entry,
            **rollout_hooks.capital_stage_context(self),  # rollout: the capital stage gate's facts
        )

    def submit_signal(self, signal: Signal) -> OrderRecord:
        """A strategy's entry: a limit (or market) BUY carrying its stop-loss and take-profit, rounded down to the
        pair's quantity step."""
        quantity = signal.quantity
        rules = exits.pair_rules(self, signal.pair)
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
            control.follow_durable_state(self)  # another process (a --direct stop) may have halted us
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
    # thin delegation: the owner modules do the work
    # ---------------------------------------------------------------------------------------------------------
    def on_account_event(self, event: AccountEvent) -> None:
        """Called from the account WebSocket's thread: queued, applied by the next tick (one thread owns state)."""
        self.account_events.put(event)

    def on_account_reconnect(self, connected: Connected) -> None:
        """After every (re)connection the tick runs a REST reconciliation that closes the gap."""
        self.account_events.put(None)

    def set_state(self, state: TradingState, reason: str, actor: str, *,
                  resume: trading_state.Resume | None = None) -> TradingState:
        return control.set_state(self, state, reason, actor, resume=resume)

    def emergency_stop(self, reason: str, actor: str, *, cancel_protective: bool = False) -> dict[str, Any]:
        return control.emergency_stop(self, reason, actor, cancel_protective=cancel_protective)

    def resume(self, reason: str, actor: str) -> dict[str, Any]:
        return control.resume(self, reason, actor)

    def start_up(self) -> None:
        control.start_up(self)

    def shutdown(self) -> dict[str, Any]:
        return control.shutdown(self)

    def _follow_durable_state(self) -> None:  # helios.protection sends under the same discipline as the router
        control.follow_durable_state(self)

    def reconcile_orders(self, now: datetime) -> ReconcileResult:
        return sync.reconcile_orders(self, now)

    def check_balances(self, now: datetime) -> ReconcileResult:
        return sync.check_balances(self, now)

    def record_starting_balances(self, now: datetime, *, overwrite: bool = False) -> dict[str, str]:
        return sync.record_starting_balances(self, now, overwrite=overwrite)

    def pair_rules(self, pair: str) -> tuple[PairInfo, Decimal] | None:
        return exits.pair_rules(self, pair)

    def _sellable(self, pair: str, quantity: Decimal) -> tuple[Decimal, bool]:
        return exits.sellable(self, pair, quantity)

    def unrealised_zar(self) -> Decimal:
        return daily_loss.unrealised_zar(self)

    def todays_pnl_zar(self) -> Decimal:
        return daily_loss.todays_pnl_zar(self)

    def current_capital_stage(self) -> Decimal | None:
        return rollout_hooks.current_capital_stage(self)
