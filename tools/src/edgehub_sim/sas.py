"""Shared access signatures: the module tokens the SDK sends and the service tokens of IoT Hub.

The signature covers the `sr` value exactly as sent (already percent-encoded) plus `"\\n" + se`, which is
what both the SDK and the service SDKs sign, so no re-encoding guesswork is needed on this side.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

from edgehub_sim.errors import AuthError

_PREFIX = "SharedAccessSignature "


@dataclass(frozen=True)
class SasToken:
    """The parsed fields of a SAS token; `resource` is `sr` decoded, `signed` is `sr` as sent."""

    resource: str
    signed: str
    signature: str
    expiry: int
    key_name: str | None


def new_key() -> str:
    """A fresh random 256-bit key, base64-encoded as IoT Hub keys are."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def sign(key: str, message: str | bytes) -> str:
    """base64(HMAC-SHA256(base64decode(key), message))."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    digest = hmac.new(base64.b64decode(key), data, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def make_token(resource: str, key: str, ttl_secs: int = 3600, key_name: str | None = None) -> str:
    """Build a SAS token the way the SDKs do (used by tests and the local stack)."""
    encoded = quote(resource, safe="")
    expiry = int(time.time()) + ttl_secs
    signature = quote(sign(key, f"{encoded}\n{expiry}"), safe="")
    token = f"{_PREFIX}sr={encoded}&sig={signature}&se={expiry}"
    return token + (f"&skn={key_name}" if key_name else "")


def parse_token(token: str) -> SasToken:
    """Split a token into its fields; raise AuthError if it is not a SAS token."""
    if not token.startswith(_PREFIX):
        raise AuthError("not a SharedAccessSignature token")
    fields: dict[str, str] = {}
    for pair in token[len(_PREFIX) :].split("&"):
        name, sep, value = pair.partition("=")
        if not sep:
            raise AuthError("malformed SAS token field")
        fields[name] = value
    try:
        expiry = int(fields["se"])
        return SasToken(
            resource=unquote(fields["sr"]),
            signed=fields["sr"],
            signature=unquote(fields["sig"]),
            expiry=expiry,
            key_name=fields.get("skn"),
        )
    except (KeyError, ValueError) as exc:
        raise AuthError("SAS token lacks sr, sig or a numeric se") from exc


def verify_token(token: str, key: str, resource: str, now: float | None = None) -> SasToken:
    """Check signature, expiry and that `sr` names exactly `resource` (case-insensitive)."""
    parsed = parse_token(token)
    expected = sign(key, f"{parsed.signed}\n{parsed.expiry}")
    try:
        given = base64.b64decode(parsed.signature, validate=True)
    except binascii.Error as exc:
        raise AuthError("SAS signature is not base64") from exc
    if not hmac.compare_digest(given, base64.b64decode(expected)):
        raise AuthError("SAS signature does not match the key")
    if parsed.expiry <= (time.time() if now is None else now):
        raise AuthError("SAS token has expired")
    if parsed.resource.rstrip("/").lower() != resource.rstrip("/").lower():
        raise AuthError("SAS token is for another resource")
    return parsed
