"""Customer message templates, one per notification kind."""

from string import Template

TEMPLATES: dict[str, tuple[Template, Template]] = {
    "order_confirmed": (
        Template("Your order $channel_order_id is confirmed"),
        Template("Hello $name,\n\nwe have your order $channel_order_id and are getting it ready.\n"),
    ),
    "order_shipped": (
        Template("Your order $channel_order_id is on its way"),
        Template("Hello $name,\n\nyour order $channel_order_id has shipped with $carrier, "
                 "tracking number $tracking_number.\n"),
    ),
    "order_cancelled": (
        Template("Your order $channel_order_id was cancelled"),
        Template("Hello $name,\n\nwe are sorry: your order $channel_order_id was cancelled ($reason).\n"),
    ),
}


def render(kind: str, **values: str) -> tuple[str, str]:
    subject, body = TEMPLATES[kind]
    return subject.substitute(values), body.substitute(values)
