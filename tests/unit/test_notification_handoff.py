"""The sender's hand-off queue: what it gives back, and what it leaves to the claims."""

import uuid

from services.notification import delivery
from services.notification.store import ChannelSettings

WEB = ChannelSettings.default("web")


def test_a_handed_delivery_taken_too_late_for_its_lease_is_left_to_the_claims():
    handed = delivery.HandedOff()
    on_time, late = (delivery.Claimed({"delivery_id": uuid.uuid4()}, WEB) for _ in range(2))
    handed.add([late], lease_seconds=1.0, send_seconds=1.0)  # no time left to send it within its lease
    handed.add([on_time], lease_seconds=60.0, send_seconds=1.0)
    assert handed.take(10) == [on_time]
    handed.MAX_HANDED = 1
    handed.add([on_time, late], lease_seconds=60.0, send_seconds=1.0)
    assert handed.take(10) == [on_time], "beyond the bound, waiting for a claim"
