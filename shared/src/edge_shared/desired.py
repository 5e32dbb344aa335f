"""The loader's desired twin properties (architecture §3), validated before anything is downloaded.

Twin properties are untrusted input from the cloud: every field is checked strictly (no type coercion),
lengths are bounded, and errors name the field without echoing its value, because `DownloadUrl` carries
a SAS token.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Annotated, Any, TypedDict, Unpack
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from edge_shared.errors import InvalidDesiredError
from edge_shared.names import FileName, Version, check_version, version_from_file_name
from edge_shared.redaction import redact_url

MAX_URL_LENGTH = 8192
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

#: The properties this contract knows; a desired section holding none of them asks for nothing.
KNOWN_PROPERTIES = (
    "FileName",
    "DownloadUrl",
    "ContentMD5",
    "ContentSHA256",
    "Version",
    "Size",
    "Signature",
    "Delta",
)

ShortStr = Annotated[StrictStr, Field(max_length=256)]


def _check_url(url: str, info: ValidationInfo) -> SecretStr:
    parts: SplitResult = urlsplit(url)
    allow_http = bool((info.context or {}).get("allow_insecure_http", False))
    allowed = {"https", "http"} if allow_http else {"https"}
    if parts.scheme not in allowed:
        hint = "" if allow_http else " (http needs LOADER_ALLOW_INSECURE_HTTP=true)"
        raise ValueError(f"must be an https URL{hint}")
    if not parts.hostname:
        raise ValueError("must name a host")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError("must have a port from 0 to 65535") from None
    if any(ch.isspace() for ch in url):
        raise ValueError("must not contain white space")
    return SecretStr(url)


def _normalize_md5(value: str) -> str:
    if _HEX32.fullmatch(value):
        return value.lower()
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise ValueError("must be an MD5 digest: base64 of 16 bytes or 32 hex digits")
    return raw.hex()


def _normalize_sha256(value: str) -> str:
    if not _HEX64.fullmatch(value):
        raise ValueError("must be a SHA-256 digest of 64 hex digits")
    return value.lower()


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _download_url(value: object, info: ValidationInfo) -> SecretStr:
    text = _string(value)
    if len(text) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    return _check_url(text, info)


def _md5(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("must be an MD5 digest: base64 of 16 bytes or 32 hex digits")
    return _normalize_md5(value)


def _sha256(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("must be a SHA-256 digest of 64 hex digits")
    return _normalize_sha256(value)


def _signature(value: object) -> str | None:
    if value is None:
        return None
    error = "must be a base64 Ed25519 signature (64 bytes)"
    if not isinstance(value, str) or len(value) > 128:
        raise ValueError(error)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(error) from exc
    if len(raw) != 64:
        raise ValueError(error)
    return value


def _optional_string(value: object) -> object:
    return None if value is None else _string(value)


# Validators run before pydantic's own, so errors name the field and never coerce types.
DownloadUrl = Annotated[SecretStr, BeforeValidator(_download_url)]
Md5Hex = Annotated[str | None, BeforeValidator(_md5)]
Sha256Hex = Annotated[str | None, BeforeValidator(_sha256)]
StrictText = BeforeValidator(_optional_string)


class DeltaSpec(BaseModel):
    """A binary patch from an installed version to the desired ZIP (architecture §3, issue 9)."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True)

    base_version: Annotated[Version, StrictText] = Field(alias="BaseVersion")
    download_url: DownloadUrl = Field(alias="DownloadUrl")
    content_sha256: Annotated[str, BeforeValidator(_sha256)] = Field(alias="ContentSHA256")
    format: Annotated[ShortStr, StrictText] = Field(alias="Format")


