"""Routing's SQL: locations, capacity claims and usage, decisions."""

from collections.abc import Iterable
from uuid import UUID

import asyncpg

from shared.contracts.common import Coordinates
from shared.contracts.routing import RegisterLocation, Zone

from .domain import Decision, Location

TODAY = "(now() AT TIME ZONE 'UTC')::date"


async def upsert_location(conn: asyncpg.Connection, cmd: RegisterLocation) -> None:
    await conn.execute(
        """INSERT INTO locations (location_id, name, kind, lat, lon, ships_to_customers, accepts_pickup,
                                  daily_capacity, zones)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (location_id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, lat = EXCLUDED.lat,
             lon = EXCLUDED.lon, ships_to_customers = EXCLUDED.ships_to_customers,
             accepts_pickup = EXCLUDED.accepts_pickup, daily_capacity = EXCLUDED.daily_capacity,
             zones = EXCLUDED.zones, updated_at = now()""",
        cmd.location_id, cmd.name, cmd.kind, cmd.coordinates.lat, cmd.coordinates.lon,
        cmd.ships_to_customers, cmd.accepts_pickup, cmd.daily_capacity,
        [zone.model_dump(mode="json") for zone in cmd.zones],
    )


async def load_locations(conn: asyncpg.Connection, location_ids: Iterable[str]) -> dict[str, Location]:
    rows = await conn.fetch("SELECT * FROM locations WHERE location_id = ANY($1)", sorted(location_ids))
    return {r["location_id"]: _location(r) for r in rows}


async def used_today(conn: asyncpg.Connection, location_ids: Iterable[str]) -> dict[str, int]:
    rows = await conn.fetch(f"SELECT location_id, used FROM capacity_usage WHERE day = {TODAY} "
                            "AND location_id = ANY($1)", sorted(location_ids))
    return {r["location_id"]: r["used"] for r in rows}


async def claim_capacity(conn: asyncpg.Connection, fulfillment_order_id: UUID, order_id: UUID,
                         location_id: str) -> None:
    """Count a new fulfilment order against its location's capacity today; a repeat counts nothing."""
    await conn.execute(
        f"""WITH claim AS (
              INSERT INTO capacity_claims (fulfillment_order_id, order_id, location_id, day)
              VALUES ($1, $2, $3, {TODAY}) ON CONFLICT DO NOTHING RETURNING location_id, day)
            INSERT INTO capacity_usage (location_id, day, used) SELECT location_id, day, 1 FROM claim
            ON CONFLICT (location_id, day) DO UPDATE SET used = capacity_usage.used + 1""",
        fulfillment_order_id, order_id, location_id)


async def release_capacity(conn: asyncpg.Connection, fulfillment_order_id: UUID) -> None:
    """Give a cancelled or rejected fulfilment order's unit of capacity back to the day it was counted on, once."""
    await conn.execute(
        """WITH released AS (
              UPDATE capacity_claims SET released_at = now()
              WHERE fulfillment_order_id = $1 AND released_at IS NULL RETURNING location_id, day)
            UPDATE capacity_usage u SET used = u.used - 1 FROM released r
            WHERE u.location_id = r.location_id AND u.day = r.day""",
        fulfillment_order_id)


async def record_decisions(conn: asyncpg.Connection, decisions: list[tuple[UUID, Decision]]) -> None:
    rows = [{"order_id": str(order_id), "location_id": d.location_id, "reason_code": d.reason_code,
             "explanation": d.explanation, "assignments": [a.model_dump(mode="json") for a in d.assignments],
             "details": d.details.model_dump(mode="json"), "rule_set": d.details.rule_set}
            for order_id, d in decisions]
    await conn.execute(
        """INSERT INTO decisions (order_id, location_id, reason_code, explanation, assignments, details, rule_set)
           SELECT * FROM jsonb_to_recordset($1::jsonb) AS d(order_id uuid, location_id text, reason_code text,
             explanation text, assignments jsonb, details jsonb, rule_set text)""",
        rows)


def _location(row: asyncpg.Record) -> Location:
    return Location(row["location_id"], row["kind"], Coordinates(lat=row["lat"], lon=row["lon"]),
                    row["ships_to_customers"], row["accepts_pickup"], row["daily_capacity"],
                    tuple(Zone.model_validate(z) for z in row["zones"]))


async def forget_orders(conn: asyncpg.Connection, order_ids: list[UUID]) -> None:
    """Orders past their retention: their decisions and capacity claims, a claim still counted taken off its
    day's count (a day long past: only today's counts route), and a past day counting nothing any more with it."""
    await conn.execute(
        """WITH decided AS (DELETE FROM decisions WHERE order_id = ANY($1::uuid[])),
                claims AS (DELETE FROM capacity_claims WHERE order_id = ANY($1::uuid[])
                           RETURNING location_id, day, released_at)
           UPDATE capacity_usage u SET used = u.used - c.counted
           FROM (SELECT location_id, day, count(*) AS counted FROM claims WHERE released_at IS NULL
                 GROUP BY 1, 2) c
           WHERE u.location_id = c.location_id AND u.day = c.day""", order_ids)
    await conn.execute(f"DELETE FROM capacity_usage WHERE used = 0 AND day < {TODAY}")
