"""The channels' HTTP API, served by the tracking process beside /health and /metrics.

Every call is a channel's, known by its API key (`Authorization: Bearer <key>`; `oms api-key add CHANNEL`), and
sees only that channel's orders: another's is answered 404, as one that does not exist. Reads come from the read
model; `POST /orders` and `POST /orders/{id}/cancel` stage PlaceOrder / CancelOrder on the channel's own command
topic through the service's outbox and answer 202 once that row is committed. The customers' tracking page
(page.py) is served here too, reached by its signed link instead of a key."""

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import asyncpg
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import context as otel_context
from pydantic import BaseModel, BeforeValidator, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.contracts import Contract, wrap
from shared.contracts.base import NO_CONTROL_CHARACTERS, printable, refuse_nul_characters
from shared.contracts.common import ReasonCode
from shared.contracts.order_rules import order_id_for, reason_code, reasons, totals_mismatch
from shared.contracts.orders import CancelOrder, PlaceOrder
from shared.db import ACQUIRE_TIMEOUT
from shared.logging import get_logger
from shared.messaging import outbox
from shared.messaging.tracing import headers_of
from shared.tracking_links import tracking_links

from . import store
from .domain import OrderView, ShipmentView
from .console_proxy import add_console_proxy
from .page import add_tracking_page

log = get_logger(__name__)

SOURCE = "oms/tracking"
Text = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)]


def _not_a_number(value: Any) -> Any:
    """pydantic reads a number as seconds since 1970: a year alone (`2026`) would be 00:33 on 1 January 1970."""
    try:
        float(value)
    except (TypeError, ValueError):
        return value
    raise ValueError("a date and time (ISO 8601), not a number")


Moment = Annotated[datetime, BeforeValidator(_not_a_number)]


class Problem(BaseModel):
    detail: str


class Rejection(BaseModel):
    """The request was not taken: machine-readable reasons, the codes capture answers an invalid order with."""

    reasons: list[ReasonCode]


class PlaceOrderRequest(PlaceOrder):
    """A PlaceOrder as a channel sends it over HTTP: the channel is its API key's."""

    channel: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                                description="Omitted, or the API key's channel")


class CancelOrderRequest(BaseModel):
    reason: str = Field("customer request", max_length=200, pattern=NO_CONTROL_CHARACTERS)


class Accepted(BaseModel):
    """The command is durably staged for the channel's command topic; what comes of it shows on the order."""

    order_id: UUID
    channel_order_id: str
    command: Literal["PlaceOrder", "CancelOrder"]
    command_id: UUID


class OrderSummary(BaseModel):
    order_id: UUID
    channel_order_id: str
    customer_id: str | None
    status: str
    placed_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    orders: list[OrderSummary]
    next: str | None = Field(None, description="Pass as `after` for the next page; none on the last")


class TimelineEntry(BaseModel):
    event_id: UUID
    at: datetime
    type: str = Field(examples=["OrderShipped"])
    topic: str = Field(examples=["orders.events.v1"])
    data: dict[str, Any] = Field(description="The event as published, without the customer's personal data")


ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem}, 404: {"model": Problem},
                                           422: {"model": Rejection}, 503: {"model": Problem}}
bearer = HTTPBearer(auto_error=False, description="The channel's API key (`oms api-key add CHANNEL`)")


@dataclass(frozen=True)
class Caller:
    channel: str
    pool: asyncpg.Pool


class Rejected(Exception):
    def __init__(self, reasons: list[ReasonCode]):
        super().__init__(reasons)
        self.reasons = reasons


