"""Messages for outside parties go to the party's own topic: a channel's order events also, work and purchase
orders only there. The emitter or the message says the party; the outbox rows get the topics."""

import json
import uuid

import pytest

from services.capture import saga as s
from services.capture.handlers import Journal
from shared.contracts.common import Line, ReasonCode, ShipTo
from shared.contracts.fulfillment import FulfillmentRequested, FulfillmentWithdrawn
from shared.contracts.inventory import ReserveStock
from shared.contracts.orders import OrderCancelled, OrderConfirmed, OrderRejected
from shared.contracts.topics import INVENTORY_COMMANDS, ORDER_EVENTS, destinations, every_party, read_per_party
from shared.messaging.party_topics import PartyTopics, only_per_party
from shared.messaging.unit_of_work import UnitOfWork
from shared.settings import settings

from ops.demo import address

ORDER = uuid.uuid4()


def unit_of_work(*writes: str) -> UnitOfWork:
    return UnitOfWork(conn=None, service="test", writes=frozenset(writes), settings=settings())


def test_an_order_event_goes_to_the_shared_topic_and_its_channels_own_one_envelope_two_rows():
    uow = unit_of_work(ORDER_EVENTS)
    row = uow.emit(OrderConfirmed(order_id=ORDER, location_id="WH-1", fulfillment_order_id=uuid.uuid4()),
                   correlation_id="c", party="web")
    assert [r.topic for r in uow.staged] == ["orders.events.v1", "orders.events.v1.web"]
    assert {r.event_id for r in uow.staged} == {row.event_id} and len({r.value for r in uow.staged}) == 1


def test_a_message_that_names_its_channel_needs_no_party_from_its_emitter():
    uow = unit_of_work(ORDER_EVENTS)
    uow.emit(OrderRejected(channel="app", channel_order_id="A-1", reasons=[ReasonCode(code="X")]), correlation_id="c")
    assert [r.topic for r in uow.staged] == ["orders.events.v1", "orders.events.v1.app"]


def test_work_goes_only_to_the_locations_own_topic():
    uow = unit_of_work("fulfillment.work.v1")
    ids = {"fulfillment_order_id": uuid.uuid4(), "order_id": ORDER, "location_id": "WH-BERLIN"}
    uow.emit(FulfillmentRequested(**ids, lines=[Line(sku="SKU-1", quantity=1)], delivery=ShipTo(address=address())),
             correlation_id="c")
    uow.emit(FulfillmentWithdrawn(**ids), correlation_id="c", party="ST-COLOGNE")  # the message's own word wins
    assert [r.topic for r in uow.staged] == ["fulfillment.work.v1.WH-BERLIN", "fulfillment.work.v1.WH-BERLIN"]


def test_an_order_event_without_its_channel_is_a_bug_and_other_topics_are_unchanged():
    with pytest.raises(ValueError, match="channel"):
        unit_of_work(ORDER_EVENTS).emit(OrderCancelled(order_id=ORDER, reason=ReasonCode(code="X"), stage="routing"),
                                        correlation_id="c")
    assert destinations(INVENTORY_COMMANDS, "web") == [INVENTORY_COMMANDS]


def test_the_saga_tells_every_order_event_its_channel_and_nothing_else_gets_a_copy():
    uow = unit_of_work(ORDER_EVENTS, INVENTORY_COMMANDS)
    saga = s.Saga(order_id=ORDER, state="new", lines=(Line(sku="SKU-1", quantity=1),),
                  delivery=ShipTo(address=address()), channel="shop")
    step = s.start(saga)
    cancelled = OrderCancelled(order_id=ORDER, reason=ReasonCode(code="X"), stage="reserving")
    Journal().step(uow, s.Step(step.saga, [*step.messages, cancelled]), "c", None, note="test")
    assert [(r.topic, type_of(r)) for r in uow.staged] == [
        (INVENTORY_COMMANDS, ReserveStock.message_type), (ORDER_EVENTS, OrderCancelled.message_type),
        (f"{ORDER_EVENTS}.shop", OrderCancelled.message_type)]


def test_a_partys_own_topic_is_known_by_its_name_and_ops_reads_them_all_by_pattern():
    assert read_per_party("orders.events.v1.web") == ORDER_EVENTS
    assert read_per_party("orders.events.v1") is None and read_per_party("orders.commands.v1.web") is None
    assert only_per_party("fulfillment.dropship-orders.v1.DS-ACME") and not only_per_party("orders.events.v1.web")
    assert every_party("t-1.", "fulfillment.work.v1") == r"^t\-1\.(fulfillment\.work\.v1)\.[A-Za-z0-9_-]+$"


def type_of(row) -> str:
    return json.loads(row.value)["type"]


async def test_a_copy_for_a_channel_without_a_topic_is_skipped_and_the_topics_looked_up_at_most_once_a_second():
    broker = FakeCluster({"p.orders.events.v1", "p.orders.events.v1.web"})
    rows = [{"topic": topic, "seq": seq} for seq, topic in enumerate(
        ["orders.events.v1", "orders.events.v1.web", "orders.events.v1.app", "inventory.commands.v1"])]
    known = PartyTopics("capture", "p.")
    sendable, held = await known.sort_out(conn=None, producer=broker, rows=rows)
    assert [r["topic"] for r in sendable] == ["orders.events.v1", "orders.events.v1.web", "inventory.commands.v1"]
    assert held == [] and broker.lookups == 1
    await known.sort_out(conn=None, producer=broker, rows=rows)
    assert broker.lookups == 1, "a missing channel topic is not looked up again within the second"


class FakeCluster:
    def __init__(self, topics: set[str]):
        self._topics, self.lookups = topics, 0
        self.client = self

    async def fetch_all_metadata(self) -> "FakeCluster":
        self.lookups += 1
        return self

    def topics(self) -> set[str]:
        return self._topics
