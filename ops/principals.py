"""Who may do what on Kafka: one principal per service and per outside party, and the ACLs that say so.

Each principal may write the topics it publishes, read the topics it consumes and use consumer groups under a
prefix of its own; nothing else (no topic creation, no other principal's groups). ops and the broker itself
are super users (deploy/kafka/server.properties.in). Topic ACLs are LITERAL on the prefixed topic name and group
ACLs PREFIXED on the prefixed group prefix, so a test run's topics (`test-<id>.orders.commands.v1`) and groups
get ACLs of their own from that run's `prepare`, and lose them with its topics (`revoke`).

The ACLs and SCRAM users are managed with confluent-kafka's admin client: aiokafka's has neither API.
"""

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from shared.contracts.topics import (FULFILLMENT_EVENTS, FULFILLMENT_LOCATION_UPDATES, FULFILLMENT_WORK,
                                     INVENTORY_COMMANDS, ORDER_COMMANDS, ORDER_EVENTS)
from shared.messaging.service import ServiceDefinition, consumer_group_prefix
from shared.settings import Settings

SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Principal:
    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group_prefix: str  # its consumer groups' names start with this, after the topic prefix

    def acls(self, topic_prefix: str) -> list[AclBinding]:
        user = f"User:{self.name}"

        def allow(resource: ResourceType, name: str, pattern: ResourcePatternType, operation: AclOperation):
            return AclBinding(resource, name, pattern, user, "*", operation, AclPermissionType.ALLOW)

        return [*(allow(ResourceType.TOPIC, topic_prefix + topic, ResourcePatternType.LITERAL, AclOperation.READ)
                  for topic in self.reads),
                *(allow(ResourceType.TOPIC, topic_prefix + topic, ResourcePatternType.LITERAL, AclOperation.WRITE)
                  for topic in self.writes),
                allow(ResourceType.GROUP, topic_prefix + self.group_prefix, ResourcePatternType.PREFIXED,
                      AclOperation.READ)]


# The kinds of outside party and what the topic table (README) lets each do.
PARTY_KINDS = {
    "channel": {"writes": (ORDER_COMMANDS,), "reads": (ORDER_EVENTS,)},
    "location": {"writes": (FULFILLMENT_LOCATION_UPDATES,), "reads": (FULFILLMENT_WORK,)},
    "erp": {"writes": (INVENTORY_COMMANDS,), "reads": (FULFILLMENT_EVENTS, ORDER_EVENTS)},
}


def service_principal(service: ServiceDefinition) -> Principal:
    return Principal(service.name, service.reads, service.writes, consumer_group_prefix(service.name))


def party_principal(kind: str, name: str | None = None) -> Principal:
    """The kind's default principal (`channel`), or one of its own for a named party (`channel-acme`)."""
    principal = kind if name is None else f"{kind}-{name}"
    return Principal(principal, PARTY_KINDS[kind]["reads"], PARTY_KINDS[kind]["writes"], f"{principal}.")


def default_principals(services: Iterable[ServiceDefinition]) -> list[Principal]:
    return [*map(service_principal, services), *map(party_principal, PARTY_KINDS)]


async def grant(settings: Settings, principals: Iterable[Principal]) -> None:
    """Creates the principals' ACLs for the settings' topic prefix; creating one that exists changes nothing."""
    bindings = [acl for principal in principals for acl in principal.acls(settings.topic_prefix)]
    admin = _admin(settings)  # referenced until its futures are done: a collected client cancels them
    await _wait_all(admin.create_acls(bindings))


async def revoke(settings: Settings) -> None:
    """Deletes every ACL on the settings' topic prefix (a test run's); a deployment without a prefix keeps its own."""
    if not settings.topic_prefix:
        raise ValueError("refusing to revoke every ACL of an unprefixed deployment")
    await _delete_acls(settings, lambda acl: acl.name.startswith(settings.topic_prefix))


async def _delete_acls(settings: Settings, chosen: Callable[[AclBinding], bool]) -> None:
    admin = _admin(settings)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)
    found = await asyncio.wrap_future(admin.describe_acls(everything))
    doomed = [AclBindingFilter(acl.restype, acl.name, acl.resource_pattern_type, acl.principal, acl.host,
                               acl.operation, acl.permission_type) for acl in found if chosen(acl)]
    if doomed:
        await _wait_all(admin.delete_acls(doomed))


async def add_user(settings: Settings, principal: str, password: str) -> None:
    """Creates (or sets the password of) a SCRAM-SHA-512 user."""
    upsert = UserScramCredentialUpsertion(principal, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512,
                                                                         SCRAM_ITERATIONS), password.encode())
    admin = _admin(settings)
    await _wait_all(admin.alter_user_scram_credentials([upsert]))


async def remove_user(settings: Settings, principal: str) -> None:
    """Deletes a SCRAM-SHA-512 user and every ACL naming it."""
    await _delete_acls(settings, lambda acl: acl.principal == f"User:{principal}")
    admin = _admin(settings)
    await _wait_all(admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion(principal, ScramMechanism.SCRAM_SHA_512)]))


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_login().librdkafka())


async def _wait_all(futures: dict[object, Future]) -> None:
    await asyncio.gather(*(asyncio.wrap_future(future) for future in futures.values()))