class DesiredModel(BaseModel):
    """One validated desired model. Digests are normalised to lowercase hex."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True)

    file_name: Annotated[FileName, StrictText] = Field(alias="FileName")
    download_url: DownloadUrl = Field(alias="DownloadUrl")
    content_md5: Md5Hex = Field(default=None, alias="ContentMD5")
    content_sha256: Sha256Hex = Field(default=None, alias="ContentSHA256")
    explicit_version: Annotated[Version | None, StrictText] = Field(default=None, alias="Version")
    size: StrictInt | None = Field(default=None, alias="Size", gt=0)
    signature: Annotated[str | None, BeforeValidator(_signature)] = Field(default=None, alias="Signature")
    delta: DeltaSpec | None = Field(default=None, alias="Delta")

    @model_validator(mode="after")
    def _needs_checksum_and_version(self) -> DesiredModel:
        if self.content_md5 is None and self.content_sha256 is None:
            raise ValueError("ContentMD5 or ContentSHA256 is required")
        if self.explicit_version is None:
            try:
                check_version(version_from_file_name(self.file_name))
            except ValueError as exc:
                raise ValueError(f"Version is required because FileName {exc}") from exc
        return self

    @property
    def version(self) -> str:
        """The version label: `Version` if given, else `FileName` without `.zip`."""
        return self.explicit_version or version_from_file_name(self.file_name)

    @property
    def md5_bytes(self) -> bytes | None:
        return bytes.fromhex(self.content_md5) if self.content_md5 else None

    @property
    def signature_bytes(self) -> bytes | None:
        return base64.b64decode(self.signature) if self.signature else None

    @property
    def url_for_logs(self) -> str:
        """The download URL without its query string (the SAS token)."""
        return redact_url(self.download_url.get_secret_value())

    def same_target(self, other: DesiredModel) -> bool:
        """True when both name the same bytes under the same version (a URL change alone is not new)."""
        return (
            self.version == other.version
            and self.file_name == other.file_name
            and self.content_md5 == other.content_md5
            and self.content_sha256 == other.content_sha256
        )


#: The desired property that carries the whole model as one object. Fleet rollouts set it through IoT Hub
#: layered deployments, whose merge replaces a path's value whole: a device then never combines one
#: layer's `FileName` with another layer's `ContentMD5` (docs/fleet.md).
MODEL_OBJECT = "Model"


def model_section(properties: Mapping[str, Any]) -> Mapping[str, Any]:
    """The properties that name the model: the `Model` object when one is set, else the top level.

    When `Model` is set, top-level model keys (from `edge-model publish` on one device) are ignored whole,
    never mixed in.
    """
    found = properties.get(MODEL_OBJECT)
    return found if isinstance(found, Mapping) else properties


def _malformed_model(properties: Mapping[str, Any]) -> bool:
    found = properties.get(MODEL_OBJECT)
    return found is not None and not isinstance(found, Mapping)


def desired_is_empty(properties: Mapping[str, Any]) -> bool:
    """A desired section that names no model (a fresh deployment) asks for nothing: the loader stays idle."""
    section = model_section(properties)
    return not _malformed_model(properties) and not any(
        section.get(key) not in (None, "") for key in KNOWN_PROPERTIES
    )


def parse_desired(properties: Mapping[str, Any], *, allow_insecure_http: bool = False) -> DesiredModel:
    """Validate a desired section (twin metadata like `$version` is ignored), or its `Model` object.

    Raises `InvalidDesiredError` naming each bad field; messages never include the submitted values.
    """
    section = model_section(properties)
    if _malformed_model(properties):
        raise InvalidDesiredError([(MODEL_OBJECT, "must be an object of model properties")])
    try:
        return DesiredModel.model_validate(
            dict(section), context={"allow_insecure_http": allow_insecure_http}
        )
    except ValidationError as exc:
        raise InvalidDesiredError(_problems(exc)) from None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in error["loc"]) or "desired"
        message = error["msg"].removeprefix("Value error, ")
        problems.append((field, message))
    return problems


# --- the publisher's side: typed fields in, the wire dict out -----------------------------------------


class DeltaFields(TypedDict):
    """The `Delta` property's fields, by their Python names (`DeltaSpec`)."""

    base_version: str
    download_url: str
    content_sha256: str
    format: str


class DesiredFields(TypedDict, total=False):
    """The optional desired properties by their Python names; `None` removes the property from the twin."""

    content_md5: str | None
    content_sha256: str | None
    version: str | None
    size: int | None
    signature: str | None
    delta: DeltaFields | None


#: `DesiredFields` names that differ from `DesiredModel`'s field names.
_MODEL_FIELD = {"version": "explicit_version"}


def _wire_name(model: type[BaseModel], name: str) -> str:
    alias = model.model_fields[_MODEL_FIELD.get(name, name)].alias
    if alias is None:  # every field of the contract has its wire name as alias
        raise AssertionError(f"{model.__name__}.{name} has no wire name")
    return alias


def desired_patch(
    file_name: str,
    download_url: str,
    *,
    clear_unset: bool = False,
    allow_insecure_http: bool = False,
    **fields: Unpack[DesiredFields],
) -> dict[str, Any]:
    """The loader's desired properties as the twin carries them, from typed fields.

    Fields left out are left out of the patch, unless `clear_unset`: a twin PATCH merges, so a publisher
    clears what an earlier publish (a signature, a delta) may have left by sending every property, `None`
    where unset. The patch is checked with the loader's own rules (`parse_desired`) before it is returned,
    so nothing the loader would refuse is sent; `InvalidDesiredError` names the bad field.
    """
    given: dict[str, object] = dict(fields)
    if clear_unset:
        given = {**dict.fromkeys(DesiredFields.__optional_keys__), **given}
    delta = fields.get("delta")
    if delta is not None:
        given["delta"] = {_wire_name(DeltaSpec, name): value for name, value in delta.items()}
    given = {"file_name": file_name, "download_url": download_url, **given}
    patch = {_wire_name(DesiredModel, name): value for name, value in given.items()}
    parse_desired(patch, allow_insecure_http=allow_insecure_http)
    return patch
