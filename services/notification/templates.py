"""Customer message templates, one per notification kind."""

from string import Template

TEMPLATES: dict[str, tuple[Template, Template]] = {
    "order_confirmed": (
        Template("Your order $channel_order_id is confirmed"),
        Template("Hello $name,\n\nwe have your order $channel_order_id and are getting it ready.\n"),
    ),
    "order_backordered": (
        Template("Your order $channel_order_id is waiting for stock"),
        Template("Hello $name,\n\nwe are waiting for $what for your order $channel_order_id and will send it "
                 "$when.\n"),
    ),
    "order_shipped": (
        Template("Your order $channel_order_id is on its way"),
        Template("Hello $name,\n\nyour order $channel_order_id $what with $carrier, "
                 "tracking number $tracking_number.\n"),
    ),
    "order_delivered": (
        Template("Your order $channel_order_id has arrived"),
        Template("Hello $name,\n\nyour order $channel_order_id has been delivered. Enjoy!\n"),
    ),
    "order_ready_for_pickup": (
        Template("Your order $channel_order_id is ready for pickup"),
        Template("Hello $name,\n\nyour order $channel_order_id is waiting for you at store $store_id.\n"),
    ),
    "order_picked_up": (
        Template("You collected your order $channel_order_id"),
        Template("Hello $name,\n\nthank you for collecting your order $channel_order_id at store $store_id.\n"),
    ),
    "order_lines_cancelled": (
        Template("Part of your order $channel_order_id was cancelled"),
        Template("Hello $name,\n\nwe are sorry: we could not send $what of your order $channel_order_id; "
                 "you will not be charged for it.\n"),
    ),
    "order_cancelled": (
        Template("Your order $channel_order_id was cancelled"),
        Template("Hello $name,\n\nwe are sorry: your order $channel_order_id was cancelled ($reason).\n"),
    ),
}


def render(kind: str, **values: str) -> tuple[str, str]:
    subject, body = TEMPLATES[kind]
    return subject.substitute(values), body.substitute(values)
