"""Safety-gate + router overhead per order, excluding exchange I/O (target p99 <= 50 us).

The exchange is an instant in-memory stand-in (the exchange is outside Helios); everything of Helios runs for real:
gate context, the ten gates, the journal intent (real SQLite WAL file) and the result write.
Usage: python bench/bench_gates_router.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import summary
from helios import gates
from helios.config import load_settings
from helios.engine import Engine
from helios.exchange.paper import PaperExchange
from helios.journal import Journal
from helios.marketdata import ScriptedMarketData
from helios.models import (
    Balance,
    ExchangeOrder,
    Mode,
    OrderPurpose,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
)
from tests.service.conftest import ScriptedStrategy


class InstantExchange(PaperExchange):
    """Accepts every order at once without touching disk: isolates Helios' own overhead."""

    def place_order(self, request: OrderRequest) -> ExchangeOrder:
        return ExchangeOrder(request.customer_order_id, "x", request.pair, request.side, request.order_type,
                             OrderStatus.OPEN, request.price, request.quantity)

    def balances(self) -> list[Balance]:
        return [Balance("ZAR", Decimal(10**9), Decimal(0), Decimal(10**9))]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        settings = load_settings({"HELIOS_STATE_DIR": tmp, "MAX_POSITION_SIZE_ZAR": "1000000000",
                                  "MAX_PORTFOLIO_RISK_PCT": "100", "HELIOS_MAX_ORDERS_PER_MINUTE": "100000000",
                                  "MAX_OPEN_POSITIONS": "10"})
        journal = Journal.open(state, Mode.PAPER)
        exchange = InstantExchange(state / "paper.sqlite", starting_zar=Decimal(10**9))
        engine = Engine(settings=settings, journal=journal, client=exchange,
                        market=ScriptedMarketData({"BTCZAR": [Decimal(1_000_000)]}), strategy=ScriptedStrategy())
        engine.start_up()
        engine.step()
        now = datetime.now(UTC)
        proposed = gates.ProposedOrder("BTCZAR", Side.BUY, OrderPurpose.ENTRY, Decimal("0.0001"),
                                       Decimal(990_000), Decimal(980_000))
        ctx = engine.gate_context("BTCZAR", now)
        pure, with_ctx, full = [], [], []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            gates.evaluate(proposed, ctx)
            pure.append((time.perf_counter_ns() - t0) / 1000)
        for _ in range(n):
            t0 = time.perf_counter_ns()
            gates.evaluate(proposed, engine.gate_context("BTCZAR", now))
            with_ctx.append((time.perf_counter_ns() - t0) / 1000)
        for i in range(n):
            t0 = time.perf_counter_ns()
            engine.submit_order(pair="BTCZAR", side=Side.BUY, order_type=OrderType.LIMIT, quantity=Decimal("0.0001"),
                                price=Decimal(990_000), purpose=OrderPurpose.ENTRY, stop_loss=Decimal(980_000),
                                take_profit=Decimal(1_100_000))
            full.append((time.perf_counter_ns() - t0) / 1000)
            if i % 50 == 49:  # keep the book small, as a real one is: the exchange confirms them cancelled
                for cid, record in engine.orders.active.items():
                    engine.orders.on_answer(cid, ExchangeOrder(cid, "x", record.pair, record.side, record.order_type,
                                                               OrderStatus.CANCELLED, record.price, record.quantity),
                                            now)
                journal.touch(now)  # the engine's heartbeat: where WAL checkpoints happen
        print(summary(f"gates.evaluate ({len(gates.GATES)} gates, pure)", pure, "us"))
        print(summary("gate context + gates", with_ctx, "us"))
        print(summary("router: context+gates+journal intent+result", full, "us", "p99 <= 50us"))
        journal.close()
        exchange.close()


if __name__ == "__main__":
    main()
