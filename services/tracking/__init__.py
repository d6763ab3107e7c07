"""Tracking: the read model of every order, fed only by topics, and the channels' HTTP API over it."""
