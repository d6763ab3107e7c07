"""Routing: chooses the fulfilment location for an order and explains the choice."""
from shared.messaging.service import run
from shared.settings import settings

from .app import SERVICE
from .rules import RuleSetError, rule_set

try:
    rule_set(settings().routing_rules)  # an invalid rule file stops the service before it consumes anything
except RuleSetError as error:
    raise SystemExit(f"configuration error: {error}") from None
run(SERVICE)
