"""Fulfillment: fulfilment orders per location, pick/pack/ship progress, ERP-facing fulfilment events."""
