from ops.asyncapi import SPEC_PATH, generate, render
from shared.contracts import REGISTRY
from shared.contracts.topics import (FULFILLMENT_DROPSHIP_ORDERS, FULFILLMENT_LOCATION_UPDATES, FULFILLMENT_WORK,
                                     ORDER_COMMANDS, ORDER_EVENTS, SHARED_TOPICS)


def test_committed_spec_is_current():
    assert SPEC_PATH.read_text() == render(), "run `./oms asyncapi` and commit docs/asyncapi.json"


def test_every_topic_and_message_is_documented():
    spec = generate()
    assert {c["address"] for c in spec["channels"].values()} == {
        *SHARED_TOPICS, f"{ORDER_COMMANDS}.{{channel}}", f"{FULFILLMENT_LOCATION_UPDATES}.{{location}}",
        f"{ORDER_EVENTS}.{{channel}}", f"{FULFILLMENT_WORK}.{{location}}",
        f"{FULFILLMENT_DROPSHIP_ORDERS}.{{location}}"}
    assert {m["name"] for m in spec["components"]["messages"].values()} == set(REGISTRY)
    assert {"capture_receives_orders_commands_v1", "capture_receives_orders_commands_v1_party",
            "fulfillment_receives_fulfillment_location_updates_v1_party", "capture_sends_orders_events_v1",
            "capture_sends_orders_events_v1_party", "fulfillment_sends_fulfillment_work_v1"} <= set(spec["operations"])


def test_messages_with_customer_data_are_tagged_pii():
    messages = generate()["components"]["messages"]
    tagged = {m["title"] for m in messages.values() if any(t["name"] == "pii" for t in m["tags"])}
    assert tagged == {"PlaceOrder", "OrderAccepted", "ReserveStock", "RouteOrder", "RequestFulfillment",
                      "FulfillmentRequested", "PurchaseOrderIssued", "RecordBounce", "EditOrder", "OrderEdited"}
