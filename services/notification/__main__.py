from shared.messaging.service import run
from shared.tracking_links import tracking_links

from .app import SERVICE

tracking_links()  # without its link secret the service stops now, not at its first message
run(SERVICE)
