"""The OMS invariant checker: reads every service's schema (as an operator, with the read-only ops role) and says
what is violated. Run it against a live system with `oms check`; the fault tests run it after each fault.

Order-level invariants hold once an order has settled (shipped, delivered, picked up or cancelled); orders still
moving are counted as in flight and not judged.
"""

from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg
from pydantic import ValidationError

from shared.contracts import REGISTRY, Envelope
from shared.contracts.fulfillment import ShipmentConfirmed
from shared.contracts.orders import OrderShipped, ReturnRefunded
from shared.contracts.topics import FULFILLMENT_EVENTS, ORDER_EVENTS
from shared.db.bootstrap import SERVICES
from shared.settings import Settings

from . import history

STOCK_PER_LOCATION = """
WITH receipts AS (
    SELECT sku, location_id, sum(quantity) AS received FROM (
        SELECT sku, location_id, quantity FROM inventory.receipts
        UNION ALL SELECT sku, location_id, change FROM inventory.stock_documents) booked
    GROUP BY 1, 2
), lines AS (
    SELECT r.status, l->>'location_id' AS location_id, l->>'sku' AS sku, (l->>'quantity')::int AS quantity
    FROM inventory.reservations r, jsonb_array_elements(r.lines) l
), shipped AS (
    SELECT location_id, sku, sum(quantity) AS shipped FROM (
        SELECT l->>'location_id' AS location_id, l->>'sku' AS sku, (l->>'quantity')::int AS quantity
        FROM inventory.reservations r, jsonb_array_elements(r.committed_lines) l
        UNION ALL SELECT location_id, sku, quantity FROM inventory.purged_shipments) committed
    GROUP BY 1, 2
), allocated AS (
    SELECT sku, location_id, sum(quantity) AS allocated FROM lines
    WHERE status = 'allocated' AND location_id IS NOT NULL GROUP BY 1, 2
)
SELECT s.sku, s.location_id, s.on_hand, s.allocated, coalesce(rc.received, 0) AS received,
       coalesce(sh.shipped, 0) AS shipped, coalesce(a.allocated, 0) AS ledger_allocated
FROM inventory.location_stock s
LEFT JOIN receipts rc USING (sku, location_id)
LEFT JOIN shipped sh USING (sku, location_id)
LEFT JOIN allocated a USING (sku, location_id)
WHERE s.on_hand <> coalesce(rc.received, 0) - coalesce(sh.shipped, 0) OR s.allocated <> coalesce(a.allocated, 0)
"""

STOCK_PER_SKU = """
WITH lines AS (
    SELECT l->>'sku' AS sku, sum((l->>'quantity')::int) FILTER (WHERE r.status IN ('held', 'allocated')) AS reserved,
           sum((l->>'quantity')::int) FILTER (WHERE r.status = 'backordered') AS waiting
    FROM inventory.reservations r, jsonb_array_elements(r.lines) l
    WHERE r.status IN ('held', 'allocated', 'backordered') GROUP BY 1
), locations AS (
    SELECT sku, sum(on_hand) AS on_hand FROM inventory.location_stock GROUP BY 1
)
SELECT s.sku, s.on_hand, s.reserved, s.backordered, coalesce(loc.on_hand, 0) AS location_on_hand,
       coalesce(l.reserved, 0) AS ledger, coalesce(l.waiting, 0) AS waiting
FROM inventory.sku_stock s LEFT JOIN lines l USING (sku) LEFT JOIN locations loc USING (sku)
WHERE s.on_hand <> coalesce(loc.on_hand, 0) OR s.reserved <> coalesce(l.reserved, 0)
   OR s.backordered <> coalesce(l.waiting, 0)
"""

CAPACITY_USAGE = """
WITH claims AS (
    SELECT location_id, day, count(*) FILTER (WHERE released_at IS NULL) AS held
    FROM routing.capacity_claims GROUP BY 1, 2
)
SELECT location_id, day, coalesce(u.used, 0) AS used, coalesce(c.held, 0) AS held
FROM routing.capacity_usage u FULL JOIN claims c USING (location_id, day)
WHERE coalesce(u.used, 0) <> coalesce(c.held, 0)
"""

