"""The sender: picks due deliveries, sends each with an idempotency key, records the outcome.

Due deliveries are claimed (FOR UPDATE SKIP LOCKED, so several instances never take the same one), each attempt
counted and a lease set (twice the send timeout plus this attempt's backoff) in a short transaction; then each is
sent on its own, outside any transaction, and the outcomes of those that finished are recorded together in another:
sent (NotificationDelivered), due again after the backoff, or failed after the last attempt (NotificationFailed,
with the reason). A sender that dies between sending and recording leaves the delivery pending: when its lease
runs out it is sent again with the same Message-ID / webhook-id, which is the one duplicate possible, and the
receiver can tell it by that id.

A delivery is born leased: the unit of work that records it counts its first attempt and leases it to its own
process, and once that transaction has committed it hands it to this process's sender, which sends it at once —
no claim, no poll (see "Handed off"). Claims take what is due otherwise: a retry, a delivery whose lease ran out
(its sender died, or never got to it), one recorded by another process. A sender that stops (not one that dies)
records what finished and makes what it holds unsent due again at once.

Whether a customer opted out, an address bounced or the channel turned the delivery channel off is checked when a
delivery is recorded and again whenever a claim takes it: such a delivery is recorded as skipped, never sent."""

import asyncio
import io
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formatdate
from typing import Any

import aiosmtplib
import asyncpg
import httpx
from standardwebhooks.webhooks import Webhook

from shared.contracts.common import ReasonCode
from shared.contracts.notification import NotificationDelivered, NotificationFailed
from shared.logging import get_logger
from shared.messaging.retry import run_forever
from shared.messaging.tracing import continuing
from shared.messaging.unit_of_work import Begin, UnitOfWork

from . import store
from .config import NotificationSettings, notification_settings
from .domain import gives_up, retry_delay
from .store import ChannelSettings

log = get_logger(__name__)
UTF8 = Charset("utf-8")
UTF8.body_encoding = QP  # bodies readable as they are sent, as EmailMessage writes them
IN_FLIGHT = 20  # deliveries being sent at once, per process
LET_GO_SECONDS = 3.0  # what a stopping sender takes at most to record and release what it holds


class DeliveryError(Exception):
    """A send that did not go through; its text names what happened, never an address."""


@dataclass(frozen=True)
class Claimed:
    row: Mapping[str, Any]  # the delivery's columns as they were before this attempt was counted
    channel: ChannelSettings

    @property
    def attempts(self) -> int:
        return self.row["attempts"] + 1  # counted when claimed


class HandedOff:
    """Handed off: the deliveries this process has just recorded (leased to it), to send without claiming them. One
    taken too late to finish within its lease is left to the claims once the lease runs out (another sender may
    take it then), as is every one beyond MAX_HANDED waiting: a sender that cannot keep up leaves the rest where
    any sender finds it."""

    MAX_HANDED = 1000

    def __init__(self) -> None:
        self.waiting: deque[tuple[Claimed, float]] = deque()  # with the time it must be taken by
        self.arrived = asyncio.Event()

    def add(self, items: list[Claimed], lease_seconds: float, send_seconds: float) -> None:
        take_by = time.monotonic() + lease_seconds - send_seconds
        room = self.MAX_HANDED - len(self.waiting)
        self.waiting.extend((item, take_by) for item in items[:max(room, 0)])
        self.arrived.set()

    def take(self, limit: int) -> list[Claimed]:
        self.arrived.clear()
        now, taken = time.monotonic(), []
        while self.waiting and len(taken) < limit:
            item, take_by = self.waiting.popleft()
            if now < take_by:
                taken.append(item)
        return taken


HANDED = HandedOff()


def hand_off(uow: UnitOfWork, rows: list[dict[str, Any]], channels: dict[str, ChannelSettings],
             lease: float) -> None:
    """Give the process's sender deliveries `uow` records as pending and leased for `lease` seconds, once it has
    committed (rolled back, they were never recorded)."""
    if not rows:
        return
    items = [Claimed(row, channels[row["sales_channel"]]) for row in rows]
    send_seconds = notification_settings().notification_send_timeout_seconds
    uow.after_commit.append(lambda: HANDED.add(items, lease, send_seconds))


