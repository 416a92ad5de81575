"""Conditional TP/SL orders and order types: the client against VALR's own examples (replayed verbatim), and the
double's conditional answers compared with them.

What VALR documents (API collection, "Exchange Buy/Sell / Conditional Order", "All Conditional Orders",
"Conditional Order Status (orderId)", "Conditional Order Status History", "All Conditionals", "Conditionals by
Currency Pair", "Conditional by ID"; "Public APIs / Order Types", "Order Types for a currency pair"; agent-skills
market-data.md): conditional orders are described for perpetual futures; both triggers = one-cancels-the-other;
202 ``{id}`` on placement; no pair's order-type list contains a conditional entry.
"""

from __future__ import annotations

from decimal import Decimal

from helios.exchange.valr import CONDITIONAL_TPSL_ORDER_TYPES, ConditionalRequest, ValrClient
from helios.models import OrderStatus
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, ExchangeDouble
from tests.contract.replay import Answer, Replay
from tests.contract.test_client_against_examples import _answer, _client
from tests.contract.valr_sources import body, example


def test_no_documented_pair_lists_a_conditional_order_type() -> None:
    """Which pairs offer conditional TP/SL? VALR's order-type lists never say so (so Helios uses stop-limits)."""
    per_pair = body("order-types-for-a-currency-pair-order-types-for-a-currency-pair")
    every_pair = body("order-types-order-types")
    assert not CONDITIONAL_TPSL_ORDER_TYPES & set(per_pair)
    assert all(not CONDITIONAL_TPSL_ORDER_TYPES & set(row["orderTypes"]) for row in every_pair)
    eth = next(row for row in every_pair if row["currencyPair"] == "ETHZAR")
    assert {"STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"} <= set(eth["orderTypes"])


def test_client_decides_conditional_support_from_the_documented_order_types(replay: Replay) -> None:
    replay.on("GET", "/v1/public/ETHZAR/ordertypes",
              _answer("order-types-for-a-currency-pair-order-types-for-a-currency-pair"))
    assert _client(replay.url).supports_conditional_tpsl("ETHZAR") is False


def test_conditional_history_example_and_lookup_by_customer_order_id(replay: Replay) -> None:
    history = example("conditional-order-status-history-conditional-order-status-history")
    assert history["url"] == "/v1/orders/conditionals/:currencyPair/history"
    replay.on("GET", "/v1/orders/conditionals/AVAXUSDTPERP/history", Answer(200, history["body"]))
    client = _client(replay.url)
    (row,) = client.conditional_history("AVAXUSDTPERP")
    assert row.conditional_type == "OT_OCO" and row.status == "Placed"
    assert row.take_profit_trigger == Decimal("44.74") and row.stop_loss_trigger == Decimal("30.1")
    assert row.customer_order_id == "ConditionalByLastTraded" and row.quantity == Decimal("0.2")


def test_get_order_finds_a_waiting_protective_conditional(replay: Replay) -> None:
    """A conditional is not a regular order: the status and history calls answer VALR's "Invalid Order"; the
    client then finds Helios' own conditional (``hp-oco-`` id) in the pair's conditional history ("Placed" ->
    OPEN), instead of calling it unknown (which would leave the position's protection UNKNOWN)."""
    rows = [dict(r) for r in body("conditional-order-status-history-conditional-order-status-history")]
    rows[0]["customerOrderId"] = "hp-oco-1"  # the documented row, with Helios' id
    invalid = _answer("order-status-customerorderid-invalid-order")
    replay.on("GET", "/v1/orders/AVAXUSDTPERP/customerorderid/hp-oco-1", invalid)
    replay.on("GET", "/v1/orders/history/summary/customerorderid/hp-oco-1", invalid)
    replay.on("GET", "/v1/orders/conditionals/AVAXUSDTPERP/history", Answer(200, rows))
    found = _client(replay.url).get_order("AVAXUSDTPERP", "hp-oco-1")
    assert found is not None and found.status is OrderStatus.OPEN
    assert found.order_id == "e281eb8e-c315-4372-a7b6-8c5e5f5eb971" and found.original_quantity == Decimal("0.2")


def test_cancel_conditionals_by_pair_example(replay: Replay) -> None:
    replay.on("DELETE", "/v1/orders/conditionals", _answer("all-conditionals-deleted-all-conditionals"))
    ids = _client(replay.url).cancel_all_conditionals()
    assert ids[-1] == "c0358c7d-10fd-4b60-8193-769a53da712e" and len(ids) == 3
    per_pair = example("conditionals-by-currency-pair-deleted-conditional-by-currency-pair")
    assert per_pair["status"] == 200 and per_pair["body"] == [{"orderId": "d1469f6e-774f-422b-877a-fa7ae6a03dfe"}]


def test_double_answers_conditionals_in_the_documented_shapes() -> None:
    """The double's rows carry every field of VALR's Conditional Order Status example (same names, strings)."""
    documented = body("conditional-order-status-orderid-conditional-orders-status-orderid")
    placed = example("conditional-order-conditional-by-last-traded-successfully-placed")
    with ExchangeDouble(prices={"BTCZAR": Decimal(1_000_000)}) as double:
        client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url)
        order_id = client.place_conditional(ConditionalRequest(
            "oco-shape", "BTCZAR", Decimal("0.001"), take_profit_trigger=Decimal(1_100_000),
            take_profit_price=Decimal(1_100_000), stop_loss_trigger=Decimal(900_000),
            stop_loss_price=Decimal(890_000)))
        assert set(placed["body"]) == {"id"} and order_id
        status = client._call("GET", f"/v1/orders/conditionals/conditional/BTCZAR/orderid/{order_id}")
        history = client._call("GET", "/v1/orders/conditionals/BTCZAR/history")
        client.close()
    wanted = set(documented) - {"linkedOrderId"}  # linked to a futures order placed with it: none here
    assert wanted <= set(status), wanted - set(status)
    assert status["conditionalType"] == documented["conditionalType"] == "OT_OCO"
    assert status["orderStatusType"] == documented["orderStatusType"] == "Placed"
    assert all(isinstance(status[k], str) for k in ("quantity", "takeProfitTriggerPrice", "stopLossPlacePrice"))
    assert history == [status]
