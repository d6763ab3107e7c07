"""`oms what-if` against the five services: a window of real orders replayed under the live rule set and a
candidate. The live side matches what routing decided; the candidate side moves as its rules say; the command runs
with nothing but read rights (a Kafka principal that may only read routing.commands.v1, the read-only database
role, every other password wrong), so it cannot have written anything."""

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ops.env import ROOT
from ops.principals import Principal, add_user, grant, remove_user
from ops.waiting import eventually
from services.routing.rules import DEFAULT_RULES
from shared.contracts.routing import OrderRouted, RouteNotFound
from shared.contracts.topics import ROUTING_COMMANDS, ROUTING_EVENTS
from shared.settings import kafka_password_variable

from ..support.topics import TopicWatcher, of_type
from .conftest import BERLIN, FRANKFURT

pytestmark = pytest.mark.e2e

READER_DB_PASSWORD = "OMS_OPS_READER_DB_PASSWORD"


@pytest.fixture
async def topic_reader(config):
    """A Kafka principal that may read routing.commands.v1 and nothing else: its name and password."""
    principal = Principal(name=f"whatif-{uuid.uuid4().hex[:8]}", reads=(ROUTING_COMMANDS,), writes=(),
                          group_prefix="whatif-none.")
    password = uuid.uuid4().hex
    await add_user(config, principal.name, password)
    await grant(config, [principal])
    await eventually(lambda: can_read(config, principal.name, password), what=f"{principal.name} to log in")
    yield principal.name, password
    await remove_user(config, principal.name)


async def can_read(config, principal: str, password: str) -> bool:
    """A new SCRAM user reaches the broker's credential cache through the metadata log: a moment later."""
    login = {**config.kafka_login().aiokafka(), "sasl_plain_username": principal, "sasl_plain_password": password}
    consumer = AIOKafkaConsumer(**login, enable_auto_commit=False)
    try:
        await consumer.start()
        await consumer.end_offsets([TopicPartition(config.topic(ROUTING_COMMANDS), 0)])
        return True
    except KafkaError:
        return False
    finally:
        await consumer.stop()


@pytest.fixture
def candidate_rules(tmp_path):
    """The live rule set with ship-from-store off for every SKU class."""
    path = tmp_path / "candidate.toml"
    path.write_text(DEFAULT_RULES.read_text()
                    .replace('name = "default"', 'name = "no-ship-from-store"')
                    .replace('disabled_classes = ["bulky"]', 'disabled_classes = ["bulky", "standard"]'))
    return path


async def what_if(reader: tuple[str, str], *args: str) -> str:
    """The CLI as a process, with read rights only."""
    principal, password = reader
    env = {name: "not-for-what-if" if name.endswith("_PASSWORD") and name != READER_DB_PASSWORD else value
           for name, value in os.environ.items()}
    env[kafka_password_variable(principal)] = password
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops.cli", "what-if", "--kafka-principal", principal, *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def recorded(driver, order_ids: list) -> dict:
    """Routing's first decision per order, as it stored it."""
    rows = await driver.db.fetch(
        "SELECT DISTINCT ON (order_id) order_id, location_id, reason_code, details FROM routing.decisions "
        "WHERE order_id = ANY($1) ORDER BY order_id, decision_id", order_ids)
    return {str(r["order_id"]): r for r in rows}


def chosen_distance(row) -> float:
    return sum(c["distance_km"] or 0 for c in json.loads(row["details"])["candidates"] if c["chosen"])


