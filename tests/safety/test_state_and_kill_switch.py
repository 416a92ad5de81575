"""Issue 8, findings 1, 2, 3, 5 and 9: the trading state has one compare-and-set writer, and the kill switch cancels
on the exchange before (and whether or not) it can journal. Real engine, real journal files, real VALR client, the
exchange double over HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from helios.cli import direct_emergency_stop, main
from helios.journal import Journal
from helios.models import Mode, OrderStatus, Side, TradingState
from helios.trading_state import STATE_CHANGED, TransitionRefused

from .conftest import D, SafetyRig, WriteLockHolder, live_env, wait_for_price

RigFactory = Callable[..., SafetyRig]
LockFactory = Callable[..., WriteLockHolder]


def rest_orders(rig: SafetyRig, n: int) -> None:
    for i in range(n):
        assert rig.buy(900_000 + i).status is OrderStatus.OPEN
    assert len(rig.double.open_orders()) == n


# --- finding 1: the kill switch does nothing when the journal cannot be written ---------------------------------
def test_emergency_stop_cancels_everything_while_another_process_holds_the_journal_write_lock(
    make_safety_rig: RigFactory, hold_write_lock: LockFactory
) -> None:
    rig = make_safety_rig()
    rest_orders(rig, 3)
    lock = hold_write_lock(rig.journal_path)

    report = rig.engine.emergency_stop("drill", "pytest")

    assert rig.double.open_orders() == [], "cancelled although the journal is locked"
    assert report["zero_open_orders_confirmed"] is True
    assert report["journal_recorded"] is False and "locked" in report["journal_error"]
    assert rig.engine.state is TradingState.HALTED, "the send path is blocked in memory"
    assert rig.journal.read_state() is TradingState.ACTIVE, "not journaled yet"

    lock.release()
    assert rig.engine.halt_journal_retry is not None
    rig.engine.halt_journal_retry.join(30)
    assert rig.journal.read_state() is TradingState.HALTED, "journaled by the retry once the lock is free"
    assert rig.buy(950_000).status is OrderStatus.REJECTED


def test_direct_stop_cancels_while_the_journal_is_locked_and_says_it_did_not_journal(
    make_safety_rig: RigFactory, hold_write_lock: LockFactory
) -> None:
    rig = make_safety_rig()
    rest_orders(rig, 3)
    hold_write_lock(rig.journal_path)

    report = direct_emergency_stop(rig.settings, "drill", "pytest")

    assert rig.double.open_orders() == []
    assert report["zero_open_orders_confirmed"] is True
    assert report["journal_recorded"] is False and "locked" in report["journal_error"]


def test_direct_stop_cancels_when_the_journal_is_corrupt(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    rest_orders(rig, 2)
    rig.journal.close()
    rig.journal_path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        rig.journal_path.with_name(rig.journal_path.name + suffix).unlink(missing_ok=True)
    rig.journal = Journal.open(rig.settings.helios_state_dir / "elsewhere", Mode.LIVE)  # for the fixture's close

    report = direct_emergency_stop(rig.settings, "drill", "pytest")

    assert rig.double.open_orders() == []
    assert report["zero_open_orders_confirmed"] is True
    assert report["journal_recorded"] is False and "journal" in report["journal_error"]


# --- finding 2: a resume in flight overwrote a later emergency stop -----------------------------------------------
def _during_reconciliation(rig: SafetyRig, action: Callable[[], Any]) -> None:
    """Run ``action`` once, while the resume's reconciliation is talking to the exchange."""
    original = rig.engine.client.open_orders
    fired: list[bool] = []

    def open_orders_then_act() -> Any:
        result = original()
        if not fired:
            fired.append(True)
            action()
        return result

    rig.engine.client.open_orders = open_orders_then_act  # type: ignore[method-assign]


