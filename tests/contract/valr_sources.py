"""VALR facts that are not a verbatim example in the API collection, each with the source that states it.

The verbatim examples are in ``fixtures/valr_collection.json`` (copied from VALR's API collection). Here: the
shapes other VALR texts describe, built only from the field names and values those texts give.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
COLLECTION = json.loads((FIXTURES / "valr_collection.json").read_text())["examples"]
VALR_API_MD = "../shared/valr-api.md (collected from valrdotcom/valr-agent-skills references and VALR's API docs)"


def example(example_id: str) -> dict[str, Any]:
    """One verbatim example from VALR's API collection by its id (see fixtures/valr_collection.json)."""
    for row in COLLECTION:
        if row["id"] == example_id:
            return dict(row)
    raise KeyError(example_id)


def body(example_id: str) -> Any:
    return example(example_id)["body"]


#: orderStatusType values VALR uses. Source: valr-api.md "order status" row (Placed, Active, Partially Filled,
#: Filled, Cancelled, Failed + the four below); agent-skills history.md `statuses` filter (EXPIRED,
#: PARTIALLY_FILLED_DUE_TO_SLIPPAGE, ORDER_MODIFIED); agent-skills trading.md "Modify an Order" ("Order Modified").
STATUS_VALUES: tuple[str, ...] = (
    "Placed",
    "Active",
    "Partially Filled",
    "Filled",
    "Cancelled",
    "Failed",
    "Expired",
    "Partially Filled Due To Slippage",
    "Partially Filled and Cancelled Due To Slippage",
    "Order Modified",
    "Repriced Due To Slippage",
)


def status_row(status: str, *, order_type: str = "market", time_in_force: str = "IOC",
               remaining: str = "0.023333") -> dict[str, Any]:
    """The collection's "Order Status (customerOrderId) / Partially Filled" example with another documented
    ``orderStatusType`` (and order type), as VALR's status texts describe. Nothing else changed."""
    row = dict(body("order-status-customerorderid-partially-filled"))
    row.update(orderStatusType=status, orderType=order_type, timeInForce=time_in_force, remainingQuantity=remaining)
    return row


#: A ZAR-pair maker fill with a rebate. Source: agent-skills fees.md ("When a rebate applies to a fill, it appears
#: in trade history as `makerReward` and `makerRewardCurrency` rather than `fee` and `feeCurrency`") and
#: history.md (field table). Row = the collection's Trade History example with fee/feeCurrency replaced so.
def maker_reward_trade_row() -> dict[str, Any]:
    row = dict(body("trade-history-trade-history-for-all-currency-pairs")[0])
    row.pop("fee")
    row.pop("feeCurrency")
    row.update(makerReward="0.0049889", makerRewardCurrency="ZAR", customerOrderId="maker-rebate-1")
    return row


#: Failed v2 placement answered 201 with the failure body. Source: valr-api.md ("A failed v2 placement:
#: 400 {orderId, code, message} in one source, 201 with the same body in another"); body from the collection's
#: "Limit Order V2 / Limit order placed unsuccessfully on exchange".
def failed_placement_201() -> tuple[int, dict[str, Any]]:
    return 201, dict(body("limit-order-v2-limit-order-placed-unsuccessfully-on-exchange"))


#: Unknown order as 404. Source: agent-skills trading.md ("Check completed order ... Use when active returns 404")
#: and valr-api.md ("one VALR text says 404"). The body is not documented: an empty body.
UNKNOWN_ORDER_404: tuple[int, Any] = (404, None)

#: Read-only mode. Source: valr-api.md ("Read-only mode (/v1/public/status = read-only): private calls answer
#: 503"); the status body is the collection's "VALR Status / Read Only" example. The 503 body is not documented.
READ_ONLY_503: tuple[int, Any] = (503, None)

#: 429 header. Source: valr-api.md ("429 carries x-valr-ratelimited: true; Retry-After is not documented").
RATE_LIMITED_HEADERS = {"x-valr-ratelimited": "true"}
