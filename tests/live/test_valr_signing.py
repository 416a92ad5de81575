"""Signing: VALR's published test vector, byte for byte, through the pure signer and through the real client."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from helios.exchange.valr import ValrClient, sign_request
from helios.models import OrderRequest, OrderType, Side

VECTOR_SECRET = "4961b74efac86b25cce8fbe4c9811c4c7a787b7a5996660afcc2e287ad864363"
VECTOR_TIMESTAMP = 1558014486185
VECTOR_SIGNATURE = (
    "9d52c181ed69460b49307b7891f04658e938b21181173844b5018b2fe783a6d4"
    "c62b8e67a03de4d099e7437ebfabe12c56233b73c6a0cc0f7ae87e05f6289928"
)


class RecordingAdapter(BaseAdapter):
    """Answers every request locally and keeps the prepared requests exactly as they would go on the wire."""

    def __init__(self, answers: dict[str, tuple[int, Any]]) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []
        self.answers = answers

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        path = request.path_url.split("?")[0]
        status, payload = self.answers.get(path, (200, []))
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode()
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def recording_client(answers: dict[str, tuple[int, Any]], **kwargs: Any) -> tuple[ValrClient, RecordingAdapter]:
    adapter = RecordingAdapter(answers)
    session = requests.Session()
    session.mount("https://", adapter)
    client = ValrClient(
        "the-key",
        VECTOR_SECRET,
        session=session,
        auto_clock_sync=False,
        clock=lambda: VECTOR_TIMESTAMP / 1000,
        **kwargs,
    )
    return client, adapter


def test_signer_matches_valr_test_vector() -> None:
    assert sign_request(VECTOR_SECRET, VECTOR_TIMESTAMP, "GET", "/v1/account/balances") == VECTOR_SIGNATURE
    assert sign_request(VECTOR_SECRET, str(VECTOR_TIMESTAMP), "get", "/v1/account/balances", b"") == VECTOR_SIGNATURE


def test_signer_covers_body_query_and_subaccount() -> None:
    base = sign_request(VECTOR_SECRET, VECTOR_TIMESTAMP, "GET", "/v1/account/balances")
    assert sign_request(VECTOR_SECRET, VECTOR_TIMESTAMP, "GET", "/v1/account/balances?x=1") != base
    assert sign_request(VECTOR_SECRET, VECTOR_TIMESTAMP, "GET", "/v1/account/balances", "", "sub1") != base
    body = '{"pair":"BTCZAR"}'
    expected = hmac.new(
        VECTOR_SECRET.encode(), f"{VECTOR_TIMESTAMP}POST/v2/orders/limit{body}sub1".encode(), hashlib.sha512
    ).hexdigest()
    assert sign_request(VECTOR_SECRET, VECTOR_TIMESTAMP, "POST", "/v2/orders/limit", body, "sub1") == expected


def test_client_headers_reproduce_the_vector_byte_for_byte() -> None:
    client, adapter = recording_client({"/v1/account/balances": (200, [])})
    assert client.balances() == []
    sent = adapter.sent[0]
    assert sent.method == "GET"
    assert sent.path_url == "/v1/account/balances"
    assert sent.body is None
    assert sent.headers["X-VALR-API-KEY"] == "the-key"
    assert sent.headers["X-VALR-TIMESTAMP"] == str(VECTOR_TIMESTAMP)
    assert sent.headers["X-VALR-SIGNATURE"] == VECTOR_SIGNATURE
    assert sent.headers["Content-Type"] == "application/json"
    assert "X-VALR-SUB-ACCOUNT-ID" not in sent.headers


def test_client_signs_the_exact_body_bytes_it_sends() -> None:
    pairs = [
        {
            "symbol": "BTCZAR",
            "baseCurrency": "BTC",
            "quoteCurrency": "ZAR",
            "active": True,
            "minBaseAmount": "0.0001",
            "maxBaseAmount": "5",
            "minQuoteAmount": "10",
            "maxQuoteAmount": "5000000",
            "tickSize": "1",
            "baseDecimalPlaces": "8",
        }
    ]
    client, adapter = recording_client(
        {"/v1/public/pairs": (200, pairs), "/v2/orders/limit": (201, {"id": "abc"})},
        confirm_placement=False,
        subaccount_id="sub-7",
    )
    order = client.place_order(
        OrderRequest("cid-1", "BTCZAR", Side.BUY, OrderType.LIMIT, Decimal("0.0010"), Decimal("1200000"))
    )
    assert order.order_id == "abc"
    post = next(r for r in adapter.sent if r.method == "POST")
    assert isinstance(post.body, bytes)
    expected = sign_request(VECTOR_SECRET, VECTOR_TIMESTAMP, "POST", "/v2/orders/limit", post.body, "sub-7")
    assert post.headers["X-VALR-SIGNATURE"] == expected
    assert post.headers["X-VALR-SUB-ACCOUNT-ID"] == "sub-7"
    body = json.loads(post.body)
    assert body == {
        "side": "BUY",
        "pair": "BTCZAR",
        "customerOrderId": "cid-1",
        "quantity": "0.0010",
        "price": "1200000",
        "postOnly": False,
        "timeInForce": "GTC",
    }
    public = next(r for r in adapter.sent if r.path_url == "/v1/public/pairs")
    assert "X-VALR-SIGNATURE" not in public.headers


def test_signed_path_includes_the_query_string() -> None:
    client, adapter = recording_client({"/v1/account/tradehistory": (200, [])})
    from datetime import UTC, datetime

    client.fills(since=datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    sent = adapter.sent[0]
    assert sent.path_url == "/v1/account/tradehistory?limit=100&startTime=2024-01-02T03%3A04%3A05.006Z"
    expected = sign_request(VECTOR_SECRET, VECTOR_TIMESTAMP, "GET", sent.path_url)
    assert sent.headers["X-VALR-SIGNATURE"] == expected


def test_market_order_body_uses_base_amount() -> None:
    from helios.exchange.valr import order_body

    body = order_body(OrderRequest("m-1", "btczar", Side.BUY, OrderType.MARKET, Decimal("0.002")))
    assert body == {"side": "BUY", "pair": "BTCZAR", "customerOrderId": "m-1", "baseAmount": "0.002"}


@pytest.mark.parametrize("value", [1.5, True, None, "abc", [1]])
def test_to_decimal_refuses_non_strings(value: object) -> None:
    from helios.exchange.errors import ExchangeError
    from helios.exchange.valr import to_decimal

    with pytest.raises(ExchangeError):
        to_decimal(value)


def test_to_decimal_accepts_strings() -> None:
    from helios.exchange.valr import to_decimal

    assert to_decimal("0.00000001") == Decimal("0.00000001")
    assert to_decimal("1200000") == Decimal(1200000)
    assert isinstance(to_decimal("1.1"), Decimal)
