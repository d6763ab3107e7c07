"""Operator login: one password (OMS_CONSOLE_PASSWORD, given to the console process only), the operator's name
for the audit, a session cookie signed with itsdangerous (HttpOnly, SameSite=Strict, path /ops) carrying a CSRF
token that every form posts back. Channels' API keys mean nothing here."""

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "oms_console"
SESSION_SECONDS = 12 * 3600
NAME_PATTERN_MAX = 60


@dataclass(frozen=True)
class Session:
    operator: str
    csrf: str


class Sessions:
    def __init__(self, password: str, secret: str, max_age: int = SESSION_SECONDS):
        if len(password) < 8 or len(secret) < 16:
            raise SystemExit("configuration error: OMS_CONSOLE_PASSWORD (8+ characters) and "
                             "OMS_CONSOLE_SESSION_SECRET (16+) are needed (see deploy/dev.env)")
        self._password = password.encode()
        self._signer = URLSafeTimedSerializer(secret, salt="oms-console-session")
        self.max_age = max_age

    def login(self, operator: str, password: str) -> str | None:
        """The cookie's value for a right password, else None. The name is only what the audit calls them."""
        operator = " ".join(operator.split())[:NAME_PATTERN_MAX]
        if not operator or not hmac.compare_digest(password.encode(), self._password):
            return None
        return self._signer.dumps({"operator": operator, "csrf": secrets.token_urlsafe(24)})

    def session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        return Session(data["operator"], data["csrf"])

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(session.csrf.encode(), token.encode())
