"""The order tracker's transition table and the pure portfolio, without an exchange."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from helios import portfolio
from helios.journal import Journal, OrderRecord
from helios.models import ExchangeOrder, Fill, Mode, OrderPurpose, OrderStatus, OrderType, Position, Side
from helios.orders import TRANSITIONS, OrderTracker, allowed

D = Decimal
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
S = OrderStatus


def intent(cid: str = "hl-1", qty: str = "0.0002") -> OrderRecord:
    return OrderRecord(cid, None, "BTCZAR", Side.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(qty), None,
                       D(1_000_000), D(900_000), None, S.SUBMITTING, D(0), None, D(0), "", None, NOW, NOW)


def answer(status: OrderStatus, filled: str = "0", cid: str = "hl-1") -> ExchangeOrder:
    return ExchangeOrder(cid, "x-1", "BTCZAR", Side.BUY, OrderType.MARKET, status, None, D("0.0002"), D(filled),
                         D(1_000_000) if D(filled) else None)


@pytest.fixture
def tracker(tmp_path: Path) -> OrderTracker:
    journal = Journal.open(tmp_path, Mode.PAPER)
    journal.record_order(intent())
    t = OrderTracker(journal)
    t.sending(intent())
    return t


def test_terminal_states_never_move_and_a_lost_order_never_times_out_to_failed() -> None:
    for terminal in (S.REJECTED, S.FILLED, S.CANCELLED, S.FAILED):
        assert TRANSITIONS[terminal] == frozenset()
        assert not allowed(terminal, S.OPEN)
    assert allowed(S.UNKNOWN, S.FILLED) and allowed(S.UNKNOWN, S.FAILED)  # only on the exchange's answer
    assert not allowed(S.PARTIALLY_FILLED, S.OPEN)


def test_a_filled_answer_counts_until_its_fills_are_applied_once(tracker: OrderTracker) -> None:
    tracker.on_answer("hl-1", answer(S.FILLED, "0.0002"), NOW)
    assert tracker.get("hl-1") is not None, "FILLED is not forgotten before its fills are applied"
    assert tracker.entry_exposure() == ({"BTCZAR": D("200.0000")}, D("20.0000"))
    tracker.fill_applied("hl-1", D("0.0001"))
    assert tracker.entry_exposure()[0] == {"BTCZAR": D("100.0000")}
    tracker.fill_applied("hl-1", D("0.0001"))
    assert tracker.get("hl-1") is None and tracker.entry_exposure() == ({}, D(0))


def test_a_lost_order_is_exposure_and_unresolved_until_the_exchange_answers(tracker: OrderTracker) -> None:
    tracker.sent("hl-1")
    tracker.mark_lost("hl-1", "read timeout", NOW)
    assert tracker.unresolved() == 1 and tracker.entry_exposure()[0] == {"BTCZAR": D("200.0000")}
    with pytest.raises(ValueError):
        tracker.not_placed("hl-1", "a timer is not an answer", NOW)
    tracker.on_answer("hl-1", answer(S.CANCELLED), NOW)
    assert tracker.unresolved() == 0 and tracker.get("hl-1") is None
    assert tracker.journal.get_order("hl-1").status is S.CANCELLED  # type: ignore[union-attr]


def test_an_answer_that_goes_backwards_keeps_the_state_and_the_larger_fill(tracker: OrderTracker) -> None:
    tracker.on_answer("hl-1", answer(S.PARTIALLY_FILLED, "0.0001"), NOW)
    record = tracker.on_answer("hl-1", answer(S.OPEN, "0"), NOW)
    assert record.status is S.PARTIALLY_FILLED and record.filled_quantity == D("0.0001")


def fill(side: Side, qty: str, price: int, fee: str, fee_currency: str) -> Fill:
    return Fill("t", "o", "hl", "BTCZAR", side, D(price), D(qty), D(fee), fee_currency, NOW)


def test_portfolio_buy_fee_in_coin_tighter_stop_and_realised_pnl() -> None:
    opened = portfolio.apply_fill(None, fill(Side.BUY, "0.001", 1_000_000, "0.000001", "BTC"),
                                  stop_loss=D(900_000), take_profit=D(1_100_000), exit_quantity=D(0))
    assert opened.position is not None and opened.position.quantity == D("0.000999") and opened.fee_zar == D(1)
    added = portfolio.apply_fill(opened.position, fill(Side.BUY, "0.001", 1_000_000, "1", "ZAR"),
                                 stop_loss=D(800_000), take_profit=None, exit_quantity=D(0))
    assert added.position is not None and added.position.stop_loss == D(900_000), "the tighter stop stays"
    sold = portfolio.apply_fill(added.position, fill(Side.SELL, "0.001999", 1_100_000, "2.2", "ZAR"),
                                stop_loss=None, take_profit=None, exit_quantity=D("0.001999"))
    assert sold.position is None and sold.closed is not None
    assert sold.realised_zar == D("0.001999") * 100_000 - D("2.2") - D(2)


def test_todays_pnl_starts_from_the_day_start_marks() -> None:
    position = Position("BTCZAR", D("0.001"), D(990_000), D("0.99"), D(900_000), D(0), NOW)
    baseline = portfolio.day_baseline({"BTCZAR": position}, {"BTCZAR": D(1_049_440)})
    assert baseline == D("58.45")
    assert portfolio.todays_pnl(D(0), {"BTCZAR": position}, {"BTCZAR": D(990_000)}, baseline) == D("-59.44")


def test_rounding_to_the_step() -> None:
    assert portfolio.round_down(D("0.000062437"), D("0.00000001")) == D("0.00006243")
    assert portfolio.round_up(D("0.000100100"), D("0.00000001")) == D("0.00010010")
