"""The mail a delivery is sent as: standard MIME that a reader gets the same headers and bodies from, whether
composed on the fast path (ASCII addresses) or as an international mail (an address in UTF-8, RFC 6531)."""

import uuid
from email import message_from_bytes, policy
from email.errors import HeaderParseError

import pytest
from aiosmtplib.email import flatten_message
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.notification.config import notification_settings
from services.notification.delivery import WIRE, Claimed, email, wire_bytes
from services.notification.store import ChannelSettings

CHANNEL = ChannelSettings(channel="web", email=True, from_address="orders@shop.example", webhook_url=None,
                          webhook_secret=None, locale="de")


def _delivery(recipient: str, html: str | None, subject: str = "Ihre Bestellung W-1 ist bestätigt") -> Claimed:
    row = {"delivery_id": uuid.uuid4(), "recipient": recipient, "subject": subject,
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


@pytest.mark.parametrize("subject", ["Your order W-1 is confirmed", "Ihre Bestellung W-1 ist bestätigt",
                                     "Your order " + "W-1234567890 " * 8 + "is confirmed"])
@pytest.mark.parametrize("html", ["<p>Grüße, <b>Zoë</b></p>", None])
def test_a_mail_goes_out_as_the_very_bytes_aiosmtplib_would_have_written(subject, html):
    mail = email(_delivery("zoe@example.org", html, subject), notification_settings())
    assert wire_bytes(mail) == flatten_message(mail)


@settings(max_examples=2000)
@example(name="Subject", value="  two  spaces, then one at the end ")
@example(name="Subject", value="=?utf-8?q?looks_encoded?=")
@example(name="Subject", value="x" * 69)
@example(name="Subject", value="x" * 70)
@example(name="Subject", value="\n0:")  # compat32 refuses what looks like a header within: so must we
@given(name=st.sampled_from(["Subject", "To", "X-Long-Header-Name-For-Folding"]),
       value=st.text(st.characters(min_codepoint=1, max_codepoint=0x24F), max_size=120))
def test_a_header_is_written_as_compat32_folds_it(name, value):
    assert _folded(WIRE, name, value) == _folded(super(type(WIRE), WIRE), name, value)


def _folded(policy, name: str, value: str) -> bytes | type[Exception]:
    """What the policy writes for the header, or the error it refuses it with (an embedded header)."""
    try:
        return policy.fold_binary(name, value)
    except HeaderParseError as refused:
        return type(refused)
