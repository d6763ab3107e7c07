"""Stand-ins for the outside world: locations that work through their fulfilment orders, a payment service, and
customers who send things back.

A location picks and ships every work item it gets (or rejects a chosen share of them), as a warehouse
management system or a store's app would: a pickup order is made ready and collected; a shipment is delivered;
one in five shipments of more than one unit leaves in two parcels, and one in eleven of those ships its first
unit only and rejects the rest (a short pick). A dropship vendor acknowledges each purchase order, then ships it
the same way. A hold desk releases every hold a while after it was placed. Used by `oms load`, `oms bench` and
the fault tests.
"""

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from shared.contracts import Contract
from shared.contracts.common import Line, ReasonCode
from shared.contracts.fulfillment import (
    FulfillmentRequested,
    LocationUpdate,
    PurchaseOrderIssued,
    ReturnExpected,
    ReturnReceipt,
)
from shared.contracts.orders import (
    CancelOrderLines,
    EditOrder,
    OrderAccepted,
    OrderConfirmed,
    OrderEdited,
    OrderEditRefused,
    OrderHeld,
    OrderHoldRefused,
    OrderHoldReleased,
    OrderShipped,
    ReleaseHold,
    RequestReturn,
)
from shared.contracts.payments import (
    AdjustAuthorization,
    AuthorizationAdjusted,
    AuthorizationAdjustmentFailed,
    AuthorizationVoided,
    CapturePayment,
    PaymentCaptured,
    PaymentCaptureFailed,
    PaymentRefunded,
    RefundPayment,
    VoidAuthorization,
)
from shared.contracts.topics import (FULFILLMENT_DROPSHIP_ORDERS, FULFILLMENT_WORK, ORDER_EVENTS, PAYMENT_COMMANDS,
                                     every_party)
from shared.logging import get_logger
from shared.messaging.health import revive_coordination
from shared.settings import Settings

from .client import Client

log = get_logger(__name__)

RejectRule = Callable[[dict], bool]
WorkFilter = Callable[[dict], bool]  # the work items (FulfillmentRequested, PurchaseOrderIssued data) it acts on
WORK = {FulfillmentRequested.message_type, PurchaseOrderIssued.message_type}


def _consumer(settings: Settings, group: str, pattern: str, from_end: bool = False) -> AIOKafkaConsumer:
    """A stand-in's consumer of the topics matching `pattern`, those made later included (a metadata refresh
    away), from their start (or, `from_end`, from what is written once it has joined: a live OMS's history left
    alone)."""
    consumer = AIOKafkaConsumer(**settings.kafka_login().aiokafka(), group_id=group, metadata_max_age_ms=2000,
                                auto_offset_reset="latest" if from_end else "earliest", enable_auto_commit=False,
                                max_poll_records=500)
    consumer.subscribe(pattern=pattern)
    return consumer


def joined(stand_in, topics: Iterable[str] = ()) -> bool:
    """The stand-in's consumer has its partitions, of each of `topics` among them (one reading `from_end` sees what
    is written from now on; a pattern finds a topic made just before only at its next metadata refresh, and until
    then a consumer with partitions of older topics has joined all the same)."""
    assigned = {partition.topic for partition in stand_in._consumer.assignment()}
    return bool(assigned) and set(topics) <= assigned


async def positioned(stand_in) -> None:
    """The stand-in's consumer knows where it reads each of its partitions from: one reading `from_end` looks the
    end up only when it first fetches, and skips what was written before that (the soak's first orders)."""
    consumer = stand_in._consumer
    for partition in consumer.assignment():
        await consumer.position(partition)


async def _consume(consumer: AIOKafkaConsumer, handle: Callable[[list[dict]], Awaitable[object]]) -> None:
    """The stand-ins' loop: each batch's envelopes handled, then its offsets committed. A commit that fails (the
    group rebalanced meanwhile, as when the broker restarts) is let go: the batch comes again, and what was heard
    already — so too a message relayed twice — is skipped. A group coordination that aiokafka's own assertion
    ended after a broker restart is started again, as the services' (health.revive_coordination): suspected when
    the broker-restart fault test hung once with work on the topics that the location stand-in never handled."""
    heard = _Heard()
    await consumer.start()
    try:
        while True:
            revive_coordination(consumer, "stand-in")
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                envelopes = heard.new([json.loads(record.value) for record in records])
                await handle(envelopes)
                heard.add(envelopes)
            if batches:
                try:
                    await consumer.commit()
                except KafkaError as error:
                    log.warning("stand_in.commit_failed", error=repr(error))
    finally:
        await consumer.stop()


