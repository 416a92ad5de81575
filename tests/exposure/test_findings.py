"""Issue 8, findings 4, 6, 7 and 11 against the LIVE engine and the exchange double (each failed on b61261d)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from helios import views
from helios.cli import main as helios_cli
from helios.engine import ResumeRefused
from helios.exchange.errors import ExchangeError, OutcomeUnknown
from helios.exchange.valr import ValrClient
from helios.models import ExchangeOrder, OrderPurpose, OrderRequest, OrderStatus, OrderType, Side, TradingState
from helios.protection import is_protective_id
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from tests.live.test_live_engine import live_env

from .conftest import Rig

D = Decimal
MakeRig = Callable[..., Rig]


def cli(rig: Rig, *args: str) -> int:
    env_file = rig.state_dir.parent / "helios.env"
    env = live_env(rig.double, rig.state_dir, HELIOS_PAIRS="BTCZAR,ETHZAR")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return helios_cli([*args, "--env-file", str(env_file)])


# --- finding 4 ------------------------------------------------------------------------------------------------
def test_finding4_entries_that_fill_at_placement_count_for_the_next_entry_in_the_same_tick(make_rig: MakeRig) -> None:
    rig = make_rig(MAX_OPEN_POSITIONS="1", MAX_POSITION_SIZE_ZAR="300", MAX_PORTFOLIO_RISK_PCT="50")
    first = rig.entry("BTCZAR", "0.00011")
    assert first.status is OrderStatus.FILLED
    other_pair = rig.entry("ETHZAR", "0.002")
    assert other_pair.status is OrderStatus.REJECTED and (other_pair.error or "").startswith("open_positions")
    too_big = rig.entry("BTCZAR", "0.0002")  # R110 filled + R200 > R300
    assert too_big.status is OrderStatus.REJECTED and (too_big.error or "").startswith("order_size")
    assert len([o for o in rig.double.orders() if o.side == "BUY"]) == 1


def test_finding4_portfolio_risk_counts_an_entry_filled_at_placement(make_rig: MakeRig) -> None:
    rig = make_rig(MAX_OPEN_POSITIONS="2", MAX_PORTFOLIO_RISK_PCT="5")  # R50 of R1000
    assert rig.entry("BTCZAR", "0.00011", stop=600_000).status is OrderStatus.FILLED  # risk R44
    second = rig.entry("ETHZAR", "0.002", stop=24_000)  # risk R32: R76 in all
    assert second.status is OrderStatus.REJECTED and (second.error or "").startswith("portfolio_risk")


def test_finding4_a_fill_between_the_trade_history_read_and_the_status_read_still_counts(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(MAX_POSITION_SIZE_ZAR="300")
    resting = rig.entry("BTCZAR", "0.0002", price=990_000)
    assert resting.status is OrderStatus.OPEN
    # The trade-history read happens just before the fill lands; the status read just after.
    monkeypatch.setattr(rig.engine.client, "fills", lambda since=None: [])
    rig.double.set_price("BTCZAR", "985000")
    rig.engine.step()
    assert rig.journal.get_order(resting.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert "BTCZAR" not in rig.engine.positions, "the trade history has not delivered the fill yet"
    late = rig.entry("BTCZAR", "0.00011", price=990_000)  # R198 filled + R108.90 > R300
    assert late.status is OrderStatus.REJECTED and (late.error or "").startswith("order_size"), late.error
    # A restart before the trade history catches up still counts it (the tracker reloads from the journal) ...
    from helios.orders import OrderTracker

    assert sum(e.filled_unapplied for e in OrderTracker(rig.journal).exposures()) == D("0.0002")
    # ... and when it does, the fill is counted once: as the position, no longer as the order.
    monkeypatch.undo()
    rig.engine.step()
    held = rig.engine.positions["BTCZAR"].quantity
    # A resting limit BUY is a maker: VALR charges its fee in ZAR (the currency the maker pays), not in BTC.
    assert held == D("0.0002"), "a maker BUY's fee is paid in ZAR: the coins are all held"
    assert rig.engine.positions["BTCZAR"].entry_fees_zar > 0, "the ZAR fee is counted in the position's cost"
    assert sum(e.quantity for e in rig.engine.orders.exposures() if e.purpose is OrderPurpose.ENTRY) == 0
    assert rig.engine.gate_context("BTCZAR", rig.clock()).pair_exposure_zar == held * 990_000


# --- finding 6 ------------------------------------------------------------------------------------------------
def test_finding6_a_lost_order_is_never_failed_blocks_entries_and_is_resolved_when_it_lands(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(MAX_POSITION_SIZE_ZAR="300")
    held: list[OrderRequest] = []
    real_place = rig.engine.client.place_order

    def answer_lost(request: OrderRequest) -> ExchangeOrder:
        held.append(request)  # the request is on its way; its answer never comes
        raise OutcomeUnknown("read timeout (test)")

    monkeypatch.setattr(rig.engine.client, "place_order", answer_lost)
    lost = rig.entry("BTCZAR", "0.0002")
    monkeypatch.undo()
    assert lost.status is OrderStatus.UNKNOWN
    rig.clock.advance(120)
    rig.engine.step()
    rig.clock.advance(120)
    rig.engine.step()
    assert rig.journal.get_order(lost.customer_order_id).status is OrderStatus.UNKNOWN  # type: ignore[union-attr]
    rig.clock.offset = timedelta(0)  # back to the double's time, so that prices are fresh for the next entry
    rig.engine.step()
    second = rig.entry("BTCZAR", "0.0002")
    assert second.status is OrderStatus.REJECTED and (second.error or "").startswith("unresolved_orders")
    assert rig.engine.gate_context("BTCZAR", rig.clock()).pair_exposure_zar > 0, "a lost order is exposure"
    assert not rig.engine.reconcile_orders(rig.clock()).ok, "restart reconciliation does not report ok"

    real_place(held[0])  # the order lands (and fills) late
    rig.engine.step()
    rig.engine.step()
    landed = rig.journal.get_order(lost.customer_order_id)
    assert landed is not None and landed.status is OrderStatus.FILLED
    assert rig.engine.positions["BTCZAR"].quantity > 0
    assert [o for o in rig.journal.orders() if o.status is OrderStatus.FAILED] == []
    assert rig.engine.reconcile_orders(rig.clock()).ok


# --- finding 7 ------------------------------------------------------------------------------------------------
def test_finding7_a_remainder_below_the_minimum_is_dust_reported_once_and_never_retried(make_rig: MakeRig) -> None:
    rig = make_rig()
    rig.double.set_fill_ratio("0.5")
    entry = rig.entry("BTCZAR", "0.000125", price=990_000, stop=950_000)
    assert entry.status is OrderStatus.OPEN
    rig.double.set_price("BTCZAR", "985000")  # half fills: 0.0000625 BTC, the fee taken in BTC
    rig.engine.client.cancel_order("BTCZAR", entry.customer_order_id)
    rig.engine.step()
    held = rig.engine.positions["BTCZAR"].quantity
    assert held < D("0.0001")
    rig.double.set_price("BTCZAR", "900000")  # below the stop-loss
    for _ in range(4):
        rig.clock.advance(60)
        rig.engine.step()
    assert [o for o in rig.journal.orders() if o.purpose is OrderPurpose.EXIT] == [], "nothing unsellable is sent"
    assert len(rig.journal.events("dust")) == 1
    dust_alerts = [line for line in rig.alerts() if "dust" in line]
    assert len(dust_alerts) == 1 and "critical" in dust_alerts[0]
    assert views.positions_json(rig.engine)[0]["dust"] is True


def test_finding7_a_failing_exit_backs_off_and_alerts_once(make_rig: MakeRig) -> None:
    rig = make_rig()
    assert rig.entry("BTCZAR", "0.00011", stop=950_000).status is OrderStatus.FILLED
    rig.engine.step()
    held = rig.engine.positions["BTCZAR"].quantity
    rig.double.set_price("BTCZAR", "900000")
    # Placements fail (cancels still work: the exchange-held stop, gapped through, is cancelled for the software exit).
    rig.double.fail_next(50, status=400, path_prefix="/v2/orders", method="POST")
    for _ in range(4):  # four ticks well inside the first back-off (5 s)
        rig.engine.step()
    exits = [o for o in rig.journal.orders() if o.purpose is OrderPurpose.EXIT
             and not is_protective_id(o.customer_order_id)]
    assert len(exits) == 1 and exits[0].status is OrderStatus.FAILED, [o.status for o in exits]
    assert exits[0].quantity == held and exits[0].quantity == exits[0].quantity.quantize(D("0.00000001"))
    assert len([line for line in rig.alerts() if "exit failed" in line]) == 1
    rig.double.clear_faults()
    rig.clock.advance(10)  # past the first back-off (5 s)
    rig.engine.step()
    rig.engine.step()
    assert "BTCZAR" not in rig.engine.positions


# --- finding 11 -----------------------------------------------------------------------------------------------
def test_finding11_rebaselining_counts_only_fills_after_the_new_baseline(make_rig: MakeRig) -> None:
    rig = make_rig()
    assert rig.entry("BTCZAR", "0.00011").status is OrderStatus.FILLED
    rig.engine.step()
    assert rig.engine.check_balances(rig.clock()).ok
    rig.engine.record_starting_balances(rig.clock(), overwrite=True)  # what re-running a passing audit records
    assert rig.engine.check_balances(rig.clock()).ok
    assert rig.engine.check_balances(rig.clock()).ok
    assert rig.engine.state is TradingState.ACTIVE
    assert rig.entry("BTCZAR", "0.00011").status is OrderStatus.FILLED  # fills after the baseline still count
    rig.engine.step()
    assert rig.engine.check_balances(rig.clock()).ok


def test_finding11_deposits_and_withdrawals_are_recorded_and_counted(make_rig: MakeRig,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rig = make_rig()
    rig.double.set_balance("ZAR", "1500")
    assert not rig.engine.check_balances(rig.clock()).ok
    assert cli(rig, "capital", "deposit", "500", "ZAR", "--reason", "top-up from bank") == 0
    assert "deposit of 500 ZAR recorded" in capsys.readouterr().out
    assert rig.engine.check_balances(rig.clock()).ok
    rig.double.set_balance("ZAR", "1300")
    assert cli(rig, "capital", "withdraw", "200", "ZAR", "--reason", "paid out") == 0
    assert rig.engine.check_balances(rig.clock()).ok and rig.engine.state is TradingState.ACTIVE
    assert cli(rig, "capital", "deposit", "-5", "ZAR", "--reason", "x") == 2
    assert cli(rig, "capital", "deposit", "5", "ZAR", "--reason", "   ") == 2
    assert "AMOUNT" in capsys.readouterr().err
    assert len(rig.journal.capital_flows(None)) == 2


def test_finding11_trades_from_before_go_live_are_classified_once_never_a_permanent_reducing(
    double: ExchangeDouble, make_rig: MakeRig, capsys: pytest.CaptureFixture[str]
) -> None:
    manual = ValrClient(api_key=DEFAULT_KEY, api_secret=DEFAULT_SECRET, base_url=double.url)
    try:
        manual.place_order(OrderRequest("by-hand-1", "BTCZAR", Side.BUY, OrderType.MARKET, D("0.0002")))
    finally:
        manual.close()
    rig = make_rig()  # go-live after that trade
    assert rig.engine.state is TradingState.REDUCING
    for _ in range(3):
        rig.engine.step()
    assert rig.engine.unknown_fills == 1, "counted once, by trade id"
    with pytest.raises(ResumeRefused, match="1 fill"):
        rig.engine.resume("looks fine", "pytest")
    assert cli(rig, "capital", "classify-history", "--ignore", "--reason", "my own trade before go-live") == 0
    assert "1 trade(s)" in capsys.readouterr().out
    rig.engine.resume("history classified", "pytest")
    assert rig.engine.state is TradingState.ACTIVE
    assert rig.engine.check_balances(rig.clock()).ok, "never counted in the balances"
    assert "BTCZAR" not in rig.engine.positions
    assert cli(rig, "capital", "classify-history", "--adopt", "--reason", "again") == 0
    assert "0 trade(s)" in capsys.readouterr().out, "classified once"


def test_capital_command_needs_a_baseline(tmp_path: Path, double: ExchangeDouble) -> None:
    env_file = tmp_path / "helios.env"
    env = live_env(double, tmp_path / "state")
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    assert helios_cli(["capital", "classify-history", "--ignore", "--reason", "r", "--env-file", str(env_file)]) == 1


def test_a_lost_order_that_never_reached_the_exchange_is_resolved_only_by_the_operator_after_a_lookup(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rig = make_rig()
    held: list[OrderRequest] = []
    real_place = rig.engine.client.place_order

    def answer_lost(request: OrderRequest) -> ExchangeOrder:
        held.append(request)
        raise OutcomeUnknown("read timeout (test)")

    monkeypatch.setattr(rig.engine.client, "place_order", answer_lost)
    arrived = rig.entry("BTCZAR", "0.00011")  # its request arrives after the engine looked it up
    assert arrived.status is OrderStatus.UNKNOWN
    real_place(held[0])
    assert cli(rig, "orders", "resolve-lost", arrived.customer_order_id, "--reason", "checked VALR") == 1
    assert "the exchange knows this order" in capsys.readouterr().err
    rig.engine.step()
    assert rig.journal.get_order(arrived.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]

    never = rig.entry("BTCZAR", "0.00011")  # its request never arrives
    monkeypatch.undo()
    assert never.status is OrderStatus.UNKNOWN
    assert cli(rig, "orders", "resolve-lost", never.customer_order_id, "--reason", "   ") == 2
    assert cli(rig, "orders", "resolve-lost", "hl-nope", "--reason", "checked VALR") == 1
    assert cli(rig, "orders", "resolve-lost", never.customer_order_id, "--reason", "not in VALR's history") == 0
    assert "FAILED" in capsys.readouterr().out
    assert rig.journal.get_order(never.customer_order_id).status is OrderStatus.FAILED  # type: ignore[union-attr]
    assert rig.journal.events("order_resolved_never_placed")


def test_equity_for_the_risk_gate_never_counts_a_bought_position_and_the_zar_that_paid_for_it(
    make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fill applied while the balance read fails (5xx) must not leave equity = the old cash + the new position:
    the portfolio-risk gate would then allow risk against money the account no longer has."""
    rig = make_rig(MAX_PORTFOLIO_RISK_PCT="20", MAX_OPEN_POSITIONS="2")
    before = rig.engine.gate_context("BTCZAR", rig.clock()).equity_zar

    def unavailable() -> Any:
        raise ExchangeError("balances: 503 (test)")

    monkeypatch.setattr(rig.engine.client, "balances", unavailable)
    placed = rig.entry("BTCZAR", "0.0002", stop=950_000)
    assert placed.status is OrderStatus.FILLED, placed.error
    rig.engine.step()  # the trade history delivers the fill; the forced balance refresh fails
    assert "BTCZAR" in rig.engine.positions
    after = rig.engine.gate_context("BTCZAR", rig.clock()).equity_zar
    assert after <= before, f"equity grew from R{before} to R{after} by buying"
