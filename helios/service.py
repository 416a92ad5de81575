"""``helios run``: wires configuration, journal, exchange client, market data, strategy, engine and API together,
and owns the process' life (single-instance lock, sd_notify, SIGTERM).

Threads: the engine loop (one tick per ``HELIOS_TICK_SECONDS``), uvicorn (API), the alert sender. The main thread
waits for SIGTERM/SIGINT, then: stop ticking -> let the in-flight tick finish -> cancel resting entry orders ->
flush the journal -> stop the API -> exit 0, all within ``HELIOS_SHUTDOWN_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from helios import __version__, sdnotify, views
from helios.alerts import Alerter, parse_alert_urls
from helios.api import create_app
from helios.config import Settings
from helios.engine import Engine
from helios.exchange.base import ExchangeClient
from helios.journal import Journal, JournalError
from helios.marketdata import (
    MARKET_DATA_PUBLIC_BUDGET,
    MarketData,
    PublicCallPacer,
    SimMarketData,
    ValrMarketData,
)
from helios.models import Clock, Mode, utcnow
from helios.orchestrator import build_exchange_client
from helios.report import starting_capital
from helios.shadow import ShadowBook
from helios.statelock import StateLock
from helios.strategy import SmaCrossover, Strategy

log = logging.getLogger("helios.service")


def release_info() -> dict[str, Any]:
    """The deployed release's manifest (``<release>/release.json`` beside the venv), if any."""
    manifest = Path(sys.prefix).parent / "release.json"
    try:
        data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
        return data
    except (OSError, ValueError):
        return {}


def build_market_data(settings: Settings, clock: Clock, pacer: PublicCallPacer | None = None) -> MarketData:
    if settings.helios_market_data == "sim":
        return SimMarketData(settings.pairs, seed=settings.helios_sim_seed, clock=clock)
    return ValrMarketData(settings.valr_base_url, clock=clock, pairs=settings.pairs, pacer=pacer)


@dataclass
class Runtime:
    settings: Settings
    journal: Journal
    client: ExchangeClient
    engine: Engine
    alerter: Alerter
    release: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)
    ready_event: threading.Event = field(default_factory=threading.Event)
    engine_thread: threading.Thread | None = None
    journal_ok: bool = True
    journal_error: str | None = None

    # --- health -----------------------------------------------------------------------------------------------
    def heartbeat_limit(self) -> float:
        return max(3 * float(self.settings.helios_tick_seconds), 5.0)

    def health(self) -> tuple[bool, dict[str, Any]]:
        engine = self.engine
        now = engine.clock()
        age = views.heartbeat_age(engine, now)
        reasons = []
        if age is None:
            reasons.append("engine has not completed a tick yet")
        elif age > self.heartbeat_limit():
            reasons.append(f"engine heartbeat is {age:.1f}s old (limit {self.heartbeat_limit():g}s)")
        if self.engine_thread is not None and not self.engine_thread.is_alive() and not self.stop_event.is_set():
            reasons.append("engine loop is not running")
        if not self.journal_ok:
            reasons.append(f"journal not writable: {self.journal_error}")
        if self.stop_event.is_set():
            reasons.append("shutting down")
        body = {
            "status": "ok" if not reasons else "unhealthy",
            "mode": engine.mode.value,
            "version": __version__,
            "release": self.release,
            "trading_state": engine.state.value,
            "last_heartbeat": None if engine.last_heartbeat is None else engine.last_heartbeat.isoformat(),
            "heartbeat_age_seconds": None if age is None else round(age, 3),
            "journal_writable": self.journal_ok,
            "exchange_connected": engine.client.is_connected(),
            "reconciliation": engine.reconciliation.to_json(),
            "balance_check": None if engine.balance_check is None else engine.balance_check.to_json(),
            "reasons": reasons,
        }
        return not reasons, body

    def status(self) -> dict[str, Any]:
        engine = self.engine
        healthy, health = self.health()
        return {
            "mode": engine.mode.value,
            "version": __version__,
            "release": self.release,
            "healthy": healthy,
            "health": health,
            "trading_state": engine.state.value,
            "last_state_change": self.journal.last_state_change(),
            "pairs": list(self.settings.pairs),
            "prices": {p: {"bid": str(t.bid), "ask": str(t.ask), "at": t.timestamp.isoformat()}
                       for p, t in list(engine.tickers.items())},
            "positions": views.positions_json(engine),
            "open_orders": len(engine.active),
            "pnl": views.pnl_json(engine),
            "limits": {
                "max_position_size_zar": str(self.settings.max_position_size_zar),
                "max_portfolio_risk_pct": str(self.settings.max_portfolio_risk_pct),
                "max_daily_loss_zar": str(self.settings.max_daily_loss_zar),
                "max_open_positions": self.settings.max_open_positions,
            },
            "gate_rejections": dict(engine.rejection_counts),
            "started_at": engine.started_at.isoformat(),
            "last_error": engine.last_error,
        }

    # --- engine loop ------------------------------------------------------------------------------------------
    def tick_once(self) -> bool:
        try:
            self.engine.step()
        except (JournalError, sqlite3.Error) as exc:
            self.journal_ok = False
            self.journal_error = type(exc).__name__
            log.error("journal write failed: %s", exc)
            return False
        except Exception:
            log.exception("engine tick failed")
            return False
        self.journal_ok = True
        self.journal_error = None
        return True

    def engine_loop(self) -> None:
        interval = float(self.settings.helios_tick_seconds)
        while not self.stop_event.is_set():
            started = time.monotonic()
            if self.tick_once():
                if not self.ready_event.is_set():
                    self.ready_event.set()
                sdnotify.notify("WATCHDOG=1")  # only a loop that really ticks feeds the watchdog
            self.stop_event.wait(max(0.0, interval - (time.monotonic() - started)))


