"""Settings base shared by both services: one object per service, built at the entry point."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `env_prefix` (`LOADER_`, `INFERENCE_`)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, validate_default=True)

    log_level: LogLevel = Field(default="INFO", description="Minimum level of log records.")
    log_format: Literal["json", "text"] = Field(
        default="json", description="`json`: one JSON object per line (production); `text` for humans."
    )
