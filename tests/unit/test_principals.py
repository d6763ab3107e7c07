import re

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from ops.prepare import service_definitions
from ops.env import ROOT
from ops.principals import (PARTY_KINDS, Principal, default_principals, party_principal, party_read_topics,
                            service_principal)
from shared.contracts.topics import (DEAD_LETTERS, FULFILLMENT_DROPSHIP_ORDERS, FULFILLMENT_LOCATION_UPDATES,
                                     FULFILLMENT_WORK, INVENTORY_AVAILABILITY, INVENTORY_COMMANDS, ORDER_COMMANDS,
                                     ORDER_EVENTS, PARTY_READ_TOPICS, ROUTING_COMMANDS)
from shared.messaging.service import consumer_group
from shared.settings import settings


def test_a_channel_writes_its_own_commands_topic_reads_its_own_order_events_and_availability_and_has_its_groups():
    acls = {(acl.restype, acl.name, acl.resource_pattern_type, acl.operation, acl.principal)
            for acl in party_principal("channel", "acme").acls("test-1.")}
    assert acls == {
        (ResourceType.TOPIC, f"test-1.{ORDER_COMMANDS}.acme", ResourcePatternType.LITERAL, AclOperation.WRITE,
         "User:channel-acme"),
        (ResourceType.TOPIC, f"test-1.{ORDER_EVENTS}.acme", ResourcePatternType.LITERAL, AclOperation.READ,
         "User:channel-acme"),
        (ResourceType.TOPIC, f"test-1.{INVENTORY_AVAILABILITY}", ResourcePatternType.LITERAL, AclOperation.READ,
         "User:channel-acme"),
        (ResourceType.GROUP, "test-1.channel-acme.", ResourcePatternType.PREFIXED, AclOperation.READ,
         "User:channel-acme"),
    }


def test_each_service_may_use_the_groups_it_joins_and_no_two_principals_share_a_group_prefix(monkeypatch):
    monkeypatch.setenv("OMS_TOPIC_PREFIX", "test-1.")
    settings.cache_clear()
    try:
        for service in service_definitions():
            [group_acl] = [acl for acl in service_principal(service).acls("test-1.")
                           if acl.restype == ResourceType.GROUP]
            assert all(consumer_group(service.name, s.topic).startswith(group_acl.name) for s in service.subscriptions)
    finally:
        settings.cache_clear()
    prefixes = [principal.group_prefix for principal in default_principals(service_definitions())]
    assert not [(a, b) for a in prefixes for b in prefixes if a != b and a.startswith(b)]


# Topics more than one service writes, by design: on an order's first sourcing inventory asks routing where to
# send what it has held, and routing has inventory pin it there.
SHARED_BY_SERVICES = {INVENTORY_COMMANDS: {"capture", "routing"}, ROUTING_COMMANDS: {"capture", "inventory"}}


def test_every_service_may_dead_letter_and_only_the_outside_writers_of_the_topic_table_share_its_topics():
    services = service_definitions()
    principals = default_principals(services)
    for service in services:
        assert DEAD_LETTERS in service_principal(service).writes
        for topic in service.publishes:
            writers = {p.name for p in principals if topic in p.writes}
            assert writers <= {service.name, "erp", *SHARED_BY_SERVICES.get(topic, ())}, f"{topic} written by {writers}"


def test_the_services_read_and_write_every_partys_own_topic_by_one_prefixed_acl_each():
    def prefixed(service: str) -> set[tuple[str, AclOperation]]:
        principal = service_principal(next(s for s in service_definitions() if s.name == service))
        return {(acl.name, acl.operation) for acl in principal.acls("test-1.")
                if acl.resource_pattern_type == ResourcePatternType.PREFIXED and acl.restype == ResourceType.TOPIC}

    assert prefixed("capture") == {(f"test-1.{ORDER_COMMANDS}", AclOperation.READ),
                                   (f"test-1.{ORDER_EVENTS}.", AclOperation.WRITE)}
    assert prefixed("fulfillment") == {(f"test-1.{FULFILLMENT_LOCATION_UPDATES}", AclOperation.READ),
                                       (f"test-1.{FULFILLMENT_WORK}.", AclOperation.WRITE),
                                       (f"test-1.{FULFILLMENT_DROPSHIP_ORDERS}.", AclOperation.WRITE)}


def test_work_and_purchase_orders_exist_only_per_location_and_order_events_also_whole():
    fulfillment = service_principal(next(s for s in service_definitions() if s.name == "fulfillment"))
    assert not {FULFILLMENT_WORK, FULFILLMENT_DROPSHIP_ORDERS} & set(fulfillment.writes)
    capture = service_principal(next(s for s in service_definitions() if s.name == "capture"))
    assert ORDER_EVENTS in capture.writes
    assert party_read_topics("location", "WH-X") == [f"{FULFILLMENT_WORK}.WH-X", f"{FULFILLMENT_DROPSHIP_ORDERS}.WH-X"]
    assert party_read_topics("channel", "web") == [f"{ORDER_EVENTS}.web"]


@pytest.mark.parametrize("kind, name", [("channel", None), ("location", None), ("channel", "Web"),
                                        ("channel", "a.b"), ("location", "../x"), ("location", "")])
def test_a_channel_or_location_principal_needs_a_name_its_messages_can_carry(kind, name):
    with pytest.raises(ValueError):
        party_principal(kind, name)


def test_the_erp_has_a_principal_of_its_kind():
    assert party_principal("erp").name == "erp"


def test_the_readme_table_says_what_each_principal_may_write_and_read():
    table = readme_acl_table()
    principals = [*default_principals(service_definitions()), party_principal("channel", "acme"),
                  party_principal("location", "WH-X")]
    for principal in principals:
        name = principal.name.replace("acme", "<channel>").replace("WH-X", "<location>")
        assert table[name] == described(principal), name


def described(principal: Principal) -> tuple[set[str], set[str]]:
    """What the README's row shows of a principal: topics, a party's as `<topic>.<kind>`."""
    readers = {party.own_topic: kind for kind, party in PARTY_KINDS.items() if party.own_topic}
    own = {"acme": "<channel>", "WH-X": "<location>"}
    def named(topic: str) -> str:
        base, _, party = topic.rpartition(".")
        return f"{base}.{own[party]}" if party in own else topic

    writes = {*map(named, principal.writes),
              *(f"{topic}.<{PARTY_READ_TOPICS.get(topic) or readers[topic]}>"
                for topic in principal.writes_every_party)}
    reads = {*map(named, principal.reads), *principal.reads_every_party,
             *(f"{topic}.<{readers[topic]}>" for topic in principal.reads_every_party)}
    return writes, reads


def readme_acl_table() -> dict[str, tuple[set[str], set[str]]]:
    """README "Who may do what on Kafka": principal -> (the topics it writes, the topics it reads)."""
    section = (ROOT / "README.md").read_text().split("## Who may do what on Kafka")[1]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    ticked = lambda cell: set(re.findall(r"`([^`]+)`", cell))  # noqa: E731
    return {re.findall(r"`([^`]+)`", cells[0])[0].strip("| "): (ticked(cells[1]), ticked(cells[2]))
            for cells in rows if not cells[1].startswith("super user")}