def test_resume_in_flight_cannot_overwrite_a_later_emergency_stop(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    rig.engine.emergency_stop("first stop", "pytest")
    stops: list[dict[str, Any]] = []
    _during_reconciliation(rig, lambda: stops.append(rig.engine.emergency_stop("second stop", "ops")))

    with pytest.raises(TransitionRefused) as refused:
        rig.engine.resume("tested", "pytest")

    assert refused.value.reason == STATE_CHANGED
    assert stops and stops[0]["zero_open_orders_confirmed"] is True
    assert rig.engine.state is TradingState.HALTED
    assert rig.journal.read_state() is TradingState.HALTED


def test_resume_in_flight_cannot_overwrite_a_direct_stop_from_another_process(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    rig.engine.emergency_stop("first stop", "pytest")
    _during_reconciliation(rig, lambda: direct_emergency_stop(rig.settings, "direct stop", "ops"))

    with pytest.raises(TransitionRefused):
        rig.engine.resume("tested", "pytest")

    assert rig.journal.read_state() is TradingState.HALTED
    rig.engine.step()
    assert rig.engine.state is TradingState.HALTED


# --- finding 3: a --direct stop while the service runs was overwritten by the daily-loss check ------------------------
def test_direct_stop_mid_tick_is_not_overwritten_by_the_daily_loss_check_and_no_exit_is_sent(
    make_safety_rig: RigFactory,
) -> None:
    rig = make_safety_rig(MAX_DAILY_LOSS_ZAR="10")
    entry = rig.buy(990_000, qty="0.0002", stop=950_000)
    rig.double.set_price("BTCZAR", "985000")  # crosses: the entry fills
    rig.engine.step()
    assert rig.journal.get_order(entry.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert "BTCZAR" in rig.engine.positions
    rig.double.set_price("BTCZAR", "900000")  # R18 down (limit R10) and below the stop-loss
    wait_for_price(rig, "BTCZAR", 900_000)  # the trade WebSocket has delivered it: this tick sees the loss
    placements_before = len(rig.double.order_placements())

    original = rig.engine.client.fills
    fired: list[dict[str, Any]] = []

    def fills_then_direct_stop(since: datetime | None = None) -> Any:
        result = original(since)
        if not fired:  # the operator's --direct stop lands while this tick is syncing fills
            fired.append(direct_emergency_stop(rig.settings, "direct stop", "ops"))
        return result

    rig.engine.client.fills = fills_then_direct_stop  # type: ignore[method-assign]
    rig.engine.step()

    assert fired, "the direct stop ran mid-tick"
    assert rig.journal.read_state() is TradingState.HALTED, "REDUCING must not be written over HALTED"
    assert rig.engine.state is TradingState.HALTED
    sells = [r for r in rig.double.order_placements()[placements_before:] if '"SELL"' in r.body.upper()]
    assert sells == [], "no stop-loss SELL while HALTED"


# --- finding 5: an order that lands after the stop rested and filled while HALTED ---------------------------------
def test_order_landing_after_the_stop_is_never_confirmed_zero_and_is_cancelled_on_the_next_tick(
    make_safety_rig: RigFactory,
) -> None:
    rig = make_safety_rig(read_timeout=0.3, HELIOS_EMERGENCY_STOP_TIMEOUT_SECONDS="0.5")
    rig.double.inject_latency(3000, "/v2/orders")  # the placement is answered after the client's read timeout
    record = rig.buy(950_000)
    assert record.status is OrderStatus.UNKNOWN
    received = rig.double.wait_for_request("/v2/orders", "POST")

    report = rig.engine.emergency_stop("drill", "pytest")

    assert report["zero_open_orders_confirmed"] is False, "an UNKNOWN order may still land"
    assert record.customer_order_id in report["orders_in_unknown_state"]
    rig.double.wait_for_request("/v2/orders", "POST", answered=True, after_seq=received.seq - 1)
    rig.double.clear_faults()
    assert [o.customer_order_id for o in rig.double.open_orders()] == [record.customer_order_id], "it landed"

    rig.engine.step()

    assert rig.double.open_orders() == [], "the HALTED tick cancels what landed"
    assert rig.engine.state is TradingState.HALTED


# --- finding 9: the kill switch's time bound was not a bound -------------------------------------------------------
def test_emergency_stop_against_a_hanging_exchange_returns_within_its_timeout_plus_one_request(
    make_safety_rig: RigFactory,
) -> None:
    read_timeout = 10.0  # the production client's read timeout
    rig = make_safety_rig(read_timeout=read_timeout, HELIOS_EMERGENCY_STOP_TIMEOUT_SECONDS="1")
    rest_orders(rig, 2)
    rig.double.inject_latency(15_000)  # every call hangs longer than a read timeout

    started = time.monotonic()
    report = rig.engine.emergency_stop("drill", "pytest")
    elapsed = time.monotonic() - started

    assert elapsed < 1 + read_timeout, f"{elapsed:.1f}s"
    assert report["zero_open_orders_confirmed"] is False and report["journal_recorded"] is True
    assert rig.engine.state is TradingState.HALTED
    rig.double.clear_faults()


def test_daily_loss_reducing_cannot_be_written_over_halted_by_any_writer(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    rig.engine.emergency_stop("drill", "pytest")
    with pytest.raises(TransitionRefused) as refused:
        rig.engine.set_state(TradingState.REDUCING, "daily loss", "engine")
    assert refused.value.reason == "halted_wins"
    with pytest.raises(TransitionRefused) as refused:
        rig.engine.set_state(TradingState.ACTIVE, "no resume", "engine")
    assert refused.value.reason == "resume_required"
    assert rig.journal.read_state() is TradingState.HALTED
    _ = (D, Side, UTC)


# --- resume --direct passes the same reconciliation as the API resume ----------------------------------------------
def test_direct_resume_is_refused_while_reconciliation_fails(make_safety_rig: RigFactory, tmp_path: Path) -> None:
    rig = make_safety_rig()
    rig.engine.emergency_stop("drill", "pytest")
    rig.double.seed_order("BTCZAR", "BUY", "0.0001", "800000")  # an order nobody journaled
    env_file = tmp_path / "helios.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in live_env(rig.double, rig.settings.helios_state_dir).items()))

    code = main(["resume", "--direct", "--reason", "looks fine", "--env-file", str(env_file)])

    assert code == 1
    assert rig.journal.read_state() is TradingState.HALTED
    assert main(["resume", "--direct", "--reason", "   ", "--env-file", str(env_file)]) == 2
