"""Market data sources. The engine calls ``poll()`` once per tick, then ``ticker(pair)`` per pair.

* ``SimMarketData`` - seeded, deterministic random walk; one step per poll, so a test can run it as fast as it likes.
* ``ScriptedMarketData`` - an explicit price path per pair (tests and the PAPER checklist).
* ``ValrMarketData`` - VALR's public market summary over REST.

A source that cannot answer raises ``MarketDataError``; the engine keeps the last good ticker, whose growing age
trips the ``market_data_fresh`` gate. Stale data is never silently held as current.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import requests

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


class ValrMarketData:
    """VALR public ticker: ``GET /v1/public/{pair}/marketsummary`` (no key needed)."""

    def __init__(self, base_url: str, *, timeout: float = 3.0, clock: Clock = utcnow) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._clock = clock
        self._session = requests.Session()

    def poll(self) -> None:
        pass

    def ticker(self, pair: str) -> Ticker:
        url = f"{self._base}/v1/public/{pair}/marketsummary"
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
        self._session.close()
