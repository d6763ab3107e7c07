"""Customer message rules without I/O: templates (every kind, autoescape, the fallback chain), reasons in words,
the retry schedule, when a delivery is skipped, and the ids that make a resend recognisable."""

import uuid
from typing import get_args

import pytest

from services.notification.config import NotificationSettings
from services.notification.delivery import lease_seconds, message_id, skip_reason
from services.notification.domain import delivery_id, gives_up, notification_id, retry_delay
from services.notification.store import ChannelSettings
from services.notification.templates import Templates, candidates
from shared.cancel_reasons import CANCEL_REASONS, cancel_reason
from shared.contracts.notification import NotificationKind
from shared.contracts.orders import OrderCancelled

VALUES = {"name": "Ada", "channel_order_id": "W-1", "tracking_url": "", "lines": [{"sku": "CAP", "quantity": 2}],
          "expected_on": None, "carrier": "DHL", "tracking_number": "TRK9", "complete": True, "store_id": "ST-1",
          "reason_code": "NO_ROUTE", "reason": cancel_reason("NO_ROUTE"), "return_id": "R1", "return_to": "WH-1",
          "amount": "19.99", "currency": "EUR", "added": [], "removed": [{"sku": "HAT", "quantity": 1}],
          "rerouted": False, "total": "39.98", "amount_due": "39.98"}


@pytest.mark.parametrize("kind", get_args(NotificationKind))
def test_every_kind_renders_a_one_line_subject_a_text_and_an_html_body(kind):
    rendered = Templates().render(kind, channel="web", locale="en", **VALUES)
    assert "W-1" in rendered.subject and "\n" not in rendered.subject
    assert rendered.text.startswith("Hello Ada,") and "W-1" in rendered.text
    assert rendered.html.startswith("<!DOCTYPE html>") and "W-1" in rendered.html


def test_a_customer_name_with_markup_is_escaped_in_html_and_left_as_it_is_in_text():
    rendered = Templates().render("order_confirmed", channel="web", locale="en",
                                  **{**VALUES, "name": "<script>alert(1)</script>", "channel_order_id": "W-<b>"})
    assert "<script>" not in rendered.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "W-&lt;b&gt;" in rendered.html
    assert "Hello <script>alert(1)</script>," in rendered.text


def test_a_tracking_link_appears_only_when_there_is_one():
    without = Templates().render("order_shipped", channel="web", locale="en", **VALUES)
    with_link = Templates().render("order_shipped", channel="web", locale="en",
                                   **{**VALUES, "tracking_url": "https://t.example/x?a=1&b=2"})
    assert "Follow your order" not in without.text and "Follow your order" not in without.html
    assert "https://t.example/x?a=1&b=2" in with_link.text
    assert 'href="https://t.example/x?a=1&amp;b=2"' in with_link.html


def test_templates_fall_back_from_channel_and_locale_to_channel_to_locale_to_default(tmp_path):
    assert candidates("order_confirmed", "subject.txt", "web", "de") == [
        "web/de/order_confirmed.subject.txt", "web/order_confirmed.subject.txt", "de/order_confirmed.subject.txt",
        "default/order_confirmed.subject.txt"]
    for folder, text in (("default", "Order {{ channel_order_id }}"), ("de", "Bestellung {{ channel_order_id }}"),
                         ("shop/de", "Shop-Bestellung {{ channel_order_id }}")):
        (tmp_path / folder).mkdir(parents=True)
        for part in ("subject.txt", "text.txt", "html"):
            (tmp_path / folder / f"order_confirmed.{part}").write_text(text)
    templates = Templates(tmp_path)

    def subject(channel, locale):
        return templates.render("order_confirmed", channel=channel, locale=locale, channel_order_id="W-1").subject

    assert subject("shop", "de") == "Shop-Bestellung W-1"
    assert subject("web", "de") == "Bestellung W-1"
    assert subject("shop", "en") == "Order W-1"


def test_every_cancellation_reason_the_contract_names_reads_as_a_sentence():
    named = OrderCancelled.model_fields["reason"].description.replace("...", "").replace(" ", "").split(",")
    assert {code for code in named if code} <= set(CANCEL_REASONS)
    assert all(text.endswith(".") and "_" not in text for text in CANCEL_REASONS.values())
    assert cancel_reason("SOMETHING_NEW") == "We could not fulfil it."


def test_retries_wait_longer_each_time_up_to_a_cap_and_stop_after_the_last_attempt():
    assert [retry_delay(n, 30, 3600) for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert not gives_up(7, 8) and gives_up(8, 8)


def test_a_lease_outlasts_a_send_that_times_out_so_no_two_senders_hold_one_delivery():
    config = NotificationSettings(notification_send_timeout_seconds=10, notification_retry_seconds=30,
                                  notification_retry_max_seconds=3600)
    assert lease_seconds(1, config) == 2 * 10 + 30
    assert lease_seconds(3, config) == 2 * 10 + 120


def test_ids_are_derived_so_a_resend_carries_the_same_message_id_and_webhook_id():
    order = uuid.uuid4()
    first = notification_id(order, "order_shipped", "parcel-1")
    again = notification_id(order, "order_shipped", "parcel-1")
    assert first == again != notification_id(order, "order_shipped", "parcel-2")
    assert delivery_id(first, "email") != delivery_id(first, "webhook")
    assert message_id(delivery_id(first, "email"), "orders@shop.example") == \
        f"<{delivery_id(first, 'email')}@shop.example>"


def _row(channel: str, recipient: str = "ada@example.org") -> dict:
    return {"channel": channel, "recipient": recipient, "customers": ["ada@example.org", "c-1"]}


def test_a_delivery_is_skipped_for_an_opt_out_a_bounce_or_a_channel_turned_off():
    on = ChannelSettings("web", True, None, "https://x", "whsec_x", "en")
    assert skip_reason(_row("email"), on, {}, set()) is None
    assert skip_reason(_row("webhook"), on, {}, set()) is None
    assert skip_reason(_row("email"), on, {"c-1": {"email": False, "webhook": True}}, set()) == "OPTED_OUT"
    assert skip_reason(_row("webhook"), on, {"ada@example.org": {"email": False, "webhook": True}}, set()) is None
    assert skip_reason(_row("email"), on, {}, {"ada@example.org"}) == "BOUNCED"
    assert skip_reason(_row("email"), ChannelSettings("web", False, None, None, None, "en"), {}, set()) == "EMAIL_OFF"
    assert skip_reason(_row("webhook"), ChannelSettings.default("web"), {}, set()) == "WEBHOOK_OFF"


@pytest.mark.parametrize("kind", get_args(NotificationKind))
def test_every_kind_has_its_own_german_wording(kind):
    english = Templates().render(kind, channel="web", locale="en", **VALUES)
    german = Templates().render(kind, channel="web", locale="de", **VALUES)
    assert german.text.startswith("Hallo Ada,") and "W-1" in german.subject and "\n" not in german.subject
    assert german.subject != english.subject and '<html lang="de">' in german.html


def test_a_german_cancellation_gives_its_reason_in_german_and_a_general_one_for_a_new_code():
    known = Templates().render("order_cancelled", channel="web", locale="de", **{**VALUES, "reason_code": "NO_ROUTE"})
    new = Templates().render("order_cancelled", channel="web", locale="de", **{**VALUES, "reason_code": "NEW_CODE"})
    assert "an Ihre Adresse liefern" in known.text and "Wir konnten sie nicht ausführen." in new.text
