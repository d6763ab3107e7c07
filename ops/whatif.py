"""`oms what-if`: the routing requests of a past window replayed under the live rule set and a candidate, side by
side (services/routing/whatif.py decides; this module reads and prints). It writes nothing: it reads
routing.commands.v1 without a consumer group and the routing schema as the read-only ops role.

The requests are the `RouteOrder` commands on the topic, not routing's stored decisions: only the commands carry
the lines, delivery, stock per location and order value a decision is made from. An order is replayed once, from
its first request in the window; its re-routes (they exclude the locations that failed it live, which says
nothing about the candidate's choice) and resends of the same request are counted, not replayed.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from services.routing import store
from services.routing.domain import Order
from services.routing.rules import RuleSet
from services.routing.whatif import CapacityUse, Outcome, Request, Summary, WhatIf, named_locations, what_if
from shared.contracts.base import Envelope
from shared.contracts.routing import RouteOrder
from shared.contracts.topics import ROUTING_COMMANDS
from shared.settings import Settings

from . import history

EXAMPLES = 5  # changed orders shown in the text report

# Fulfilment orders each location held on the window's first day when the window began: the claims of orders
# first routed before it, not given back before it (the claims keep their day, not their time).
USED_AT_START = """
SELECT c.location_id, count(*) AS used FROM capacity_claims c
WHERE c.day = $1 AND (c.released_at IS NULL OR c.released_at >= $2)
  AND (SELECT min(decided_at) FROM decisions d WHERE d.order_id = c.order_id) < $2
GROUP BY c.location_id
"""
FIRST_DECISIONS = """
SELECT DISTINCT ON (order_id) order_id, location_id, reason_code, assignments, rule_set FROM decisions
WHERE order_id = ANY($1) ORDER BY order_id, decision_id
"""


@dataclass(frozen=True)
class Window:
    requests: list[Request]
    not_replayed: int  # re-routes and repeated requests in the window
    start: datetime | None
    end: datetime


@dataclass(frozen=True)
class Recorded:
    """What routing decided for the replayed orders the first time, as it stored it."""

    decisions: dict[UUID, str]  # order -> locations or unfulfillable (reason), as Outcome.describe()
    rule_sets: list[str]


async def read_window(settings: Settings, since: datetime | None, last: int | None,
                      principal: str | None = None) -> Window:
    end = datetime.now(UTC)
    start_offsets = await history.offsets_at(settings, ROUTING_COMMANDS, since, principal) if since else None
    commands = {}  # by envelope id: a record relayed twice is one request
    async for record in history.records(settings, ROUTING_COMMANDS, start_offsets, principal):
        if (found := _route_order(record.value)) and (since is None or found[0].time >= since):
            commands[found[0].id] = found
    firsts, repeats = first_requests(sorted(commands.values(), key=lambda found: found[0].time))
    requests = firsts[-last:] if last else firsts
    start = since or (requests[0].at if requests else None)
    return Window(requests, sum(1 for at in repeats if start is None or at >= start), start, end)


def _route_order(value: bytes | None) -> tuple[Envelope, RouteOrder] | None:
    """A well-formed RouteOrder, or None for another message or bytes routing dead-lettered."""
    try:
        envelope = Envelope.model_validate_json(value or b"")
        if envelope.type != RouteOrder.message_type:
            return None
        return envelope, RouteOrder.model_validate(envelope.data)
    except ValidationError:
        return None


def first_requests(commands: list[tuple[Envelope, RouteOrder]]) -> tuple[list[Request], list[datetime]]:
    """Each order's first request when it excludes nothing; the times of every other request."""
    seen: set[UUID] = set()
    firsts, repeats = [], []
    for envelope, cmd in commands:
        if cmd.order_id in seen or cmd.exclude_locations:
            repeats.append(envelope.time)
        else:
            firsts.append(Request(cmd.order_id, envelope.time,
                                  Order(cmd.delivery, cmd.lines, cmd.availability, order_value=cmd.order_value)))
        seen.add(cmd.order_id)
    return firsts, repeats