class _Heard:
    """The ids of the envelopes handled lately: the latest `keep` to `2 * keep` of them (a long load run hears
    millions; a redelivery or a relay's repeat comes within seconds)."""

    def __init__(self, keep: int = 100_000):
        self.keep = keep
        self._recent: set[str] = set()
        self._older: set[str] = set()

    def new(self, envelopes: list[dict]) -> list[dict]:
        """Those not heard yet, each id once."""
        unheard = {}
        for envelope in envelopes:
            if envelope.get("id") not in self._recent and envelope.get("id") not in self._older:
                unheard.setdefault(envelope.get("id"), envelope)
        return list(unheard.values())

    def add(self, envelopes: list[dict]) -> None:
        self._recent.update(envelope.get("id") for envelope in envelopes)
        if len(self._recent) >= self.keep:
            self._older, self._recent = self._recent, set()


class LocationSimulator:
    def __init__(self, settings: Settings, client: Client, *, reject: RejectRule = lambda _: False,
                 handles: WorkFilter = lambda _: True, group: str = "oms.simulator.locations", deliver: bool = True,
                 from_end: bool = False):
        self.client = client
        self.reject = reject
        self.handles = handles
        self.deliver = deliver  # whether the carrier then delivers what was shipped
        self.handled = 0
        self.rejected = 0
        # Every location's own work and purchase-order topics, those made later included (a metadata refresh away).
        self._consumer = _consumer(settings, group, pattern=every_party(settings.topic_prefix, FULFILLMENT_WORK,
                                                                         FULFILLMENT_DROPSHIP_ORDERS),
                                   from_end=from_end)

    async def run(self) -> None:
        await _consume(self._consumer, self._work)

    async def _work(self, envelopes: list[dict]) -> None:
        updates = []
        for envelope in envelopes:
            if envelope.get("type") not in WORK or not self.handles(envelope["data"]):
                continue
            data = envelope["data"]
            ids = {"fulfillment_order_id": data["fulfillment_order_id"], "order_id": data["order_id"]}
            if self.reject(data):
                self.rejected += 1
                updates.append(LocationUpdate(**ids, status="rejected", reason="SHORT_PICK"))
            elif envelope["type"] == PurchaseOrderIssued.message_type:
                updates += [LocationUpdate(**ids, status="accepted"),
                            *_shipments(ids, [Line(**line) for line in data["lines"]], self.deliver)]
            elif data["delivery"]["type"] == "pickup":  # the customer comes straight away
                updates += [LocationUpdate(**ids, status="ready_for_pickup"), LocationUpdate(**ids, status="picked_up")]
            else:
                updates += _shipments(ids, [Line(**line) for line in data["lines"]], self.deliver)
        await self.client.send_many(updates)
        self.handled += len(updates)



def _shipments(ids: dict, lines: list[Line], deliver: bool) -> list[LocationUpdate]:
    """Every unit in one parcel, or (chosen by the order id, so a redelivered work item is handled alike) the
    first unit in a parcel of its own and then the rest, or the first unit and a short pick of the rest; then
    delivered, if `deliver`."""
    def parcel(only: list[Line] | None = None) -> LocationUpdate:
        return LocationUpdate(**ids, status="shipped", carrier="DHL", lines=only,
                              tracking_number=f"TRK{uuid.uuid4().hex[:10].upper()}")

    delivered = [LocationUpdate(**ids, status="delivered")] if deliver else []
    choice = uuid.UUID(str(ids["order_id"])).int
    if sum(line.quantity for line in lines) < 2 or choice % 5:
        return [parcel(), *delivered]
    first = [Line(sku=lines[0].sku, quantity=1)]
    if choice % 11 == 0:
        return [parcel(first), LocationUpdate(**ids, status="rejected", reason="SHORT_PICK")]
    return [parcel(first), parcel(), *delivered]


