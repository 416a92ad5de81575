"""The dashboard in a real browser (Debian chromium, headless) against a running service on loopback."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from helios.config import load_settings
from helios.marketdata import ScriptedMarketData
from helios.models import OrderPurpose, OrderStatus, OrderType, Side
from helios.service import ApiServer, Runtime, bind_socket, build_runtime

from .conftest import TOKEN, ScriptedStrategy, base_env, free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Runtime, str]]:
    port = free_port()
    settings = load_settings(base_env(tmp_path / "state", HELIOS_API_PORT=port, HELIOS_TICK_SECONDS="0.2",
                                      MAX_POSITION_SIZE_ZAR="100000", HELIOS_MAX_TICKER_AGE_SECONDS="100000"))
    runtime = build_runtime(settings, market=ScriptedMarketData({"BTCZAR": [Decimal(1_000_000)]}),
                            strategy=ScriptedStrategy())
    runtime.engine.start_up()
    runtime.tick_once()
    for i in range(3):
        record = runtime.engine.submit_order(
            pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT, quantity=Decimal("0.0001"),
            price=Decimal(900_000 + i), purpose=OrderPurpose.ENTRY, stop_loss=Decimal(890_000),
            take_profit=Decimal(1_100_000), reason="browser test")
        assert record.status is OrderStatus.OPEN
    runtime.engine_thread = threading.Thread(target=runtime.engine_loop, daemon=True)
    runtime.engine_thread.start()
    server = ApiServer(runtime, bind_socket("127.0.0.1", port))
    server.start()
    try:
        yield runtime, f"http://127.0.0.1:{port}"
    finally:
        runtime.stop_event.set()
        runtime.engine_thread.join(5)
        server.stop()
        runtime.client.close()
        runtime.journal.close()


def chrome(tmp_path: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "needs Debian chromium and chromium-driver (scripts/bootstrap.sh installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chrome'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def test_dashboard_shows_the_service_and_its_emergency_stop_button_works(
    running: tuple[Runtime, str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    runtime, url = running
    driver = chrome(tmp_path)
    wait = WebDriverWait(driver, 15)
    try:
        driver.get(url + "/dashboard.html")
        wait.until(lambda d: d.find_element(By.ID, "mode").text == "PAPER")
        assert driver.find_element(By.ID, "state").text == "ACTIVE"
        wait.until(lambda d: d.find_element(By.ID, "health").text == "healthy")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#orders tr")) == 4)  # header + 3 open orders
        driver.save_screenshot(str(tmp_path / "dashboard-active.png"))

        # Wrong token: refused, nothing cancelled.
        driver.find_element(By.ID, "token").send_keys("wrong-token-0123456789")
        driver.find_element(By.ID, "stop").click()
        driver.switch_to.alert.accept()
        wait.until(lambda d: "HTTP 401" in d.find_element(By.ID, "message").text)
        assert len(runtime.client.open_orders()) == 3

        token = driver.find_element(By.ID, "token")
        token.clear()
        token.send_keys(TOKEN)
        driver.find_element(By.ID, "reason").send_keys("browser drill")
        driver.find_element(By.ID, "stop").click()
        driver.switch_to.alert.accept()
        wait.until(lambda d: "EMERGENCY STOP" in d.find_element(By.ID, "message").text)
        message = driver.find_element(By.ID, "message").text
        assert "state HALTED, 3 order(s) cancelled, 0 open order(s) remaining (zero confirmed by re-query)" in message
        wait.until(lambda d: d.find_element(By.ID, "state").text == "HALTED")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#orders tr")) == 2)  # header + "none"
        driver.save_screenshot(str(tmp_path / "dashboard-halted.png"))
        assert runtime.client.open_orders() == []
        assert runtime.journal.last_state_change()["reason"] == "browser drill"  # type: ignore[index]
    finally:
        driver.quit()


# --- rollout (issue 12): charts, stage, red flags and success metrics ----------------------------------------------
@pytest.fixture(params=["PAPER", "LIVE"])
def rollout(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Runtime, str]]:
    from helios.api_rollout import create_rollout_router
    from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
    from tests.rollout.conftest import add_trade

    port = free_port()
    env = base_env(tmp_path / "state", HELIOS_API_PORT=port, HELIOS_TICK_SECONDS="0.2",
                   HELIOS_MAX_TICKER_AGE_SECONDS="100000")
    double = None
    if request.param == "LIVE":  # against the exchange double on loopback
        double = ExchangeDouble(port=0).start()
        env.update(TRADING_MODE="LIVE", ENABLE_PAPER_TRADING="false", VALR_API_KEY=DEFAULT_KEY,
                   VALR_API_SECRET=DEFAULT_SECRET, VALR_BASE_URL=double.url)
    settings = load_settings(env)
    runtime = build_runtime(settings, market=ScriptedMarketData({"BTCZAR": [Decimal(1_000_000)]}),
                            strategy=ScriptedStrategy())
    runtime.engine.start_up()
    journal = runtime.journal
    now = datetime.now(UTC)
    journal.record_stage(Decimal(1000), "go-live", "ops", now - timedelta(hours=20))
    # equity 1000 -> 1040 -> 988 -> 1010 over three days: drawdown 52/1040 = 5%
    for hours_ago, pnl in ((70, 0), (50, 40), (26, -12), (2, 10)):
        journal.record_equity(now - timedelta(hours=hours_ago), Decimal(1000), Decimal(pnl))
    for i, pnl in enumerate((30, -25, 15)):
        add_trade(journal, pnl, now - timedelta(hours=40 - i))
    journal.record_event("unknown_fill", {"trade_id": "manual-1"}, now - timedelta(hours=1))
    server = ApiServer(runtime, bind_socket("127.0.0.1", port))
    server.server.config.app.include_router(create_rollout_router(runtime))  # the lead's one line in api.py
    server.start()
    try:
        yield runtime, f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        runtime.client.close()
        runtime.journal.close()
        if double is not None:
            double.stop()


def test_dashboard_draws_equity_drawdown_and_daily_pnl_and_shows_stage_flags_and_metrics(
    rollout: tuple[Runtime, str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    runtime, url = rollout
    driver = chrome(tmp_path)
    wait = WebDriverWait(driver, 15)
    try:
        driver.get(url + "/dashboard.html")
        wait.until(lambda d: d.find_element(By.ID, "mode").text == runtime.settings.mode.value)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#equity-chart canvas"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pnl-chart canvas"))
        driver.save_screenshot(str(tmp_path / "dashboard-rollout.png"))
        # the charts hold the journal's curve: 4 samples, 3 local days; drawdown reached -5%
        equity = driver.execute_script("return window.heliosCharts.equity.data")
        assert equity[1] == [1000, 1040, 988, 1010]
        assert round(min(equity[2]), 6) == -5.0
        daily = driver.execute_script("return window.heliosCharts.pnl.data")
        assert len(daily[0]) == len(daily[1]) >= 3 and round(sum(daily[1]), 6) == 10
        labels = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#equity-chart .u-legend .u-label")]
        assert "equity ZAR" in labels and "drawdown %" in labels
        # the chart library came from Helios itself, nothing from elsewhere
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert f"{url}/static/vendor/uPlot.iife.min.js" in resources
        assert all(r.startswith(url) for r in resources), resources
        # stage and the distance to the next
        stage = driver.find_element(By.ID, "stage").text
        assert "current stage R1000" in stage and "next stage R5000" in stage
        assert "minimum time left 4 h" in stage
        assert "to reach R5000: wait 4 h" in driver.find_element(By.ID, "stage-next").text
        # the red flag the journal holds, and the week-1 checks
        flag = driver.find_element(By.CSS_SELECTOR, '#redflags li[data-flag="unknown_activity"]')
        assert "1 fill(s) on the account that the journal does not know" in flag.text and "HALT" in flag.text
        assert driver.find_element(By.ID, "phase").get_attribute("textContent") == "week 1"
        rows = {r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
                for r in driver.find_elements(By.CSS_SELECTOR, "#metrics tr")[1:]}
        assert rows["win_rate"] == "pass" and rows["max_drawdown"] == "pass" and rows["pnl_accuracy"] == "no data"
        assert "week window: FAIL" in driver.find_element(By.ID, "rollout-result").text
    finally:
        driver.quit()
