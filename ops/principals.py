"""Who may do what on Kafka: one principal per service and per outside party, and the ACLs that say so.

Each principal may write the topics it publishes, read the topics it consumes and use consumer groups under a
prefix of its own; nothing else (no topic creation, no other principal's groups). A channel or a location
writes only a topic of its own, `<topic>.<its name>` (`orders.commands.v1.web`,
`fulfillment.location-updates.v1.WH-BERLIN`), and the service reading it holds the party to what that name
says (capture: an order's channel; fulfillment: the fulfilment order's location), so nobody speaks for another
party. The service reads all of them with one PREFIXED ACL on the shared topic's name. Likewise a party reads
only its own part of what the OMS sends outside parties (topics.PARTY_READ_TOPICS: `orders.events.v1.web`,
`fulfillment.work.v1.WH-BERLIN`), LITERAL READ, which the service writes with one PREFIXED WRITE ACL on
`<topic>.`; the party's topics are created when it is added. ops and the broker itself
are super users (deploy/kafka/server.properties.in). Topic ACLs are LITERAL on the prefixed topic name and group
ACLs PREFIXED on the prefixed group prefix, so a test run's topics (`test-<id>.orders.commands.v1`) and groups
get ACLs of their own from that run's `prepare`, and lose them with its topics (`revoke`).

The ACLs and SCRAM users are managed with confluent-kafka's admin client: aiokafka's has neither API.
"""

import asyncio
import re
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from shared.contracts.routing import RegisterLocation
from shared.contracts.topics import (FULFILLMENT_EVENTS, FULFILLMENT_LOCATION_UPDATES, INVENTORY_AVAILABILITY,
                                     INVENTORY_COMMANDS, ORDER_COMMANDS, ORDER_EVENTS, ORDER_PURGES, PARTY_READ_TOPICS,
                                     PAYMENT_COMMANDS, PAYMENT_EVENTS, PER_PARTY_ONLY, party_topic_of)
from shared.messaging.service import ServiceDefinition, consumer_group_prefix
from shared.messaging.topics import ensure_topics
from shared.settings import Settings, kafka_password_variable, secret

from .client import Client

SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Principal:
    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group_prefix: str  # its consumer groups' names start with this, after the topic prefix
    reads_every_party: tuple[str, ...] = ()  # the shared topic and every party's own `<topic>.<party>`
    writes_every_party: tuple[str, ...] = ()  # every party's own `<topic>.<party>`, not the shared topic

    def acls(self, topic_prefix: str) -> list[AclBinding]:
        user = f"User:{self.name}"

        def allow(resource: ResourceType, name: str, pattern: ResourcePatternType, operation: AclOperation):
            return AclBinding(resource, name, pattern, user, "*", operation, AclPermissionType.ALLOW)

        return [*(allow(ResourceType.TOPIC, topic_prefix + topic, ResourcePatternType.LITERAL, AclOperation.READ)
                  for topic in self.reads),
                *(allow(ResourceType.TOPIC, topic_prefix + topic, ResourcePatternType.PREFIXED, AclOperation.READ)
                  for topic in self.reads_every_party),
                *(allow(ResourceType.TOPIC, topic_prefix + topic, ResourcePatternType.LITERAL, AclOperation.WRITE)
                  for topic in self.writes),
                *(allow(ResourceType.TOPIC, f"{topic_prefix}{topic}.", ResourcePatternType.PREFIXED,
                        AclOperation.WRITE) for topic in self.writes_every_party),
                allow(ResourceType.GROUP, topic_prefix + self.group_prefix, ResourcePatternType.PREFIXED,
                      AclOperation.READ)]


@dataclass(frozen=True)
class PartyKind:
    """What the topic table (README) lets a kind of outside party do. A kind with an `own_topic` has no
    principal of its own: each party has one, named `<kind>-<party>`, writing `<own_topic>.<party>` and reading
    `<topic>.<party>` of the topics read per party (PARTY_READ_TOPICS) that are for its kind."""

    reads: tuple[str, ...]
    writes: tuple[str, ...] = ()
    own_topic: str | None = None
    name_pattern: str = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


