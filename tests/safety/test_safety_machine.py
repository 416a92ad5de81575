"""The whole safety core in one stateful property test (issue 8): the exposure machine's rules (ticks, entries that
fill at placement, partial fills, answers lost after the exchange accepted the order, placements that land late,
lagging trade history, 5xx faults) interleaved with the kill switch's (emergency stops, ``--direct`` stops through
the CLI's own journal connection and exchange client, resumes, another connection holding the journal's write lock).

After every step, all of these hold at once:

* no accepted order broke a limit, counting every fill known at that moment (the exposure machine's invariant);
* no order is FAILED in the journal that the exchange filled;
* after HALTED nothing is sent until an authenticated resume succeeds (a placement that was already on its way
  before the stop may still land: it is not "sent after HALTED");
* after a HALTED tick nothing that could add exposure rests on the exchange (whatever landed late is swept); only
  the position's protective SELLs stay, as the stop keeps them by design, never asking more than the account holds;
* nothing but a resume leaves HALTED, in memory and in the journal once it is writable.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, precondition, rule

from helios.cli import direct_emergency_stop
from helios.engine import ResumeRefused
from helios.models import TradingState
from helios.protection import is_protective_id
from helios.trading_state import TransitionRefused
from tests.exposure.test_exposure_machine import PRICES, ExposureMachine

from .conftest import WriteLockHolder


class SafetyMachine(ExposureMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lock: WriteLockHolder | None = None
        self.halted = False  # the model: a stop took effect and no resume succeeded since
        self.halted_at_seq = 0
        self.in_flight_at_halt: set[str] = set()  # placements already on their way when the stop came
        self.ticked_while_halted = False
        self.engine_read_journal = True

    def _halt(self) -> None:
        self.halted = True
        requests = self.double.requests()
        self.halted_at_seq = requests[-1].seq if requests else 0
        self.in_flight_at_halt = {r.customer_order_id for r in self.held}
        self.ticked_while_halted = False

    # --- rules the exposure machine does not have -------------------------------------------------------------
    @precondition(lambda self: self.lock is None)
    @rule()
    def tick(self) -> None:
        self.engine.step()
        self.ticked_while_halted = self.halted
        self.engine_read_journal = True

    @rule(pair=st.sampled_from(sorted(PRICES)), size=st.integers(0, 2), stop=st.sampled_from(["0.5", "0.2", "0.1"]),
          kind=st.sampled_from(["market", "through", "resting"]))
    def entry(self, pair: str, size: int, stop: str, kind: str) -> None:
        if self.lock is None:
            super().entry(pair, size, stop, kind)
            self.ticked_while_halted = False
            return
        # The journal cannot take the intent: the router must refuse to send (the intent comes first, always).
        before = len(self.double.order_placements())
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            super().entry(pair, size, stop, kind)
        assert len(self.double.order_placements()) == before, "an order was sent without a journaled intent"

    @rule()
    def lost_placement_lands(self) -> None:
        super().lost_placement_lands() if self.held else None
        self.ticked_while_halted = False  # it may rest until the next tick sweeps it

    @rule()
    def emergency_stop(self) -> None:
        self.engine.emergency_stop("machine stop", "machine")
        self._halt()

    @rule()
    def direct_stop(self) -> None:
        report = direct_emergency_stop(self.engine.settings, "machine direct stop", "ops")
        if report["journal_recorded"]:
            self._halt()
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
        self.lock = WriteLockHolder(self.journal.path)

    @precondition(lambda self: self.lock is not None)
    @rule()
    def unlock_journal(self) -> None:
        assert self.lock is not None
        self.lock.release()
        self.lock = None
        retry = self.engine.halt_journal_retry
        if retry is not None:
            retry.join(30)

    # --- the kill switch's invariants -------------------------------------------------------------------------
    @invariant()
    def nothing_is_sent_while_halted(self) -> None:
        if self.halted:
            late = [r for r in self.double.order_placements()
                    if r.seq > self.halted_at_seq and r.customer_order_id not in self.in_flight_at_halt]
            assert late == [], f"placements after HALTED: {late}"

    @invariant()
    def only_a_resume_leaves_halted(self) -> None:
        if not self.halted:
            return
        if self.engine_read_journal:
            assert self.engine.state is TradingState.HALTED
        retry = self.engine.halt_journal_retry
        if self.lock is None and (retry is None or not retry.is_alive()):
            assert self.journal.read_state() is TradingState.HALTED

    @invariant()
    def halted_tick_leaves_nothing_open(self) -> None:
        """After a HALTED tick nothing that could add exposure rests. The position's protective exits stay by design
        (the stop keeps them unless --cancel-protective): each is a SELL of the pair's coin, and together they never
        ask to sell more than the account holds of it."""
        if not (self.halted and self.ticked_while_halted):
            return
        resting = [o for o in self.double.orders() if o.is_open]
        adding = [o for o in resting if not (is_protective_id(o.customer_order_id) and o.side == "SELL")]
        assert adding == [], "an order that could add exposure rests after a HALTED tick"
        held = self.double.balances()
        for pair in {o.pair for o in resting}:
            coin = pair.removesuffix("ZAR")
            asked = sum((o.remaining for o in resting if o.pair == pair), Decimal(0))
            assert asked <= held.get(coin, Decimal(0)), f"protective exits on {pair} sell {asked}, more than held"

    def teardown(self) -> None:
        if self.lock is not None:
            self.lock.release()
        self.engine._closing = True
        retry = self.engine.halt_journal_retry
        if retry is not None:
            retry.join(30)
        super().teardown()


SafetyMachine.TestCase.settings = settings(
    max_examples=10, stateful_step_count=20, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_safety_machine = SafetyMachine.TestCase
