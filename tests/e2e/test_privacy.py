"""Customer data stays out of the logs: after an order with a recognisable customer has gone all the way — and
a malformed one has been dead-lettered — no service's log holds the customer's name, email or street."""

import json
import uuid

import pytest

from shared.contracts import wrap
from shared.contracts.common import Address, ShipTo
from shared.contracts.fulfillment import FulfillmentRequested, LocationUpdate
from shared.contracts.notification import CustomerNotified
from shared.contracts.ops import DeadLetter
from shared.contracts.orders import Customer
from shared.contracts.topics import ORDER_COMMANDS

from ..support.topics import TopicWatcher, of_type
from .conftest import FRANKFURT

pytestmark = pytest.mark.e2e


async def test_no_service_logs_a_customers_personal_data(driver, oms):
    marker = uuid.uuid4().hex[:10]
    name, email, street = f"Pia Privat {marker}", f"pia.{marker}@example.org", f"Geheimweg {marker}"
    sku = await driver.stocked_sku(3)
    order = driver.order([(sku, 1)]).model_copy(update={
        "customer": Customer(customer_id=f"C-{marker}", email=email, name=name),
        "delivery": ShipTo(address=Address(name=name, line1=street, city="Frankfurt", postal_code="60311",
                                           country="DE", coordinates=FRANKFURT))})
    order_id = driver.order_id(order)
    malformed = wrap(order, source="test/channel", correlation_id=marker).model_dump(mode="json")
    malformed["data"]["lines"][0]["quantity"] = 0

    async with TopicWatcher(driver.config, "notification.events.v1") as notified:
        await driver.channel.send(order)
        [work] = await driver.work.wait_for(of_type(FulfillmentRequested, order_id))
        await driver.channel.send(LocationUpdate(fulfillment_order_id=work["data"]["fulfillment_order_id"],
                                                 order_id=order_id, status="shipped", carrier="DHL",
                                                 tracking_number=marker))
        await notified.wait_for(lambda e: e["type"] == CustomerNotified.message_type
                                and e["data"]["kind"] == "order_shipped" and e["subject"] == str(order_id))
        await driver.channel.send_raw(ORDER_COMMANDS, json.dumps(malformed).encode(), f"web/{marker}")
        await driver.dead_letters.wait_for(lambda e: e["type"] == DeadLetter.message_type
                                           and e["correlationid"] == marker)

    logs = {proc.name: proc.logfile.read_text(errors="replace") for proc in oms.values()}
    assert '"consumer.dead_letter"' in logs["capture"], "the malformed order was logged (without its data)"
    leaks = {service: [pii for pii in (name, email, street) if pii in text] for service, text in logs.items()}
    assert leaks == {service: [] for service in logs}, "personal data in the service logs"
