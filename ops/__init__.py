"""Operator tooling: the oms CLI, infrastructure control, demo data, and the channel/location simulators."""
