"""`oms load`'s mix, without a fault, on an OMS whose capture holds a new customer's large first order: orders
held by command and by the rule wait on hold until the hold desk releases them, then every order settles and
the invariant checker finds nothing."""

import asyncpg
import pytest

from ops import load
from services.capture.handlers import NEW_CUSTOMER_HOLD

from ..support.load_mix import ORDERS, flow_with_fault
from ..support.stack import stack

pytestmark = pytest.mark.e2e


@pytest.fixture
async def oms(config, tmp_path):
    async with stack(config, tmp_path,
                     env={"OMS_HOLD_NEW_CUSTOMER_ABOVE": str(load.NEW_CUSTOMER_HOLD_ABOVE)}) as running:
        yield running


async def test_orders_held_by_command_and_by_the_new_customer_rule_settle_once_released(oms):
    async def no_fault():
        pass

    report, desk = await flow_with_fault(oms, no_fault)
    assert report.settled == report.orders >= ORDERS  # the mix and the replacements of its exchanges
    new_customers = [o for o in load.orders(load.Network("X"), ORDERS) if o.customer.customer_id.startswith("NEW-")]
    assert desk.placed[NEW_CUSTOMER_HOLD.placed_by] == len(new_customers) > 0, "each large first order held by rule"
    assert f"{len(new_customers)} {NEW_CUSTOMER_HOLD.placed_by}" in desk.summary()
    conn = await asyncpg.connect(oms.settings.admin_dsn())
    try:
        waited = await conn.fetchval("SELECT count(DISTINCT order_id) FROM capture.order_timeline "
                                     "WHERE saga_state = 'held'")
    finally:
        await conn.close()
    assert waited > 0, "held orders waited, reserved and pinned, until released"