# An order has settled once it is shipped (or delivered), collected in store, or cancelled; `told` counts the
# customer messages of its final state.
HANDED_OVER = ("shipped", "delivered", "picked_up")
SETTLED = (*HANDED_OVER, "cancelled")
# Every counter equals the sum of its ledger entries (network rows: location_id NULL).
STOCK_LEDGER = """
WITH sums AS (
    SELECT sku, coalesce(location_id, '') AS location_id, sum(on_hand) AS on_hand, sum(reserved) AS reserved,
           sum(allocated) AS allocated
    FROM inventory.stock_ledger GROUP BY 1, 2
), counters AS (
    SELECT sku, '' AS location_id, on_hand, reserved, 0 AS allocated FROM inventory.sku_stock
    UNION ALL SELECT sku, location_id, on_hand, 0, allocated FROM inventory.location_stock
)
SELECT coalesce(c.sku, s.sku) AS sku, coalesce(c.location_id, s.location_id) AS location_id,
       c.on_hand, c.reserved, c.allocated, s.on_hand AS ledger_on_hand, s.reserved AS ledger_reserved,
       s.allocated AS ledger_allocated
FROM counters c FULL JOIN sums s ON c.sku = s.sku AND c.location_id = s.location_id
WHERE (coalesce(c.on_hand, 0), coalesce(c.reserved, 0), coalesce(c.allocated, 0))
      <> (coalesce(s.on_hand, 0), coalesce(s.reserved, 0), coalesce(s.allocated, 0))
"""

# What the payment service captured for an order never exceeds what the channel had authorised (an exchange's
# difference aside), and it never refunded more than it captured.
OVER_CAPTURED = """
WITH paid AS (
    SELECT s.order_id, (SELECT coalesce(sum((c->>1)::numeric), 0) FROM jsonb_array_elements(s.captures) c) AS captured,
           coalesce((o.placed->'payment'->>'amount')::numeric, 0) AS authorized
    FROM capture.orders o JOIN capture.order_sagas s USING (order_id) WHERE s.captures <> '[]'
), returned AS (
    SELECT order_id, coalesce(sum(refunded), 0) AS refunded,
           coalesce(sum(greatest(price_difference, 0)), 0) AS charged_for_exchanges
    FROM capture.returns GROUP BY order_id
)
SELECT p.order_id, p.authorized, p.captured, coalesce(r.refunded, 0) AS refunded
FROM paid p LEFT JOIN returned r USING (order_id)
WHERE p.captured > p.authorized + coalesce(r.charged_for_exchanges, 0) OR coalesce(r.refunded, 0) > p.captured
"""

# Returns take back no more than shipped, and every approved return has arrived (a settled system).
RETURNS = """
WITH returned AS (
    SELECT r.order_id, l->>'sku' AS sku, sum((l->>'quantity')::int) AS returned,
           count(*) FILTER (WHERE r.status <> 'received') AS open
    FROM capture.returns r, jsonb_array_elements(r.lines) l GROUP BY 1, 2
), shipped AS (
    SELECT s.order_id, l->>'sku' AS sku, sum((l->>'quantity')::int) AS shipped
    FROM capture.order_sagas s, jsonb_array_elements(s.shipped) l GROUP BY 1, 2
)
SELECT r.order_id, r.sku, r.returned, coalesce(s.shipped, 0) AS shipped, r.open
FROM returned r LEFT JOIN shipped s USING (order_id, sku)
WHERE r.returned > coalesce(s.shipped, 0) OR r.open > 0
"""

