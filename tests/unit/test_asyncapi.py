import subprocess

import pytest

from ops.asyncapi import SPEC_PATH, generate, render
from ops.env import ROOT
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


def test_the_asyncapi_projects_own_parser_reads_the_document_without_an_error():
    """Read as an outside client reads it: @asyncapi/parser (npm), the parser of AsyncAPI's own tools, fetched once
    by deploy/asyncapi/tools.sh (without it the test fails, never skips). It refused the document until the
    delivery's discriminator was written as AsyncAPI's Schema Object has it (a property name, not OpenAPI's
    object)."""
    fetched = subprocess.run(["bash", str(ROOT / "deploy" / "asyncapi" / "tools.sh")], capture_output=True, text=True,
                             timeout=600)
    if fetched.returncode != 0:
        pytest.fail(f"deploy/asyncapi/tools.sh could not install the parser:\n{fetched.stderr}")
    parsed = subprocess.run(["node", f"{fetched.stdout.strip()}/validate.mjs", str(SPEC_PATH)], capture_output=True,
                            text=True, timeout=120)
    assert parsed.returncode == 0, parsed.stdout[-4000:] + parsed.stderr[-2000:]
