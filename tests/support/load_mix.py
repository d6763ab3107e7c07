"""`oms load`'s order mix through an OMS of a test's own, with its stand-ins (locations that ship and sometimes
reject, customers who send things back or exchange them, the hold desk, customer service editing orders), while
a fault is done to it; then every order settled and the invariant checker clean."""

import asyncio
from collections.abc import Awaitable, Callable

from ops import invariants, load
from ops.client import client
from ops.simulators import ADDRESS_CHECK, CustomerSimulator, EditDesk, HoldDesk, LocationSimulator

from .stack import Stack, settled_cleanly

ORDERS = 150
RATE = 40.0  # orders/s: the flow lasts long enough for the fault to land in the middle of it


def rejects_some(work: dict) -> bool:
    """The first warehouse short-picks about a quarter of its work, so re-routing happens under faults too."""
    return work["location_id"].endswith("-WH1") and int(work["fulfillment_order_id"][:2], 16) % 4 == 0


async def flow_with_fault(oms: Stack, fault: Callable[[], Awaitable[None]]) -> tuple[invariants.Report, HoldDesk]:
    network = load.Network(load.run_tag(), units=500, scarce_units=15)
    stream = load.stream(network, ORDERS)  # the orders and their holds, then the receipt the preorders wait for
    async with client(oms.settings, "test/load") as channel:
        await load.seed(channel, network)
        simulator = LocationSimulator(oms.settings, channel, reject=rejects_some, group=f"sim-{network.tag}")
        customers = CustomerSimulator(oms.settings, channel, group=f"customers-{network.tag}")
        desk = HoldDesk(oms.settings, channel, prefix=network.tag, leaves=frozenset({ADDRESS_CHECK}),
                        group=f"holds-{network.tag}")
        edits = EditDesk(oms.settings, channel, prefix=network.tag, group=f"edits-{network.tag}")
        stand_ins = asyncio.gather(simulator.run(), customers.run(), desk.run(), edits.run())
        try:
            # The fault is never cut short (a broker left stopped would fail every later test).
            await asyncio.gather(load.publish(channel, stream, RATE), _after(1.0, fault))
            try:
                report = await _unless_stopped(settled(oms, lambda: ORDERS + customers.exchanges), stand_ins)
            except TimeoutError as timed_out:
                raise TimeoutError(f"{timed_out}; stand-ins: {desk.summary()}, {desk.pending} releases to send; "
                                   f"{edits.summary()}, {edits.pending} unanswered; {simulator.handled} location "
                                   f"updates sent, {customers.requested} returns asked") from None
        finally:
            stand_ins.cancel()
            await asyncio.gather(stand_ins, return_exceptions=True)
    assert any(report.by_state.get(s) for s in invariants.HANDED_OVER) and report.by_state.get("cancelled"), \
        "the mix ships some, cancels some"
    assert simulator.rejected, "some work was rejected and re-routed"
    assert customers.requested, "some orders were sent back"
    assert desk.placed["load"] and desk.released["hold-desk"], "some orders were held by command and released"
    assert edits.applied, f"some orders were edited ({edits.summary()})"
    return report, desk


async def _unless_stopped(work: Awaitable, stand_ins: asyncio.Future):
    """`work`'s result; but a stand-in that stopped (it may only be cancelled) fails the test at once with its
    error: the orders waiting on it would never settle."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, stand_ins}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        stopped = stand_ins.exception()
        raise AssertionError(f"a stand-in stopped: {stopped!r}") from stopped
    return task.result()


async def _after(delay: float, fault: Callable[[], Awaitable[None]]) -> None:
    await asyncio.sleep(delay)
    await fault()


async def settled(oms: Stack, expected_orders: Callable[[], int]) -> invariants.Report:
    """Every order (the mix's and the exchanges' replacements, as many as `expected_orders()` says) settled, the
    invariants clean."""
    async def all_orders(_, report: invariants.Report) -> bool:
        return report.orders == expected_orders()

    return await settled_cleanly(oms, all_orders, timeout=150, interval=1.0, what="every order to settle cleanly")
