"""The LIVE path end to end: the real engine and journal, the real VALR client, the exchange double over HTTP.

Every scenario also checks that neither the VALR secret nor the API token reached a log line.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from helios.config import Settings, load_settings
from helios.engine import Engine, ResumeRefused
from helios.journal import Journal
from helios.marketdata import ValrMarketData
from helios.models import Mode, OrderPurpose, OrderStatus, OrderType, Side, TradingState
from helios.orchestrator import build_exchange_client
from helios.service import build_runtime
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from tests.service.conftest import ScriptedStrategy

TOKEN = "live-token-0123456789abcdef"
D = Decimal


def live_env(double: ExchangeDouble, state_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        "TRADING_MODE": "LIVE", "ENABLE_PAPER_TRADING": "false", "VALR_API_KEY": DEFAULT_KEY,
        "VALR_API_SECRET": DEFAULT_SECRET, "VALR_BASE_URL": double.url, "HELIOS_API_TOKEN": TOKEN,
        "HELIOS_STATE_DIR": str(state_dir), "MAX_POSITION_SIZE_ZAR": "300", "MAX_PORTFOLIO_RISK_PCT": "10",
        "MAX_DAILY_LOSS_ZAR": "500", "MAX_OPEN_POSITIONS": "3", "ALERT_URLS": f"file://{state_dir}/alerts.jsonl",
    }
    env.update(overrides)
    return env


@dataclass
class LiveRig:
    double: ExchangeDouble
    settings: Settings
    engine: Engine
    journal: Journal

    def buy(self, price: int, qty: str = "0.00011", stop: int = 900_000) -> Any:
        return self.engine.submit_order(pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT,
                                        quantity=D(qty), price=D(price), purpose=OrderPurpose.ENTRY,
                                        stop_loss=D(stop), take_profit=D(1_200_000), reason="test")


@pytest.fixture
def double() -> Iterator[ExchangeDouble]:
    d = ExchangeDouble(port=0, prices={"BTCZAR": D(1_000_000)}, balances={"ZAR": D(1000)}).start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def no_secrets_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    text = caplog.text
    assert DEFAULT_SECRET not in text and TOKEN not in text


@pytest.fixture
def make_live(double: ExchangeDouble, tmp_path: Path, no_secrets_logged: None) -> Iterator[Callable[..., LiveRig]]:
    made: list[LiveRig] = []

    def factory(start: bool = True, record_start: bool = True, **overrides: str) -> LiveRig:
        settings = load_settings(live_env(double, tmp_path / "state", **overrides))
        runtime = build_runtime(settings, strategy=ScriptedStrategy())  # the service's own wiring
        engine, journal = runtime.engine, runtime.journal
        rig = LiveRig(double, settings, engine, journal)
        made.append(rig)
        if record_start:
            engine.record_starting_balances(engine.clock())  # what `helios audit` does at go-live
        if start:
            engine.start_up()
            engine.step()
        return rig

    yield factory
    for rig in made:
        rig.engine.alerter.close()
        rig.engine.client.close()
        rig.journal.close()


def test_live_client_comes_only_from_the_explicit_live_configuration(make_live: Callable[..., LiveRig]) -> None:
    rig = make_live()
    assert rig.engine.client.mode is Mode.LIVE and type(rig.engine.client).__name__ == "ValrClient"
    assert rig.engine.state is TradingState.ACTIVE and rig.engine.reconciliation.ok


def test_full_order_lifecycle_open_partial_fill_fill_cancel(make_live: Callable[..., LiveRig],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    rig = make_live()
    rig.double.set_fill_ratio("0.5")
    record = rig.buy(990_000, qty="0.0002")
    assert record.status is OrderStatus.OPEN
    assert "LIVE ORDER SENDING" in caplog.text and "LIVE ORDER RESULT" in caplog.text, "logged before and after"
    rig.double.set_price("BTCZAR", "985000")  # crosses: half fills
    rig.engine.step()
    assert rig.journal.get_order(record.customer_order_id).status is OrderStatus.PARTIALLY_FILLED  # type: ignore[union-attr]
    assert rig.engine.positions["BTCZAR"].quantity > 0
    rig.double.step("BTCZAR")  # the rest fills
    rig.engine.step()
    assert rig.journal.get_order(record.customer_order_id).status is OrderStatus.FILLED  # type: ignore[union-attr]
    position = rig.engine.positions["BTCZAR"]
    fills = rig.journal.all_fills()
    assert len(fills) == 2 and sum(D(f["quantity"]) for f in fills) == D("0.0002")
    assert position.avg_entry_price == D(990_000)

    rig.double.set_price("BTCZAR", "1000000")
    resting = rig.buy(900_000, qty="0.00011")
    assert resting.status is OrderStatus.OPEN
    rig.engine.client.cancel_order("BTCZAR", resting.customer_order_id)
    rig.engine.step()
    assert rig.journal.get_order(resting.customer_order_id).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert rig.engine.check_balances(rig.engine.clock()).ok, "journal and exchange balances agree"


def test_response_dropped_after_acceptance_leaves_exactly_one_order_that_the_journal_knows(
    make_live: Callable[..., LiveRig],
) -> None:
    rig = make_live()
    rig.double.drop_response_after_accept(1)
    record = rig.buy(950_000)
    assert len(rig.double.order_placements()) == 1, "never re-sent blind"
    assert len(rig.double.orders()) == 1
    journaled = rig.journal.get_order(record.customer_order_id)
    assert journaled is not None and journaled.status is OrderStatus.OPEN, journaled
    assert journaled.exchange_order_id == rig.double.orders()[0].order_id
    assert rig.journal.events("order_unknown"), "the lost answer is on record"


def test_429_storm_backs_off_without_losing_or_doubling_an_order(make_live: Callable[..., LiveRig]) -> None:
    # [valr branch, issue 11 finding 4] A 429 on a placement is an unclear outcome: never re-sent, looked up.
    rig = make_live()
    rig.double.rate_limit_next(2, retry_after=0.05, path_prefix="/v2/orders")
    record = rig.buy(950_000)
    assert record.status is OrderStatus.UNKNOWN, "a placement 429 is never re-sent blind"
    assert len(rig.double.order_placements()) == 1 and rig.double.orders() == []
    rig.double.rate_limit_next(3, retry_after=0.05)  # reads back off and retry
    rig.engine.step()
    rig.double.clear_faults()
    rig.engine.step()
    assert len(rig.double.order_placements()) == 1 and rig.double.orders() == [], "still never re-sent"
    assert rig.journal.events("order_unknown"), "the unclear outcome is on record"


def test_exchange_down_blocks_new_orders_and_is_reported(make_live: Callable[..., LiveRig]) -> None:
    rig = make_live()
    rig.double.go_down()
    rig.engine.step()
    assert rig.engine.client.is_connected() is False
    record = rig.buy(950_000)
    assert record.status is OrderStatus.REJECTED and record.error.startswith("exchange_connected:")  # type: ignore[union-attr]
    rig.double.come_up()
    rig.engine.step()
    assert rig.engine.client.is_connected() is True
    assert rig.buy(950_000).status is OrderStatus.OPEN


def test_unknown_order_on_the_account_is_flagged_and_trading_refused_until_resolved(
    make_live: Callable[..., LiveRig], double: ExchangeDouble
) -> None:
    seeded = double.seed_order("BTCZAR", "BUY", "0.0001", "900000", customer_order_id="manual-order-1")
    rig = make_live(start=False)
    rig.engine.start_up()
    assert rig.engine.state is TradingState.REDUCING
    assert not rig.engine.reconciliation.ok
    assert rig.engine.reconciliation.unknown_orders[0]["customer_order_id"] == "manual-order-1"
    assert rig.buy(950_000).status is OrderStatus.REJECTED
    with pytest.raises(ResumeRefused, match="does not know"):
        rig.engine.resume("looks fine", "pytest")
    # issue 12: unknown orders on the account are a red flag: the first tick halts (the sweep cancels the order)
    rig.engine.step()
    assert rig.engine.state is TradingState.HALTED
    assert [e["detail"]["name"] for e in rig.journal.events("red_flag")] == ["unknown_activity"]
    assert double.open_orders() == [] and seeded.customer_order_id
    rig.engine.resume("reviewed and cancelled the manual order", "pytest")
    assert rig.engine.state is TradingState.ACTIVE


def test_live_emergency_stop_with_50_open_orders_confirms_zero(make_live: Callable[..., LiveRig]) -> None:
    rig = make_live(MAX_POSITION_SIZE_ZAR="100000", MAX_PORTFOLIO_RISK_PCT="100", HELIOS_MAX_ORDERS_PER_MINUTE="100",
                    HELIOS_CAPITAL_STAGES_ZAR="100000")  # issue 12: LIVE trades within the first capital stage
    rig.double.set_balance("ZAR", "100000")
    rig.engine.record_starting_balances(rig.engine.clock(), overwrite=True)
    rig.engine.step()
    for i in range(50):
        assert rig.buy(900_000 + i, qty="0.00011", stop=800_000).status is OrderStatus.OPEN
    assert len(rig.double.open_orders()) == 50
    report = rig.engine.emergency_stop("drill", "pytest")
    assert report["zero_open_orders_confirmed"] is True and report["open_orders_remaining"] == 0
    assert report["orders_cancelled"] == 50
    assert rig.double.open_orders() == []
    rig.engine.step()
    assert rig.journal.active_orders() == []
    assert rig.buy(950_000).status is OrderStatus.REJECTED, "nothing new after HALTED"


def test_balance_discrepancy_alerts_and_halts(make_live: Callable[..., LiveRig], tmp_path: Path) -> None:
    rig = make_live()
    assert rig.engine.check_balances(rig.engine.clock()).ok
    rig.double.set_balance("ZAR", "900")  # R100 left the account without a journaled fill
    first = rig.engine.check_balances(rig.engine.clock())
    assert not first.ok and rig.engine.state is TradingState.ACTIVE, "one miss may be a fill in flight"
    rig.engine.check_balances(rig.engine.clock())
    assert rig.engine.state is TradingState.HALTED
    rig.engine.alerter.close()
    assert "Balance reconciliation failed" in (tmp_path / "state" / "alerts.jsonl").read_text()


def test_restart_after_kill_9_between_intent_and_answer_reconciles_without_duplicate(
    double: ExchangeDouble, tmp_path: Path, no_secrets_logged: None
) -> None:
    """A child process journals an intent and is killed while its placement is in flight at the exchange."""
    env = live_env(double, tmp_path / "state")
    double.inject_latency(1500, path_prefix="/v2/orders")
    script = (
        "from decimal import Decimal as D\n"
        "from helios.config import load_settings\n"
        "from helios.service import build_runtime\n"
        "from helios.models import Side, OrderType, OrderPurpose\n"
        "from tests.service.conftest import ScriptedStrategy\n"
        "rt = build_runtime(load_settings(), strategy=ScriptedStrategy())\n"
        "rt.engine.record_starting_balances(rt.engine.clock())\n"
        "rt.engine.start_up(); rt.engine.step()\n"
        "rt.engine.submit_order(pair='BTCZAR', side=Side.BUY, order_type=OrderType.LIMIT, quantity=D('0.00011'),"
        " price=D(950000), purpose=OrderPurpose.ENTRY, stop_loss=D(900000), take_profit=D(1100000))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **env},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        received = double.wait_for_request("/v2/orders", "POST")  # the exchange has the order (answer delayed)
    except TimeoutError:
        child.kill()
        raise AssertionError(child.communicate()[1].decode()) from None
    child.send_signal(signal.SIGKILL)  # dies after the exchange received the order, before the answer
    child.wait()
    journal = Journal.open(tmp_path / "state", Mode.LIVE)
    try:
        assert [o.status for o in journal.orders()] == [OrderStatus.SUBMITTING], "the intent came first"
    finally:
        journal.close()
    double.wait_for_request("/v2/orders", "POST", answered=True, after_seq=received.seq - 1)
    double.clear_faults()
    assert len(double.orders()) == 1

    settings = load_settings(env)
    journal = Journal.open(settings.helios_state_dir, Mode.LIVE)
    engine = Engine(settings=settings, journal=journal, client=build_exchange_client(settings),
                    market=ValrMarketData(settings.valr_base_url), strategy=ScriptedStrategy())
    try:
        engine.start_up()
        orders = journal.orders()
        assert len(orders) == 1 and orders[0].status is OrderStatus.OPEN, "resolved by customerOrderId"
        assert orders[0].exchange_order_id == double.orders()[0].order_id, "no orphan"
        assert engine.reconciliation.ok and engine.state is TradingState.ACTIVE
        assert len(double.order_placements()) == 1, "no duplicate"
    finally:
        engine.client.close()
        journal.close()
