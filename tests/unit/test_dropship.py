"""Dropship: which fulfilment orders go out as purchase orders, their numbers, and what a purchase order carries."""

import uuid
from datetime import date

import pytest
from pydantic import ValidationError

from ops.asyncapi import carries_pii
from ops.demo import address
from ops.principals import party_principal
from services.fulfillment.domain import is_purchase_order, ship_by
from shared.contracts import wrap
from shared.contracts.common import Line
from shared.contracts.fulfillment import (PurchaseOrderCancelled, PurchaseOrderIssued, fulfillment_order_id,
                                          purchase_order_number)
from shared.contracts.topics import FULFILLMENT_DROPSHIP_ORDERS, FULFILLMENT_WORK

ORDER = uuid.UUID("2f1c7e0a-5b1d-4c8e-9a57-3d2f1e0b9c44")


def purchase_order(vendor: str = "DS-ACME") -> PurchaseOrderIssued:
    fo_id = fulfillment_order_id(ORDER, vendor)
    return PurchaseOrderIssued(purchase_order_number=purchase_order_number(fo_id), fulfillment_order_id=fo_id,
                               order_id=ORDER, location_id=vendor, lines=[Line(sku="SOCKS-3PACK", quantity=2)],
                               ship_to=address("Leipzig"), ship_by=date(2026, 11, 30))


def test_a_purchase_order_number_is_the_same_on_every_recomputation_and_differs_per_vendor():
    acme, other = fulfillment_order_id(ORDER, "DS-ACME"), fulfillment_order_id(ORDER, "DS-OTHER")
    assert purchase_order_number(acme) == purchase_order_number(fulfillment_order_id(ORDER, "DS-ACME"))
    assert purchase_order_number(acme) != purchase_order_number(other)
    assert purchase_order_number(acme).startswith("PO-") and len(purchase_order_number(acme)) == 19


def test_only_a_dropship_vendors_ship_to_order_is_a_purchase_order():
    assert is_purchase_order("dropship", "ship")
    assert not is_purchase_order("warehouse", "ship")
    assert not is_purchase_order("store", "ship")
    assert not is_purchase_order(None, "ship")  # a location fulfillment has not heard of: ordinary work
    assert not is_purchase_order("dropship", "pickup")


def test_a_vendor_is_asked_to_ship_within_two_days():
    assert ship_by(date(2026, 12, 31)) == date(2027, 1, 2)


def test_purchase_orders_are_keyed_by_vendor_on_their_own_topic_and_tagged_pii():
    issued = purchase_order()
    cancelled = PurchaseOrderCancelled(purchase_order_number=issued.purchase_order_number,
                                       fulfillment_order_id=issued.fulfillment_order_id, order_id=ORDER,
                                       location_id="DS-ACME")
    assert issued.topic == cancelled.topic == FULFILLMENT_DROPSHIP_ORDERS
    assert wrap(issued, source="oms/fulfillment", correlation_id="c").subject == "DS-ACME"
    assert cancelled.key() == "DS-ACME"
    assert carries_pii(PurchaseOrderIssued) and not carries_pii(PurchaseOrderCancelled)
    assert issued.ship_to.name == "A. Customer"


def test_a_purchase_order_number_must_look_like_one():
    with pytest.raises(ValidationError):
        PurchaseOrderIssued.model_validate(
            {**purchase_order().model_dump(), "purchase_order_number": "PO-../x"})


def test_every_location_may_read_its_own_purchase_orders_and_work_only():
    assert set(party_principal("location", "DS-ACME").reads) == {f"{FULFILLMENT_WORK}.DS-ACME",
                                                                 f"{FULFILLMENT_DROPSHIP_ORDERS}.DS-ACME"}