class PaymentSimulator:
    """A payment service stand-in: captures what it is asked to (declining an authorisation whose reference
    starts with `decline`: INSUFFICIENT_FUNDS), voids what is left on cancellation, refunds returns."""

    def __init__(self, settings: Settings, client: Client, *, group: str = "oms.simulator.payments",
                 from_end: bool = False):
        self.client = client
        self.captured: dict[str, str] = {}  # capture id -> amount, as asked
        self._consumer = _consumer(settings, group, pattern=f"^{re.escape(settings.topic(PAYMENT_COMMANDS))}$",
                                   from_end=from_end)

    async def run(self) -> None:
        await _consume(self._consumer, lambda envelopes: self.client.send_many(self._answers(envelopes)))

    def _answers(self, envelopes: list[dict]) -> list:
        answers = []
        for envelope in envelopes:
            data = envelope.get("data", {})
            if envelope.get("type") == CapturePayment.message_type:
                ids = {"order_id": data["order_id"], "capture_id": data["capture_id"]}
                if data["authorization_reference"].startswith("decline"):
                    answers.append(PaymentCaptureFailed(**ids, reason=ReasonCode(code="INSUFFICIENT_FUNDS")))
                else:
                    self.captured[data["capture_id"]] = data["amount"]
                    answers.append(PaymentCaptured(**ids, amount=data["amount"]))
            elif envelope.get("type") == AdjustAuthorization.message_type:
                ids = {"order_id": data["order_id"], "adjustment_id": data["adjustment_id"]}
                raised = Decimal(data["amount"]) > Decimal(data["previous_amount"])
                if raised and data["authorization_reference"].startswith("decline"):
                    answers.append(AuthorizationAdjustmentFailed(**ids, reason=ReasonCode(code="INSUFFICIENT_FUNDS")))
                else:
                    answers.append(AuthorizationAdjusted(**ids, amount=data["amount"]))
            elif envelope.get("type") == VoidAuthorization.message_type:
                answers.append(AuthorizationVoided(order_id=data["order_id"], amount=data["amount"]))
            elif envelope.get("type") == RefundPayment.message_type:
                answers.append(PaymentRefunded(order_id=data["order_id"], refund_id=data["refund_id"],
                                               amount=data["amount"]))
        return answers


class CustomerSimulator:
    """Customers sending things back, and the returns desk booking them: one in `every` orders that ship
    completely gets a return of one unit of its first SKU — one in three of them an exchange for the same SKU a
    size up, which costs a euro more; a return the location is told to expect arrives at once, restocked (one in
    three written off). Like the others, chosen by the order id, so redelivery changes nothing."""

    def __init__(self, settings: Settings, client: Client, *, every: int = 6, group: str = "oms.simulator.customers",
                 from_end: bool = False):
        self.client = client
        self.every = every
        self.requested = 0
        self.exchanges = 0
        self._orders: dict[str, tuple[str, str, list[dict]]] = {}  # order id -> (channel, channel order id, lines)
        # The order events, and every location's own work topic (where returns are announced).
        self._consumer = _consumer(settings, group, pattern=f"^{re.escape(settings.topic(ORDER_EVENTS))}$|"
                                                            + every_party(settings.topic_prefix, FULFILLMENT_WORK),
                                   from_end=from_end)

    async def run(self) -> None:
        await _consume(self._consumer, lambda envelopes: self.client.send_many(self._act(envelopes)))

    def _act(self, envelopes: list[dict]) -> list:
        actions = []
        for envelope in envelopes:
            data = envelope.get("data", {})
            kind = envelope.get("type")
            if kind == OrderAccepted.message_type and not data["channel_order_id"].count("-EX-"):
                self._orders[data["order_id"]] = (data["channel"], data["channel_order_id"], data["lines"])
            elif (kind == OrderShipped.message_type and data.get("complete") and data.get("lines")
                  and data["order_id"] in self._orders and uuid.UUID(data["order_id"]).int % self.every == 0):
                actions.append(self._return(data["order_id"], data["lines"][0]["sku"]))
            elif kind == ReturnExpected.message_type:
                condition = "dispose" if uuid.UUID(data["order_id"]).int % 3 == 0 else "restock"
                actions.append(ReturnReceipt(order_id=data["order_id"], return_id=data["return_id"],
                                             lines=[{**line, "condition": condition} for line in
                                                    ({"sku": line["sku"], "quantity": line["quantity"]}
                                                     for line in data["lines"])]))
        return actions

    def _return(self, order_id: str, sku: str) -> RequestReturn:
        channel, channel_order_id, lines = self._orders[order_id]
        self.requested += 1
        exchange = []
        if uuid.UUID(order_id).int // self.every % 3 == 0:
            self.exchanges += 1
            price = next(Decimal(line["unit_price"]) for line in lines if line["sku"] == sku)
            exchange = [{"sku": sku, "quantity": 1, "unit_price": str(price + 1)}]
        return RequestReturn(channel=channel, channel_order_id=channel_order_id, return_id=f"RMA-{order_id[:8]}",
                             lines=[{"sku": sku, "quantity": 1, "reason": "CHANGED_MIND"}], exchange=exchange)


