"""Routing handlers: location master data, one explained sourcing decision per RouteOrder (with, when asked,
inventory's pinning of the order where it is routed), and the daily capacity of each location, counted from the
fulfilment orders it is given and given back when they end."""

from shared.contracts.common import Assignment, ReasonCode
from shared.contracts.fulfillment import FulfillmentCancelled, FulfillmentOrderCreated, FulfillmentRejected
from shared.contracts.inventory import AllocateReservation
from shared.contracts.orders import OrderPurged
from shared.contracts.routing import LocationRegistered, OrderRouted, RegisterLocation, RouteNotFound, RouteOrder
from shared.messaging.retention import purged_order_ids
from shared.messaging.unit_of_work import Message, UnitOfWork

from . import store
from .domain import Decision, Network, Order, choose
from .rules import rule_set


async def register_locations(uow: UnitOfWork, batch: list[Message[RegisterLocation]]) -> None:
    for message in batch:
        await store.upsert_location(uow.conn, message.payload)
        uow.reply(LocationRegistered(location_id=message.payload.location_id, kind=message.payload.kind), message)


async def route_orders(uow: UnitOfWork, batch: list[Message[RouteOrder]]) -> None:
    """One sourcing decision per RouteOrder; the batch's candidate locations and their capacity use are read once
    and its decisions written in one statement."""
    rules = rule_set(uow.settings.routing_rules)
    candidate_ids = {a.location_id for m in batch for a in m.payload.availability}
    candidate_ids |= {m.payload.delivery.store_id for m in batch if m.payload.delivery.type == "pickup"}
    network = Network(await store.load_locations(uow.conn, candidate_ids),
                      await store.used_today(uow.conn, candidate_ids))
    decisions = []
    for message in batch:
        cmd = message.payload
        decision = choose(Order(cmd.delivery, cmd.lines, cmd.availability, frozenset(cmd.exclude_locations),
                                cmd.order_value), network, rules)
        decisions.append((cmd.order_id, decision))
        for answer in _answers(cmd, decision):
            uow.reply(answer, message)
    await store.record_decisions(uow.conn, decisions)


def _answers(cmd: RouteOrder, decision: Decision) -> list[OrderRouted | RouteNotFound | AllocateReservation]:
    """The decision; routed with `allocate`, also inventory's pinning of the reservation there, which saves the
    saga the round trip of asking for it once it has the decision."""
    if decision.location_id is None:
        return [RouteNotFound(order_id=cmd.order_id, details=decision.details,
                              reason=ReasonCode(code=decision.reason_code, detail=decision.explanation))]
    routed = OrderRouted(order_id=cmd.order_id, location_id=decision.location_id, explanation=decision.explanation,
                         distance_km=decision.distance_km, assignments=list(decision.assignments),
                         details=decision.details, allocation_requested=cmd.allocate)
    if not cmd.allocate:
        return [routed]
    plan = routed.assignments or [Assignment(location_id=decision.location_id, lines=cmd.lines)]
    return [routed, AllocateReservation(order_id=cmd.order_id, location_id=decision.location_id, assignments=plan)]


async def count_capacity(uow: UnitOfWork, batch: list[Message[FulfillmentOrderCreated]]) -> None:
    for message in batch:
        event = message.payload
        await store.claim_capacity(uow.conn, event.fulfillment_order_id, event.order_id, event.location_id)


async def give_back_capacity(uow: UnitOfWork,
                             batch: list[Message[FulfillmentCancelled | FulfillmentRejected]]) -> None:
    """A fulfilment order withdrawn or rejected gives its unit back; one that shipped part first (a short pick)
    used the location's day all the same."""
    for message in batch:
        event = message.payload
        if isinstance(event, FulfillmentRejected) and event.shipped:
            continue
        await store.release_capacity(uow.conn, event.fulfillment_order_id)


async def forget_orders(uow: UnitOfWork, batch: list[Message[OrderPurged]]) -> None:
    await store.forget_orders(uow.conn, purged_order_ids(batch))
