"""Capture: order intake from sales channels, validation, dedup, the order record and the order saga."""
