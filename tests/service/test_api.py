"""The HTTP API on a real uvicorn server on loopback, in front of a real engine, paper exchange and journal."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from helios.config import load_settings
from helios.marketdata import ScriptedMarketData
from helios.models import OrderPurpose, OrderStatus, OrderType, Side, TradingState
from helios.service import ApiServer, Runtime, bind_socket, build_runtime

from .conftest import TOKEN, ScriptedStrategy, base_env, free_port


@dataclass
class Api:
    runtime: Runtime
    url: str

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def post(self, path: str, token: str | None = TOKEN, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(self.url + path, headers=headers, timeout=30, **kw)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    port = free_port()
    settings = load_settings(base_env(tmp_path / "state", HELIOS_API_PORT=port, MAX_POSITION_SIZE_ZAR="100000",
                                      HELIOS_MAX_ORDERS_PER_MINUTE="1000", MAX_PORTFOLIO_RISK_PCT="100",
                                      HELIOS_PAPER_STARTING_ZAR="1000000"))
    market = ScriptedMarketData({"BTCZAR": [Decimal(1_000_000)]})
    runtime = build_runtime(settings, market=market, strategy=ScriptedStrategy())
    runtime.engine.start_up()
    runtime.tick_once()
    server = ApiServer(runtime, bind_socket("127.0.0.1", port))
    server.start()
    try:
        yield Api(runtime, f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        runtime.client.close()
        runtime.journal.close()


def rest_orders(runtime: Runtime, n: int) -> None:
    for i in range(n):
        record = runtime.engine.submit_order(
            pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT, quantity=Decimal("0.0001"),
            price=Decimal(900_000 + i), purpose=OrderPurpose.ENTRY, stop_loss=Decimal(890_000),
            take_profit=Decimal(1_100_000), reason="test",
        )
        assert record.status is OrderStatus.OPEN, record.error


def test_read_endpoints_answer_with_the_contract_fields(api: Api) -> None:
    health = api.get("/api/health")
    assert health.status_code == 200
    body = health.json()
    assert body["mode"] == "PAPER" and body["trading_state"] == "ACTIVE" and body["last_heartbeat"]
    assert "version" in body and "release" in body
    assert api.get("/api/mode/current").json()["mode"] == "PAPER"
    status = api.get("/api/status").json()
    assert status["limits"]["max_daily_loss_zar"] == "500"
    for path, key in [("/api/positions", "positions"), ("/api/orders", "orders"), ("/api/trades", "trades")]:
        response = api.get(path)
        assert response.status_code == 200 and isinstance(response.json()[key], list)
    assert "today_total_zar" in api.get("/api/pnl").json()
    metrics = api.get("/metrics").text
    assert 'helios_trading_state{state="ACTIVE"} 1' in metrics
    assert 'helios_gate_rejections_total{gate="order_size"} 0' in metrics
    openapi = api.get("/openapi.json").json()
    assert "/api/emergency-stop" in openapi["paths"]
    assert "EMERGENCY STOP" in api.get("/dashboard.html").text


def test_health_is_503_when_the_engine_stops_beating(api: Api) -> None:
    api.runtime.engine.last_heartbeat = api.runtime.engine.clock() - timedelta(seconds=60)
    response = api.get("/api/health")
    assert response.status_code == 503
    assert any("heartbeat" in r for r in response.json()["reasons"])


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", ""])
def test_control_endpoints_refuse_without_the_right_token(api: Api, token: str | None) -> None:
    rest_orders(api.runtime, 2)
    for path, body in [("/api/emergency-stop", {"reason": "x"}), ("/api/resume", {"reason": "x"})]:
        response = api.post(path, token=token, json=body)
        assert response.status_code == 401, path
    assert api.runtime.engine.state is TradingState.ACTIVE
    assert len(api.runtime.client.open_orders()) == 2, "nothing was cancelled"


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/api/resume", {"json": {}}),
        ("/api/resume", {"json": {"reason": ""}}),
        ("/api/resume", {"data": "not json", "headers": {"Content-Type": "application/json"}}),
        ("/api/emergency-stop", {"json": {"reason": "x" * 501}}),
        ("/api/emergency-stop", {"json": {"reason": "ok", "surprise": 1}}),
        ("/api/emergency-stop", {"json": ["a", "list"]}),
    ],
)
def test_malformed_bodies_get_4xx_never_500(api: Api, path: str, kwargs: dict[str, Any]) -> None:
    response = api.post(path, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    assert api.runtime.engine.state is TradingState.ACTIVE


def test_malformed_queries_get_4xx(api: Api) -> None:
    assert api.get("/api/orders?limit=0").status_code == 422
    assert api.get("/api/orders?limit=abc").status_code == 422
    assert api.get("/api/trades?limit=100000").status_code == 422


def test_emergency_stop_with_50_open_orders_confirms_zero_and_resume_lifts_it(api: Api) -> None:
    rest_orders(api.runtime, 50)
    assert len(api.runtime.client.open_orders()) == 50

    response = api.post("/api/emergency-stop", json={"reason": "test", "actor": "pytest"})

    assert response.status_code == 200
    report = response.json()
    assert report["trading_state"] == "HALTED"
    assert report["orders_cancelled"] == 50
    assert report["open_orders_remaining"] == 0 and report["zero_open_orders_confirmed"] is True
    assert report["open_positions"] == []
    assert api.runtime.client.open_orders() == []
    assert api.get("/api/health").json()["trading_state"] == "HALTED"
    api.runtime.tick_once()  # the engine's next tick records each order's final status
    assert api.get("/api/orders?open=true").json()["orders"] == []
    events = api.runtime.journal.events("emergency_stop")
    assert events and events[0]["detail"]["actor"] == "pytest"

    resumed = api.post("/api/resume", json={"reason": "checked the account", "actor": "pytest"})
    assert resumed.status_code == 200 and resumed.json() == {
        "trading_state": "ACTIVE", "previous": "HALTED", "reason": "checked the account", "actor": "pytest"}
    assert api.runtime.journal.read_state() is TradingState.ACTIVE


# --- issue 8, finding 13: a whitespace-only reason answered 500 -------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/resume", "/api/emergency-stop"])
def test_whitespace_only_reason_is_a_422_naming_the_field(api: Api, path: str) -> None:
    response = api.post(path, json={"reason": "   "})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("body.reason:")
    assert api.runtime.journal.read_state() is TradingState.ACTIVE, "no side effect"


# --- issue 8, finding 1: the API's stop answered 500 after 10 s while another process held the journal's lock -------
def test_api_emergency_stop_cancels_and_answers_while_another_process_holds_the_journal_lock(api: Api) -> None:
    rest_orders(api.runtime, 3)
    other = sqlite3.connect(api.runtime.journal.path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # as another process writing the journal would
    try:
        response = api.post("/api/emergency-stop", json={"reason": "test", "actor": "pytest"})
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["trading_state"] == "HALTED" and report["zero_open_orders_confirmed"] is True
        assert report["journal_recorded"] is False and "locked" in report["journal_error"]
        assert api.runtime.client.open_orders() == []
        assert api.get("/api/mode/current").json()["trading_state"] == "HALTED"
    finally:
        other.execute("ROLLBACK")
        other.close()
    retry = api.runtime.engine.halt_journal_retry
    assert retry is not None
    retry.join(30)
    assert api.runtime.journal.read_state() is TradingState.HALTED
