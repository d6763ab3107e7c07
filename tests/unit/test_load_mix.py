"""`oms load`'s holds: which orders the stream holds by command, which the new-customer rule's threshold catches,
and the hold desk that releases them and counts what it heard once."""

import uuid

from ops import load
from ops.simulators import HoldDesk, _Heard
from shared.contracts.orders import HoldOrder, OrderAccepted, OrderHeld, OrderHoldRefused, PlaceOrder, ReleaseHold
from shared.settings import Settings

NETWORK = load.Network("LTEST")


def test_one_order_in_eight_is_held_by_command_right_after_it_is_placed():
    stream = load.stream(NETWORK, 400)
    holds = [(before, hold) for before, hold in zip(stream, stream[1:], strict=False) if isinstance(hold, HoldOrder)]
    assert len(holds) == 400 // load.HOLD_EVERY
    assert all(isinstance(order, PlaceOrder) and order.key() == hold.key() for order, hold in holds)
    assert {hold.hold.reason for _, hold in holds} == set(load.HOLD_REASONS)


def test_the_new_customer_threshold_holds_the_large_first_orders_and_no_other():
    orders = list(load.orders(NETWORK, 1000))
    large = [o for o in orders if o.computed_totals().total > load.NEW_CUSTOMER_HOLD_ABOVE]
    assert large and all(o.customer.customer_id.startswith("NEW-") for o in large)
    assert len({o.customer.customer_id for o in large}) == len(large), "each a new customer's first order"
    assert not [o for o in load.orders(NETWORK, 1000, failures=False)
                if o.computed_totals().total > load.NEW_CUSTOMER_HOLD_ABOVE], "the benchmark's mix is never held"


async def test_the_hold_desk_releases_each_hold_it_hears_of_once_and_counts_it_once():
    desk = HoldDesk(Settings(), client=None, prefix="LTEST", review_seconds=0)
    order = next(load.orders(NETWORK, 1))
    order_id = uuid.uuid4()
    accepted = _envelope(OrderAccepted(order_id=order_id, channel=order.channel,
                                       channel_order_id=order.channel_order_id, customer=order.customer,
                                       lines=order.lines, currency=order.currency, delivery=order.delivery,
                                       totals=order.computed_totals()))
    held = _envelope(OrderHeld(order_id=order_id, hold=load.hold(order, 0).hold))
    elsewhere = _envelope(OrderHeld(order_id=uuid.uuid4(), hold=load.hold(order, 0).hold))
    refused = _envelope(OrderHoldRefused(order_id=order_id, channel=order.channel,
                                         channel_order_id=order.channel_order_id,
                                         reason={"code": "NOT_HELD"}))
    # as the stand-ins' loop hands it over: `held` relayed twice after a crash
    await desk._hear(_Heard().new([accepted, held, held, elsewhere, refused]))
    assert [release for _, release in desk._releases._due] == [
        ReleaseHold(channel=order.channel, channel_order_id=order.channel_order_id, reason="manual",
                    released_by="hold-desk")]
    assert desk.summary() == "holds: 1 placed (1 load), 0 released, 1 refused (1 NOT_HELD)"


def _envelope(payload) -> dict:
    return {"id": str(uuid.uuid4()), "type": payload.message_type, "data": payload.model_dump(mode="json")}