# An order never ships more of a SKU than it (as last edited) has, and every edit got its answer.
BEYOND_ORDERED = """
WITH ordered AS (
    SELECT o.order_id, l->>'sku' AS sku, (l->>'quantity')::int AS ordered
    FROM capture.orders o, jsonb_array_elements(o.placed->'lines') l
), shipped AS (
    SELECT s.order_id, l->>'sku' AS sku, sum((l->>'quantity')::int) AS shipped
    FROM capture.order_sagas s, jsonb_array_elements(s.shipped) l GROUP BY 1, 2
)
SELECT s.order_id, s.sku, s.shipped, coalesce(o.ordered, 0) AS ordered
FROM shipped s LEFT JOIN ordered o USING (order_id, sku) WHERE s.shipped > coalesce(o.ordered, 0)
"""
UNANSWERED_EDITS = """
SELECT e.order_id, e.edit_id FROM capture.order_edits e JOIN capture.order_sagas s USING (order_id)
WHERE e.answer IS NULL AND s.edit IS NULL
"""

SETTLED_ORDERS = """
SELECT o.order_id, o.status, s.state, r.status AS reservation,
       (SELECT count(*) FROM fulfillment.fulfillment_orders f WHERE f.order_id = o.order_id
          AND f.status IN ('requested', 'accepted', 'picked', 'packed', 'ready_for_pickup')) AS open_fulfilment,
       (SELECT count(*) FROM fulfillment.fulfillment_orders f WHERE f.order_id = o.order_id
          AND f.status IN ('shipped', 'delivered', 'picked_up')) AS handed_over_fulfilment,
       (SELECT count(*) FROM jsonb_array_elements(s.parts) p
        WHERE p->>'status' IN ('shipped', 'delivered', 'picked_up')) AS handed_over_parts,
       (SELECT count(*) FROM notification.notifications n WHERE n.order_id = o.order_id
          AND n.kind = 'order_' || s.state) AS told
FROM capture.orders o
JOIN capture.order_sagas s USING (order_id)
LEFT JOIN inventory.reservations r USING (order_id)
WHERE s.state = ANY($1::text[])
"""


@dataclass
class Report:
    orders: int = 0
    settled: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        flight = ", ".join(f"{state} {n}" for state, n in sorted(self.in_flight.items())) or "none"
        settled = ", ".join(f"{state} {self.by_state.get(state, 0)}" for state in SETTLED)
        lines = [f"orders {self.orders}: {settled}, in flight: {flight}",
                 f"violations: {len(self.violations)}"]
        return "\n".join(lines + [f"  - {v}" for v in self.violations])


async def check(conn: asyncpg.Connection) -> Report:
    report = Report()
    states = await conn.fetch("SELECT state, count(*) AS n FROM capture.order_sagas GROUP BY state")
    counts = {r["state"]: r["n"] for r in states}
    report.by_state = counts
    report.orders = await conn.fetchval("SELECT count(*) FROM capture.orders")
    report.settled = sum(counts.get(state, 0) for state in SETTLED)
    report.in_flight = {s: n for s, n in counts.items() if s not in SETTLED}
    missing = report.orders - sum(counts.values())
    if missing:
        report.violations.append(f"{missing} orders without a saga")
    for row in await conn.fetch(STOCK_PER_LOCATION):
        report.violations.append(
            f"stock {row['sku']}@{row['location_id']}: on hand {row['on_hand']} but received {row['received']} - "
            f"shipped {row['shipped']}; allocated {row['allocated']} but reservations allocate "
            f"{row['ledger_allocated']}")
    for row in await conn.fetch(STOCK_PER_SKU):
        report.violations.append(
            f"stock {row['sku']}: network on hand {row['on_hand']} vs locations {row['location_on_hand']}; "
            f"reserved {row['reserved']} vs live reservations {row['ledger']}; "
            f"backordered {row['backordered']} vs waiting orders {row['waiting']}")
    for row in await conn.fetch(STOCK_LEDGER):
        where = f"{row['sku']}@{row['location_id']}" if row["location_id"] else f"{row['sku']} (network)"
        report.violations.append(
            f"stock {where}: counters on hand {row['on_hand']}, reserved {row['reserved']}, allocated "
            f"{row['allocated']} but the ledger sums to {row['ledger_on_hand']}, {row['ledger_reserved']}, "
            f"{row['ledger_allocated']}")
    for row in await conn.fetch(CAPACITY_USAGE):
        report.violations.append(f"capacity {row['location_id']} on {row['day']}: used {row['used']} "
                                 f"but {row['held']} fulfilment orders hold it")
    for row in await conn.fetch(RETURNS):
        report.violations.append(f"order {row['order_id']}: {row['returned']} {row['sku']} in returns of "
                                 f"{row['shipped']} shipped, {row['open']} not arrived")
    for row in await conn.fetch(OVER_CAPTURED):
        report.violations.append(f"order {row['order_id']}: captured {row['captured']} of {row['authorized']} "
                                 f"authorised, refunded {row['refunded']}")
    for row in await conn.fetch(BEYOND_ORDERED):
        report.violations.append(f"order {row['order_id']}: shipped {row['shipped']} {row['sku']} of "
                                 f"{row['ordered']} ordered")
    for row in await conn.fetch(UNANSWERED_EDITS):
        report.violations.append(f"order {row['order_id']}: edit {row['edit_id']} never answered")
    for row in await conn.fetch(SETTLED_ORDERS, list(SETTLED)):
        report.violations.extend(_order_violations(row))
    for service in SERVICES:
        if parked := await conn.fetchval(f"SELECT count(*) FROM {service}.outbox_parked"):
            report.violations.append(f"{parked} messages {service} staged were never published (outbox_parked)")
    return report


