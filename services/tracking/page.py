"""The customer's tracking page: HTML, reached by the signed, expiring link in their messages
(shared/tracking_links.py), no API key. It shows the order's view in plain words: status, items, parcels with
their tracking numbers, returns, payment, and what happens next.

Every value is escaped (Jinja2 autoescape); the page needs no script and fits a phone. A link that is expired
(410) or not ours (403) gets a page that says so, as does an order the read model does not show yet (404)."""

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from shared.cancel_reasons import cancel_reason
from shared.tracking_links import PAGE_PATH, LinkExpired, LinkInvalid, TrackingLinks

from . import store
from .domain import OrderView

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters["described"] = lambda lines: ", ".join(f"{line['quantity']} × {line['sku']}" for line in lines)
LONGEST_TOKEN = 200  # ours are about 110 characters; anything far longer is not one
# The link is a bearer token: kept out of caches, search engines and Referer headers; the page runs no script.
HEADERS = {"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}

ORDER_STATUS = {"accepted": "Received", "rejected": "Not accepted", "backordered": "Waiting for stock",
                "confirmed": "Being prepared", "partially_shipped": "Partly on its way", "shipped": "On its way",
                "delivered": "Delivered", "ready_for_pickup": "Ready for pickup", "picked_up": "Collected",
                "cancelled": "Cancelled"}
LINE_STATUS = {"open": "Being prepared", "partially_shipped": "Partly sent", "shipped": "Sent",
               "delivered": "Delivered", "ready_for_pickup": "Ready for pickup", "picked_up": "Collected",
               "cancelled": "Cancelled"}
RETURN_STATUS = {"approved": "Expected back", "received": "Received", "refunded": "Refunded"}
PAYMENT_STATUS = {"none": "", "authorised": "Authorised, nothing charged yet",
                  "partially_captured": "Paid for what has been sent", "captured": "Paid",
                  "capture_failed": "Your payment was declined",
                  "voided": "Nothing charged: the authorisation was released",
                  "partially_refunded": "Partly refunded", "refunded": "Refunded"}
REFUSALS = {
    403: ("This link does not work", "It may have been copied incompletely. Please use the link in the most recent "
                                     "email about your order."),
    404: ("We cannot show this order yet", "It may have only just been placed. Please try again in a minute."),
    410: ("This link has expired", "Links to the tracking page work for a limited time. Please use the link in "
                                   "the most recent email about your order, or contact the shop."),
    503: ("Please try again shortly", "The tracking page is starting up."),
}


def add_tracking_page(app: FastAPI, pool: Callable[[], asyncpg.Pool | None], links: TrackingLinks) -> None:
    """GET /track/{token} on the channels' API app; `pool()` is the service's pool (None while it starts)."""

    @app.get(PAGE_PATH + "{token}", response_class=HTMLResponse, include_in_schema=False)  # not the channels' API
    async def tracking_page(token: str) -> HTMLResponse:
        db = pool()
        if db is None:
            return refused(503)
        try:
            order_id = links.order_id(token) if len(token) <= LONGEST_TOKEN else None
        except LinkExpired:
            return refused(410)
        except LinkInvalid:
            order_id = None
        if order_id is None:
            return refused(403)
        view = await store.view_of(db, order_id)
        return refused(404) if view is None else page(view)


def page(view: OrderView) -> HTMLResponse:
    html = TEMPLATES.get_template("page.html").render(
        order=view, status=ORDER_STATUS.get(view.status, view.status), next_step=what_happens_next(view),
        line_status=LINE_STATUS, return_status=RETURN_STATUS, payment_status=PAYMENT_STATUS.get(
            view.payment.status, ""), money=lambda amount: money(amount, view.currency), when=when)
    return HTMLResponse(html, headers=HEADERS)


def refused(status: int) -> HTMLResponse:
    title, text = REFUSALS[status]
    return HTMLResponse(TEMPLATES.get_template("refused.html").render(title=title, text=text), status,
                        headers=HEADERS)


def what_happens_next(view: OrderView) -> str:
    """One or two sentences a customer understands, from the order's state."""
    if view.holds and view.status not in ("cancelled", "rejected"):
        return "We are checking a few details before we prepare your order. We will email you when it goes ahead."
    open_return = next((r for r in view.returns if r.status != "refunded"), None)
    if open_return is not None:
        return ("Your return is received: we will refund you shortly." if open_return.status == "received" else
                f"Please send the items back to us ({open_return.return_to}); we refund you once they arrive.")
    match view.status:
        case "accepted":
            return "We are reserving your items and choosing where they ship from. We will email you once confirmed."
        case "backordered":
            return "Some items are not in stock yet. We will reserve them as soon as they arrive and email you."
        case "confirmed":
            return "Your order is being picked and packed. We will email you the tracking number when it ships."
        case "partially_shipped":
            return "Part of your order is on its way (tracking below); the rest follows, with an email for each parcel."
        case "shipped":
            return "Your order is on its way: follow it with the carrier's tracking number below."
        case "delivered":
            return "Your order has been delivered. Something not right? You can ask the shop for a return."
        case "ready_for_pickup":
            return f"Your order is waiting for you at the store {_store(view)}. Bring your order number."
        case "picked_up":
            return "You have collected your order. Enjoy!"
        case "cancelled":
            reason = cancel_reason(view.reasons[0].code) if view.reasons else ""
            return f"{reason} Nothing more will be sent, and you pay nothing for what was not sent.".lstrip()
        case "rejected":
            return "We could not accept this order, and nothing was charged. Please contact the shop."
    return "We will email you when something changes."


def _store(view: OrderView) -> str:
    return view.delivery.store_id if view.delivery and view.delivery.store_id else ""


def money(amount: Decimal | None, currency: str | None) -> str:
    return "" if amount is None else f"{amount:.2f} {currency or ''}".strip()


def when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment.astimezone(UTC):%d %b %Y, %H:%M} UTC"