def build_api(pool: Callable[[], asyncpg.Pool | None]) -> FastAPI:
    app = FastAPI(title="oms tracking and intake", version="1", responses=ERRORS,
                  description="Channels track their orders and place or cancel them over HTTP.")
    app.add_exception_handler(RequestValidationError, _rejected_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Rejected, _rejected)

    async def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
        db = pool()
        if db is None:
            raise HTTPException(503, "starting")
        channel = await store.channel_of_key(db, credentials.credentials) if credentials else None
        if channel is None:
            raise HTTPException(401, "a channel's API key is needed", headers={"WWW-Authenticate": "Bearer"})
        return Caller(channel=channel, pool=db)

    Channel = Annotated[Caller, Depends(caller)]
    OrderId = Annotated[UUID, Path()]

    async def own_order(who: Channel, order_id: OrderId) -> OrderView:
        view = await store.order_view(who.pool, who.channel, order_id)
        if view is None:
            raise HTTPException(404, "no such order")
        return view

    Order = Annotated[OrderView, Depends(own_order)]

    @app.get("/orders/{order_id}", response_model=OrderView, operation_id="get_order",
             responses={200: {"links": _links_to_the_order("$response.body#/order_id")}})
    async def get_order(order: Order) -> OrderView:
        """The order: status, lines with their status, fulfilment orders, shipments, notifications sent."""
        return order

    @app.get("/channels/{channel}/orders/{channel_order_id}", response_model=OrderView,
             operation_id="get_order_by_channel_order_id")
    async def get_order_by_channel_id(who: Channel, channel: Annotated[str, Path(max_length=32)],
                                      channel_order_id: Annotated[Text, Path()]) -> OrderView:
        """The order by the channel's own id for it."""
        order_id = await store.order_id_of(who.pool, who.channel, channel_order_id) if channel == who.channel else None
        view = await store.order_view(who.pool, who.channel, order_id) if order_id else None
        if view is None:
            raise HTTPException(404, "no such order")
        return view

    @app.get("/orders/{order_id}/timeline", response_model=list[TimelineEntry], operation_id="get_timeline")
    async def get_timeline(who: Channel, order: Order) -> list[TimelineEntry]:
        """Every event of the order across the services, in time order."""
        events = await store.timeline(who.pool, order.order_id)
        return [TimelineEntry(event_id=e.event_id, at=e.at, type=e.type, topic=e.topic, data=e.data) for e in events]

    @app.get("/orders/{order_id}/shipments", response_model=list[ShipmentView], operation_id="get_shipments")
    async def get_shipments(order: Order) -> list[ShipmentView]:
        """The order's parcels: carrier, tracking number, lines, when shipped and delivered."""
        return order.shipments

    @app.get("/orders", response_model=OrderPage, operation_id="search_orders")
    async def search_orders(
            who: Channel,
            customer_id: Annotated[Text | None, Query()] = None,
            status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
            placed_from: Annotated[Moment | None, Query(description="Placed at or after")] = None,
            placed_to: Annotated[Moment | None, Query(description="Placed before")] = None,
            limit: Annotated[int, Query(ge=1, le=100)] = 20,
            after: Annotated[str | None, Query(max_length=200)] = None) -> OrderPage:
        """The channel's orders, newest first, by customer, status and when placed; a page at a time."""
        query = store.Search(who.channel, customer_id, status, _utc(placed_from, "placed_from"),
                             _utc(placed_to, "placed_to"), limit, _cursor(after) if after else None)
        rows = await store.search(who.pool, query)
        orders = [OrderSummary(**row) for row in rows]
        last = orders[-1] if len(orders) == limit else None
        return OrderPage(orders=orders, next=_next_cursor(last) if last else None)

    @app.post("/orders", status_code=202, response_model=Accepted, operation_id="place_order",
              responses={202: {"links": {"get_order": _link("get_order", "$response.body#/order_id"),
                                         **_links_to_the_order("$response.body#/order_id")}}})
    async def place_order(who: Channel, body: PlaceOrderRequest,
                          idempotency_key: Annotated[Text, Header(max_length=200)]) -> JSONResponse:
        """Place an order: PlaceOrder on the channel's own command topic. The same Idempotency-Key again gets the
        same answer; an order's channel_order_id makes it one order, whatever the key."""
        if body.channel not in (None, who.channel):
            raise _rejection("CHANNEL_MISMATCH", f"this key places orders for channel {who.channel}")
        command = _valid(PlaceOrder, {**body.model_dump(mode="json"), "channel": who.channel})
        if (mismatch := totals_mismatch(command)) is not None:
            raise Rejected([mismatch])
        return await _take(who, idempotency_key, "/orders", command,
                           order_id_for(who.channel, command.channel_order_id))

    @app.post("/orders/{order_id}/cancel", status_code=202, response_model=Accepted, operation_id="cancel_order")
    async def cancel_order(who: Channel, order_id: OrderId,
                           idempotency_key: Annotated[Text, Header(max_length=200)],
                           body: CancelOrderRequest | None = None) -> JSONResponse:
        """Ask to cancel an order (honoured until it ships: see its status)."""
        channel_order_id = await store.channel_order_id_of(who.pool, who.channel, order_id)
        if channel_order_id is None:
            raise HTTPException(404, "no such order")
        command = CancelOrder(channel=who.channel, channel_order_id=channel_order_id,
                              reason=(body or CancelOrderRequest()).reason)
        return await _take(who, idempotency_key, f"/orders/{order_id}/cancel", command, order_id)

    add_tracking_page(app, pool, tracking_links())
    add_console_proxy(app)
    return app


