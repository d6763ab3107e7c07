"""A service's /health and /metrics tell the truth: a consumer that cannot finish its batch makes the service
not ready (naming the consumer), and it is ready again once the cause is gone."""

import json
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.client import client
from ops.waiting import eventually
from shared.contracts.inventory import ReceiveStock

from ..support.services import running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def inventory(config, tmp_path_factory):
    async with running(("inventory",), tmp_path_factory.mktemp("run")) as procs:
        yield procs["inventory"]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


async def readiness(url: str, expected: int) -> dict | None:
    status, body = get(f"{url}/health/ready")
    if status == expected:
        return json.loads(body)
    print(f"readiness {status}: {body}")  # shown if the wait times out
    return None


async def readiness_gauges(url: str, **expected: int) -> bool:
    """`oms_service_ready` (as `ready`) and each check's `oms_readiness_check_ok` (by check) have these values."""
    samples = [sample for family in text_string_to_metric_families(get(f"{url}/metrics")[1])
               for sample in family.samples if sample.name in ("oms_service_ready", "oms_readiness_check_ok")]
    actual = {sample.labels.get("check", "ready"): sample.value for sample in samples}
    return all(actual.get(key) == value for key, value in expected.items())


async def test_a_consumer_that_cannot_finish_its_batch_makes_the_service_not_ready(config, admin, inventory):
    url = inventory.url()
    await eventually(lambda: readiness(url, 200), timeout=60, what="inventory to be ready")
    assert get(f"{url}/health/live")[0] == 200

    sku = f"HL-{uuid.uuid4().hex[:8].upper()}"
    await admin.execute("REVOKE INSERT ON inventory.inbox FROM oms_inventory")  # every batch now fails to claim
    try:
        async with client(config, "test/erp") as erp:
            await erp.send(ReceiveStock(receipt_id=f"r-{sku}", sku=sku, location_id="WH-1", quantity=3))
        report = await eventually(lambda: readiness(url, 503), timeout=60, what="inventory to report not ready")
        assert any("inventory.commands.v1" in problem and "retrying" in problem for problem in report["problems"])
        assert get(f"{url}/health/live")[0] == 200, "alive: restarting it would not help"
        await eventually(lambda: readiness_gauges(url, ready=0, consumers=0, database=1),
                         what="the readiness gauges to say the consumers are what is wrong")
    finally:
        await admin.execute("GRANT INSERT ON inventory.inbox TO oms_inventory")

    await eventually(lambda: readiness(url, 200), timeout=30, what="inventory to be ready again")
    await eventually(lambda: readiness_gauges(url, ready=1, consumers=1, database=1, outbox=1),
                     what="the readiness gauges to say ready")
    assert await admin.fetchval("SELECT on_hand FROM inventory.sku_stock WHERE sku = $1", sku) == 3, \
        "the batch it was stuck on was applied, not skipped"


async def test_metrics_are_served_in_the_prometheus_format(config, inventory):
    sku = f"MT-{uuid.uuid4().hex[:8].upper()}"
    async with client(config, "test/erp") as erp:
        await erp.send(ReceiveStock(receipt_id=f"r-{sku}", sku=sku, location_id="WH-1", quantity=1))
    names = ("oms_messages_consumed_total", "oms_messages_published_total", "oms_outbox_backlog",
             "oms_consumer_lag", "oms_handler_duration_seconds")

    async def exposed():
        status, body = get(f"{inventory.url()}/metrics")
        return status == 200 and all(name in body for name in names)

    await eventually(exposed, what=f"{', '.join(names)} on /metrics")
