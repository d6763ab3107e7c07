"""The tracking page's signed links: they open their own order for their lifetime and nothing else."""

import uuid

import pytest

from shared.db.bootstrap import SERVICES
from shared.settings import service_environment
from shared.tracking_links import PAGE_PATH, LinkExpired, LinkInvalid, TrackingLinks

SECRET = "s" * 32
SIGNED_AT = 1_800_000_000.0


def links(now: float = SIGNED_AT, *, secret: str = SECRET, lifetime: float = 60) -> TrackingLinks:
    return TrackingLinks(secret, lifetime, "https://shop.example/", clock=lambda: now)


def test_a_link_opens_its_order_until_its_lifetime_is_over():
    order_id = uuid.uuid4()
    url = links().url(order_id)
    assert url.startswith(f"https://shop.example{PAGE_PATH}")
    token = url.removeprefix(f"https://shop.example{PAGE_PATH}")
    assert links(SIGNED_AT + 60).order_id(token) == order_id
    with pytest.raises(LinkExpired):
        links(SIGNED_AT + 61).order_id(token)


def test_the_lifetime_is_the_checkers_so_a_shorter_one_applies_to_links_already_sent():
    token = links(lifetime=86_400).token(uuid.uuid4())
    with pytest.raises(LinkExpired):
        links(SIGNED_AT + 10, lifetime=5).order_id(token)


def test_a_link_carries_the_order_id_and_nothing_about_the_customer():
    order_id = uuid.uuid4()
    token = links().token(order_id)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."), "URL-safe"
    assert len(token) < 120


def tampered(token: str, other_order: uuid.UUID) -> list[str]:
    payload, timestamp, signature = token.split(".")
    other_payload = links().token(other_order).split(".")[0]
    flipped = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    return [f"{other_payload}.{timestamp}.{signature}",  # another order under this signature
            f"{payload}.{timestamp}.{flipped}", f"{payload}.{timestamp}", token[:-10], "", "...",
            "not-a-token", links(secret="another secret of ours").token(uuid.uuid4()),
            links()._serializer().dumps("not an order id"), links()._serializer().dumps({"order": 1})]


@pytest.mark.parametrize("case", range(10))
def test_a_link_altered_cut_or_signed_with_another_secret_opens_nothing(case):
    token = links().token(uuid.uuid4())
    with pytest.raises(LinkInvalid):
        links().order_id(tampered(token, uuid.uuid4())[case])


def test_the_secret_never_shows_in_the_links_representation():
    assert SECRET not in repr(links())


def test_only_the_services_that_sign_or_check_links_are_given_the_secret():
    env = {"OMS_TRACKING_LINK_SECRET": SECRET, "OMS_WEBHOOK_SECRET": "whsec_x", "OMS_PG_HOST": "127.0.0.1"}
    given = {service: set(service_environment(env, service)) for service in SERVICES}
    assert {service for service, names in given.items() if "OMS_TRACKING_LINK_SECRET" in names} == {
        "notification", "tracking"}
    assert all("OMS_WEBHOOK_SECRET" not in names and "OMS_PG_HOST" in names for names in given.values())
