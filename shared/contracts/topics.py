"""Topic names: <domain>.<kind>.v<version>. One writer per topic; order-scoped topics are keyed by order id."""

import re

ORDER_COMMANDS = "orders.commands.v1"  # sales channels -> capture
ORDER_EVENTS = "orders.events.v1"  # capture -> notification, ERP; each channel's own copy: orders.events.v1.<channel>
ORDER_PURGES = "orders.purges.v1"  # capture -> every service, ERP: orders past their retention, to be forgotten
INVENTORY_COMMANDS = "inventory.commands.v1"  # saga, ERP/WMS -> inventory
INVENTORY_EVENTS = "inventory.events.v1"  # inventory -> saga
INVENTORY_AVAILABILITY = "inventory.availability.v1"  # inventory -> channels
ROUTING_COMMANDS = "routing.commands.v1"  # saga, ops -> routing
ROUTING_EVENTS = "routing.events.v1"  # routing -> saga; location kinds -> fulfillment
FULFILLMENT_COMMANDS = "fulfillment.commands.v1"  # saga -> fulfillment
FULFILLMENT_WORK = "fulfillment.work.v1"  # fulfillment -> each location (warehouse, store): <topic>.<location>
FULFILLMENT_DROPSHIP_ORDERS = "fulfillment.dropship-orders.v1"  # fulfillment -> each dropship vendor: <topic>.<vendor>
FULFILLMENT_LOCATION_UPDATES = "fulfillment.location-updates.v1"  # locations -> fulfillment
FULFILLMENT_EVENTS = "fulfillment.events.v1"  # fulfillment -> ERP, saga
NOTIFICATION_COMMANDS = "notification.commands.v1"  # ops -> notification: channel settings, preferences, bounces
NOTIFICATION_EVENTS = "notification.events.v1"  # notification -> ops, audit
PAYMENT_COMMANDS = "payments.commands.v1"  # saga -> the payment service: capture, void
PAYMENT_EVENTS = "payments.events.v1"  # the payment service -> saga
TRACKING_ORDER_HISTORY = "tracking.order-history.v1"  # tracking -> its own rebuilds: compacted, one record per order
DEAD_LETTERS = "ops.dead-letters.v1"  # any consumer -> ops: messages that could not be processed

ALL_TOPICS = (
    ORDER_COMMANDS,
    ORDER_EVENTS,
    ORDER_PURGES,
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    INVENTORY_AVAILABILITY,
    ROUTING_COMMANDS,
    ROUTING_EVENTS,
    FULFILLMENT_COMMANDS,
    FULFILLMENT_WORK,
    FULFILLMENT_DROPSHIP_ORDERS,
    FULFILLMENT_LOCATION_UPDATES,
    FULFILLMENT_EVENTS,
    NOTIFICATION_COMMANDS,
    NOTIFICATION_EVENTS,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    TRACKING_ORDER_HISTORY,
    DEAD_LETTERS,
)

# Kept by key, not by time: the last record of each key stays (cleanup.policy=compact, no retention).
COMPACTED_TOPICS = frozenset({TRACKING_ORDER_HISTORY})