def build_runtime(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    market: MarketData | None = None,
    strategy: Strategy | None = None,
    client: ExchangeClient | None = None,
) -> Runtime:
    journal = Journal.open(settings.helios_state_dir, settings.mode)
    try:
        exchange = client or build_exchange_client(settings, clock=clock)
        if exchange.mode is not settings.mode:
            raise JournalError(f"exchange client is {exchange.mode.value} but TRADING_MODE={settings.mode.value}")
        alerter = Alerter(parse_alert_urls(
            None if settings.alert_urls is None else settings.alert_urls.get_secret_value()
        ), service=f"helios-{settings.mode.value.lower()}")
        # ONE budget for VALR's public endpoints (30 a minute across everything): the client's public calls count
        # in it and the market data's REST fallback spends only what is left (at most MARKET_DATA_PUBLIC_BUDGET).
        # (A caller that brings its own market data brings its own pacing.)
        pacer = PublicCallPacer(MARKET_DATA_PUBLIC_BUDGET, 60.0)
        use_pacer = getattr(exchange, "use_public_pacer", None)
        if use_pacer is not None and market is None:
            use_pacer(pacer)
        engine = Engine(
            settings=settings, journal=journal, client=exchange,
            market=market or build_market_data(settings, clock, pacer), strategy=strategy or SmaCrossover(),
            clock=clock, alerter=alerter,
        )
        if settings.mode is Mode.LIVE and settings.shadow_enabled:  # rollout: the paper shadow beside LIVE
            engine.shadow = ShadowBook.open(settings, clock=clock, starting_zar=starting_capital(
                journal, settings.helios_golive_max_capital_zar))
    except BaseException:
        journal.close()
        raise
    info = release_info()
    release = settings.helios_release or str(info.get("release_id", ""))
    return Runtime(settings=settings, journal=journal, client=exchange, engine=engine,
                   alerter=alerter, release=release)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"HELIOS_API_PORT: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class ApiServer:
    """uvicorn in a background thread, on a socket we bound ourselves (a clear error when the port is taken)."""

    def __init__(self, runtime: Runtime, sock: socket.socket) -> None:
        config = uvicorn.Config(create_app(runtime), log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="helios-api",
                                       daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP API did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def wait_ready_or_stop(ready: threading.Event, stop: threading.Event, timeout: float) -> bool:
    """Wait for the first tick, but return at once when a stop is asked for (SIGTERM during start-up exits within
    a second instead of waiting out the 30 s; issue 9 finding 6). True only when ready."""
    deadline = time.monotonic() + timeout
    while not ready.is_set() and not stop.is_set() and time.monotonic() < deadline:
        ready.wait(0.05)
    return ready.is_set() and not stop.is_set()
def start_account_stream(runtime: Runtime) -> Any:
    """LIVE on VALR: the account WebSocket feeds the engine's order tracker (orders, fills; REST polling stays as
    the safety net and reconciles after every reconnect). Returns the started stream, or None (PAPER)."""
    settings = runtime.settings
    if settings.mode is not Mode.LIVE or not hasattr(runtime.client, "place_stop_limit"):
        return None
    from helios.exchange.valr_ws import AccountStream

    assert settings.valr_api_key is not None and settings.valr_api_secret is not None
    return AccountStream(settings.valr_base_url, settings.valr_api_key.get_secret_value(),
                         settings.valr_api_secret.get_secret_value(), on_event=runtime.engine.on_account_event,
                         on_reconnect=runtime.engine.on_account_reconnect,
                         subaccount_id=settings.valr_subaccount_id).start()


def run_service(settings: Settings, *, market: MarketData | None = None) -> int:
    """The service's whole life. Returns the process exit code."""
    lock = StateLock(settings.helios_state_dir).acquire()  # AlreadyRunning propagates before anything else
    try:
        sock = bind_socket(settings.helios_api_host, settings.helios_api_port)
        runtime = build_runtime(settings, market=market)
    except BaseException:
        lock.release()
        raise
    stop = runtime.stop_event

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.warning("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    api = ApiServer(runtime, sock)
    exit_code = 0
    account_stream: Any = None
    try:
        runtime.engine.start_up()
        account_stream = start_account_stream(runtime)
        runtime.engine.account_stream = account_stream  # REST order/trade polling slows while it is healthy
        runtime.engine_thread = threading.Thread(target=runtime.engine_loop, name="helios-engine", daemon=True)
        runtime.engine_thread.start()
        api.start()
        if wait_ready_or_stop(runtime.ready_event, stop, timeout=30):
            sdnotify.notify(f"READY=1\nSTATUS=Helios {settings.mode.value} {runtime.engine.state.value}")
            log.info("helios ready", extra={"mode": settings.mode.value, "url": settings.api_url,
                                            "trading_state": runtime.engine.state.value,
                                            "release": runtime.release, "version": __version__})
        elif not stop.is_set():
            log.error("engine did not complete a first tick within 30s; staying up but unhealthy")
        while not stop.wait(0.5):
            pass
    except Exception:
        log.exception("service failed")
        exit_code = 1
    finally:
        sdnotify.notify("STOPPING=1")
        started = time.monotonic()
        budget = float(settings.helios_shutdown_timeout_seconds)
        stop.set()
        if runtime.engine_thread is not None:
            runtime.engine_thread.join(timeout=budget / 2)  # the in-flight tick finishes its calls
        try:
            detail = runtime.engine.shutdown()
            log.info("shutdown: entry orders parked", extra={"shutdown": detail})
        except Exception:
            log.exception("shutdown: could not park orders")
            exit_code = 1
        api.stop(timeout=max(1.0, budget - (time.monotonic() - started)))
        if account_stream is not None:
            account_stream.stop()
        runtime.alerter.close()
        if runtime.engine.shadow is not None:  # rollout: the paper shadow's file
            runtime.engine.shadow.close()
        runtime.client.close()
        runtime.engine.market.close()
        runtime.journal.close()
        lock.release()
        log.info("helios stopped", extra={"seconds": round(time.monotonic() - started, 3)})
    return exit_code

