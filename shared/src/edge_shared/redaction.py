"""Redaction of secrets (SAS tokens, query strings, keys) from text that may reach logs or reports."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_URL = re.compile(r"\b(?:https?|amqps?|mqtts?|wss?)://[^\s\"'<>]+", re.IGNORECASE)
#: Keys whose value is a secret: the key stays, the value goes.
_KEYED_SECRETS = [
    # query-string style signatures and keys left outside a URL
    re.compile(r"(?i)\b(sig|signature|se|skn|sv|sp|sr|st|spr)=[^&\s\"';]+"),
    # connection-string keys
    re.compile(r"(?i)\b(SharedAccessKey|AccountKey|SharedAccessSignature)\s*=\s*[^;\s\"']+"),
]
#: The SharedAccessSignature header form, `SharedAccessSignature sr=...&sig=...`, after any white space.
_SAS_HEADER = re.compile(r"(?i)SharedAccessSignature\s+[^\s\"']+")
#: Every pattern above needs one of these (same case rules): most log lines have none and skip the rest,
#: which costs a tenth of the patterns (the inference module writes one access-log line per request).
_MAYBE_SECRET = re.compile(r"=|://|SharedAccessSignature", re.IGNORECASE)
REDACTED = "<redacted>"
INVALID_PORT = "<invalid port>"


def redact_url(url: str) -> str:
    """Keep scheme, host and path; drop the query and fragment, which carry SAS tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    query = REDACTED if parts.query else ""
    netloc = parts.hostname or ""
    try:
        port = parts.port  # parsed only here: 99999 or `abc` raise, and this must never raise
    except ValueError:
        netloc = f"{netloc}:{INVALID_PORT}"
    else:
        if port is not None:
            netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact(text: str) -> str:
    """Remove everything that could be a credential from free text."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    for pattern in _KEYED_SECRETS:
        text = pattern.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _SAS_HEADER.sub(f"SharedAccessSignature {REDACTED}", text)
