"""Notification's SMTP connections against a real mail server (aiosmtpd): mails follow one another over one
connection, and a connection the server dropped while it sat idle is replaced without the mail failing."""

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
