"""http://<tracking>/ops and everything under it forwarded to the ops console, its own process
(`python -m ops.console`, OMS_CONSOLE_URL, http://127.0.0.1:8081): the channel-facing process never holds ops
credentials. Answers are streamed through as they come, so the console's server-sent events pass live. A
channel's API key is not passed on: it means nothing there."""

import os
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

PREFIX = "/ops"
DEFAULT_CONSOLE_URL = "http://127.0.0.1:8081"
# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection, not to what is forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
NOT_FORWARDED = HOP_BY_HOP | {"authorization"}


def add_console_proxy(app: FastAPI, console_url: str | None = None) -> None:
    target = (console_url or os.environ.get("OMS_CONSOLE_URL", DEFAULT_CONSOLE_URL)).rstrip("/")
    holder: dict[str, httpx.AsyncClient] = {}

    def upstream() -> httpx.AsyncClient:
        if "client" not in holder:  # made on first use, inside the server's event loop
            holder["client"] = httpx.AsyncClient(base_url=target, timeout=httpx.Timeout(15.0, read=None))
        return holder["client"]

    async def forward(request: Request) -> Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED]
        headers.append(("x-forwarded-host", request.headers.get("host", "")))
        outgoing = upstream().build_request(request.method, request.url.path, params=request.url.query or None,
                                            headers=headers, content=await request.body())
        try:
            answer = await upstream().send(outgoing, stream=True)
        except httpx.TransportError:
            return PlainTextResponse("The ops console is not running (start it with `oms up`).", 502)
        response = StreamingResponse(_relayed(answer), answer.status_code)
        response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.multi_items()
                                if k.lower() not in HOP_BY_HOP]  # several Set-Cookie stay several
        return response

    for path in (PREFIX, PREFIX + "/{rest:path}"):
        app.add_api_route(path, forward, methods=["GET", "POST"], include_in_schema=False)


async def _relayed(answer: httpx.Response) -> AsyncIterator[bytes]:
    """The console's bytes as they come; its connection closed however the stream ends (a browser leaving a live
    page cancels it)."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    finally:
        await answer.aclose()
