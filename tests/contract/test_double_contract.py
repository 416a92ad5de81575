"""The exchange double answers with VALR's documented shapes: every field of VALR's example is in the double's
answer for the same call (the double may add fields; it must not miss or rename one)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from helios.exchange.valr import ValrClient, order_status, sign_request
from helios.models import OrderStatus
from helios_double import DEFAULT_KEY, DEFAULT_SECRET, VARIANTS, DoubleVariant, ExchangeDouble
from tests.contract.valr_sources import COLLECTION, STATUS_VALUES, body, example

BTC = "BTCZAR"


@pytest.fixture
def double() -> Iterator[ExchangeDouble]:
    with ExchangeDouble() as server:
        yield server


@pytest.fixture
def client(double: ExchangeDouble) -> Iterator[ValrClient]:
    c = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, max_attempts=2, backoff_base=0.01)
    yield c
    c.close()


def _keys(row: Any) -> set[str]:
    assert isinstance(row, dict), row
    return set(row)


def _raw(client: ValrClient, verb: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    return client._call(verb, path, body=payload)


def test_every_collection_example_names_its_source() -> None:
    assert len(COLLECTION) >= 40
    for row in COLLECTION:
        assert row["source"].startswith("VALR API collection"), row["id"]


def test_public_answers_have_the_documented_fields(double: ExchangeDouble) -> None:
    pairs = requests.get(double.url + "/v1/public/pairs", timeout=5).json()
    documented_pair = {k for k in body("currency-pairs-currency-pairs")[1]}  # a SPOT pair without margin fields
    assert documented_pair <= _keys(pairs[0])
    summary = requests.get(double.url + "/v1/public/BTCZAR/marketsummary", timeout=5).json()
    assert _keys(body("market-summary-for-a-currency-pair-market-summary-for-a-currency-pair")) <= _keys(summary)
    time_body = requests.get(double.url + "/v1/public/time", timeout=5).json()
    assert _keys(body("server-time-server-time")) <= _keys(time_body)
    types = requests.get(double.url + "/v1/public/BTCZAR/ordertypes", timeout=5).json()
    assert types == body("order-types-for-a-currency-pair-order-types-for-a-currency-pair")


def test_private_answers_have_the_documented_fields(double: ExchangeDouble, client: ValrClient) -> None:
    placed = _raw(client, "POST", "/v2/orders/limit", {"side": "BUY", "quantity": "0.001", "price": "1100000",
                                                       "pair": BTC, "customerOrderId": "LimitSell",
                                                       "timeInForce": "GTC"})
    assert _keys(body("limit-order-v2-limit-order-placed-successfully")) == _keys(placed)
    status = _raw(client, "GET", "/v1/orders/BTCZAR/customerorderid/LimitSell")
    assert _keys(body("order-status-customerorderid-order-placed")) <= _keys(status)
    (open_row,) = _raw(client, "GET", "/v1/orders/open")
    documented_open = _keys(body("all-open-orders-all-open-orders")[1]) | {"customerOrderId"}
    assert documented_open <= _keys(open_row)
    double.set_price(BTC, "1099000")
    summary = _raw(client, "GET", "/v1/orders/history/summary/customerorderid/LimitSell")
    assert _keys(body("order-history-summary-customerorderid-order-history-summary-customerorderid")) <= _keys(
        summary
    )
    (trade,) = _raw(client, "GET", "/v1/account/tradehistory?limit=10")
    assert _keys(body("trade-history-trade-history-for-all-currency-pairs")[0]) <= _keys(trade)
    balances = _raw(client, "GET", "/v1/account/balances")
    documented_balance = {"currency", "available", "reserved", "total", "updatedAt", "borrowedAmount"}
    assert documented_balance <= _keys(balances[0])
    fees = _raw(client, "GET", "/v1/account/fees/trade")
    assert _keys(body("trade-fees-trade-fees")[0]) <= _keys(fees[0])
    margin = _raw(client, "GET", "/v1/margin/account/status")
    assert _keys(body("account-margin-status-account-margin-status")) == _keys(margin)
    key = _raw(client, "GET", "/v1/account/api-keys/current")
    assert {"label", "permissions", "addedAt"} <= _keys(key)
    cancel_all = _raw(client, "DELETE", "/v1/orders")
    assert cancel_all == [] or _keys(cancel_all[0]) == _keys(body("all-orders-all-orders")[0])


def test_stop_limit_and_conditional_answers_have_the_documented_fields(double: ExchangeDouble,
                                                                       client: ValrClient) -> None:
    placed = _raw(client, "POST", "/v2/orders/stop/limit", {"side": "SELL", "quantity": "0.001", "price": "1000000",
                                                            "stopPrice": "1010000", "pair": BTC,
                                                            "type": "STOP_LOSS_LIMIT", "timeInForce": "GTC",
                                                            "customerOrderId": "556789"})
    assert _keys(body("stop-limit-order-v2-stop-limit-order-placed-successfully")) == _keys(placed)
    status = _raw(client, "GET", "/v1/orders/BTCZAR/customerorderid/556789")
    assert _keys(body("order-status-customerorderid-active-stop-order")) <= _keys(status)
    assert status["orderStatusType"] == "Active" and status["orderType"] == "stop-loss-limit"
    (open_row,) = _raw(client, "GET", "/v1/orders/open")
    assert _keys(body("all-open-orders-active-and-triggered-open-stop-orders")[1]) <= _keys(open_row)
    conditional = _raw(client, "POST", "/v1/orders/conditionals", {"quantity": "0.001", "triggerType": "LAST_TRADED",
                                                                   "pair": BTC, "takeProfitTriggerPrice": "1300000",
                                                                   "takeProfitOrderPrice": "1299000",
                                                                   "customerOrderId": "ConditionalByLast"})
    assert _keys(body("conditional-order-conditional-by-last-traded-successfully-placed")) == _keys(conditional)
    (row,) = _raw(client, "GET", "/v1/orders/conditionals")
    documented = _keys(body("all-conditional-orders-all-conditional-orders")[1]) - {"positionSide", "positionId"}
    assert documented <= _keys(row)  # positionSide/positionId belong to futures positions
    gone = _raw(client, "DELETE", "/v1/orders/conditionals")
    assert _keys(gone[0]) == _keys(body("all-conditionals-deleted-all-conditionals")[2])


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_unknown_order_answer_follows_the_variant(variant: DoubleVariant) -> None:
    with ExchangeDouble(variant=variant) as double:
        client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, max_attempts=1)
        headers, _ = _signed(client, "GET", "/v1/orders/BTCZAR/customerorderid/nobody", None)
        raw = requests.get(double.url + "/v1/orders/BTCZAR/customerorderid/nobody", headers=headers, timeout=5)
        if variant.unknown_order == "400":
            documented = example("order-status-customerorderid-invalid-order")
            assert (raw.status_code, raw.json()) == (documented["status"], documented["body"])
        else:
            assert raw.status_code == 404
        client.close()


def test_documented_failed_placement_bodies_match_the_collection() -> None:
    documented = example("market-order-v2-market-order-placed-unsuccessfully-on-the-exchange")
    for variant in (DoubleVariant(failed_placement="400"), DoubleVariant(failed_placement="201")):
        with ExchangeDouble(variant=variant, balances={"ZAR": Decimal(5)}) as double:
            answer = requests.post(double.url + "/_double/price", json={"pair": BTC, "price": "1200000"}, timeout=5)
            assert answer.ok
            client = ValrClient(DEFAULT_KEY, DEFAULT_SECRET, base_url=double.url, max_attempts=1)
            url = double.url + "/v2/orders/market"
            payload = {"side": "BUY", "baseAmount": "0.01", "pair": BTC, "customerOrderId": "BUY12"}
            headers, data = _signed(client, "POST", "/v2/orders/market", payload)
            raw = requests.post(url, data=data, headers=headers, timeout=5)
            assert raw.status_code == int(variant.failed_placement)
            assert set(raw.json()) == set(documented["body"]) and raw.json()["code"] == -6
            client.close()


def _signed(
    client: ValrClient, verb: str, path: str, payload: dict[str, Any] | None
) -> tuple[dict[str, str], bytes]:
    data = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    ts = str(int(time.time() * 1000))
    return {
        "X-VALR-API-KEY": DEFAULT_KEY,
        "X-VALR-TIMESTAMP": ts,
        "X-VALR-SIGNATURE": sign_request(DEFAULT_SECRET, ts, verb, path, data),
        "Content-Type": "application/json",
    }, data


@pytest.mark.parametrize("status", STATUS_VALUES)
def test_double_can_report_every_documented_status(double: ExchangeDouble, client: ValrClient, status: str) -> None:
    _raw(client, "POST", "/v2/orders/limit", {"side": "BUY", "quantity": "0.001", "price": "1100000", "pair": BTC,
                                              "customerOrderId": "st-1", "timeInForce": "GTC"})
    double.force_status("st-1", status)
    found = client.get_order(BTC, "st-1")
    assert found is not None and found.status is order_status(status, filled=Decimal(0), remaining=Decimal("0.001"))
    assert found.status is not OrderStatus.UNKNOWN
