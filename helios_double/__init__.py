"""A VALR exchange double: a real HTTP server on loopback that speaks the part of VALR's REST contract helios
uses, with controllable prices, balances, fills and faults. For tests, the demo and deploy checks; never a
substitute for reading VALR's documentation.

In process::

    with ExchangeDouble() as double:          # random free port on 127.0.0.1
        client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)

Standalone: ``python -m helios_double --port 8200 --price BTCZAR=1200000``.
"""

from helios_double.book import DEFAULT_PAIRS, DEFAULT_PRICES, Order, PairSpec, Trade
from helios_double.server import (
    DEFAULT_KEY,
    DEFAULT_PERMISSIONS,
    DEFAULT_SECRET,
    VARIANTS,
    DoubleVariant,
    ExchangeDouble,
    KeySpec,
    RequestRecord,
)

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_PAIRS",
    "DEFAULT_PERMISSIONS",
    "DEFAULT_PRICES",
    "DEFAULT_SECRET",
    "VARIANTS",
    "DoubleVariant",
    "ExchangeDouble",
    "KeySpec",
    "Order",
    "PairSpec",
    "RequestRecord",
    "Trade",
]
