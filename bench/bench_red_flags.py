"""Red-flag evaluation on the engine tick: ``report.red_flag_facts`` over a week of a busy journal (a marked-equity
point and a heartbeat every minute, 500 closed trades). The engine runs it about once a minute and on the ticks
where an input moved. Numbers are printed, never asserted.
Usage: python bench/bench_red_flags.py [RUNS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import summary
from helios import report
from helios.journal import Journal
from helios.models import Fill, Mode, Side


def main(runs: int) -> None:
    now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal.open(Path(tmp), Mode.LIVE)
        for i in range(7 * 24 * 60):
            at = now - timedelta(minutes=i)
            journal.record_equity(at, Decimal(1000), Decimal(i % 7))
            journal.record_heartbeat(at)
        for i in range(500):
            closed = now - timedelta(minutes=7 * i)
            pnl = Decimal(-1 if i % 2 else 2)
            fill = Fill(f"t{i}", f"o{i}", f"c{i}", "BTCZAR", Side.SELL, Decimal(1_000_000), Decimal("0.0001"),
                        Decimal(0), "ZAR", closed)
            journal.record_fill(fill, customer_order_id=None, fee_zar=Decimal(0), realised_pnl_zar=pnl, position=None,
                                position_pair="BTCZAR", now=closed, closed_trade={
                                    "pair": "BTCZAR", "quantity": Decimal("0.0001"), "entry_price": Decimal(1),
                                    "exit_price": Decimal(1), "fees_zar": Decimal(0), "realised_pnl_zar": pnl,
                                    "exit_reason": "take_profit", "opened_at": closed - timedelta(hours=1),
                                    "closed_at": closed})
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            report.red_flag_facts(journal, report.window_ending("week", now))
            times.append((time.perf_counter() - started) * 1000)
        journal.close()
    print(summary("red-flag facts, one week (10,080 points, 500 trades)", times, "ms"))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
