"""Tracking: the read model of every order, fed by topics, and the channels' HTTP API (tracking and intake)."""
from shared.messaging.service import run

from .app import SERVICE

run(SERVICE)