class _Later:
    """Messages a stand-in sends a while from now (a review, a retry), sent by `run` once due."""

    def __init__(self, client: Client, tick: float = 0.1):
        self.client = client
        self.tick = tick
        self._due: list[tuple[float, Contract]] = []

    def __len__(self) -> int:
        return len(self._due)

    def add(self, delay: float, message: Contract) -> None:
        self._due.append((time.monotonic() + delay, message))

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            due = [message for at, message in self._due if at <= now]
            self._due = [(at, message) for at, message in self._due if at > now]
            await self.client.send_many(due)
            await asyncio.sleep(self.tick)


class HoldDesk:
    """The people reviewing held orders: every hold placed on one of its orders (those whose channel order id
    starts with `prefix`) — by command or by a rule — is released `review_seconds` after the desk hears of it,
    except holds of a reason in `leaves` (another desk's: address checks are customer service's, EditDesk).
    Counts, each event once, the holds placed (by who placed them), released (by who released them) and refused
    (by reason code: NOT_HELD for an order cancelled meanwhile, which has no hold left)."""

    def __init__(self, settings: Settings, client: Client, *, prefix: str = "", review_seconds: float = 2.0,
                 leaves: frozenset[str] = frozenset(), group: str = "oms.simulator.holds"):
        self.client = client
        self.prefix = prefix
        self.review_seconds = review_seconds
        self.leaves = leaves
        self.placed: Counter[str] = Counter()
        self.released: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._orders: dict[str, tuple[str, str]] = {}  # order id -> (channel, channel order id)
        self._releases = _Later(client)
        self._consumer = _consumer(settings, group, pattern=f"^{re.escape(settings.topic(ORDER_EVENTS))}$")

    @property
    def pending(self) -> int:
        """Releases not sent yet."""
        return len(self._releases)

    def summary(self) -> str:
        def listed(counts: Counter[str], how: str) -> str:
            return f"{sum(counts.values())} {how}" + (
                f" ({', '.join(f'{n} {key}' for key, n in sorted(counts.items()))})" if counts else "")

        return (f"holds: {listed(self.placed, 'placed')}, {listed(self.released, 'released')}, "
                f"{listed(self.refused, 'refused')}")

    async def run(self) -> None:
        await asyncio.gather(_consume(self._consumer, self._hear), self._releases.run())

    async def _hear(self, envelopes: list[dict]) -> None:
        for envelope in envelopes:
            data, kind = envelope.get("data", {}), envelope.get("type")
            if kind == OrderAccepted.message_type and data["channel_order_id"].startswith(self.prefix):
                self._orders[data["order_id"]] = (data["channel"], data["channel_order_id"])
            if data.get("order_id") in self._orders:
                self._count(kind, data)

    def _count(self, kind: str, data: dict) -> None:
        if kind == OrderHeld.message_type:
            self.placed[data["hold"]["placed_by"]] += 1
            if data["hold"]["reason"] in self.leaves:
                return
            channel, channel_order_id = self._orders[data["order_id"]]
            release = ReleaseHold(channel=channel, channel_order_id=channel_order_id, reason=data["hold"]["reason"],
                                  released_by="hold-desk")
            self._releases.add(self.review_seconds, release)
        elif kind == OrderHoldReleased.message_type:
            self.released[data["released_by"]] += 1
        elif kind == OrderHoldRefused.message_type:
            self.refused[data["reason"]["code"]] += 1



ADDRESS_CHECK = "address_check"
HELD_EDIT = "desk-held-"  # the edit ids of edits made during an address check


