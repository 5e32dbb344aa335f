"""Settings base shared by both services: one object per service, built at the entry point."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `env_prefix` (`LOADER_`, `INFERENCE_`)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, validate_default=True)

    log_level: LogLevel = Field(default="INFO", description="Minimum level of log records.")
    log_format: Literal["json", "text"] = Field(
        default="json", description="`json`: one JSON object per line (production); `text` for humans."
    )


def settings_problems(cls: type[ServiceSettings], error: ValidationError) -> list[str]:
    """One line per invalid setting, naming the environment variable and never echoing its value (a
    proxy URL or a token may be in it)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    problems: list[str] = []
    for item in error.errors(include_input=False, include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        name = f"{prefix}{field}".upper() if field else f"{prefix}* settings"
        problems.append(f"{name}: {item['msg']}")
    return problems


def settings_help(cls: type[ServiceSettings], summary: str) -> str:
    """`--help` text: what the module is and every environment variable it reads, with its default."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    lines = [summary, "", "Configured only through environment variables:", ""]
    for name, field in cls.model_fields.items():
        default = (
            "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        )
        lines.append(f"  {prefix}{name.upper()}  ({default})")
        lines.append(f"      {field.description or ''}")
    lines += ["", "The IOTEDGE_* variables come from the IoT Edge runtime (or the edgeHub simulator)."]
    return "\n".join(lines) + "\n"
