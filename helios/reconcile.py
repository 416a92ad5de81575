"""Reconciliation with the exchange: pure comparisons, used by the engine at start-up, on resume and periodically.

* Order reconciliation: every order open on the account must be one the journal knows (by customerOrderId).
  An order nobody journaled (a manual order, another bot, a lost journal) is flagged and trading is refused until
  an operator resolves it.
* Balance reconciliation: the balances the journal implies (starting balances recorded at go-live + every fill
  - fees) must match the exchange's totals within a tolerance in ZAR. A difference is one of the plan's red flags
  ("P&L discrepancies with VALR"): alert and halt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from helios.journal import STARTING_BALANCES_KEY, Journal
from helios.models import Balance, ExchangeOrder, Side

__all__ = ["STARTING_BALANCES_KEY", "ReconcileResult", "capital_baseline", "compare_balances", "decode_balances",
           "encode_balances", "implied_balances", "unknown_open_orders"]

QUOTE = "ZAR"


@dataclass
class ReconcileResult:
    ok: bool
    issues: list[str] = field(default_factory=list)
    unknown_orders: list[dict[str, str | None]] = field(default_factory=list)
    differences: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "issues": self.issues, "unknown_orders": self.unknown_orders,
                "differences": self.differences}


def unknown_open_orders(open_orders: Iterable[ExchangeOrder], journal_ids: set[str]) -> list[ExchangeOrder]:
    """Open orders on the account that the journal does not know."""
    return [o for o in open_orders if o.customer_order_id is None or o.customer_order_id not in journal_ids]


def capital_baseline(journal: Journal) -> datetime | None:
    """When the starting balances were recorded (None: a journal from before baselines were timed)."""
    return journal.baseline_at()


def implied_balances(starting: Mapping[str, Decimal], fills: Iterable[Mapping[str, Any]],
                     flows: Iterable[Mapping[str, Any]] = ()) -> dict[str, Decimal]:
    """Starting balances moved by the journaled fills and capital flows since the baseline (rows of the journal's
    ``fills`` and ``capital_flows`` tables; the caller passes only those at or after the baseline)."""
    balances: dict[str, Decimal] = dict(starting)
    for flow in flows:
        amount = Decimal(flow["amount"])
        sign = Decimal(1) if flow["kind"] == "deposit" else Decimal(-1)
        currency = str(flow["currency"])
        balances[currency] = balances.get(currency, Decimal(0)) + sign * amount
    for fill in fills:
        base = str(fill["pair"]).removesuffix(QUOTE)
        quantity = Decimal(fill["quantity"])
        value = quantity * Decimal(fill["price"])
        fee = Decimal(fill["fee"])
        fee_currency = str(fill["fee_currency"])
        if fill["side"] == Side.BUY.value:
            balances[QUOTE] = balances.get(QUOTE, Decimal(0)) - value
            balances[base] = balances.get(base, Decimal(0)) + quantity
        else:
            balances[base] = balances.get(base, Decimal(0)) - quantity
            balances[QUOTE] = balances.get(QUOTE, Decimal(0)) + value
        balances[fee_currency] = balances.get(fee_currency, Decimal(0)) - fee
    return balances


def compare_balances(
    implied: Mapping[str, Decimal],
    actual: Iterable[Balance],
    prices_zar: Mapping[str, Decimal],
    tolerance_zar: Decimal,
) -> ReconcileResult:
    """Compare per currency, valuing differences in ZAR (base currencies at ``prices_zar``)."""
    totals = {b.currency: b.total for b in actual}
    result = ReconcileResult(ok=True)
    for currency in sorted(set(implied) | {c for c, v in totals.items() if v != 0}):
        want = implied.get(currency, Decimal(0))
        have = totals.get(currency, Decimal(0))
        diff = have - want
        if diff == 0:
            continue
        if currency == QUOTE:
            diff_zar = diff
        elif currency in prices_zar:
            diff_zar = diff * prices_zar[currency]
        else:
            result.ok = False
            result.issues.append(f"{currency}: exchange {have}, journal implies {want} (no ZAR price to value it)")
            result.differences[currency] = str(diff)
            continue
        if abs(diff_zar) > tolerance_zar:
            result.ok = False
            result.issues.append(
                f"{currency}: exchange {have}, journal implies {want} (R{diff_zar:.2f} apart, "
                f"tolerance R{tolerance_zar})"
            )
            result.differences[currency] = str(diff)
    return result


def encode_balances(balances: Iterable[Balance]) -> str:
    return json.dumps({b.currency: str(b.total) for b in balances}, sort_keys=True)


def decode_balances(text: str) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in json.loads(text).items()}
