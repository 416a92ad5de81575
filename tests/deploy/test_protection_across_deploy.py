"""A LIVE position stays protected ON THE EXCHANGE through a deploy (issue 11), on the real deploytest host.

The service runs LIVE against the exchange double on 127.0.0.1:8390. The default strategy enters (the price is
driven as in scripts/demo-live.sh), Helios places the position's exchange-held stop-loss; then a new release is
deployed (stop, switch, start, gate). Meanwhile a sampler reads the double's open orders (and conditional orders)
every ~50 ms: the protective order is never absent. Both kinds: the stop-limit (VALR's documented order types) and
the take-profit + stop-loss conditional (the double listing ``OT_OCO`` for the pair). The new release adopts it
(same customerOrderId, no second protective order, no new placement), and when the price falls through the stop
the exchange sells the position and Helios reconciles it: closed with reason ``protective_stop_loss`` /
``protective_oco``, realised P&L equal to what the account gained or lost.

Run under the shared lock, selected narrowly::

    flock /work/notes/sandbox.lock .venv/bin/pytest -m sandbox tests/deploy/test_protection_across_deploy.py
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import Host, double_admin, scratch_source

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

BTC = "BTCZAR"
#: VALR's documented order types for a ZAR pair (the API collection's example): the stop-limit protects. With
#: ``OT_OCO`` listed (a hypothetical, docs/valr-contract.md) the take-profit + stop-loss conditional protects.
ORDER_TYPES = {
    "stop_limit": ["LIMIT_POST_ONLY", "MARKET", "LIMIT", "SIMPLE", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
    "oco": ["LIMIT_POST_ONLY", "MARKET", "LIMIT", "SIMPLE", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "OT_OCO"],
}
PLACEMENT_PATH = {"stop_limit": "/v2/orders/stop/limit", "oco": "/v1/orders/conditionals"}
EXIT_REASON = {"stop_limit": "protective_stop_loss", "oco": "protective_oco"}


def _wait(what: str, found: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _price(value: Decimal) -> None:
    double_admin("POST", "/price", {"pair": BTC, "price": str(value.quantize(Decimal(1)))})


def _zar_total() -> Decimal:
    rows = double_admin("GET", "/state")["balances"]
    return next(Decimal(r["total"]) for r in rows if r["currency"] == "ZAR")


def _protective_open() -> list[str]:
    """Every protective order working on the exchange: open regular orders and open conditional orders."""
    regular = [o["customerOrderId"] for o in double_admin("GET", "/orders?open=1")]
    conditional = [c.get("customerOrderId", "") for c in double_admin("GET", "/conditionals")]
    return [cid for cid in regular + conditional if str(cid).startswith("hp-")]


def _placements(kind: str) -> int:
    return len(double_admin("GET", f"/requests?path={PLACEMENT_PATH[kind]}&method=POST"))


class OpenOrderSampler:
    """Reads the double's open orders every ~50 ms in a thread; keeps the protective ids seen in each sample."""

    def __init__(self) -> None:
        self.samples: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(_protective_open())
            self._stop.wait(0.05)

    def stop(self) -> list[list[str]]:
        self._stop.set()
        self._thread.join(10)
        return self.samples


ENV_FILE = "/etc/helios/helios.env"


def _market_data(host: Host, source: str) -> None:
    """The deploytest inventory runs on simulated prices; this scenario needs the double's prices (the trade
    WebSocket), so that the price the test sets is the price the strategy, the protection and the exchange see."""
    if f"HELIOS_MARKET_DATA='{source}'" in host.ssh(f"cat {ENV_FILE}"):
        return
    host.ssh(f"sed -i \"s/^HELIOS_MARKET_DATA=.*/HELIOS_MARKET_DATA='{source}'/\" {ENV_FILE}"
             " && systemctl reset-failed helios && systemctl restart helios")
    assert f"HELIOS_MARKET_DATA='{source}'" in host.ssh(f"cat {ENV_FILE}")
    host.wait_healthy(60)


def _live_and_active(host: Host, kind: str) -> None:
    double_admin("POST", "/fill-ratio", {"ratio": "1"})
    double_admin("POST", "/balance", {"balances": {"ZAR": "1000", "BTC": "0", "ETH": "0"}})
    double_admin("POST", "/ordertypes", {"pair": BTC, "orderTypes": ORDER_TYPES[kind]})
    _price(Decimal(1_200_000))
    _market_data(host, "valr")
    host.ssh("systemctl reset-failed helios && systemctl restart helios")  # a fresh process asks for order types
    host.wait_healthy(60)
    if host.api("/api/mode/current").get("mode") != "LIVE":
        r = host.invoke("to-live", "--confirm", "deploy1")
        assert r.rc == 0, r.out[-3000:]
    if host.api("/api/status").get("trading_state") != "ACTIVE":
        r = host.invoke("resume", "--reason", "test: protection across a deploy")
        assert r.rc == 0, r.out[-3000:]
    host.wait_healthy()
    assert "HELIOS_MARKET_DATA='valr'" in host.ssh(f"cat {ENV_FILE}")
    assert host.api("/api/positions").get("positions") == []