PARTY_KINDS = {
    "channel": PartyKind(reads=(INVENTORY_AVAILABILITY,), own_topic=ORDER_COMMANDS,
                         name_pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$"),  # a channel's name in PlaceOrder
    "location": PartyKind(reads=(), own_topic=FULFILLMENT_LOCATION_UPDATES),  # a LocationId
    "erp": PartyKind(reads=(FULFILLMENT_EVENTS, ORDER_EVENTS, ORDER_PURGES), writes=(INVENTORY_COMMANDS,)),
    "payments": PartyKind(reads=(PAYMENT_COMMANDS,), writes=(PAYMENT_EVENTS,)),  # the payment service
}


def service_principal(service: ServiceDefinition) -> Principal:
    per_party = {s.topic for s in service.subscriptions if s.per_party}
    return Principal(service.name, tuple(t for t in service.reads if t not in per_party),
                     tuple(t for t in service.writes if t not in PER_PARTY_ONLY), consumer_group_prefix(service.name),
                     tuple(sorted(per_party)),
                     (*service.publishes_for_parties, *(t for t in service.writes if t in PARTY_READ_TOPICS)))


def party_principal(kind: str, name: str | None = None) -> Principal:
    """The kind's principal (`erp`), or a named party's (`channel-web`, `location-WH-BERLIN`, `erp-sap`)."""
    party = PARTY_KINDS[kind]
    if name is None and party.own_topic:
        raise ValueError(f"each {kind} has a principal of its own: name it")
    if name is not None and not re.match(party.name_pattern, name):
        raise ValueError(f"{name!r} is not a {kind} name ({party.name_pattern})")
    principal = kind if name is None else f"{kind}-{name}"
    writes = (*party.writes, *([party_topic(kind, name)] if party.own_topic else []))
    reads = (*party.reads, *(party_read_topics(kind, name) if party.own_topic else []))
    return Principal(principal, reads, writes, f"{principal}.")


def party_topic(kind: str, name: str) -> str:
    """The topic only this party writes (unprefixed)."""
    return party_topic_of(PARTY_KINDS[kind].own_topic, name)


def party_read_topics(kind: str, name: str) -> list[str]:
    """The topics only this party reads (unprefixed): its part of each topic read per party."""
    return [party_topic_of(topic, name) for topic, reader in PARTY_READ_TOPICS.items() if reader == kind]


def default_principals(services: Iterable[ServiceDefinition]) -> list[Principal]:
    """The services' and the kinds' without a topic per party (erp); channels and locations are added by name."""
    return [*map(service_principal, services),
            *(party_principal(kind) for kind, party in PARTY_KINDS.items() if not party.own_topic)]


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


async def add_party(settings: Settings, kind: str, name: str | None, password: str) -> Principal:
    """A party's user, its own topics (kept when the party is removed: what it sent or was sent may still be
    unread) and ACLs."""
    principal = party_principal(kind, name)
    await add_user(settings, principal.name, password)
    if PARTY_KINDS[kind].own_topic:
        await ensure_party_topics(settings, kind, name)
    # Adding it again replaces what an older release granted (a channel read every channel's orders.events.v1).
    await _delete_acls(settings, lambda acl: acl.principal == f"User:{principal.name}"
                       and acl.name.startswith(settings.topic_prefix))
    await grant(settings, [principal])
    return principal


async def ensure_party_topics(settings: Settings, kind: str, *names: str) -> None:
    """The topics a channel or location writes and reads alone, made before anything is sent to it: when it is
    added, and for a location also when ops registers it (routing may choose it from then on)."""
    await ensure_topics(settings, names=[topic for name in names
                                         for topic in (party_topic(kind, name), *party_read_topics(kind, name))])


async def register_locations(sender: Client, locations: list[RegisterLocation]) -> None:
    """Ops registers locations with routing, each location's own topics made first."""
    await ensure_party_topics(sender.settings, "location", *(location.location_id for location in locations))
    await sender.send_many(locations)


async def add_service_users(settings: Settings, services: Iterable[ServiceDefinition]) -> None:
    """deploy/kafka.sh creates the services' users when it formats the broker's storage; a broker formatted before
    a service existed gets that service's user here (with its password from the environment)."""
    admin = _admin(settings)
    existing = await asyncio.wrap_future(admin.describe_user_scram_credentials())
    for service in services:
        if service.name not in existing:
            await add_user(settings, service.name, secret(kafka_password_variable(service.name)))
            await _until_logged_in(settings, service.name)


async def _until_logged_in(settings: Settings, principal: str, timeout: float = 15.0) -> None:
    """A new user reaches the broker's credential cache through the metadata log, a moment after it is made."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        producer = AIOKafkaProducer(**settings.kafka_login(principal).aiokafka())
        try:
            await producer.start()
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await producer.stop()


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
