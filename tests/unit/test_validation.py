import pytest
from pydantic import ValidationError

from shared.contracts import Envelope
from shared.contracts.orders import PlaceOrder
from ops.demo import sample_order
from services.capture.validation import order_id_for, rejection


def invalid(**changes) -> tuple[Envelope, ValidationError]:
    data = sample_order("W-1").model_dump(mode="json") | changes
    with pytest.raises(ValidationError) as error:
        PlaceOrder.model_validate(data)
    return Envelope(type=PlaceOrder.message_type, source="channel/web", correlationid="c", data=data), error.value


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"lines": []}, "NO_LINES"),
        ({"lines": [{"sku": "SKU-1", "quantity": -1, "unit_price": "1.00"}]}, "INVALID_QUANTITY"),
        ({"lines": [{"sku": "SKU-1", "quantity": 1.5, "unit_price": "1.00"}]}, "INVALID_QUANTITY"),
        ({"lines": [{"sku": "bad sku", "quantity": 1, "unit_price": "1.00"}]}, "INVALID_SKU"),
        ({"currency": "XXX"}, "UNKNOWN_CURRENCY"),
        ({"delivery": None}, "INVALID_DELIVERY"),
    ],
)
def test_each_broken_rule_has_its_reason_code(changes, code):
    envelope, error = invalid(**changes)
    [answer] = rejection(envelope, error)
    assert [r.code for r in answer.reasons] == [code]
    assert answer.order_id == order_id_for("web", "W-1")


def test_missing_delivery_has_its_own_code():
    data = sample_order("W-1").model_dump(mode="json")
    del data["delivery"]
    with pytest.raises(ValidationError) as error:
        PlaceOrder.model_validate(data)
    envelope = Envelope(type=PlaceOrder.message_type, source="channel/web", correlationid="c", data=data)
    assert [r.code for r in rejection(envelope, error.value)[0].reasons] == ["MISSING_DELIVERY"]


def test_unidentifiable_orders_get_no_answer_only_a_dead_letter():
    envelope, error = invalid(channel_order_id=None)
    assert rejection(envelope, error) == []


def test_order_id_is_stable_per_channel_order():
    assert order_id_for("web", "W-1") == order_id_for("web", "W-1")
    assert order_id_for("web", "W-1") != order_id_for("pos", "W-1")
