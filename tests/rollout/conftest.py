"""A real journal (SQLite file in a tmp dir) and helpers that script its history: closed trades, the marked-equity
curve, heartbeats and events, at chosen times."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from helios.journal import Journal
from helios.models import Fill, Mode, Side

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)  # Monday 08:00 in Johannesburg (UTC+2)
_ids = itertools.count(1)


def at(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours, minutes=minutes)


def add_trade(journal: Journal, pnl: Decimal | int | str, closed_at: datetime) -> None:
    """One closed round trip with the given realised P&L (net of fees), as the engine journals it."""
    n = next(_ids)
    value = Decimal(pnl)
    fill = Fill(f"t{n}", f"o{n}", f"c{n}", "BTCZAR", Side.SELL, Decimal(1_000_000), Decimal("0.0001"), Decimal(0),
                "ZAR", closed_at)
    journal.record_fill(fill, customer_order_id=None, fee_zar=Decimal(0), realised_pnl_zar=value, position=None,
                        position_pair="BTCZAR", now=closed_at,
                        closed_trade={"pair": "BTCZAR", "quantity": Decimal("0.0001"), "entry_price": Decimal(1),
                                      "exit_price": Decimal(1), "fees_zar": Decimal(0), "realised_pnl_zar": value,
                                      "exit_reason": "take_profit", "opened_at": closed_at - timedelta(hours=1),
                                      "closed_at": closed_at})


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "state", Mode.LIVE)
    yield j
    j.close()


from tests.live.test_live_engine import double, make_live, no_secrets_logged  # noqa: E402,F401  (LIVE engine rig)
from tests.service.conftest import make_rig  # noqa: E402,F401  (the engine rig fixture, for the fee tests)
