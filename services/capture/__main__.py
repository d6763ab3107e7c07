from shared.messaging.service import run

from .app import SERVICE

run(SERVICE)
