"""An outside client with the settings a channel would be given: its own SCRAM credentials, nothing else."""

import asyncio
import uuid

from shared.contracts import wrap
from shared.contracts.orders import OrderAccepted

from ..support.topics import of_type


async def test_an_order_produced_by_kcat_with_the_channels_credentials_is_accepted(driver, kcat):
    order = driver.order([(await driver.stocked_sku(1), 1)])
    envelope = wrap(order, source="kcat/channel", correlation_id=str(uuid.uuid4()))
    record = f"{order.key()}\t{envelope.model_dump_json()}\n".encode()
    await asyncio.to_thread(kcat.run, driver.config, "-P", "-t", driver.config.topic(order.topic), "-K", "\t",
                            principal="channel", input=record, check=True, timeout=30)

    await driver.orders.wait_for(of_type(OrderAccepted, driver.order_id(order)), what="the kcat order accepted")
