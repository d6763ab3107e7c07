"""The ops console: a FastAPI app of server-rendered pages under /ops (Jinja2, autoescaped: payloads are untrusted
input), live numbers over server-sent events. It reads with the read-only database role, samples Kafka as ops,
and replays dead letters through ops/deadletters.py, the path `oms dead-letters --replay` takes."""

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from ops import deadletters
from ops.client import client
from shared.contracts.ops import DeadLetter
from shared.logging import get_logger
from shared.settings import Settings

from . import letters, model, queries
from .audit import AuditLog
from .auth import COOKIE, Session, Sessions
from .sampler import Sampler

log = get_logger(__name__)

HERE = Path(__file__).parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined,
                        trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters["pretty"] = model.pretty_payload
TEMPLATES.filters["seconds"] = model.duration
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                                      "img-src 'self'; connect-src 'self'; form-action 'self'; "
                                      "frame-ancestors 'none'"}
STUCK_AFTER = 900.0  # seconds an open order may take before it counts as old (the page's default threshold)


@dataclass
class Console:
    settings: Settings
    sessions: Sessions
    sampler: Sampler
    audit: AuditLog
    trace_url: str | None = None  # OMS_CONSOLE_TRACE_URL: the trace backend's page of a trace, `{trace_id}` in it
    pool: asyncpg.Pool | None = None
    replaying: asyncio.Lock | None = None


