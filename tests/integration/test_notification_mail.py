"""Notification's SMTP connections against a real mail server (aiosmtpd): mails follow one another over one
connection, a connection the server dropped while it sat idle is replaced without the mail failing, and closing
says QUIT on every idle connection at once."""

import asyncio
import uuid
from email.message import EmailMessage

from ops.waiting import eventually
from services.notification.config import notification_settings
from services.notification.delivery import MailConnections

from ..support.receivers import MailServer


def _mail(number: int) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "orders@shop.example", "customer@example.org", f"mail {number}"
    mail["Message-ID"] = f"<{uuid.uuid4()}@shop.example>"
    mail.set_content("hello")
    return mail


async def test_mails_share_a_connection_and_one_the_server_dropped_is_replaced():
    server = await MailServer(idle_timeout=0.5).start()
    config = notification_settings().model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": server.port})
    connections = MailConnections(config)
    try:
        for number in range(3):
            await connections.send(_mail(number))
        assert [m["Subject"] for m in server.mails] == ["mail 0", "mail 1", "mail 2"]
        assert len(set(server.peers)) == 1

        idle = connections.idle[0][0]
        await eventually(lambda: not idle.is_connected, timeout=10, what="the server to drop the idle connection")
        await connections.send(_mail(3))
        assert server.mails[-1]["Subject"] == "mail 3" and len(set(server.peers)) == 2
    finally:
        await connections.close()
        await server.stop()


async def test_closing_quits_every_idle_connection_at_once_so_a_hung_server_holds_a_stop_for_one_timeout():
    """A stopping service was killed after 20 s: QUIT one connection at a time, each waiting out the send timeout
    of a server that did not answer (the fault tests' mail server, in a test process busy stopping services)."""
    server = await MailServer().start()
    config = notification_settings().model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": server.port,
                                                        "notification_send_timeout_seconds": 60})
    connections = MailConnections(config)
    try:
        await asyncio.gather(*(connections.send(_mail(number)) for number in range(3)))
        assert len(connections.idle) == len(set(server.peers)) == 3
        server.answer_quits.clear()
        closing = asyncio.create_task(connections.close())
        await eventually(lambda: server.quits == 3, timeout=10, what="a QUIT on each connection before any answer")
        server.answer_quits.set()
        await closing
        assert not connections.idle
    finally:
        await server.stop()
