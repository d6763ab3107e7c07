"""What customers' mail servers and channels' webhook endpoints would be, in the test's own event loop: a real
SMTP server (aiosmtpd) and a small HTTP server, each keeping what arrived, answering as a test tells it, and
able to hold a delivery unanswered (received, not acknowledged) until released."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Hold:
    """Hold the first delivery the predicate accepts: received, but unanswered until `release` is set."""
    accepts: Callable[[object], bool]
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def maybe_wait(self, delivery: object) -> None:
        if not self.held.is_set() and self.accepts(delivery):
            self.held.set()
            await self.release.wait()


class MailServer:
    """`idle_timeout`: seconds after which it drops a connection that sends nothing (aiosmtpd's default: 300)."""

    def __init__(self, idle_timeout: float = 300) -> None:
        self.mails: list[EmailMessage] = []
        self.peers: list[tuple[str, int]] = []  # the connection each mail came over
        self.holds: list[Hold] = []
        self.quits = 0  # QUITs received; answered once `answer_quits` is set (it is, unless a test clears it)
        self.answer_quits = asyncio.Event()
        self.answer_quits.set()
        self.port = 0
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None

    async def start(self) -> "MailServer":
        self._server = await asyncio.get_running_loop().create_server(
            lambda: SMTP(self, timeout=self.idle_timeout), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for hold in self.holds:
            hold.release.set()
        self.answer_quits.set()
        self._server.close()

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        await self.answer_quits.wait()
        return "221 Bye"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        mail = message_from_bytes(envelope.original_content, policy=policy.default)
        self.mails.append(mail)
        self.peers.append(session.peer)
        for hold in self.holds:
            await hold.maybe_wait(mail)
        return "250 OK"

    def with_id(self, message_id: str) -> list[EmailMessage]:
        return [mail for mail in self.mails if mail["Message-ID"] == message_id]


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """HTTP/1.1 POSTs, one per connection; answers `status[path]` (200 unless told)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.status: dict[str, int] = {}
        self.holds: list[Hold] = []
        self.quits = 0  # QUITs received; answered once `answer_quits` is set (it is, unless a test clears it)
        self.answer_quits = asyncio.Event()
        self.answer_quits.set()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> "WebhookReceiver":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for hold in self.holds:
            hold.release.set()
        self.answer_quits.set()
        self._server.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _, path, _ = (await reader.readline()).decode().split(" ", 2)
            headers = {}
            while (line := (await reader.readline()).decode().strip()):
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
            request = Request(path, headers, await reader.readexactly(int(headers.get("content-length", 0))))
            self.requests.append(request)
            for hold in self.holds:
                await hold.maybe_wait(request)
            status = self.status.get(path, 200)
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass  # the sender went away (killed) or sent something else
        finally:
            writer.close()
