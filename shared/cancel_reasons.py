"""Why an order was cancelled, in the words a customer reads: the same in their messages and on the tracking
page."""

# By OrderCancelled.reason.code.
CANCEL_REASONS = {
    "CUSTOMER_CANCELLED": "You asked us to cancel it.",
    "OUT_OF_STOCK": "Some of the items are out of stock.",
    "UNKNOWN_SKU": "One of the items is not sold by us (any more).",
    "NO_LOCATION_WITH_STOCK": "None of our warehouses or stores had all the items.",
    "NO_ROUTE": "None of our warehouses or stores could send it to your address.",
    "PICKUP_STORE_NO_STOCK": "The store you chose for pickup does not have all the items.",
    "PICKUP_STORE_UNKNOWN": "The store you chose for pickup does not take pickup orders.",
    "PICKUP_REJECTED": "The store you chose for pickup could not prepare it.",
    "NOT_COLLECTED": "It was not collected from the store in time.",
    "RESERVATION_EXPIRED": "We could not confirm it in time, so the items were given back.",
    "STEP_TIMEOUT": "A technical problem kept us from processing it in time.",
}
UNKNOWN_CANCEL_REASON = "We could not fulfil it."


def cancel_reason(code: str) -> str:
    return CANCEL_REASONS.get(code, UNKNOWN_CANCEL_REASON)
