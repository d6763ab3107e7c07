"""Notification: one customer message per lifecycle event, recorded in its own schema."""
