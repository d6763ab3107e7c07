"""Routing: chooses the fulfilment location for an order and explains the choice."""