async def connect_read_only(settings: Settings) -> asyncpg.Connection:
    """As the read-only ops role, in routing's schema with JSON decoded as routing's store expects."""
    conn = await asyncpg.connect(settings.reader_dsn(), server_settings={
        "search_path": "routing", "default_transaction_read_only": "on", "application_name": "oms-what-if"})
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(json_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


async def used_at_start(conn: asyncpg.Connection, start: datetime) -> CapacityUse:
    day = start.astimezone(UTC).date()
    return {(r["location_id"], day): r["used"] for r in await conn.fetch(USED_AT_START, day, start)}


async def recorded_decisions(conn: asyncpg.Connection, order_ids: list[UUID]) -> Recorded:
    rows = await conn.fetch(FIRST_DECISIONS, order_ids)
    return Recorded({r["order_id"]: _described(r) for r in rows}, sorted({r["rule_set"] or "-" for r in rows}))


def _described(row: asyncpg.Record) -> str:
    locations = [a["location_id"] for a in row["assignments"]] or [row["location_id"]]
    return "+".join(locations) if row["location_id"] else f"unfulfillable ({row['reason_code']})"


@dataclass(frozen=True)
class Report:
    window: Window
    used_at_start: CapacityUse
    result: WhatIf
    recorded: Recorded

    @property
    def agreeing(self) -> int:
        """Orders the live replay decides as routing recorded: fewer means the replay is not the live system's
        (rules, locations or capacity changed since)."""
        return sum(1 for live, _ in self.result.pairs
                   if self.recorded.decisions.get(live.request.order_id) == live.describe())


async def run(settings: Settings, live: RuleSet, candidate: RuleSet, since: datetime | None, last: int | None,
              principal: str | None = None) -> Report:
    window = await read_window(settings, since, last, principal)
    conn = await connect_read_only(settings)
    try:
        named = set().union(*(named_locations(r.order) for r in window.requests))
        locations = await store.load_locations(conn, named)
        start_use = await used_at_start(conn, window.start) if window.start else {}
        recorded = await recorded_decisions(conn, [r.order_id for r in window.requests])
    finally:
        await conn.close()
    return Report(window, start_use, what_if(window.requests, locations, live, candidate, start_use), recorded)


# --- the report -------------------------------------------------------------------------------------------------

def text(report: Report) -> str:
    live, candidate = report.result.live, report.result.candidate
    window = report.window
    rows = [("", f"live {live.rule_set}", f"candidate {candidate.rule_set}"), *_rows(live, candidate)]
    changed = report.result.changed
    lines = [
        f"what-if: {len(window.requests)} orders requested from {_time(window.start)} to {_time(window.end)} "
        f"({window.not_replayed} re-routes and repeated requests not replayed)",
        f"capacity at the start: as the live system had used it "
        f"({sum(report.used_at_start.values())} fulfilment orders that day before the window)",
        "",
        *(f"{label:<34}{a:<28}{b}" for label, a, b in rows),
        "",
        f"orders whose choice changed: {len(changed)} of {len(report.result.pairs)}",
        *(f"  {a.request.order_id}  {a.describe()} -> {b.describe()}" for a, b in changed[:EXAMPLES]),
        *([f"  ... {len(changed) - EXAMPLES} more (--json lists every order)"] if len(changed) > EXAMPLES else []),
        "",
        f"the live replay decides {report.agreeing} of {len(report.result.pairs)} orders as routing recorded them "
        f"(recorded by {', '.join(report.recorded.rule_sets) or '-'})",
    ]
    return "\n".join(lines)


def _rows(live: Summary, candidate: Summary) -> list[tuple[str, str, str]]:
    reasons = sorted({*live.unfulfillable, *candidate.unfulfillable})
    nodes = {n.location_id: [n, None] for n in live.capacity}
    for n in candidate.capacity:
        nodes.setdefault(n.location_id, [None, None])[1] = n
    return [
        ("orders routed", str(live.routed), str(candidate.routed)),
        ("unfulfillable", str(sum(live.unfulfillable.values())), str(sum(candidate.unfulfillable.values()))),
        *((f"  {reason}", str(live.unfulfillable.get(reason, 0)), str(candidate.unfulfillable.get(reason, 0)))
          for reason in reasons),
        ("total distance (km)", f"{live.total_distance_km:.1f}", f"{candidate.total_distance_km:.1f}"),
        ("mean distance (km)", _number(live.mean_distance_km), _number(candidate.mean_distance_km)),
        ("total shipping cost", f"{live.shipping_cost:.2f}", f"{candidate.shipping_cost:.2f}"),
        ("split orders", str(live.split_orders), str(candidate.split_orders)),
        ("fulfilment orders", str(live.fulfilment_orders), str(candidate.fulfilment_orders)),
        ("peak capacity use (a day)", "", ""),
        *((f"  {location_id}", _use(a), _use(b)) for location_id, (a, b) in sorted(nodes.items())),
    ]


def _use(node) -> str:
    if node is None:
        return "-"
    if node.peak_share is None:
        return f"{node.peak_day_orders} (no limit)"
    return f"{node.peak_share:.0%} ({node.peak_day_orders} of {node.daily_capacity})"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else "-"


def as_json(report: Report) -> dict[str, Any]:
    return {
        "window": {"from": _time(report.window.start), "to": _time(report.window.end),
                   "orders": len(report.window.requests), "not_replayed": report.window.not_replayed,
                   "used_at_start": {f"{location_id}/{day}": used
                                     for (location_id, day), used in sorted(report.used_at_start.items())}},
        "live": _summary_json(report.result.live),
        "candidate": _summary_json(report.result.candidate),
        "changed": len(report.result.changed),
        "recorded": {"rule_sets": report.recorded.rule_sets, "agreeing": report.agreeing},
        "orders": [{"order_id": str(a.request.order_id), "at": _time(a.request.at), "live": _outcome_json(a),
                    "candidate": _outcome_json(b), "recorded": report.recorded.decisions.get(a.request.order_id)}
                   for a, b in report.result.pairs],
    }


def _summary_json(summary: Summary) -> dict[str, Any]:
    return {"rule_set": summary.rule_set, "orders": summary.requests, "routed": summary.routed,
            "unfulfillable": summary.unfulfillable, "total_distance_km": summary.total_distance_km,
            "mean_distance_km": summary.mean_distance_km, "shipping_cost": str(summary.shipping_cost),
            "split_orders": summary.split_orders, "fulfilment_orders": summary.fulfilment_orders,
            "capacity": [{"location_id": n.location_id, "daily_capacity": n.daily_capacity,
                          "peak_day_orders": n.peak_day_orders, "peak_share": n.peak_share}
                         for n in summary.capacity]}


def _outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {"locations": list(outcome.locations), "reason": outcome.decision.reason_code,
            "distance_km": outcome.distance_km, "shipping_cost": str(outcome.shipping_cost)}


def parse_since(value: str) -> datetime:
    """An ISO time; without a zone, UTC."""
    when = datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
