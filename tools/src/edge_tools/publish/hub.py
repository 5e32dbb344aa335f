"""The few IoT Hub service REST calls the CLI needs: module twin GET/PATCH and direct methods.

They work the same against a real hub and the simulator, which serves the same paths.
"""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import quote

import httpx

from edge_tools.publish.connstr import HubConnection
from edge_tools.publish.sas import hub_sas_token

API_VERSION = "2021-04-12"


class HubError(RuntimeError):
    """The hub refused a call; the message has the status and the hub's error text, no token."""


class HubServiceClient:
    def __init__(
        self,
        connection: HubConnection,
        *,
        verify: Any = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._connection = connection
        self._http = httpx.Client(
            base_url=f"https://{connection.host}", verify=verify, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        token = hub_sas_token(self._connection.host, self._connection.key, self._connection.key_name)
        return {"Authorization": token, "Content-Type": "application/json"}

    def _call(self, method: str, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        extra = {"If-Match": "*"} if method == "PATCH" else {}
        response = self._http.request(
            method,
            path,
            params={"api-version": API_VERSION},
            json=body,
            headers={**self._headers(), **extra},
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        if response.status_code >= 300:
            raise HubError(f"{method} {path} → HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    @staticmethod
    def _module_path(device_id: str, module_id: str) -> str:
        return f"/twins/{quote(device_id, safe='')}/modules/{quote(module_id, safe='')}"

    def get_module_twin(self, device_id: str, module_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", self._module_path(device_id, module_id))
        return result

    def patch_module_desired(self, device_id: str, module_id: str, desired: dict[str, Any]) -> dict[str, Any]:
        body = {"properties": {"desired": desired}}
        result: dict[str, Any] = self._call("PATCH", self._module_path(device_id, module_id), body)
        return result

    def invoke_module_method(
        self, device_id: str, module_id: str, name: str, payload: Any, *, timeout_seconds: int = 30
    ) -> dict[str, Any]:
        body = {"methodName": name, "payload": payload, "responseTimeoutInSeconds": timeout_seconds}
        path = self._module_path(device_id, module_id) + "/methods"
        result: dict[str, Any] = self._call("POST", path, body, timeout=timeout_seconds + 10)
        return result