def _order_violations(row: asyncpg.Record) -> list[str]:
    order, state = row["order_id"], row["state"]
    found = []
    if row["status"] != state:
        found.append(f"order {order}: status {row['status']} but saga {state}")
    if row["open_fulfilment"]:
        found.append(f"order {order}: {state} with {row['open_fulfilment']} open fulfilment orders")
    if state in HANDED_OVER:
        if row["reservation"] != "committed":
            found.append(f"order {order}: {state} but reservation {row['reservation']}")
        if not 1 <= row["handed_over_fulfilment"] == row["handed_over_parts"]:
            found.append(f"order {order}: {state} with {row['handed_over_fulfilment']} fulfilment orders handed over "
                         f"but {row['handed_over_parts']} parts of its saga")
    elif row["reservation"] not in (None, "released", "expired"):
        found.append(f"order {order}: cancelled but reservation {row['reservation']}")
    if row["told"] < 1:  # one per order, or per shipment (the key of notifications allows no more)
        found.append(f"order {order}: no customer message for {state}")
    return found


async def check_topics(settings: Settings) -> list[str]:
    """Exactly once in effect on the wire: one ShipmentConfirmed and one OrderShipped per shipment (a fulfilment
    order ships in one or several). A message relayed twice after a crash keeps its id, which consumers
    deduplicate, so only distinct ids count."""
    shipments = await _distinct_ids(settings, FULFILLMENT_EVENTS, ShipmentConfirmed.message_type, "shipment_id")
    shipped = await _distinct_ids(settings, ORDER_EVENTS, OrderShipped.message_type, "shipment_id")
    refunded = await _distinct_ids(settings, ORDER_EVENTS, ReturnRefunded.message_type, "return_id", "order_id")
    return ([f"shipment {k}: {len(v)} different ShipmentConfirmed events" for k, v in shipments.items()
             if len(v) > 1] +
            [f"shipment {k}: {len(v)} different OrderShipped events" for k, v in shipped.items() if len(v) > 1] +
            [f"return {k}: {len(v)} different ReturnRefunded events" for k, v in refunded.items() if len(v) > 1])


async def _distinct_ids(settings: Settings, topic: str, message_type: str, *key_fields: str) -> dict[str, set[str]]:
    """Distinct envelope ids per key, among the well-formed messages of this type (a topic may also hold bytes
    that are not, which its consumers dead-letter)."""
    seen: dict[str, set[str]] = defaultdict(set)
    async for record in history.records(settings, topic):
        try:
            envelope = Envelope.model_validate_json(record.value or b"")
            payload = REGISTRY[message_type].model_validate(envelope.data) if envelope.type == message_type else None
        except ValidationError:
            continue
        if payload is not None:
            keys = [getattr(payload, field) for field in key_fields]
            if None not in keys:  # an older sender's OrderShipped names no shipment: nothing to count it by
                seen["/".join(map(str, keys))].add(str(envelope.id))
    return seen
