"""IoT Hub service SAS tokens (the `Authorization` header of the service REST API)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote


def hub_sas_token(
    resource: str, key_b64: str, key_name: str, *, ttl_seconds: int = 3600, now: float | None = None
) -> str:
    """`SharedAccessSignature sr=…&sig=…&se=…&skn=…`, signed with the shared access policy key."""
    expiry = int((time.time() if now is None else now) + ttl_seconds)
    encoded = quote(resource, safe="")
    to_sign = f"{encoded}\n{expiry}".encode()
    digest = hmac.new(base64.b64decode(key_b64), to_sign, hashlib.sha256).digest()
    signature = quote(base64.b64encode(digest).decode(), safe="")
    return f"SharedAccessSignature sr={encoded}&sig={signature}&se={expiry}&skn={quote(key_name, safe='')}"
