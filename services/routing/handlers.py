"""Routing handlers: location master data, and one sourcing decision per RouteOrder."""

from shared.contracts.common import Coordinates, ReasonCode
from shared.contracts.routing import LocationRegistered, OrderRouted, RegisterLocation, RouteNotFound, RouteOrder
from shared.messaging.consumer import MessageContext

from .domain import Location, choose


async def register_location(ctx: MessageContext, cmd: RegisterLocation) -> None:
    await ctx.conn.execute(
        """INSERT INTO locations (location_id, name, kind, lat, lon, ships_to_customers, accepts_pickup)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (location_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, lat = EXCLUDED.lat,
             lon = EXCLUDED.lon, ships_to_customers = EXCLUDED.ships_to_customers,
             accepts_pickup = EXCLUDED.accepts_pickup, updated_at = now()""",
        cmd.location_id, cmd.name, cmd.kind, cmd.coordinates.lat, cmd.coordinates.lon,
        cmd.ships_to_customers, cmd.accepts_pickup,
    )
    ctx.emit(LocationRegistered(location_id=cmd.location_id, kind=cmd.kind))


async def route_order(ctx: MessageContext, cmd: RouteOrder) -> None:
    candidate_ids = {a.location_id for a in cmd.availability}
    if cmd.delivery.type == "pickup":
        candidate_ids.add(cmd.delivery.store_id)
    rows = await ctx.conn.fetch("SELECT * FROM locations WHERE location_id = ANY($1)", sorted(candidate_ids))
    locations = {r["location_id"]: _location(r) for r in rows}
    decision = choose(cmd.delivery, cmd.lines, cmd.availability, locations, set(cmd.exclude_locations))
    await ctx.conn.execute(
        "INSERT INTO decisions (order_id, location_id, reason_code, explanation) VALUES ($1, $2, $3, $4)",
        cmd.order_id, decision.location_id, decision.reason_code, decision.explanation,
    )
    if decision.location_id is None:
        ctx.emit(RouteNotFound(order_id=cmd.order_id,
                               reason=ReasonCode(code=decision.reason_code, detail=decision.explanation)))
    else:
        ctx.emit(OrderRouted(order_id=cmd.order_id, location_id=decision.location_id,
                             explanation=decision.explanation, distance_km=decision.distance_km))


def _location(row) -> Location:
    return Location(row["location_id"], row["kind"], Coordinates(lat=row["lat"], lon=row["lon"]),
                    row["ships_to_customers"], row["accepts_pickup"])
