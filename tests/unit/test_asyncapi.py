from ops.asyncapi import SPEC_PATH, generate, render
from shared.contracts import REGISTRY
from shared.contracts.topics import ALL_TOPICS, FULFILLMENT_LOCATION_UPDATES, ORDER_COMMANDS


def test_committed_spec_is_current():
    assert SPEC_PATH.read_text() == render(), "run `./oms asyncapi` and commit docs/asyncapi.json"


def test_every_topic_and_message_is_documented():
    spec = generate()
    assert {c["address"] for c in spec["channels"].values()} == {
        *ALL_TOPICS, f"{ORDER_COMMANDS}.{{channel}}", f"{FULFILLMENT_LOCATION_UPDATES}.{{location}}"}
    assert {m["name"] for m in spec["components"]["messages"].values()} == set(REGISTRY)
    assert {"capture_receives_orders_commands_v1", "capture_receives_orders_commands_v1_party",
            "fulfillment_receives_fulfillment_location_updates_v1_party"} <= set(spec["operations"])


def test_messages_with_customer_data_are_tagged_pii():
    messages = generate()["components"]["messages"]
    tagged = {m["title"] for m in messages.values() if any(t["name"] == "pii" for t in m["tags"])}
    assert tagged == {"PlaceOrder", "OrderAccepted", "RouteOrder", "RequestFulfillment", "FulfillmentRequested",
                      "PurchaseOrderIssued", "RecordBounce"}
