"""Account guards at runtime (issue 11): a LIVE engine HALTs, through the trading state, when margin trading is
enabled on the account or an amount is borrowed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from helios.models import TradingState
from helios.sync import ACCOUNT_GUARD_INTERVAL

from .conftest import D, SafetyRig

RigFactory = Callable[..., SafetyRig]


def test_margin_enabled_on_the_account_halts_trading_through_the_trading_state(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    assert rig.engine.state is TradingState.ACTIVE
    rig.double.book.margin_enabled = True
    rig.engine._guards_checked_at = rig.engine.clock() - ACCOUNT_GUARD_INTERVAL - timedelta(seconds=1)
    rig.engine.step()
    assert rig.engine.state is TradingState.HALTED
    assert rig.journal.read_state() is TradingState.HALTED
    [event] = rig.journal.events("account_guard", limit=5)
    assert "margin trading is enabled" in event["detail"]["problems"][0]


def test_a_borrowed_amount_halts_trading(make_safety_rig: RigFactory) -> None:
    rig = make_safety_rig()
    rig.double.book.borrowed["ZAR"] = D(10)
    rig.engine._guards_checked_at = None
    rig.engine.step()
    assert rig.engine.state is TradingState.HALTED
