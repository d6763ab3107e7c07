"""Everything a fresh OMS needs before its services start: the database, each service's roles and schema with
its migrations applied (as the schema's owner), the topics and who may use them (ACLs), all created as ops.
`oms prepare`, `oms up` and the tests run it."""

from shared.db import migrate
from shared.db.bootstrap import bootstrap_database
from shared.messaging.service import ServiceDefinition
from shared.messaging.topics import delete_topics, ensure_topics
from shared.settings import Settings

from .principals import add_service_users, default_principals, grant, revoke


def service_definitions() -> list[ServiceDefinition]:
    from services.capture.app import SERVICE as capture
    from services.fulfillment.app import SERVICE as fulfillment
    from services.inventory.app import SERVICE as inventory
    from services.notification.app import SERVICE as notification
    from services.routing.app import SERVICE as routing
    from services.tracking.app import SERVICE as tracking

    return [capture, inventory, routing, fulfillment, notification, tracking]


async def prepare(settings: Settings) -> None:
    await prepare_database(settings)
    await ensure_topics(settings)
    await add_service_users(settings, service_definitions())
    await grant(settings, default_principals(service_definitions()))


async def prepare_database(settings: Settings) -> None:
    """The database half alone: on Kubernetes the operators make the topics, users and ACLs (deploy/k8s)."""
    await bootstrap_database(settings)
    for service in service_definitions():
        await migrate(settings.owner_dsn(service.name), service.name, service.migrations)


async def discard_topics(settings: Settings) -> None:
    """A test run's topics and their ACLs go when the run ends."""
    await delete_topics(settings)
    await revoke(settings)
