"""Stateful property test (issue 8): ticks, entries, price moves, emergency stops, ``--direct`` stops (the CLI's
code path, with its own journal connection and exchange client), resumes, a journal write lock held by another
connection, and exchange faults, interleaved by hypothesis against the exchange double. After every step:

* after HALTED nothing is sent until an authenticated resume succeeds;
* anything open on the exchange while HALTED is cancelled by the next tick;
* nothing but a resume leaves HALTED (in memory, and in the journal once it is writable).
"""

from __future__ import annotations

import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from helios.cli import direct_emergency_stop
from helios.config import load_settings
from helios.engine import ResumeRefused
from helios.exchange.valr import ValrClient
from helios.models import OrderPurpose, OrderType, Side, TradingState
from helios.service import build_runtime
from helios.trading_state import TransitionRefused
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from tests.service.conftest import ScriptedStrategy

from .conftest import WriteLockHolder, live_env

PRICES = (1_000_000, 990_000, 980_000)


class HaltMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="helios-halt-"))
        self.double = ExchangeDouble(port=0, prices={"BTCZAR": Decimal(1_000_000)},
                                     balances={"ZAR": Decimal(100_000)}).start()
        self.settings = load_settings(live_env(self.double, self.tmp / "state",
                                               HELIOS_EMERGENCY_STOP_TIMEOUT_SECONDS="0.5"))
        client = ValrClient(api_key=DEFAULT_KEY, api_secret=DEFAULT_SECRET, base_url=self.double.url,
                            connect_timeout=1.0, read_timeout=2.0, backoff_base=0.01, backoff_max=0.05)
        self.runtime = build_runtime(self.settings, strategy=ScriptedStrategy(), client=client)
        self.engine = self.runtime.engine
        self.engine.record_starting_balances(self.engine.clock())
        self.engine.start_up()
        self.lock: WriteLockHolder | None = None
        self.halted = False  # the model: a stop took effect and no resume succeeded since
        self.halted_at_seq = 0  # the double's last request sequence number when the stop returned
        self.ticked_while_halted = False
        self.engine_read_journal = True  # False after a --direct stop until the engine's next tick

    def _last_seq(self) -> int:
        requests = self.double.requests()
        return requests[-1].seq if requests else 0

    def _halt(self) -> None:
        self.halted = True
        self.halted_at_seq = self._last_seq()
        self.ticked_while_halted = False

    # --- rules ---------------------------------------------------------------------------------------------------
    @precondition(lambda self: self.lock is None)
    @rule()
    def tick(self) -> None:
        self.engine.step()
        self.ticked_while_halted = self.halted
        self.engine_read_journal = True

    @precondition(lambda self: self.lock is None)
    @rule(offset=st.integers(min_value=0, max_value=20_000))
    def entry(self, offset: int) -> None:
        self.engine.submit_order(pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT,
                                 quantity=Decimal("0.00011"), price=Decimal(985_000 + offset),
                                 purpose=OrderPurpose.ENTRY, stop_loss=Decimal(900_000),
                                 take_profit=Decimal(1_200_000), reason="machine")
        self.ticked_while_halted = False  # a new order may rest until the next tick

    @rule(price=st.sampled_from(PRICES))
    def move_price(self, price: int) -> None:
        self.double.set_price("BTCZAR", str(price))  # may fill resting orders

    @rule(fault=st.sampled_from(["fail", "drop"]))
    def exchange_fault(self, fault: str) -> None:
        if fault == "fail":
            self.double.fail_next(1, status=500)
        else:
            self.double.drop_response_after_accept(1)  # the next placement lands, its answer is lost

    @rule()
    def emergency_stop(self) -> None:
        self.engine.emergency_stop("machine stop", "machine")
        self._halt()  # in memory at once, journaled now or by the retry

    @rule()
    def direct_stop(self) -> None:
        report = direct_emergency_stop(self.settings, "machine direct stop", "ops")
        if report["journal_recorded"]:
            self._halt()  # the engine follows the journal on its next read (a tick, or before any send)
            self.engine_read_journal = self.engine.state is TradingState.HALTED

    @precondition(lambda self: self.lock is None)
    @rule()
    def resume(self) -> None:
        try:
            self.engine.resume("machine resume", "machine")
        except (ResumeRefused, TransitionRefused):
            return
        self.halted = False

    @precondition(lambda self: self.lock is None)
    @rule()
    def lock_journal(self) -> None:
        self.lock = WriteLockHolder(self.runtime.journal.path)

    @precondition(lambda self: self.lock is not None)
    @rule()
    def unlock_journal(self) -> None:
        assert self.lock is not None
        self.lock.release()
        self.lock = None
        retry = self.engine.halt_journal_retry
        if retry is not None:
            retry.join(30)  # the engine's HALTED reaches the journal once it is writable

    # --- invariants ----------------------------------------------------------------------------------------------
    @invariant()
    def nothing_is_sent_while_halted(self) -> None:
        if self.halted:
            late = [r for r in self.double.order_placements() if r.seq > self.halted_at_seq]
            assert late == [], f"placements after HALTED: {late}"

    @invariant()
    def only_a_resume_leaves_halted(self) -> None:
        if not self.halted:
            return
        if self.engine_read_journal:
            assert self.engine.state is TradingState.HALTED
        retry = self.engine.halt_journal_retry
        if self.lock is None and (retry is None or not retry.is_alive()):
            assert self.runtime.journal.read_state() is TradingState.HALTED

    @invariant()
    def halted_tick_leaves_nothing_open(self) -> None:
        if self.halted and self.ticked_while_halted:
            assert self.double.open_orders() == [], "an order rests on the exchange after a HALTED tick"

    def teardown(self) -> None:
        if self.lock is not None:
            self.lock.release()
        self.engine._closing = True
        retry = self.engine.halt_journal_retry
        if retry is not None:
            retry.join(30)
        self.engine.alerter.close()
        self.runtime.client.close()
        self.runtime.journal.close()
        self.double.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


HaltMachine.TestCase.settings = settings(
    max_examples=10, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], database=None,
)
test_halt_machine = HaltMachine.TestCase
