"""IoT Hub's configurations and query REST calls, with the hub's throttling honoured.

A hub allows 20 configuration writes a minute per unit and answers 429 past that (and 503 when busy):
those calls are retried a bounded number of times, waiting what `Retry-After` says. Every other refusal
becomes a `HubCallError` carrying the status and the hub's error code, never a token.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import stamina

from edge_tools.publish.connstr import HubConnection
from edge_tools.publish.hub import API_VERSION, HubError, HubServiceClient

#: Devices per query page (the hub's maximum is 1000 for most tiers) and pages per query.
PAGE_SIZE = 1000
MAX_PAGES = 1000


class HubCallError(HubError):
    """The hub refused a call; `status` and the hub's error `code` say how."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{method} {path} → HTTP {status} {code}: {message}".rstrip(": "))
        self.status = status
        self.code = code


class Throttled(Exception):
    """429/503: retried after the delay the hub asked for."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"throttled, retry in {delay:.1f} s")
        self.delay = delay


def _retry_delay(exc: Exception) -> bool | float:
    return exc.delay if isinstance(exc, Throttled) else False


def _hub_error(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from the hub's error body: `{"Message": "ErrorCode:X;text", ...}`."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "", response.text[:200]
    message = str(body.get("Message", "")) if isinstance(body, dict) else ""
    if message.startswith("ErrorCode:"):
        code, _, text = message.removeprefix("ErrorCode:").partition(";")
        return code, text[:300]
    return "", message[:300] or response.text[:200]


class FleetHub(HubServiceClient):
    """The service client with the calls a rollout needs (configurations, queries, device tags), each
    retried while the hub throttles."""

    def __init__(
        self,
        connection: HubConnection,
        *,
        verify: Any = True,
        timeout: float = 30.0,
        attempts: int = 6,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(connection, verify=verify, timeout=timeout, transport=transport)
        self._attempts = attempts

    def _request(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            for attempt in stamina.retry_context(
                on=_retry_delay, attempts=self._attempts, timeout=dt.timedelta(minutes=5)
            ):
                with attempt:
                    response = self._send(method, path, body, headers)
        except Throttled:
            raise HubCallError(
                method, path, 429, "ThrottlingException", f"still throttled after {self._attempts} attempts"
            ) from None
        if response.status_code >= 300:
            code, message = _hub_error(response)
            raise HubCallError(method, path, response.status_code, code, message)
        return response

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str] | None) -> httpx.Response:
        response = self._http.request(
            method,
            path,
            params={"api-version": API_VERSION},
            json=body,
            headers={**self._headers(), **(headers or {})},
        )
        if response.status_code in (429, 503):
            raise Throttled(_retry_after(response))
        return response

    # Configurations -------------------------------------------------------------------------------
    def list_configurations(self, top: int = 100) -> list[dict[str, Any]]:
        result = self._request("GET", f"/configurations?top={top}").json()
        return list(result) if isinstance(result, list) else []

    def get_configuration(self, configuration_id: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._request("GET", _config_path(configuration_id)).json()
        except HubCallError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def create_configuration(self, document: dict[str, Any]) -> dict[str, Any]:
        """Create; an existing id is an error (409), never overwritten."""
        result: dict[str, Any] = self._request("PUT", _config_path(document["id"]), body=document).json()
        return result

    def update_configuration(self, document: dict[str, Any]) -> dict[str, Any]:
        """Replace the mutable parts (condition, priority, labels, metrics) under the document's etag."""
        etag = document.get("etag") or "*"
        result: dict[str, Any] = self._request(
            "PUT",
            _config_path(document["id"]),
            body=document,
            headers={"If-Match": f'"{etag.strip(chr(34))}"'},
        ).json()
        return result

    def delete_configuration(self, configuration_id: str) -> None:
        try:
            self._request("DELETE", _config_path(configuration_id), headers={"If-Match": "*"})
        except HubCallError as exc:
            if exc.status != 404:
                raise

    # Device twins ---------------------------------------------------------------------------------
    def update_device_tags(self, device_id: str, tags: dict[str, Any]) -> dict[str, Any]:
        """Merge `tags` into a device twin's tags (a `null` value removes a tag)."""
        result: dict[str, Any] = self._request(
            "PATCH", f"/twins/{quote(device_id, safe='')}", body={"tags": tags}, headers={"If-Match": "*"}
        ).json()
        return result

    # Queries --------------------------------------------------------------------------------------
    def query(self, sql: str) -> Iterator[dict[str, Any]]:
        """Every result of a query, page by page (`x-ms-continuation`), at most MAX_PAGES pages."""
        continuation: str | None = None
        for _ in range(MAX_PAGES):
            headers = {"x-ms-max-item-count": str(PAGE_SIZE)}
            if continuation:
                headers["x-ms-continuation"] = continuation
            response = self._request("POST", "/devices/query", body={"query": sql}, headers=headers)
            page = response.json()
            yield from page if isinstance(page, list) else []
            continuation = response.headers.get("x-ms-continuation")
            if not continuation:
                return
        raise HubCallError("POST", "/devices/query", 200, "TooManyPages", f"more than {MAX_PAGES} pages")


def _config_path(configuration_id: str) -> str:
    return f"/configurations/{quote(configuration_id, safe='')}"


def _retry_after(response: httpx.Response) -> float:
    """Seconds from `Retry-After` (bounded to 1-60 s); 5 s when the hub gives none."""
    try:
        return min(60.0, max(1.0, float(response.headers.get("Retry-After", "5"))))
    except ValueError:
        return 5.0