class EditDesk:
    """Customer service changing orders of its own (channel order id starting with `prefix`): an order `load`
    held for an address check (ADDRESS_CHECK, left to this desk by the HoldDesk) is changed while it waits — in
    turn its address (another city: routed anew), one more unit of its first line, one unit fewer — and the hold
    released once the edit is answered; one in `every` orders of two lines or more loses its last line as soon
    as a location has it (racing the location: applied, or refused once picked or shipped). An edit refused
    ORDER_BUSY (a step under way) is asked again, with the same edit id, a moment later. Counts, each answer
    once, the edits applied and refused (by reason code)."""

    def __init__(self, settings: Settings, client: Client, *, prefix: str = "", every: int = 10,
                 retry_seconds: float = 0.5, group: str = "oms.simulator.edits"):
        self.client = client
        self.prefix = prefix
        self.every = every
        self.retry_seconds = retry_seconds
        self.applied = 0
        self.refused: Counter[str] = Counter()
        self._orders: dict[str, dict] = {}  # order id -> its OrderAccepted data
        self._asked: dict[str, Contract] = {}  # edit id -> the edit, until answered
        self._cut: set[str] = set()  # orders whose last line is being cancelled (a split confirms once per part)
        self._again = _Later(client)  # edits to ask again
        self._consumer = _consumer(settings, group, pattern=f"^{re.escape(settings.topic(ORDER_EVENTS))}$")

    @property
    def pending(self) -> int:
        """Edits not answered yet (an address check's hold is released with the answer)."""
        return len(self._asked)

    def summary(self) -> str:
        refused = ", ".join(f"{n} {code}" for code, n in sorted(self.refused.items()))
        return f"edits: {self.applied} applied, {sum(self.refused.values())} refused" + (f" ({refused})" if refused
                                                                                         else "")

    async def run(self) -> None:
        await asyncio.gather(_consume(self._consumer, self._hear), self._again.run())

    async def _hear(self, envelopes: list[dict]) -> None:
        edits = []
        for envelope in envelopes:
            data, kind = envelope.get("data", {}), envelope.get("type")
            if kind == OrderAccepted.message_type and data["channel_order_id"].startswith(self.prefix):
                self._orders[data["order_id"]] = data
            elif data.get("order_id") in self._orders:
                edits += self._act(kind, data)
        await self.client.send_many(edits)

    def _act(self, kind: str, data: dict) -> list[Contract]:
        order = self._orders[data["order_id"]]
        if kind == OrderHeld.message_type and data["hold"]["reason"] == ADDRESS_CHECK:
            return [self._ask(_edit_while_held(order))]
        if (kind == OrderConfirmed.message_type and len(order["lines"]) > 1 and order["order_id"] not in self._cut
                and uuid.UUID(order["order_id"]).int % self.every == 0):
            self._cut.add(order["order_id"])
            last = order["lines"][-1]
            return [self._ask(CancelOrderLines(channel=order["channel"], channel_order_id=order["channel_order_id"],
                                               edit_id=f"desk-last-{order['order_id'][:8]}",
                                               lines=[{"sku": last["sku"], "quantity": last["quantity"]}]))]
        if kind == OrderEdited.message_type and data["edit_id"] in self._asked:
            self.applied += 1
            return self._done(data["edit_id"])
        if kind == OrderEditRefused.message_type and data["edit_id"] in self._asked:
            if data["reason"]["code"] == "ORDER_BUSY":
                self._again.add(self.retry_seconds, self._asked[data["edit_id"]])
                return []
            self.refused[data["reason"]["code"]] += 1
            return self._done(data["edit_id"])
        return []

    def _done(self, edit_id: str) -> list[Contract]:
        """An edit answered: an address check's hold is released."""
        edit = self._asked.pop(edit_id)
        if not edit_id.startswith(HELD_EDIT):
            return []
        return [ReleaseHold(channel=edit.channel, channel_order_id=edit.channel_order_id, reason=ADDRESS_CHECK,
                            released_by="edit-desk")]

    def _ask(self, edit: Contract) -> Contract:
        self._asked[edit.edit_id] = edit
        return edit


def _edit_while_held(order: dict) -> Contract:
    """In turn (by order id): another address, one more unit of the first line, one unit fewer."""
    keys = {"channel": order["channel"], "channel_order_id": order["channel_order_id"],
            "edit_id": f"{HELD_EDIT}{order['order_id'][:8]}"}
    lines = order["lines"]
    turn = uuid.UUID(order["order_id"]).int % 3
    if turn == 0 and order["delivery"]["type"] == "ship":
        moved = {**order["delivery"]["address"], "coordinates": {"lat": 48.14, "lon": 11.58}, "city": "Munich"}
        return EditOrder(**keys, delivery={"type": "ship", "address": moved})
    if turn == 1 or sum(line["quantity"] for line in lines) < 2:
        return EditOrder(**keys, lines=[{**lines[0], "quantity": lines[0]["quantity"] + 1}, *lines[1:]])
    return CancelOrderLines(**keys, lines=[{"sku": lines[0]["sku"], "quantity": 1}])
