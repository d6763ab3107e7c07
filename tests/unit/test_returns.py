"""Returns rules: what may come back and when, where it goes, and what it refunds."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.capture.returns import DEFAULT_POLICY, OrderSoFar, ReturnPolicy, refund, refusal, return_policy, return_to
from shared.contracts.common import Line
from shared.contracts.money import Billing, ChargedLine
from shared.contracts.orders import RequestReturn

NOW = datetime(2027, 1, 31, tzinfo=UTC)
POLICY = ReturnPolicy(default_window_days=30, channel_window_days={"outlet": 14},
                      sku_prefix_window_days={"FINAL-": 0, "FINAL-EXTENDED-": 60})


def order(handed_over_days_ago: int = 1, in_returns=()) -> OrderSoFar:
    return OrderSoFar(shipped=[Line(sku="SKU-A", quantity=3), Line(sku="FINAL-EXTENDED-B", quantity=1)],
                      shipped_from={"SKU-A": "WH-1", "FINAL-EXTENDED-B": "WH-2"},
                      handed_over_at=NOW - timedelta(days=handed_over_days_ago), in_returns=list(in_returns))


def request(sku: str = "SKU-A", quantity: int = 1, channel: str = "web") -> RequestReturn:
    return RequestReturn(channel=channel, channel_order_id="W-1", return_id="R1",
                         lines=[{"sku": sku, "quantity": quantity, "reason": "TOO_SMALL"}])


def test_units_may_come_back_once_within_the_window_of_their_channel_or_sku():
    assert refusal(request(), order(29), POLICY, NOW) is None
    assert refusal(request(), order(31), POLICY, NOW).code == "OUTSIDE_RETURN_WINDOW"
    assert refusal(request(channel="outlet"), order(15), POLICY, NOW).code == "OUTSIDE_RETURN_WINDOW"
    assert refusal(request("FINAL-EXTENDED-B"), order(45), POLICY, NOW) is None  # the longest prefix wins
    assert refusal(request(quantity=4), order(), POLICY, NOW).code == "NOTHING_TO_RETURN"
    taken = [Line(sku="SKU-A", quantity=2)]
    assert refusal(request(quantity=2), order(in_returns=taken), POLICY, NOW).code == "NOTHING_TO_RETURN"
    assert refusal(request(quantity=1), order(in_returns=taken), POLICY, NOW) is None


def test_goods_go_back_where_they_came_from_or_to_the_returns_centre():
    assert return_to(request("FINAL-EXTENDED-B"), order(), POLICY) == "WH-2"
    assert return_to(request(), order(), ReturnPolicy(returns_centre="WH-RET")) == "WH-RET"


def test_returns_of_a_whole_line_in_pieces_refund_exactly_the_line():
    billing = Billing(channel="web", channel_order_id="W-1", currency="EUR", shipping=Decimal("4.90"),
                      lines=[ChargedLine(sku="SKU-A", quantity=3, unit_price=Decimal("19.99"),
                                         discount=Decimal("3.00"), tax=Decimal("10.82"))])
    shipped = [Line(sku="SKU-A", quantity=3)]
    never = ReturnPolicy(refund_shipping="never")
    first = refund(billing, [Line(sku="SKU-A", quantity=2)], [], shipped, never)
    second = refund(billing, [Line(sku="SKU-A", quantity=1)], [Line(sku="SKU-A", quantity=2)], shipped, never)
    assert first.total + second.total == Decimal("59.97") - Decimal("3.00") + Decimal("10.82")
    assert first.shipping == second.shipping == 0


def test_shipping_comes_back_with_the_last_unit_shipped_unless_the_policy_or_an_exchange_says_otherwise():
    billing = Billing(channel="web", channel_order_id="W-1", currency="EUR", shipping=Decimal("4.90"),
                      shipping_tax=Decimal("0.93"), lines=[ChargedLine(sku="SKU-A", quantity=3,
                                                                        unit_price=Decimal("10.00"))])
    shipped, policy = [Line(sku="SKU-A", quantity=2)], ReturnPolicy()  # one unit was never shipped
    some = refund(billing, [Line(sku="SKU-A", quantity=1)], [], shipped, policy)
    last = refund(billing, [Line(sku="SKU-A", quantity=1)], [Line(sku="SKU-A", quantity=1)], shipped, policy)
    assert (some.shipping, some.total) == (0, Decimal("10.00"))
    assert (last.shipping, last.shipping_tax, last.total) == (Decimal("4.90"), Decimal("0.93"), Decimal("15.83"))
    everything = [Line(sku="SKU-A", quantity=2)]
    assert refund(billing, everything, [], shipped, policy, exchange=True).shipping == 0
    assert refund(billing, everything, [], shipped, ReturnPolicy(refund_shipping="never")).shipping == 0


def test_the_shipped_policy_file_is_valid():
    assert return_policy().window("web", "FINAL-SALE-1") == timedelta(0)


def test_the_shipped_policy_file_says_what_it_means_and_a_misplaced_setting_is_refused(tmp_path):
    """A key written below a table belongs to that table in TOML: `refund_shipping` after
    `[sku_prefix_window_days]` was read as the window of SKUs starting "refund_shipping"."""
    shipped = return_policy(DEFAULT_POLICY)
    assert shipped.sku_prefix_window_days == {"FINAL-SALE-": 0}
    assert shipped.refund_shipping == "when_everything_returned" and shipped.longest_window_days == 30
    misplaced = tmp_path / "returns.toml"
    misplaced.write_text('[sku_prefix_window_days]\n"FINAL-" = 0\nrefund_shipping = "never"\n')
    with pytest.raises(ValidationError, match="sku_prefix_window_days"):
        return_policy(misplaced)
