"""Fee accounting with material fees (0.5 % maker, 1 % taker; VALR's BUY fee taken in the coin), so that dropping a
fee line from P&L or from the balance reconciliation fails a test. (At 0.1 % the fees stayed under the R5 balance
tolerance and nothing noticed a missing fee.)"""

from __future__ import annotations

from decimal import Decimal

from helios.models import Balance, Side, Signal
from helios.reconcile import compare_balances, implied_balances
from tests.service.conftest import RigFactory

D = Decimal


def test_material_fees_reach_realised_pnl_the_journal_and_the_reconciliation(make_rig: RigFactory) -> None:
    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 1_012_000, 1_012_000, 1_012_000]},
                   HELIOS_PAPER_MAKER_FEE_PCT="0.5", HELIOS_PAPER_TAKER_FEE_PCT="1",
                   MAX_POSITION_SIZE_ZAR="5000", MAX_PORTFOLIO_RISK_PCT="100")
    rig.strategy.pending.append(Signal(pair="BTCZAR", side=Side.BUY, quantity=D("0.001"), limit_price=D(990_000),
                                       stop_loss=D(970_000), take_profit=D(1_010_000), reason="fee test"))
    rig.step(5)  # rests, fills at 990,000 (maker), take-profit at 1,012,000 (market SELL, taker), closes
    trade = rig.journal.trades()[0]
    # (1,012,000 - 990,000) x 0.001 = 22.00; fees: maker 0.5 % of R990 = 4.95, taker 1 % of R1,012 = 10.12
    assert D(trade["realised_pnl_zar"]) == D("22.00") - D("4.95") - D("10.12") == D("6.93")
    assert D(trade["fees_zar"]) == D("15.07")
    assert rig.journal.fees_total() == D("15.07")
    # the balances the journal implies are the exchange's to the cent: R10,000 - 990 - 4.95 + 1,012 - 10.12
    implied = implied_balances({"ZAR": D(10_000)}, rig.journal.all_fills())
    assert implied["ZAR"] == D("10006.93") and implied.get("BTC", D(0)) == 0
    actual = rig.exchange.balances()
    assert {b.currency: b.total for b in actual if b.total}.get("ZAR") == D("10006.93")
    assert compare_balances(implied, actual, {"BTC": D(1_012_000)}, D(5)).ok


def _fill(side: str, qty: str, price: int, fee: str, currency: str) -> dict[str, str]:
    return {"pair": "BTCZAR", "side": side, "quantity": qty, "price": str(price), "fee": fee, "fee_currency": currency}


def test_a_buy_fee_taken_in_the_coin_is_reconciled() -> None:
    # VALR takes a taker BUY's fee from the coins bought: 0.01 BTC bought, 0.0001 BTC fee, 0.0099 BTC sold.
    fills = [_fill("BUY", "0.01", 1_000_000, "0.0001", "BTC"), _fill("SELL", "0.0099", 1_010_000, "99.99", "ZAR")]
    implied = implied_balances({"ZAR": D(20_000)}, fills)
    assert implied == {"ZAR": D("19899.01"), "BTC": D(0)}  # 20,000 - 10,000 + 9,999 - 99.99
    exchange = [Balance("ZAR", D("19899.01"), D(0), D("19899.01")), Balance("BTC", D(0), D(0), D(0))]
    assert compare_balances(implied, exchange, {"BTC": D(1_010_000)}, D(5)).ok
    # the same fee ignored would leave 0.0001 BTC (R101) unexplained: beyond the R5 tolerance
    result = compare_balances(implied_balances({"ZAR": D(20_000)}, [{**fills[0], "fee": "0"}, fills[1]]), exchange,
                              {"BTC": D(1_010_000)}, D(5))
    assert not result.ok and result.differences == {"BTC": "-0.0001"}


def test_slippage_per_fill_against_the_reference_price_is_reported(make_rig: RigFactory) -> None:
    from datetime import timedelta

    from helios.metrics import Window, compute_metrics
    from helios.report import collect_window_facts

    rig = make_rig({"BTCZAR": [1_000_000, 985_000, 1_012_000, 1_012_000, 1_012_000]},
                   HELIOS_PAPER_MAKER_FEE_PCT="0.5", HELIOS_PAPER_TAKER_FEE_PCT="1", HELIOS_PAPER_SLIPPAGE_BPS="50",
                   MAX_POSITION_SIZE_ZAR="5000", MAX_PORTFOLIO_RISK_PCT="100")
    rig.strategy.pending.append(Signal(pair="BTCZAR", side=Side.BUY, quantity=D("0.001"), limit_price=D(990_000),
                                       stop_loss=D(970_000), take_profit=D(1_010_000), reason="slippage test"))
    rig.step(5)
    m = compute_metrics(collect_window_facts(rig.journal, Window(rig.clock.now - timedelta(hours=1),
                                                                 rig.clock.now + timedelta(seconds=1))))
    # entry: limit fill at its limit (reference 990,000): no slippage. Exit: market SELL decided at the bid
    # 1,012,000, filled 50 bps lower at 1,006,940: (1,012,000 - 1,006,940) x 0.001 = R5.06
    assert m["slippage_zar"] == D("5.06")
    assert round(m["slippage_bps"], 4) == round(D("5.06") / (D(990) + D(1012)) * 10_000, 4)
    # fees: maker 0.5 % of R990 = 4.95; taker 1 % of R1,006.94 = 10.07 (to the cent)
    assert m["fees_zar"] == D("15.02")
    assert D(rig.journal.trades()[0]["realised_pnl_zar"]) == D("16.94") - D("15.02")