def _next_tick(host: Host) -> None:
    """Wait for the engine's next tick (a new heartbeat): the strategy sees one price per tick."""
    first = host.api("/api/health").get("last_heartbeat")
    _wait("the next engine tick", lambda: host.api("/api/health").get("last_heartbeat") not in (None, first), 30)


def _enter(host: Host) -> tuple[dict[str, Any], str]:
    """A dip then a rise, one price per engine tick (the default SMA 5/20 strategy enters with a limit BUY when
    the fast average crosses above the slow one), then the market comes to the limit."""
    last = Decimal(double_admin("GET", "/state")["prices"][BTC]["last"])
    for _ in range(25):
        last -= 600
        _price(last)
        _next_tick(host)
    entry = None
    for _ in range(40):
        last += 1500
        _price(last)
        _next_tick(host)
        entry = next((o for o in host.api("/api/orders").get("orders", [])
                      if o["purpose"] == "ENTRY" and o["status"] in ("OPEN", "PARTIALLY_FILLED", "FILLED")), None)
        if entry:
            break
    assert entry is not None, f"the strategy did not enter: {host.api('/api/orders').get('orders')}"
    _price(Decimal(entry["price"]) * Decimal("0.998"))  # the market comes to the limit: the BUY fills
    position = _wait("the position", lambda: host.api("/api/positions").get("positions"))[0]
    stop = _wait("the exchange-held stop", lambda: [
        o for o in host.api("/api/orders").get("orders", [])
        if o["customer_order_id"].startswith("hp-") and o["status"] == "OPEN"])[0]
    return position, str(stop["customer_order_id"])


def _heartbeats_after(host: Host, count: int) -> None:
    """Wait until the running engine has ticked ``count`` more times."""
    for _ in range(count):
        _next_tick(host)


@pytest.mark.parametrize("kind", ["stop_limit", "oco"])
def test_live_position_stays_protected_on_the_exchange_through_a_deploy(host: Host, tmp_path: Path,
                                                                         kind: str) -> None:
    try:
        _protected_through_a_deploy(host, tmp_path, kind)
    finally:
        double_admin("POST", "/ordertypes", {"pair": BTC, "orderTypes": ORDER_TYPES["stop_limit"]})
        _market_data(host, "sim")  # the inventory's setting again, for whatever runs next on this host
        _paper_and_active(host)  # and the mode and state the scenarios after this one start from


def _paper_and_active(host: Host) -> None:
    if host.api("/api/mode/current").get("mode") == "LIVE":
        r = host.invoke("to-paper")
        assert r.rc == 0, r.out[-3000:]
    if host.api("/api/status").get("trading_state") != "ACTIVE":
        r = host.invoke("resume", "--reason", "test: protection across a deploy is over")
        assert r.rc == 0, r.out[-3000:]
    host.wait_healthy()


def _protected_through_a_deploy(host: Host, tmp_path: Path, kind: str) -> None:
    _live_and_active(host, kind)
    zar_before = _zar_total()
    position, stop_cid = _enter(host)
    assert _protective_open() == [stop_cid]
    assert stop_cid.startswith("hp-oco-") is (kind == "oco")
    placements = _placements(kind)
    source = scratch_source(tmp_path, f"protected-{kind}")
    before = host.current()

    sampler = OpenOrderSampler()
    try:
        deployed = host.invoke("deploy", "--source", str(source), "--reason", "protection across a deploy")
    finally:
        samples = sampler.stop()
    assert deployed.rc == 0, deployed.out[-3000:]
    after = host.current()
    assert after != before
    assert "step stop" in deployed.out and "step start" in deployed.out
    assert len(samples) >= 20, "the sampler must have watched the whole deploy"
    assert all(s == [stop_cid] for s in samples), [s for s in samples if s != [stop_cid]][:3]

    # The new release adopts the protective order: same id, still one, nothing re-placed.
    health = host.wait_healthy()
    assert health["release"] == after and health["mode"] == "LIVE"
    _heartbeats_after(host, 3)
    assert _protective_open() == [stop_cid]
    assert _placements(kind) == placements
    orders = {o["customer_order_id"]: o for o in host.api("/api/orders")["orders"]}
    assert orders[stop_cid]["status"] == "OPEN"
    assert [p["pair"] for p in host.api("/api/positions")["positions"]] == [BTC]

    # Through the stop: the exchange sells; the new release reconciles the closed position, P&L exact.
    _price(Decimal(position["stop_loss"]) * Decimal("0.995"))
    _wait("the position to be closed", lambda: not host.api("/api/positions").get("positions"))
    trade = host.api("/api/trades")["trades"][0]
    assert trade["exit_reason"] == EXIT_REASON[kind]
    assert Decimal(trade["realised_pnl_zar"]) == _zar_total() - zar_before
    assert _protective_open() == []
