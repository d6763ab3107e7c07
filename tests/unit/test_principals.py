import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from ops.prepare import service_definitions
from ops.principals import default_principals, party_principal, service_principal
from shared.contracts.topics import DEAD_LETTERS, INVENTORY_AVAILABILITY, ORDER_COMMANDS, ORDER_EVENTS
from shared.messaging.service import consumer_group
from shared.settings import settings


def test_a_channel_writes_its_own_order_commands_topic_reads_order_events_and_availability_and_uses_groups_of_its_own():
    acls = {(acl.restype, acl.name, acl.resource_pattern_type, acl.operation, acl.principal)
            for acl in party_principal("channel", "acme").acls("test-1.")}
    assert acls == {
        (ResourceType.TOPIC, f"test-1.{ORDER_COMMANDS}.acme", ResourcePatternType.LITERAL, AclOperation.WRITE,
         "User:channel-acme"),
        (ResourceType.TOPIC, f"test-1.{ORDER_EVENTS}", ResourcePatternType.LITERAL, AclOperation.READ,
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


def test_every_service_may_dead_letter_and_only_the_outside_writers_of_the_topic_table_share_its_topics():
    services = service_definitions()
    principals = default_principals(services)
    for service in services:
        assert DEAD_LETTERS in service_principal(service).writes
        for topic in service.publishes:
            writers = {p.name for p in principals if topic in p.writes}
            assert writers <= {service.name, "erp"}, f"{topic} written by {writers}"


def test_the_services_read_every_partys_own_topic_by_one_prefixed_acl():
    capture = service_principal(next(s for s in service_definitions() if s.name == "capture"))
    prefixed = {(acl.name, acl.operation) for acl in capture.acls("test-1.")
                if acl.resource_pattern_type == ResourcePatternType.PREFIXED and acl.restype == ResourceType.TOPIC}
    assert prefixed == {(f"test-1.{ORDER_COMMANDS}", AclOperation.READ)}


@pytest.mark.parametrize("kind, name", [("channel", None), ("location", None), ("channel", "Web"),
                                        ("channel", "a.b"), ("location", "../x"), ("location", "")])
def test_a_channel_or_location_principal_needs_a_name_its_messages_can_carry(kind, name):
    with pytest.raises(ValueError):
        party_principal(kind, name)


def test_the_erp_has_a_principal_of_its_kind():
    assert party_principal("erp").name == "erp"