def build_app(console: Console) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        console.pool = await asyncpg.create_pool(console.settings.reader_dsn(), min_size=1, max_size=4,
                                                 command_timeout=15, init=queries.decode_json)
        console.replaying = asyncio.Lock()
        sampling = asyncio.create_task(console.sampler.run())
        log.info("service.started", service="console")
        yield
        sampling.cancel()
        await console.pool.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def page(request: Request, template: str, session: Session, status: int = 200, **values) -> HTMLResponse:
        html = TEMPLATES.get_template(template).render(session=session, path=request.url.path, **values)
        return HTMLResponse(html, status, headers=HEADERS)

    def signed_in(request: Request) -> Session | None:
        return console.sessions.session(request.cookies.get(COOKIE))

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ops/login?next={quote(target, safe='')}", 303, headers=HEADERS)

    async def form(request: Request) -> dict[str, list[str]]:
        return parse_qs((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True)

    async def checked_post(request: Request) -> tuple[Session | None, dict[str, list[str]]]:
        """The session of a POST that carries its CSRF token, else None."""
        session, fields = signed_in(request), await form(request)
        if session is None or not console.sessions.csrf_ok(session, (fields.get("csrf") or [None])[0]):
            return None, fields
        return session, fields

    @app.get("/health/live", include_in_schema=False)
    async def live() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> Response:
        """Ready once it has sampled everything it shows (the container image's health check asks this)."""
        sample = console.sampler.latest
        problems = ["no sample yet"] if sample is None else sample.problems
        return Response(json.dumps({"ready": not problems, "problems": problems}), 503 if problems else 200,
                        media_type="application/json")

    @app.get("/ops/static/console.js", include_in_schema=False)
    async def script() -> Response:
        return Response((HERE / "static" / "console.js").read_text(), media_type="text/javascript",
                        headers={"Cache-Control": "no-store"})

    @app.get("/ops/static/console.css", include_in_schema=False)
    async def stylesheet() -> Response:
        return Response((HERE / "static" / "console.css").read_text(), media_type="text/css",
                        headers={"Cache-Control": "no-store"})

    @app.get("/ops/login")
    async def login_page(request: Request, next: str = "/ops/topics", failed: bool = False) -> HTMLResponse:
        html = TEMPLATES.get_template("login.html").render(next=_local(next), failed=failed, session=None,
                                                           path=request.url.path)
        return HTMLResponse(html, 401 if failed else 200, headers=HEADERS)

    @app.post("/ops/login")
    async def login(request: Request) -> Response:
        fields = await form(request)
        first = lambda name: (fields.get(name) or [""])[0]  # noqa: E731
        cookie = console.sessions.login(first("operator"), first("password"))
        if cookie is None:
            log.warning("console.login_refused")
            return RedirectResponse(f"/ops/login?failed=1&next={quote(_local(first('next')), safe='')}", 303,
                                    headers=HEADERS)
        log.info("console.login", operator=first("operator")[:60])
        response = RedirectResponse(_local(first("next")), 303, headers=HEADERS)
        response.set_cookie(COOKIE, cookie, max_age=console.sessions.max_age, path="/ops", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/ops/logout")
    async def logout(request: Request) -> Response:
        session, _ = await checked_post(request)
        if session is None:
            return PlainTextResponse("forbidden", 403, headers=HEADERS)
        response = RedirectResponse("/ops/login", 303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/ops")
        return response

    @app.get("/ops")
    @app.get("/ops/")
    async def home(request: Request) -> Response:
        return RedirectResponse("/ops/topics", 303, headers=HEADERS) if signed_in(request) else to_login(request)

    @app.get("/ops/topics")
    async def topics(request: Request) -> Response:
        if not (session := signed_in(request)):
            return to_login(request)
        return page(request, "topics.html", session, live=_live(console.sampler))

    @app.get("/ops/topics/stream")
    async def stream(request: Request) -> Response:
        if not signed_in(request):
            return PlainTextResponse("login needed", 401, headers=HEADERS)

        async def events():
            while not await request.is_disconnected():
                yield f"event: sample\ndata: {json.dumps({'html': _live(console.sampler)})}\n\n"
                try:  # not asyncio.wait_for: on Python 3.11 it drops a cancellation that comes with the wake
                    async with asyncio.timeout(15), console.sampler.changed:
                        await console.sampler.changed.wait()
                except TimeoutError:
                    yield ": still here\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})

    @app.get("/ops/alerts")
    async def alerts(request: Request) -> Response:
        if not (session := signed_in(request)):
            return to_login(request)
        return page(request, "alerts.html", session, alerts=firing(console.sampler),
                    sampled=console.sampler.latest)

    @app.get("/ops/stuck")
    async def stuck(request: Request, older_than: float = STUCK_AFTER) -> Response:
        if not (session := signed_in(request)):
            return to_login(request)
        orders = model.stuck_first(await queries.open_sagas(console.pool), older_than)
        return page(request, "stuck.html", session, orders=orders, steps=await queries.steps(console.pool),
                    older_than=older_than)

    @app.get("/ops/orders")
    async def search(request: Request, q: str = "") -> Response:
        if not (session := signed_in(request)):
            return to_login(request)
        found = await queries.search(console.pool, q) if q.strip() else []
        if len(found) == 1:
            return RedirectResponse(f"/ops/orders/{found[0]['order_id']}", 303, headers=HEADERS)
        return page(request, "search.html", session, q=q, found=found)

    @app.get("/ops/orders/{order_id}")
    async def order(request: Request, order_id: str) -> Response:
        if not (session := signed_in(request)):
            return to_login(request)
        try:
            details = await queries.order(console.pool, uuid.UUID(order_id))
        except ValueError:
            details = None
        if details is None:
            return page(request, "search.html", session, 404, q=order_id, found=[])
        return page(request, "order.html", session, trace_link=model.trace_link(console.trace_url,
                                                                                details["trace_id"]), **details)

    @app.get("/ops/dead-letters")
    async def dead_letters(request: Request, reason: str = "", service: str = "", show_resolved: bool = False,
                           before: str = "", message: str = "") -> Response:
        if not (session := signed_in(request)):
            return to_login(request)
        resolved = console.audit.resolved()
        hidden = set() if show_resolved else resolved
        async with letters.TopicReader(console.settings) as reader:
            found = await letters.page(reader, letters.cursor(before), _wanted(reason, service, hidden))
        totals = await queries.dead_letter_totals(console.pool)
        return page(request, "dead_letters.html", session, page=found, resolved=resolved, totals=totals,
                    reasons=sorted({row["reason"] for row in totals}),
                    services=sorted({row["service"] for row in totals}), reason=reason, service=service,
                    show_resolved=show_resolved, before=before, newest=_page_link(reason, service, show_resolved),
                    older=found.older and _page_link(reason, service, show_resolved, found.older),
                    audit=list(reversed(console.audit.entries()))[:50], message=message, original=_original)

    @app.post("/ops/dead-letters/replay")
    async def replay(request: Request) -> Response:
        session, fields = await checked_post(request)
        if session is None:
            return PlainTextResponse("forbidden: log in again", 403, headers=HEADERS)
        results = await _replay(console, session, fields)
        return RedirectResponse(_back_to_letters(fields, "; ".join(results) or "nothing matched"), 303,
                                headers=HEADERS)

    @app.post("/ops/dead-letters/resolve")
    async def resolve(request: Request) -> Response:
        session, fields = await checked_post(request)
        if session is None:
            return PlainTextResponse("forbidden: log in again", 403, headers=HEADERS)
        chosen = await _named(console, fields)
        for item in chosen:
            console.audit.append(session.operator, "resolve", item.position, item.letter.consumer, "resolved")
        return RedirectResponse(_back_to_letters(fields, f"{len(chosen)} marked resolved"), 303, headers=HEADERS)

    return app


async def _replay(console: Console, session: Session, fields: dict[str, list[str]]) -> list[str]:
    """Each named letter sent back once: a letter already replayed (here or by `oms dead-letters --replay`) is
    left alone and said so. One replay at a time, so two clicks cannot both find a letter not yet replayed."""
    results = []
    async with console.replaying:
        chosen = await _named(console, fields)
        async with client(console.settings, "ops/console") as sender:
            for item in chosen:
                earlier = console.audit.replayed(item.letter.consumer, item.position)
                if earlier or item.replays:
                    who, when = ((earlier.operator, earlier.at) if earlier else
                                 (item.replays[0].replayed_by, item.replays[0].replayed_at.isoformat()))
                    result = f"already replayed by {who} at {when}: nothing sent"
                else:
                    try:
                        record = await deadletters.replay(sender, item.letter, f"console:{session.operator}")
                        result = f"replayed as {record.message_id or 'the original bytes'}"
                    except Exception as error:
                        result = f"failed: {error!r}"[:300]
                console.audit.append(session.operator, "replay", item.position, item.letter.consumer, result)
                log.info("console.replay", position=item.position, consumer=item.letter.consumer, result=result)
                results.append(f"{item.position}: {result}")
    return results


async def _named(console: Console, fields: dict[str, list[str]]) -> list[letters.Shown]:
    """The letters a form names by their place on the dead-letter topic (`letter` = partition/offset,
    repeatable: one, or every one a page shows), read from there."""
    refs = [found for text in fields.get("letter", []) if (found := letters.ref(text))]
    if not refs:
        return []
    async with letters.TopicReader(console.settings) as reader:
        return await letters.at(reader, refs[:letters.PAGE_SIZE])


def _wanted(reason: str, service: str, hidden: set[tuple[str, str]]) -> Callable[[DeadLetter], bool]:
    return lambda letter: ((not reason or letter.reason == reason)
                           and (not service or service_of_consumer(letter.consumer) == service)
                           and (letter.consumer, letter.key()) not in hidden)


def service_of_consumer(consumer: str) -> str:
    """The service of the consumer group (`[prefix]oms.<service>.<topic>`)."""
    parts = consumer.split(".")
    return parts[parts.index("oms") + 1] if "oms" in parts[:-1] else consumer


def _page_link(reason: str, service: str, show_resolved: bool, older: dict[int, int] | None = None) -> str:
    """The dead letters page with these filters: its newest letters, or those older than the cursor."""
    query = {"reason": reason, "service": service, **({"show_resolved": "1"} if show_resolved else {}),
             **({"before": letters.cursor_text(older)} if older else {})}
    return "/ops/dead-letters?" + urlencode(query)


def _original(item: letters.Shown) -> bytes:
    return base64.b64decode(item.letter.original_value_b64)


def _back_to_letters(fields: dict[str, list[str]], message: str) -> str:
    first = lambda name: (fields.get(name) or [""])[0]  # noqa: E731
    return "/ops/dead-letters?" + urlencode({"reason": first("reason"), "service": first("service"),
                                             "before": first("before"), "message": message[:1500]})


def _local(target: str) -> str:
    """Only a path of the console itself may be where a login leads (no open redirect)."""
    return target if target.startswith("/ops") and not target.startswith("//") else "/ops/topics"


def _live(sampler: Sampler) -> str:
    """The topics page's live part: rendered here, sent whole over server-sent events."""
    groups: dict[tuple[str, str, str], list] = {}
    for row in sampler.latest.lags if sampler.latest else []:
        groups.setdefault((row.group, row.service, row.topic), []).append(row)
    instances = model.instances(sampler.latest.groups, sampler.latest.lags) if sampler.latest else []
    return TEMPLATES.get_template("_live.html").render(sample=sampler.latest, history=sampler.history,
                                                       alerts=firing(sampler), spark=model.sparkline,
                                                       groups=sorted(groups.items()), instances=instances)


def firing(sampler: Sampler) -> list[model.Alert]:
    return sampler.history.alerts
