"""Configuration, read once at cold start from the environment variables set in template.yaml."""

from __future__ import annotations

import os
from dataclasses import dataclass


class ConfigurationError(RuntimeError):
    """A required environment variable is missing or malformed."""


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigurationError(f"environment variable {name} is required")
    return value


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"environment variable {name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Every knob a handler may read; built once per process."""

    sessions_table: str
    connections_table: str
    management_endpoint: str
    timer_state_machine_arn: str
    max_listeners: int
    refresh_after_seconds: int
    warning_after_seconds: int
    refresh_jitter_seconds: int
    max_connection_seconds: int
    speaker_grace_seconds: int
    connection_ttl_seconds: int
    session_ttl_seconds: int
    rate_limits_table: str
    sessions_per_user_per_hour: int
    joins_per_ip_per_minute: int
    connects_per_ip_per_minute: int
    resume_token_key: str
    audio_route_cache_ms: int
    audio_start_margin_ms: int
    cut_sweep_delay_seconds: int

    @classmethod
    def from_env(cls) -> Settings:
        settings = cls(
            sessions_table=_required("SESSIONS_TABLE"),
            connections_table=_required("CONNECTIONS_TABLE"),
            management_endpoint=os.environ.get("MANAGEMENT_ENDPOINT", ""),
            timer_state_machine_arn=os.environ.get("TIMER_STATE_MACHINE_ARN", ""),
            max_listeners=_int("MAX_LISTENERS_PER_SESSION", 500),
            refresh_after_seconds=_int("REFRESH_AFTER_SECONDS", 6000),
            warning_after_seconds=_int("WARNING_AFTER_SECONDS", 6300),
            refresh_jitter_seconds=_int("REFRESH_JITTER_SECONDS", 120),
            max_connection_seconds=_int("MAX_CONNECTION_SECONDS", 7200),
            speaker_grace_seconds=_int("SPEAKER_GRACE_SECONDS", 30),
            connection_ttl_seconds=_int("CONNECTION_TTL_SECONDS", 3 * 3600),
            session_ttl_seconds=_int("SESSION_TTL_SECONDS", 24 * 3600),
            rate_limits_table=os.environ.get("RATE_LIMITS_TABLE", ""),
            sessions_per_user_per_hour=_int("RATE_LIMIT_SESSIONS_PER_USER_PER_HOUR", 50),
            joins_per_ip_per_minute=_int("RATE_LIMIT_JOINS_PER_IP_PER_MINUTE", 10),
            connects_per_ip_per_minute=_int("RATE_LIMIT_CONNECTS_PER_IP_PER_MINUTE", 20),
            resume_token_key=_required("RESUME_TOKEN_KEY"),
            audio_route_cache_ms=_int("AUDIO_ROUTE_CACHE_MS", 1000),
            audio_start_margin_ms=_int("AUDIO_START_MARGIN_MS", 1000),
            cut_sweep_delay_seconds=_int("CUT_SWEEP_DELAY_SECONDS", 60),
        )
        limits = (
            settings.sessions_per_user_per_hour,
            settings.joins_per_ip_per_minute,
            settings.connects_per_ip_per_minute,
        )
        if any(limits) and not settings.rate_limits_table:
            raise ConfigurationError("RATE_LIMITS_TABLE is required while any RATE_LIMIT_* is above 0")
        if len(settings.resume_token_key) < 32:
            raise ConfigurationError("RESUME_TOKEN_KEY must be at least 32 characters")
        if not 0 < settings.refresh_after_seconds < settings.warning_after_seconds < settings.max_connection_seconds:
            raise ConfigurationError("need 0 < REFRESH_AFTER_SECONDS < WARNING_AFTER_SECONDS < MAX_CONNECTION_SECONDS")
        if not 0 <= settings.refresh_jitter_seconds < settings.refresh_after_seconds:
            raise ConfigurationError("REFRESH_JITTER_SECONDS must be >= 0 and below REFRESH_AFTER_SECONDS")
        return settings


_settings: Settings | None = None


def settings() -> Settings:
    """The process-wide settings, read on first use and cached."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def reset() -> None:
    """Forget the cached settings (tests and the local stack change the environment)."""
    global _settings
    _settings = None
