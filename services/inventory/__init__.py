"""Inventory: stock per SKU per location, all-or-nothing reservations that are always released or consumed."""
