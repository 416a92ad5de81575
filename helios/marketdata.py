"""Market data sources. The engine calls ``poll()`` once per tick, then ``ticker(pair)`` per pair.

* ``SimMarketData`` - seeded, deterministic random walk; one step per poll, so a test can run it as fast as it likes.
* ``ScriptedMarketData`` - an explicit price path per pair (tests and the PAPER checklist).
* ``ValrMarketData`` - VALR's trade WebSocket, with the public market summary over REST as a paced fallback
  (``PublicCallPacer``: VALR allows 30 public calls a minute per IP, across all pairs).

A source that cannot answer raises ``MarketDataError``; the engine keeps the last good ticker, whose growing age
trips the ``market_data_fresh`` gate. Stale data is never silently held as current.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import requests

from helios.exchange.valr_ws import TradeStream
from helios.models import Clock, Ticker, utcnow

DEFAULT_START_PRICES: dict[str, Decimal] = {
    "BTCZAR": Decimal(1200000),
    "ETHZAR": Decimal(45000),
    "XRPZAR": Decimal(10),
    "SOLZAR": Decimal(2500),
    "USDCZAR": Decimal("17.50"),
}


class MarketDataError(Exception):
    pass


class MarketData(Protocol):
    def poll(self) -> None: ...

    def ticker(self, pair: str) -> Ticker: ...

    def close(self) -> None: ...


def _quantize(price: Decimal) -> Decimal:
    return price.quantize(Decimal(1)) if price >= 1000 else price.quantize(Decimal("0.0001"))


class SimMarketData:
    """A deterministic random walk (same seed, same path) with a fixed spread."""

    def __init__(
        self,
        pairs: Sequence[str],
        *,
        seed: int = 7,
        clock: Clock = utcnow,
        start_prices: Mapping[str, Decimal] | None = None,
        volatility_bps: int = 15,
        spread_bps: int = 4,
    ) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self._vol = volatility_bps
        self._spread = Decimal(spread_bps) / Decimal(20000)
        starts = dict(DEFAULT_START_PRICES)
        starts.update(start_prices or {})
        self._mid = {pair: starts.get(pair, Decimal(1000)) for pair in pairs}
        self._at: datetime | None = None

    def poll(self) -> None:
        for pair in sorted(self._mid):
            step_bps = self._rng.randint(-self._vol, self._vol + 1)  # slight upward drift
            self._mid[pair] = self._mid[pair] * (1 + Decimal(step_bps) / Decimal(10000))
        self._at = self._clock()

    def ticker(self, pair: str) -> Ticker:
        if pair not in self._mid:
            raise MarketDataError(f"unknown pair {pair}")
        if self._at is None:
            self.poll()
        assert self._at is not None
        mid = self._mid[pair]
        return Ticker(pair, _quantize(mid * (1 - self._spread)), _quantize(mid * (1 + self._spread)),
                      _quantize(mid), self._at)

    def close(self) -> None:
        pass


class ScriptedMarketData:
    """Prices from an explicit path: step ``i`` of a pair is ``path[i]`` (bid) with ``spread`` added for the ask.

    After the path ends the last price repeats. ``stall()`` stops the timestamps (stale data) until ``unstall()``.
    """

    def __init__(self, paths: Mapping[str, Sequence[Decimal]], *, clock: Clock = utcnow,
                 spread: Decimal = Decimal(0)) -> None:
        self._paths = {pair: list(path) for pair, path in paths.items()}
        self._clock = clock
        self._spread = spread
        self._index = -1
        self._at: datetime | None = None
        self._stalled = False

    def poll(self) -> None:
        self._index += 1
        if not self._stalled:
            self._at = self._clock()

    def stall(self) -> None:
        self._stalled = True

    def unstall(self) -> None:
        self._stalled = False

    @property
    def step(self) -> int:
        return self._index

    def ticker(self, pair: str) -> Ticker:
        if pair not in self._paths:
            raise MarketDataError(f"unknown pair {pair}")
        if self._at is None:
            raise MarketDataError("no price yet")
        path = self._paths[pair]
        bid = path[min(max(self._index, 0), len(path) - 1)]
        return Ticker(pair, bid, bid + self._spread, bid, self._at)

    def close(self) -> None:
        pass


class PublicCallPacer:
    """A shared budget for VALR's public endpoints: at most ``limit`` calls in any rolling ``window`` seconds.

    VALR allows 30 public calls a minute (its window resets at the start of each minute; a rolling window of the
    same size is stricter, so it keeps both). ``try_acquire`` never waits: a caller without budget keeps its last
    answer, whose growing age trips the ``market_data_fresh`` gate. ``record`` counts a call that must happen
    anyway (e.g. the REST client's clock sync). Thread-safe; the clock is injectable for tests."""

    def __init__(
        self, limit: int = 30, window: float = 60.0, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._monotonic = monotonic
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self._calls and self._calls[0] <= now - self.window:
            self._calls.popleft()

    def try_acquire(self) -> bool:
        with self._lock:
            now = self._monotonic()
            self._trim(now)
            if len(self._calls) >= self.limit:
                return False
            self._calls.append(now)
            return True

    def record(self) -> None:
        with self._lock:
            now = self._monotonic()
            self._trim(now)
            self._calls.append(now)

    def used(self) -> int:
        with self._lock:
            self._trim(self._monotonic())
            return len(self._calls)


#: Of VALR's 30 public calls a minute, market data may use this many; the rest is left for the REST client's own
#: public calls (server time, pair rules, status).
MARKET_DATA_PUBLIC_BUDGET = 25


class ValrMarketData:
    """VALR prices: the trade WebSocket (``MARKET_SUMMARY_UPDATE``) first, REST
    (``GET /v1/public/{pair}/marketsummary``) only as a paced fallback.

    ``ticker(pair)`` returns the WebSocket's summary while it is younger than ``rest_min_interval`` seconds;
    otherwise, at most once per ``rest_min_interval`` per pair (VALR caches the summary 10 s anyway) and only while
    the shared ``pacer`` has budget, a REST fetch. Without either it returns the newest ticker it has - whose age
    trips the staleness gate - or raises ``MarketDataError`` when it has none. Tickers carry VALR's own ``created``
    time, never the time we read them.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 3.0,
        clock: Clock = utcnow,
        pairs: Sequence[str] | None = None,
        use_websocket: bool = True,
        pacer: PublicCallPacer | None = None,
        rest_min_interval: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._clock = clock
        self._session = requests.Session()
        self._pacer = pacer or PublicCallPacer(MARKET_DATA_PUBLIC_BUDGET, 60.0, monotonic=monotonic)
        self._rest_min_interval = rest_min_interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._ws_tickers: dict[str, Ticker] = {}
        self._rest_tickers: dict[str, Ticker] = {}
        self._rest_at: dict[str, float] = {}
        self._pairs = [p.upper() for p in pairs or ()]
        self._use_websocket = use_websocket
        self._stream: TradeStream | None = None
        self.rest_calls = 0

    @property
    def pacer(self) -> PublicCallPacer:
        return self._pacer

    @property
    def streaming(self) -> bool:
        return self._stream is not None and self._stream.connected

    def _on_ticker(self, ticker: Ticker) -> None:
        with self._lock:
            self._ws_tickers[ticker.pair.upper()] = ticker

    def _ensure_stream(self, pair: str) -> None:
        if not self._use_websocket:
            return
        if pair not in self._pairs:
            self._pairs.append(pair)
            if self._stream is not None:  # a new pair: resubscribe with the full list on a fresh connection
                self._stream.stop()
                self._stream = None
        if self._stream is None:
            self._stream = TradeStream(self._base, list(self._pairs), on_ticker=self._on_ticker)
            self._stream.start()

    def poll(self) -> None:
        for pair in self._pairs:
            self._ensure_stream(pair)

    def ticker(self, pair: str) -> Ticker:
        key = pair.upper()
        self._ensure_stream(key)
        with self._lock:
            ws_ticker = self._ws_tickers.get(key)
        now_wall = self._clock()
        if ws_ticker is not None and (now_wall - ws_ticker.timestamp).total_seconds() < self._rest_min_interval:
            return ws_ticker
        last_fetch = self._rest_at.get(key)
        due = last_fetch is None or self._monotonic() - last_fetch >= self._rest_min_interval
        error: MarketDataError | None = None
        if due and self._pacer.try_acquire():
            self._rest_at[key] = self._monotonic()
            try:
                fetched = self._fetch(key)
                with self._lock:
                    self._rest_tickers[key] = fetched
            except MarketDataError as exc:
                error = exc
        with self._lock:
            candidates = [t for t in (ws_ticker, self._rest_tickers.get(key)) if t is not None]
        if candidates:
            return max(candidates, key=lambda t: t.timestamp)
        if error is not None:
            raise error
        raise MarketDataError(f"{pair}: no price yet (trade stream not connected, public REST budget spent)")

    def _fetch(self, pair: str) -> Ticker:
        url = f"{self._base}/v1/public/{pair}/marketsummary"
        self.rest_calls += 1
        try:
            response = self._session.get(url, timeout=self._timeout)
            response.raise_for_status()
            body = response.json()
            created = body.get("created")
            at = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else self._clock()
            return Ticker(pair, Decimal(body["bidPrice"]), Decimal(body["askPrice"]),
                          Decimal(body["lastTradedPrice"]), at)
        except (requests.RequestException, ValueError, KeyError, TypeError, ArithmeticError) as exc:
            raise MarketDataError(f"{pair} ticker from {self._base}: {type(exc).__name__}") from None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
        self._session.close()