async def deliver_notifications(begin: Begin) -> None:
    config = notification_settings()
    await run_forever("notification-sender", lambda: send_due(begin, config))


async def send_due(begin: Begin, config: NotificationSettings) -> None:
    """Keep up to IN_FLIGHT deliveries going, each sent on its own (a slow receiver holds up only its own
    deliveries): those handed off first, then what a claim finds due, claimed every poll interval (at once again
    while claims come back full); whenever some have finished, their outcomes are recorded in one transaction (one
    per delivery was most of what a delivery cost)."""
    in_flight: dict[asyncio.Task, Claimed] = {}
    claimed_at, backlog = -math.inf, False
    async with Senders(config) as senders:
        try:
            while True:
                room = IN_FLIGHT - len(in_flight)
                items = HANDED.take(room)
                if len(items) < room and (backlog or time.monotonic() - claimed_at >= config.notification_poll_seconds):
                    claimed_at, wanted = time.monotonic(), room - len(items)
                    claimed = await _claim(begin, config, wanted)
                    backlog, items = len(claimed) == wanted, items + claimed
                for item in items:
                    task = asyncio.create_task(_attempt(item, config, senders),
                                               name=f"delivery-{item.row['delivery_id']}")
                    in_flight[task] = item
                done = await _finished_or_handed(in_flight, config.notification_poll_seconds)
                if done:
                    await _record_outcomes(begin, [(in_flight.pop(task), task) for task in done], config)
        except asyncio.CancelledError:
            await _let_go(begin, in_flight, config)
            raise
        finally:  # a claim or a record failed: what was cut short is due again when its lease runs out
            for task in in_flight:
                task.cancel()


async def _let_go(begin: Begin, in_flight: dict[asyncio.Task, Claimed], config: NotificationSettings) -> None:
    """Stopping: what finished is recorded, and what this process holds and has not sent (cut short, or handed off
    and not begun) is due again at once, for another instance or this service restarted, rather than when its
    lease runs out (50 s by default). Bounded: a stop does not wait long on a database that is away."""
    for task in in_flight:
        task.cancel()
    await asyncio.gather(*in_flight, return_exceptions=True)
    finished = [(item, task) for task, item in in_flight.items() if not task.cancelled()]
    unsent = [item for task, item in in_flight.items() if task.cancelled()] + HANDED.take(HandedOff.MAX_HANDED)
    in_flight.clear()
    try:
        async with asyncio.timeout(LET_GO_SECONDS):
            if finished:
                await _record_outcomes(begin, finished, config)
            if unsent:
                async with begin() as uow:
                    await store.release(uow.conn, {item.row["delivery_id"]: item.attempts for item in unsent})
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        log.warning("notification.release_failed", deliveries=len(unsent), error=repr(error))


