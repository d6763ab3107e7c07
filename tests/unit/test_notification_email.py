"""The mail a delivery is sent as: standard MIME that a reader gets the same headers and bodies from, whether
composed on the fast path (ASCII addresses) or as an international mail (an address in UTF-8, RFC 6531)."""

import uuid
from email import message_from_bytes, policy

import pytest
from aiosmtplib.email import flatten_message

from services.notification.config import notification_settings
from services.notification.delivery import Claimed, email
from services.notification.store import ChannelSettings

CHANNEL = ChannelSettings(channel="web", email=True, from_address="orders@shop.example", webhook_url=None,
                          webhook_secret=None, locale="de")


def _delivery(recipient: str, html: str | None) -> Claimed:
    row = {"delivery_id": uuid.uuid4(), "recipient": recipient, "subject": "Ihre Bestellung W-1 ist bestätigt",
           "body_text": "Grüße, Zoë\n\n1 x SKU-1\n", "body_html": html, "attempts": 0}
    return Claimed(row, CHANNEL)


@pytest.mark.parametrize("recipient", ["zoe@example.org", "zoë@exämple.org"])
@pytest.mark.parametrize("html", ["<p>Grüße, <b>Zoë</b></p>", None])
def test_a_mail_reads_back_with_its_headers_and_bodies(recipient, html):
    delivery = _delivery(recipient, html)
    sent = flatten_message(email(delivery, notification_settings()), utf8=not recipient.isascii())
    sent = sent.replace(b"\r\n", b"\n")  # as an SMTP server stores it
    mail = message_from_bytes(sent, policy=policy.default)
    assert (mail["From"], mail["To"], mail["Subject"]) == ("orders@shop.example", recipient,
                                                           "Ihre Bestellung W-1 ist bestätigt")
    assert mail["Message-ID"] == f"<{delivery.row['delivery_id']}@shop.example>" and mail["Date"]
    assert mail.get_body(("plain",)).get_content() == "Grüße, Zoë\n\n1 x SKU-1\n"
    if html:
        assert mail.get_body(("html",)).get_content().strip() == html
    else:
        assert not mail.is_multipart()
