"""Settings: every ``DRIPBOT_*`` variable, with its default and its check.

Built once by the CLI and passed down; nothing else reads the environment. A bad value stops
start-up with one line naming the variable (:func:`load_settings`).
"""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scheduler.options import EngineOptions, Window, parse_hhmm


class ConfigError(Exception):
    """A setting has a value dripbot cannot use; the message names the variable."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIPBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite+aiosqlite:///./dripbot.db"
    workspace: str = "default"

    whatsapp_token: SecretStr | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_api_url: str = "https://graph.facebook.com/v25.0"
    #: how long a send may wait for the Graph API's answer before it is in doubt
    whatsapp_timeout_seconds: float = Field(default=15.0, gt=0)
    #: the largest inbound media file (e.g. an admin's CSV) fetched from the Graph API
    whatsapp_media_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    webhook_max_bytes: int = Field(default=3 * 1024 * 1024, gt=0)

    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None

    admin_telegram_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    admin_whatsapp_numbers: Annotated[list[str], NoDecode] = Field(default_factory=list)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tick_seconds: float = Field(default=2.0, gt=0)
    send_window: str = "06:00-21:00"
    timezone: str = "UTC"
    default_region: str | None = None
    rate_per_second: float = Field(default=80.0, gt=0)
    pacing: str | None = None
    daily_reach_limit: str = "250"
    stats_time: str = "09:00"
    takeover_hours: float = Field(default=24.0, ge=0)
    send_lease_seconds: float = Field(default=120.0, gt=0)
    max_concurrent_sends: int = Field(default=256, gt=0)
    csv_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    csv_max_rows: int = Field(default=1_000_000, gt=0)
    public_rate_per_minute: int = Field(default=60, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("admin_telegram_ids", "admin_whatsapp_numbers", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("send_window")
    @classmethod
    def _window(cls, value: str) -> str:
        Window.parse(value)
        return value

    @field_validator("stats_time")
    @classmethod
    def _stats_time(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r} (use a two-letter code such as DE)")
        return region

    @field_validator("pacing")
    @classmethod
    def _pacing(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_pacing(value)
        return value

    @field_validator("daily_reach_limit")
    @classmethod
    def _reach(cls, value: str) -> str:
        parse_reach_limit(value)
        return value

    @field_validator("whatsapp_api_url", "telegram_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    # --- derived values -------------------------------------------------------------

    @property
    def whatsapp_configured(self) -> bool:
        return self.whatsapp_token is not None and bool(self.whatsapp_phone_number_id)

    @property
    def stats_at(self) -> time:
        return parse_hhmm(self.stats_time)

    def engine_options(self) -> EngineOptions:
        return EngineOptions(
            workspace=self.workspace,
            default_timezone=self.timezone,
            default_region=self.default_region,
            send_window=Window.parse(self.send_window),
            rate_per_second=self.rate_per_second,
            pacing=parse_pacing(self.pacing) if self.pacing else None,
            daily_reach_limit=parse_reach_limit(self.daily_reach_limit),
            takeover_hours=self.takeover_hours,
            send_lease_seconds=self.send_lease_seconds,
        )


def parse_pacing(text: str) -> tuple[float, float]:
    """``"40-100"`` → (40.0, 100.0) seconds; a single number means a fixed gap."""
    low, sep, high = text.strip().partition("-")
    try:
        lo = float(low)
        hi = float(high) if sep else lo
    except ValueError:
        raise ValueError(f"expected seconds like 40-100, got {text!r}") from None
    if lo < 0 or hi < lo:
        raise ValueError(f"expected 0 <= low <= high, got {text!r}")
    return lo, hi


def parse_reach_limit(text: str) -> int | None:
    """Meta's messaging tier: a positive number, or ``unlimited`` (also -1)."""
    value = text.strip().lower()
    if value in ("unlimited", "-1", "none"):
        return None
    if not value.isdigit() or int(value) <= 0:
        raise ValueError(f"expected a positive number or 'unlimited', got {text!r}")
    return int(value)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning the first bad value into one clear :class:`ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"DRIPBOT_{field.upper()}: {message}") from None