async def _take(who: Caller, idempotency_key: str, path: str, command: PlaceOrder | CancelOrder,
                order_id: UUID) -> JSONResponse:
    """Stage the command in the outbox with the key's answer, in one transaction; or answer as the key did."""
    envelope = wrap(command, source=SOURCE, correlation_id=str(uuid4()))
    answer = Accepted(order_id=order_id, channel_order_id=command.channel_order_id,
                      command=type(command).__name__, command_id=envelope.id).model_dump(mode="json")
    request = store.IntakeRequest(who.channel, idempotency_key, _fingerprint(path, command), order_id,
                                  command.channel_order_id)
    async with who.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
        earlier = await store.claim_intake(conn, request, 202, answer)
        if earlier is None:
            row = outbox.OutboxRow.of(envelope, f"{command.topic}.{who.channel}", command.key(),
                                      headers_of(otel_context.get_current()))
            await outbox.write(conn, [row], "tracking")
    if earlier is not None and earlier["request_hash"] != request.request_hash:
        raise _rejection("IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used for another request")
    if earlier is None:
        log.info("tracking.intake", order_id=str(order_id), event_id=str(envelope.id),
                 correlation_id=envelope.correlationid, command=answer["command"])
    status, stored = (202, answer) if earlier is None else (earlier["status_code"], earlier["answer"])
    return JSONResponse(stored, status, headers={"Location": f"/orders/{stored['order_id']}"})


def _link(operation_id: str, order_id: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": {"order_id": order_id}}


def _links_to_the_order(order_id: str) -> dict[str, Any]:
    """OpenAPI links: where an answer's order id leads (clients and schemathesis follow them)."""
    return {name: _link(name, order_id) for name in ("get_timeline", "get_shipments", "cancel_order")}


def _fingerprint(path: str, command: Contract) -> bytes:
    return hashlib.sha256(json.dumps({"path": path, "command": command.model_dump(mode="json")},
                                     sort_keys=True).encode()).digest()


def _valid(model: type[Contract], data: dict[str, Any]) -> Any:
    try:
        refuse_nul_characters(model, data)
        return model.model_validate(data)
    except ValidationError as error:
        raise Rejected(reasons(error)) from None


def _rejection(code: str, detail: str) -> Rejected:
    return Rejected([ReasonCode(code=code, detail=detail)])


def _utc(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise _rejection(f"INVALID_{name.upper()}", "out of range") from None


def _cursor(after: str) -> tuple[datetime, UUID]:
    try:
        at, order_id = base64.urlsafe_b64decode(after.encode()).decode().split("|")
        return _utc(datetime.fromisoformat(at), "after"), UUID(order_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _rejection("INVALID_CURSOR", "not a cursor this API gave") from None


def _next_cursor(last: OrderSummary) -> str:
    return base64.urlsafe_b64encode(f"{last.placed_at.isoformat()}|{last.order_id}".encode()).decode()


async def _rejected_request(request: Request, error: Exception) -> JSONResponse:
    """Invalid requests are answered as capture answers an invalid order: reason codes (capture's own for the
    order's fields)."""
    assert isinstance(error, RequestValidationError)
    found: dict[str, ReasonCode] = {}
    for e in error.errors():
        where, *path = e["loc"]
        if e["type"] == "json_invalid":
            path = []  # its location is an offset in the body: the code names the body
        code = (reason_code(tuple(path), e["type"]) if where == "body" and request.url.path == "/orders"
                else f"INVALID_{str(path[-1] if path else where).upper().replace('-', '_')}")
        found.setdefault(code, ReasonCode(code=code, detail=printable(f"{'.'.join(map(str, e['loc']))}: {e['msg']}",
                                                                      300)))
    return await _rejected(request, Rejected(list(found.values())))


async def _http_error(request: Request, error: Exception) -> Response:
    """Two of Starlette's and FastAPI's answers mended: a body they cannot decode (not UTF-8) is answered as a body
    that is not JSON is, not 400 in their own shape; and a 405 names the methods of every route of the path in
    `Allow`, not of the first one only (/orders has two)."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 400 and isinstance(error.__cause__, UnicodeDecodeError):
        unreadable = {"type": "json_invalid", "loc": ("body",), "msg": "not UTF-8", "input": {}}
        return await _rejected_request(request, RequestValidationError([unreadable]))
    if error.status_code == 405:
        routes = [route for route in request.app.routes if isinstance(route, APIRoute)]
        allowed = {method for route in routes if route.matches(request.scope)[0] is Match.PARTIAL
                   for method in route.methods}
        error.headers = {**(error.headers or {}), "Allow": ", ".join(sorted(allowed))}
    return await http_exception_handler(request, error)


async def _rejected(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Rejected)
    return JSONResponse(Rejection(reasons=error.reasons).model_dump(mode="json"), 422)