DESCRIPTIONS = {
    ORDER_COMMANDS: "Sales channels place orders here. Keyed by channel/channel_order_id.",
    ORDER_EVENTS: "Order lifecycle: accepted or rejected (reason codes), confirmed, shipped, cancelled (reason code). "
                  "Every channel's orders; each channel reads its own on orders.events.v1.<channel>.",
    ORDER_PURGES: "Orders closed for longer than their retention (OMS_ORDER_RETENTION_DAYS): capture has deleted "
                  "its records of them, and every service deletes its own. Keyed by order id.",
    INVENTORY_COMMANDS: "Reservation commands from the order saga; stock receipts, counts, adjustments and safety "
                        "stock from ERP/WMS.",
    INVENTORY_EVENTS: "Answers to reservation commands, expired reservations, booked receipts and adjustments.",
    INVENTORY_AVAILABILITY: "A SKU's network available-to-promise crossed zero or the low-stock threshold. "
                            "Keyed by SKU.",
    ROUTING_COMMANDS: "Sourcing requests from the saga; location master data from ops.",
    ROUTING_EVENTS: "Sourcing decisions with their explanation, or the reason none was possible.",
    FULFILLMENT_COMMANDS: "Fulfilment requests from the order saga.",
    FULFILLMENT_WORK: "Work items for one location (warehouse, store): a topic per location.",
    FULFILLMENT_DROPSHIP_ORDERS: "Purchase orders for one dropship vendor, and their cancellations: a topic per "
                                 "vendor. Keyed by vendor location id.",
    FULFILLMENT_LOCATION_UPDATES: "Locations report pick, pack and ship (carrier, tracking number).",
    FULFILLMENT_EVENTS: "ERP-facing fulfilment events; one ShipmentConfirmed per fulfilment order in effect.",
    NOTIFICATION_COMMANDS: "Channel delivery settings (email, webhook), customer opt-outs and bounces, from ops.",
    NOTIFICATION_EVENTS: "Customer messages produced, delivered or given up on (no personal data).",
    PAYMENT_COMMANDS: "Capture a shipment's amount, void what is left of an authorisation. Keyed by order id.",
    PAYMENT_EVENTS: "The payment service's answers: captured, capture failed, voided. Keyed by order id.",
    TRACKING_ORDER_HISTORY: "Each order's events as the tracking read model keeps them (no personal data). "
                            "Compacted, keyed by order id: rebuilds read it for orders older than the other topics.",
    DEAD_LETTERS: "Messages a consumer could not process: reason, source position and the original bytes.",
}

PARTITIONS = 6

# Topics an outside party reads only its own part of: each message is for one party (Contract.party, or named where
# it is emitted), and goes to `<topic>.<party>`, which only that party's principal may read (ops/principals.py).
PARTY_READ_TOPICS = {ORDER_EVENTS: "channel", FULFILLMENT_WORK: "location", FULFILLMENT_DROPSHIP_ORDERS: "location"}
# The field by which a message names the party of each kind (Contract.party).
PARTY_FIELDS = {"channel": "channel", "location": "location_id"}
# Of those, the topics that exist only per party: no service or ERP reads them whole (ops reads them by pattern).
# The others keep every message on the topic itself too, for our services and the ERP.
PER_PARTY_ONLY = frozenset({FULFILLMENT_WORK, FULFILLMENT_DROPSHIP_ORDERS})
# The topics `oms prepare` creates; a party's own topics are created when it is added (ops/principals.py).
SHARED_TOPICS = tuple(topic for topic in ALL_TOPICS if topic not in PER_PARTY_ONLY)


def party_topic_of(topic: str, party: str) -> str:
    return f"{topic}.{party}"


def every_party(prefix: str, *topics: str) -> str:
    """A pattern of every party's own part of these topics (`<prefix><topic>.<party>`), for ops' readers."""
    return f"^{re.escape(prefix)}({'|'.join(map(re.escape, topics))})\\.[A-Za-z0-9_-]+$"


def destinations(topic: str, party: str | None) -> list[str]:
    """Where a message of `topic` for `party` goes: the topic, its party's own, or both."""
    if topic not in PARTY_READ_TOPICS:
        return [topic]
    if not party:
        raise ValueError(f"a message on {topic} must name the {PARTY_READ_TOPICS[topic]} it is for")
    own = party_topic_of(topic, party)
    return [own] if topic in PER_PARTY_ONLY else [topic, own]


def read_per_party(topic: str) -> str | None:
    """The topic read per party that `topic` is a party's own part of (None: it is not a party's)."""
    return next((shared for shared in PARTY_READ_TOPICS if topic.startswith(shared + ".")), None)