async def _finished_or_handed(in_flight: dict[asyncio.Task, Claimed], timeout: float) -> set[asyncio.Task]:
    """The deliveries that finished, once some have, more are handed off, or `timeout` has passed."""
    handed = asyncio.ensure_future(HANDED.arrived.wait())
    try:
        done, _ = await asyncio.wait([*in_flight, handed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        handed.cancel()
    return done - {handed}


async def _record_outcomes(begin: Begin, finished: list[tuple[Claimed, asyncio.Task]],
                           config: NotificationSettings) -> None:
    outcomes = _outcomes(finished)
    try:
        async with begin() as uow:
            await _record(uow, outcomes, config)
    except Exception:  # the database is away: the deliveries are due again when their leases run out
        for item, error in outcomes:
            log.exception("notification.unrecorded", order_id=str(item.row["order_id"]),
                          delivery_id=str(item.row["delivery_id"]), sent=error is None)


def _outcomes(finished: list[tuple[Claimed, asyncio.Task]]) -> list[tuple[Claimed, str | None]]:
    """What each attempt came to (None: sent; else what went wrong). One that broke off unexpectedly is left out:
    its delivery comes due again when its lease runs out."""
    outcomes = []
    for item, task in finished:
        try:
            outcomes.append((item, task.result()))
        except Exception:
            log.exception("notification.attempt_broke_off", order_id=str(item.row["order_id"]),
                          delivery_id=str(item.row["delivery_id"]))
    return outcomes


async def _claim(begin: Begin, config: NotificationSettings, limit: int) -> list[Claimed]:
    async with begin() as uow:
        due = await store.due_deliveries(uow.conn, limit)
        if not due:
            return []
        channels = await store.channel_settings(uow.conn, {r["sales_channel"] for r in due})
        skipped = await unwanted(uow.conn, due, channels)
        await store.skip(uow.conn, skipped)
        claimed = [Claimed(r, channels[r["sales_channel"]]) for r in due if r["delivery_id"] not in skipped]
        await store.lease(uow.conn, {c.row["delivery_id"]: lease_seconds(c.attempts, config) for c in claimed})
        return claimed


async def unwanted(conn: asyncpg.Connection, deliveries: list[Mapping[str, Any]],
                   channels: dict[str, ChannelSettings]) -> dict[uuid.UUID, str]:
    """What must not be sent now, with why."""
    preferences = await store.opted_out(conn, {c for r in deliveries for c in r["customers"]})
    bounced = await store.bounced(conn, {r["recipient"] for r in deliveries if r["channel"] == "email"})
    skipped = {r["delivery_id"]: reason for r in deliveries
               if (reason := skip_reason(r, channels[r["sales_channel"]], preferences, bounced))}
    for row in deliveries:
        if row["delivery_id"] in skipped:
            log.info("notification.skipped", order_id=str(row["order_id"]), delivery_id=str(row["delivery_id"]),
                     channel=row["channel"], kind=row["kind"], reason=skipped[row["delivery_id"]])
    return skipped


def skip_reason(row: Mapping[str, Any], channel: ChannelSettings, preferences: dict[str, asyncpg.Record],
                bounced: set[str]) -> str | None:
    kind = row["channel"]
    if any(not preferences[c][kind] for c in row["customers"] if c in preferences):
        return "OPTED_OUT"
    if kind == "email" and not channel.email:
        return "EMAIL_OFF"
    if kind == "email" and row["recipient"].lower() in bounced:
        return "BOUNCED"
    if kind == "webhook" and not (channel.webhook_url and channel.webhook_secret):
        return "WEBHOOK_OFF"
    return None


def lease_seconds(attempt: int, config: NotificationSettings) -> float:
    """Long enough for the send to finish (or time out) before anyone may take the delivery again."""
    return config.notification_send_timeout_seconds * 2 + _backoff(attempt, config)


def _backoff(attempt: int, config: NotificationSettings) -> float:
    return retry_delay(attempt, config.notification_retry_seconds, config.notification_retry_max_seconds)


async def _attempt(item: Claimed, config: NotificationSettings, senders: "Senders") -> str | None:
    """None if sent, else what went wrong."""
    try:
        async with asyncio.timeout(config.notification_send_timeout_seconds):
            if item.row["channel"] == "email":
                await senders.mail.send(email(item, config))
            else:
                await send_webhook(item, senders.http)
        return None
    except TimeoutError:
        return "timed out"
    except DeliveryError as error:
        return str(error)
    except (aiosmtplib.SMTPException, httpx.HTTPError, OSError) as error:
        return describe(error)


def describe(error: Exception) -> str:
    """What a failure was, without what the server echoed (an SMTP reply may quote the address)."""
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"SMTP {error.code}"
    return type(error).__name__


async def _record(uow: UnitOfWork, outcomes: list[tuple[Claimed, str | None]], config: NotificationSettings) -> None:
    sent = await store.record_sent(uow.conn, {item.row["delivery_id"]: item.attempts
                                              for item, error in outcomes if error is None})
    for item, error in outcomes:
        row, attempts = item.row, item.attempts
        ids = {"delivery_id": row["delivery_id"], "notification_id": row["notification_id"],
               "order_id": row["order_id"], "kind": row["kind"], "channel": row["channel"], "attempts": attempts}
        logged = {"order_id": str(row["order_id"]), "delivery_id": str(row["delivery_id"]), "channel": row["channel"],
                  "kind": row["kind"], "attempts": attempts, "correlation_id": row["correlation_id"]}
        if error is None:
            if row["delivery_id"] in sent:
                _emit(uow, row, NotificationDelivered(**ids))
                log.info("notification.sent", **logged)
        elif gives_up(attempts, config.notification_max_attempts):
            if await store.record_failed(uow.conn, row["delivery_id"], attempts, error):
                _emit(uow, row, NotificationFailed(**ids, reason=ReasonCode(code="DELIVERY_FAILED", detail=error)))
                log.warning("notification.failed", error=error, **logged)
        else:
            delay = _backoff(attempts, config)
            await store.record_retry(uow.conn, row["delivery_id"], attempts, error, delay)
            log.info("notification.retry", error=error, retry_in_seconds=delay, **logged)


def _emit(uow: UnitOfWork, row: Mapping[str, Any], event: NotificationDelivered | NotificationFailed) -> None:
    with continuing(row["trace_context"], "notification delivery",
                    {"oms.order_id": str(row["order_id"]), "oms.delivery_id": str(row["delivery_id"])}) as trace:
        uow.emit(event, correlation_id=row["correlation_id"], trace=trace)


def email(item: Claimed, config: NotificationSettings) -> Message:
    row = item.row
    sender = item.channel.from_address or config.notification_from
    if not (sender.isascii() and row["recipient"].isascii()):
        return _international_email(row, sender)
    # compat32's MIME classes: a third of the CPU of EmailMessage's header registry, which composing mail took
    # most of notification's time for (the wire format is the same standard MIME).
    text = MIMEText(row["body_text"], "plain", UTF8)
    if row["body_html"]:
        # "=_" never occurs in quoted-printable bodies, so the boundary needs no search of them (the standard
        # library's random one is searched for with a regular expression compiled for each mail).
        mail = MIMEMultipart("alternative", boundary=f"=_{row['delivery_id'].hex}")
        mail.attach(text)
        mail.attach(MIMEText(row["body_html"], "html", UTF8))
    else:
        mail = text
    mail["From"] = sender
    mail["To"] = row["recipient"]
    mail["Subject"] = row["subject"] if row["subject"].isascii() else Header(row["subject"], UTF8)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = message_id(row["delivery_id"], sender)
    return mail


class _Compat32Unfolded(Compat32):
    """compat32 (what aiosmtplib writes a compat32 message with), but a header that fits on its line is written as
    it is instead of through email.header.Header, which is what compat32 folding would leave it as anyway: every
    header folded that way was two thirds of the CPU of composing and writing a mail."""

    def fold_binary(self, name: str, value: object) -> bytes:
        if (isinstance(value, str) and value.isascii() and value.isprintable()
                and len(name) + 2 + len(value) <= self.max_line_length):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


WIRE = _Compat32Unfolded()


def wire_bytes(mail: Message) -> bytes:
    """A compat32 mail as sent: the bytes aiosmtplib's flatten_message writes for it (with 7-bit bodies)."""
    with io.BytesIO() as written:
        BytesGenerator(written, policy=WIRE).flatten(mail)
        return written.getvalue()


def _international_email(row: Mapping[str, Any], sender: str) -> EmailMessage:
    """An address that is not ASCII (RFC 6531) must go as UTF-8 in the header, which only EmailMessage writes."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = row["recipient"]
    mail["Subject"] = row["subject"]
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = message_id(row["delivery_id"], sender)
    mail.set_content(row["body_text"])
    if row["body_html"]:
        mail.add_alternative(row["body_html"], subtype="html")
    return mail


def message_id(delivery: object, sender: str) -> str:
    """The delivery id as the Message-ID: a receiver sees a resent mail as the same message."""
    return f"<{delivery}@{sender.rsplit('@', 1)[-1]}>"


async def send_webhook(item: Claimed, http: httpx.AsyncClient) -> None:
    row = item.row
    body = json.dumps(row["payload"], separators=(",", ":"))
    webhook_id, now = str(row["delivery_id"]), datetime.now(UTC)
    headers = {"content-type": "application/json", "webhook-id": webhook_id,
               "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(item.channel.webhook_secret).sign(webhook_id, now, body)}
    response = await http.post(item.channel.webhook_url, content=body.encode(), headers=headers)
    if not response.is_success:
        raise DeliveryError(f"HTTP {response.status_code}")


class Senders:
    """What the sender keeps open between deliveries: SMTP connections and an HTTP client (its connection pool
    and TLS context). Opening them for every message cost more CPU than the message itself."""

    def __init__(self, config: NotificationSettings):
        self.mail = MailConnections(config)
        self.http = httpx.AsyncClient(timeout=config.notification_send_timeout_seconds)

    async def __aenter__(self) -> "Senders":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.mail.close()
        await self.http.aclose()


class MailConnections:
    """SMTP connections reused from one mail to the next (a connection per mail costs the server's greeting, EHLO,
    STARTTLS and QUIT). Only one idle for less than IDLE_SECONDS is reused, well inside the five minutes RFC 5321
    gives servers; one the server has closed anyway is replaced and the mail sent again at once, as is one that
    failed in any way (it is closed, never reused)."""

    IDLE_SECONDS = 30.0

    def __init__(self, config: NotificationSettings):
        self.config = config
        self.idle: list[tuple[aiosmtplib.SMTP, float]] = []  # with when each was last used

    async def send(self, mail: Message) -> None:
        smtp, reused = await self._take()
        try:
            await self._send_on(smtp, mail)
        except aiosmtplib.SMTPServerDisconnected:
            if not reused:
                raise
            await self._send_on(await self._connect(), mail)

    async def _send_on(self, smtp: aiosmtplib.SMTP, mail: Message) -> None:
        try:
            if isinstance(mail, EmailMessage):  # an international mail: aiosmtplib sees to SMTPUTF8 and 8BITMIME
                await smtp.send_message(mail)
            else:  # ASCII addresses, 7-bit bodies
                await smtp.sendmail(mail["From"], [mail["To"]], wire_bytes(mail))
        except BaseException:
            smtp.close()
            raise
        self.idle.append((smtp, time.monotonic()))

    async def _take(self) -> tuple[aiosmtplib.SMTP, bool]:
        while self.idle:
            smtp, since = self.idle.pop()
            if smtp.is_connected and time.monotonic() - since < self.IDLE_SECONDS:
                return smtp, True
            await _quit(smtp)
        return await self._connect(), False

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(hostname=self.config.smtp_host, port=self.config.smtp_port,
                               start_tls=self.config.smtp_starttls,
                               timeout=self.config.notification_send_timeout_seconds)
        await smtp.connect()
        return smtp

    async def close(self) -> None:
        """QUIT on every idle connection at once: one unanswered by a hung server costs the send timeout, and one at
        a time would hold a stopping service that long for each."""
        idle, self.idle = self.idle, []
        await asyncio.gather(*(_quit(smtp) for smtp, _ in idle))


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


async def clear_old_bodies(begin: Begin) -> None:
    config = notification_settings()

    async def periodically() -> None:
        while True:
            async with begin() as uow:
                cleared = await store.clear_bodies(uow.conn, config.notification_body_retention_days)
            if cleared:
                log.info("notification.bodies_cleared", deliveries=cleared)
            await asyncio.sleep(config.notification_retention_interval_seconds)

    await run_forever("notification-retention", periodically)
