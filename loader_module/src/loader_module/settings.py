"""Loader settings (`LOADER_` environment variables), built once at the entry point and passed down."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from edge_shared.settings import ServiceSettings

MiB = 1024 * 1024
GiB = 1024 * MiB


class LoaderSettings(ServiceSettings):
    """Every knob of the loader. Unsafe values are refused at start with the field named."""

    # Errors name the field but never echo its value: the proxy URL may hold a password.
    model_config = SettingsConfigDict(
        env_prefix="LOADER_",
        extra="ignore",
        frozen=True,
        validate_default=True,
        validate_by_name=True,
        hide_input_in_errors=True,
    )

    model_root: Path = Field(
        description="Root of the model repository on the volume shared with the inference module."
    )
    allow_insecure_http: bool = Field(
        default=False, description="Accept `http://` download URLs (local tests only; never in production)."
    )
    ca_file: Path | None = Field(
        default=None,
        description="Extra PEM CA bundle trusted for downloads, on top of the system CAs (e.g. Azurite's).",
    )
    max_download_bytes: int = Field(
        default=2 * GiB, gt=0, description="Largest ZIP accepted; larger `Size` or Content-Length is refused."
    )
    min_free_bytes: int = Field(
        default=256 * MiB,
        ge=0,
        description="Free space to leave on the model volume after a download (and again after unpacking).",
    )
    max_archive_members: int = Field(
        default=64, gt=0, description="Most entries a model ZIP may hold (more is refused as unsafe)."
    )
    max_unpacked_bytes: int = Field(
        default=4 * GiB, gt=0, description="Most bytes a model ZIP may unpack to (zip-bomb guard)."
    )
    keep_versions: int = Field(
        default=3, ge=1, description="Installed versions kept; older ones are deleted, never the active one."
    )
    require_signature: bool = Field(
        default=False, description="Refuse a desired model without a valid Ed25519 `Signature`."
    )
    trusted_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated base64 raw Ed25519 public keys (32 bytes) that may sign models.",
    )
    download_attempts: int = Field(
        default=6, ge=1, le=100, description="Attempts per download (with backoff) before it is failed."
    )
    backoff_initial: float = Field(
        default=1.0, gt=0, description="First wait between download attempts, in seconds."
    )
    backoff_max: float = Field(default=60.0, gt=0, description="Longest wait between attempts, in seconds.")
    backoff_jitter: float = Field(
        default=1.0, ge=0, description="Random extra wait up to this many seconds, so devices spread out."
    )
    retry_after: float = Field(
        default=900.0,
        gt=0,
        description="After a failed download, seconds until the update is tried again (`nextRetryAt`).",
    )
    serve_confirm_timeout: float = Field(
        default=130.0,
        ge=0,
        le=3600,
        description="After announcing a new version, seconds to wait for the inference module to say it "
        "serves it (or refuses it: then `rejected`) before reporting `ready` anyway; `ModelUpdate` stays "
        "`installing` meanwhile. 130: longer than the inference module's load timeout (120 s), so a load "
        "that times out is heard of. 0 reports `ready` at once (no inference module, or no route).",
    )
    progress_interval: float = Field(
        default=5.0, ge=0, description="Least seconds between two progress reports while downloading."
    )
    connect_timeout: float = Field(default=15.0, gt=0, description="TCP + TLS connect timeout, in seconds.")
    read_timeout: float = Field(
        default=60.0, gt=0, description="A stream that delivers nothing for this long is cut and resumed."
    )
    heartbeat_file: Path | None = Field(
        default=None,
        description="File whose modification time the loader renews every `LOADER_HEARTBEAT_INTERVAL` "
        "seconds once connected, while its event loop runs; the image's HEALTHCHECK reads it (the image "
        "sets `/tmp/loader-heartbeat`). Unset: no heartbeat.",
    )
    heartbeat_interval: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Seconds between heartbeats; the image's HEALTHCHECK allows three missed ones.",
    )
    https_proxy: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("LOADER_HTTPS_PROXY", "HTTPS_PROXY"),
        description=(
            "Proxy for `https` downloads, `http://[user:password@]host:port` (a CONNECT tunnel: TLS, the "
            "SAS and every check stay end to end). When unset, `HTTPS_PROXY`/`https_proxy` is used, as IoT "
            "Edge hands it to modules; set it empty to ignore that one and connect directly."
        ),
    )
    no_proxy: str = Field(
        default="",
        validation_alias=AliasChoices("LOADER_NO_PROXY", "NO_PROXY"),
        description=(
            "Hosts reached without the proxy, comma-separated: a name (and its subdomains; a leading dot "
            "is the same), an IP, a CIDR block, or `*`. When unset, `NO_PROXY`/`no_proxy` is used."
        ),
    )
    max_redirects: int = Field(
        default=3,
        ge=0,
        le=10,
        description=(
            "Most `https`→`https` redirects followed per request (never to another scheme). Blob Storage "
            "never redirects; web services that hand out files (release pages, CDNs, signed-URL "
            "services) use one or two, so 3 leaves room while a redirect loop ends after 4 requests."
        ),
    )

    @field_validator("trusted_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_keys")
    @classmethod
    def _check_keys(cls, keys: list[str]) -> list[str]:
        for index, key in enumerate(keys):
            try:
                raw = base64.b64decode(key, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(f"key #{index + 1} is not base64 of a 32-byte Ed25519 public key")
        return keys

    @field_validator("https_proxy", mode="before")
    @classmethod
    def _empty_means_direct(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("https_proxy")
    @classmethod
    def _proxy_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        # Never echo the value: it may hold the proxy's password.
        try:
            parts = urlsplit(value.get_secret_value().strip())
            port = parts.port
        except ValueError:
            raise ValueError("must be a URL http://host:port (or https://)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            raise ValueError("must be a URL http://host:port (or https://)")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("model_root")
    @classmethod
    def _absolute_root(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("must name an existing PEM file")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LoaderSettings:
        if self.require_signature and not self.trusted_keys:
            raise ValueError("LOADER_REQUIRE_SIGNATURE=true needs LOADER_TRUSTED_KEYS")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("LOADER_BACKOFF_MAX must be at least LOADER_BACKOFF_INITIAL")
        return self

    @property
    def proxy_url(self) -> str | None:
        return None if self.https_proxy is None else self.https_proxy.get_secret_value()

    @property
    def trusted_key_bytes(self) -> list[bytes]:
        return [base64.b64decode(key) for key in self.trusted_keys]
