"""The dashboard in a real browser (Debian chromium, headless) against a running service on loopback."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

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


def test_dashboard_shows_the_service_and_its_emergency_stop_button_works(
    running: tuple[Runtime, str], tmp_path: Path
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert CHROMIUM and CHROMEDRIVER, "needs Debian chromium and chromium-driver (scripts/bootstrap.sh installs them)"
    runtime, url = running
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chrome'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
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
