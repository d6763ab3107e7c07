"""The customer's tracking page without a database: what it shows for an order's view, every value escaped, and
the page a link that opens nothing gets (never a server error)."""

import uuid

import httpx
import pytest
from fastapi import FastAPI
from markupsafe import escape

from services.tracking.domain import project
from services.tracking.page import add_tracking_page, what_happens_next
from shared.contracts.common import ReasonCode
from shared.contracts.orders import OrderCancelled
from shared.tracking_links import PAGE_PATH, TrackingLinks

from .test_tracking import START, events_of, story

NOW = START.timestamp()


class Views:
    """Stands in for the pool: the one query the page makes (an order's view by id)."""

    def __init__(self, *views):
        self.views = {view.order_id: view.model_dump(mode="json") for view in views}

    async def fetchval(self, _sql: str, order_id: uuid.UUID):
        return self.views.get(order_id)


def links(now: float = NOW) -> TrackingLinks:
    return TrackingLinks("page-test-secret-0123456789", 3600, "http://t.example", clock=lambda: now)


async def get(pool, path: str) -> httpx.Response:
    app = FastAPI()
    add_tracking_page(app, lambda: pool, links())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t.example") as client:
        return await client.get(path)


def shipped_view(**changes):
    view = project(events_of(story(uuid.uuid4())))
    return view.model_copy(update=changes)


async def test_the_page_shows_status_parcels_items_payment_and_what_happens_next():
    view = shipped_view()
    answer = await get(Views(view), PAGE_PATH + links().token(view.order_id))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "On its way" in page and "T-1" in page and "T-2" in page and "DHL" in page
    assert "MUG-WHITE" in page and "Cancelled" in page  # the short-picked line
    assert "79.96 EUR" in page and "59.97 EUR" in page  # total and charged
    assert str(escape(what_happens_next(view))) in page
    assert "<script" not in page
    assert answer.headers["referrer-policy"] == "no-referrer" and "no-store" in answer.headers["cache-control"]


async def test_every_value_on_the_page_is_escaped():
    view = shipped_view(channel_order_id='<script>alert("x")</script>')
    page = (await get(Views(view), PAGE_PATH + links().token(view.order_id))).text
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


@pytest.mark.parametrize("token, status, words", [
    ("expired", 410, "This link has expired"),
    ("tampered", 403, "This link does not work"),
    ("x" * 5000, 403, "This link does not work"),
    ("unknown", 404, "We cannot show this order yet"),
])
async def test_a_link_that_opens_nothing_gets_a_page_that_says_why(token, status, words):
    view = shipped_view()
    tokens = {"expired": links(NOW - 3601).token(view.order_id),
              "tampered": links().token(view.order_id)[:-3] + "abc",
              "unknown": links().token(uuid.uuid4())}
    answer = await get(Views(view), PAGE_PATH + tokens.get(token, token))
    assert (answer.status_code, answer.headers["content-type"].split(";")[0]) == (status, "text/html")
    assert words in answer.text and view.channel_order_id not in answer.text


async def test_while_the_service_starts_the_page_asks_to_come_back():
    answer = await get(None, PAGE_PATH + links().token(uuid.uuid4()))
    assert answer.status_code == 503 and "try again" in answer.text


def test_what_happens_next_follows_the_order():
    view = shipped_view()
    assert "tracking number" in what_happens_next(view)
    assert "checking a few details" in what_happens_next(view.model_copy(update={"holds": ["fraud_review"]}))
    cancelled = project(events_of([*story(view.order_id)[:2], OrderCancelled(
        order_id=view.order_id, reason=ReasonCode(code="OUT_OF_STOCK"), stage="reserving")]))
    assert what_happens_next(cancelled).startswith("Some of the items are out of stock.")
    pickup = view.model_copy(update={"status": "ready_for_pickup",
                                     "delivery": view.delivery.model_copy(update={"type": "pickup",
                                                                                  "store_id": "ST-COLOGNE"})})
    assert "ST-COLOGNE" in what_happens_next(pickup)
