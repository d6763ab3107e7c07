"""The notification service's own settings: where mail goes out, how deliveries are retried, how long bodies are
kept. Channel settings and customer preferences are data, set by commands (notification.commands.v1)."""

from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotificationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    smtp_host: str = Field("127.0.0.1", description="The mail server customer email is handed to")
    smtp_port: int = Field(2525, description="Its port (2525: the sink `oms up` starts)")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS")
    notification_from: str = Field("orders@oms.example", description="From address of a channel without its own")
    notification_max_attempts: int = Field(8, ge=1, description="Attempts of one delivery before it is failed")
    notification_retry_seconds: float = Field(30.0, gt=0, description="Wait after the first failed attempt; "
                                                                     "doubles per attempt")
    notification_retry_max_seconds: float = Field(3600.0, gt=0, description="Longest wait between attempts")
    notification_send_timeout_seconds: float = Field(10.0, gt=0, description="One SMTP or webhook send, at most")
    notification_poll_seconds: float = Field(0.5, gt=0, description="How often the sender looks for due deliveries")
    notification_body_retention_days: float = Field(30.0, gt=0, description="How long message bodies are kept "
                                                                            "after their delivery ended")
    notification_retention_interval_seconds: float = Field(3600.0, gt=0)


@cache
def notification_settings() -> NotificationSettings:
    return NotificationSettings()
