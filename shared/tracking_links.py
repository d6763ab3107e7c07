"""Signed, expiring links to an order's tracking page: the notification service puts them in its messages, the
tracking service checks them before it shows the page. Shared, so both sign and verify alike.

A link carries the order id and when it was signed, with an HMAC-SHA256 over both (itsdangerous); nothing about the
customer. Whoever holds a link sees that order's page, as whoever reads the email would: it is a bearer token, so
it is never logged. A link is refused once older than the lifetime the tracking service is configured with, so
shortening the lifetime takes effect for links already sent."""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from uuid import UUID

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

SALT = "oms.tracking-page"  # keeps these signatures apart from anything else signed with the same secret
PAGE_PATH = "/track/"


class LinkExpired(Exception):
    """Signed by us, but older than the links' lifetime."""


class LinkInvalid(Exception):
    """Not a link we signed: altered, cut short, or signed with another secret."""


class TrackingLinkSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    tracking_link_secret: str = Field(min_length=16, repr=False, description="Signs the links (deploy/dev.env)")
    tracking_link_days: float = Field(30.0, gt=0, description="How long a link opens the page after it was sent")
    tracking_page_url: str = Field("http://127.0.0.1:8080", description="Where customers reach the tracking "
                                                                        "service: the links' base")


@dataclass(frozen=True)
class TrackingLinks:
    secret: str = field(repr=False)
    lifetime_seconds: float
    base_url: str
    clock: Callable[[], float] = time.time  # seconds since the epoch, when signing and when checking

    def url(self, order_id: UUID) -> str:
        return f"{self.base_url.rstrip('/')}{PAGE_PATH}{self.token(order_id)}"

    def token(self, order_id: UUID) -> str:
        return self._serializer().dumps(str(order_id))

    def order_id(self, token: str) -> UUID:
        """The order a token was signed for; LinkExpired or LinkInvalid when it opens nothing."""
        try:
            return UUID(self._serializer().loads(token, max_age=int(self.lifetime_seconds)))
        except SignatureExpired:
            raise LinkExpired from None
        except (BadData, ValueError, TypeError, AttributeError):
            raise LinkInvalid from None

    def _serializer(self) -> URLSafeTimedSerializer:
        clock = self.clock

        class Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        return URLSafeTimedSerializer(self.secret, salt=SALT, signer=Signer,
                                      signer_kwargs={"digest_method": hashlib.sha256})


@cache
def tracking_links() -> TrackingLinks:
    try:
        config = TrackingLinkSettings()
    except ValidationError as error:
        problems = ", ".join(f"OMS_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"configuration error: {problems} (see deploy/dev.env)") from None
    return TrackingLinks(config.tracking_link_secret, config.tracking_link_days * 86_400, config.tracking_page_url)
