"""Who may change the module: state-changing routes refuse browsers' cross-site requests, and need the
bearer token when `INFERENCE_API_TOKEN` is set.

A web page anywhere can make a visitor's browser send a "simple" request (a form POST, or `fetch` with
`text/plain`) to any address the browser reaches, the module's included; the browser only hides the
answer. Such requests carry an `Origin` or `Sec-Fetch-Site` header naming another site, or a form
content type. Sibling modules, curl and scripts send none of these, so they are not affected.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from pydantic import SecretStr
from starlette.datastructures import Headers

from inference_module.errors import CrossSiteRequestError, UnauthorizedError

# The content types a browser sends cross-site without asking first (no CORS preflight).
SIMPLE_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
_SAME = ("same-origin", "none")


def check_mutation_allowed(headers: Headers, token: SecretStr | None) -> None:
    """Raise `CrossSiteRequestError` or `UnauthorizedError` unless this request may change state."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _SAME:
        raise CrossSiteRequestError(f"refused: a {fetch_site} request may not change the module")
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, headers.get("host")):
        raise CrossSiteRequestError("refused: a request from another origin may not change the module")
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media in SIMPLE_CONTENT_TYPES:
        raise CrossSiteRequestError(f"refused: {media} bodies are what cross-site forms send")
    if token is not None:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise UnauthorizedError("this route needs `Authorization: Bearer <INFERENCE_API_TOKEN>`")


def _same_origin(origin: str, host: str | None) -> bool:
    """`Origin` names this server (scheme aside: the module speaks plain HTTP behind the edge network)."""
    if host is None:
        return False
    try:
        return urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False