async def test_what_if_replays_a_window_under_live_and_candidate_rules(driver, topic_reader, candidate_rules):
    since = datetime.now(UTC)
    store, warehouse, sku, only_at_warehouse = (driver.unique("ST"), driver.unique("WH"), driver.unique("SKU"),
                                                driver.unique("SKU"))
    await driver.location(store, FRANKFURT, kind="store", ships_to_customers=True, accepts_pickup=True,
                          daily_capacity=10)
    await driver.location(warehouse, BERLIN)
    await driver.stock(sku, store, 5)
    await driver.stock(sku, warehouse, 5)
    await driver.stock(only_at_warehouse, warehouse, 5)
    shipments = [driver.order([(sku, 1)], city="Frankfurt") for _ in range(3)]
    pickup = driver.order([(only_at_warehouse, 1)], pickup_store=store)
    async with TopicWatcher(driver.config, ROUTING_EVENTS) as decisions:
        for order in [*shipments, pickup]:
            await driver.channel.send(order)
        for order in [*shipments, pickup]:
            await decisions.wait_for(lambda e, o=driver.order_id(order): (of_type(OrderRouted, o)(e)
                                                                          or of_type(RouteNotFound, o)(e)))

    report = json.loads(await what_if(topic_reader, "--rules", str(candidate_rules), "--since", since.isoformat(),
                                      "--json"))

    ours = {str(driver.order_id(o)) for o in [*shipments, pickup]}
    by_order = {o["order_id"]: o for o in report["orders"]}
    assert ours <= by_order.keys()
    # The live side is what routing decided, order by order and in total.
    routing = await recorded(driver, [uuid.UUID(i) for i in by_order])
    assert len(routing) == len(by_order)
    for order_id, row in routing.items():
        assert by_order[order_id]["live"]["locations"][:1] == ([row["location_id"]] if row["location_id"] else [])
        assert by_order[order_id]["live"]["reason"] == row["reason_code"]
    live, candidate = report["live"], report["candidate"]
    assert live["rule_set"] == "default@v1" and candidate["rule_set"] == "no-ship-from-store@v1"
    assert live["routed"] == sum(1 for row in routing.values() if row["location_id"])
    assert sum(live["unfulfillable"].values()) == sum(1 for row in routing.values() if not row["location_id"])
    assert live["total_distance_km"] == pytest.approx(sum(map(chosen_distance, routing.values())), abs=0.05)
    assert report["recorded"] == {"rule_sets": ["default@v1"], "agreeing": len(by_order)}
    assert [by_order[str(driver.order_id(o))]["live"]["locations"] for o in shipments] == [[store]] * 3
    assert by_order[str(driver.order_id(pickup))]["live"]["reason"] == "PICKUP_STORE_NO_STOCK"
    assert {"location_id": store, "daily_capacity": 10, "peak_day_orders": 3, "peak_share": 0.3} in live["capacity"]
    # The candidate ships nothing from stores: the shipments go to the warehouse, further away.
    assert [by_order[str(driver.order_id(o))]["candidate"]["locations"] for o in shipments] == [[warehouse]] * 3
    assert by_order[str(driver.order_id(pickup))]["candidate"]["reason"] == "PICKUP_STORE_NO_STOCK"
    assert report["changed"] >= 3 and candidate["total_distance_km"] > live["total_distance_km"]
    assert not [n for n in candidate["capacity"] if n["location_id"] == store]
    assert {"location_id": warehouse, "daily_capacity": None, "peak_day_orders": 3,
            "peak_share": None} in candidate["capacity"]

    text = await what_if(topic_reader, "--rules", str(candidate_rules), "--last", "4")
    assert f"{driver.order_id(shipments[-1])}  {store} -> {warehouse}" in text
    assert "orders whose choice changed: 3 of 4" in text

    # A window starting after them starts from the capacity they use.
    await eventually(lambda: driver.db.fetchval(
        "SELECT count(*) = 3 FROM routing.capacity_claims WHERE location_id = $1", store), what="3 claims")
    later = json.loads(await what_if(topic_reader, "--rules", str(candidate_rules), "--since",
                                     datetime.now(UTC).isoformat(), "--json"))
    day = await driver.db.fetchval("SELECT max(day) FROM routing.capacity_claims WHERE location_id = $1", store)
    assert later["window"]["used_at_start"][f"{store}/{day}"] == 3
