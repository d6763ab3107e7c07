"""Routing handlers: location master data, and one sourcing decision per RouteOrder."""

import asyncpg

from shared.contracts.common import Coordinates, ReasonCode
from shared.contracts.routing import LocationRegistered, OrderRouted, RegisterLocation, RouteNotFound, RouteOrder
from shared.messaging.unit_of_work import Message, UnitOfWork

from .domain import Location, choose


async def register_locations(uow: UnitOfWork, batch: list[Message[RegisterLocation]]) -> None:
    for message in batch:
        await _register(uow, message)


async def _register(uow: UnitOfWork, message: Message[RegisterLocation]) -> None:
    cmd = message.payload
    await uow.conn.execute(
        """INSERT INTO locations (location_id, name, kind, lat, lon, ships_to_customers, accepts_pickup)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (location_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, lat = EXCLUDED.lat,
             lon = EXCLUDED.lon, ships_to_customers = EXCLUDED.ships_to_customers,
             accepts_pickup = EXCLUDED.accepts_pickup, updated_at = now()""",
        cmd.location_id, cmd.name, cmd.kind, cmd.coordinates.lat, cmd.coordinates.lon,
        cmd.ships_to_customers, cmd.accepts_pickup,
    )
    uow.reply(LocationRegistered(location_id=cmd.location_id, kind=cmd.kind), message)


async def route_orders(uow: UnitOfWork, batch: list[Message[RouteOrder]]) -> None:
    """One sourcing decision per RouteOrder; the batch's candidate locations are read once and its decisions
    written in one statement."""
    candidate_ids = {a.location_id for m in batch for a in m.payload.availability}
    candidate_ids |= {m.payload.delivery.store_id for m in batch if m.payload.delivery.type == "pickup"}
    rows = await uow.conn.fetch("SELECT * FROM locations WHERE location_id = ANY($1)", sorted(candidate_ids))
    locations = {r["location_id"]: _location(r) for r in rows}
    decisions = []
    for message in batch:
        cmd = message.payload
        decision = choose(cmd.delivery, cmd.lines, cmd.availability, locations, set(cmd.exclude_locations))
        decisions.append((cmd.order_id, decision))
        if decision.location_id is None:
            uow.reply(RouteNotFound(order_id=cmd.order_id,
                                    reason=ReasonCode(code=decision.reason_code, detail=decision.explanation)),
                      message)
        else:
            uow.reply(OrderRouted(order_id=cmd.order_id, location_id=decision.location_id,
                                  explanation=decision.explanation, distance_km=decision.distance_km), message)
    await uow.conn.execute(
        "INSERT INTO decisions (order_id, location_id, reason_code, explanation) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])",
        [o for o, _ in decisions], [d.location_id for _, d in decisions], [d.reason_code for _, d in decisions],
        [d.explanation for _, d in decisions],
    )


def _location(row: asyncpg.Record) -> Location:
    return Location(row["location_id"], row["kind"], Coordinates(lat=row["lat"], lon=row["lon"]),
                    row["ships_to_customers"], row["accepts_pickup"])
