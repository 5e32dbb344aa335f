"""`EdgeHubClient` over the real `azure-iot-device` SDK: the only module that imports it.

The SDK's async client runs coroutine handlers on a private event loop in its own thread. Module code
expects handlers on its own loop (where its state lives), so every handler is forwarded with
`run_coroutine_threadsafe` to the loop that called `connect`, and awaited there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from edge_shared.edgehub import (
    Handlers,
    InputMessage,
    MethodRequest,
    MethodResponse,
    OutputMessage,
    Twin,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


class AzureEdgeHubClient:
    """Wraps `IoTHubModuleClient.create_from_edge_environment()` (the `aio` flavour)."""

    def __init__(self, client_factory: Callable[[], Any] | None = None) -> None:
        self._factory = client_factory or _from_edge_environment
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def connect(self, handlers: Handlers) -> None:
        self._loop = asyncio.get_running_loop()
        # Creation reads the workload API (blocking HTTP over a unix socket): keep it off the loop.
        self._client = await asyncio.to_thread(self._factory)
        client = self._client
        # Handler setters block until the hub acknowledges the subscription, even on the aio client.
        if handlers.on_desired_patch is not None:
            patch_handler = handlers.on_desired_patch

            async def on_patch(patch: dict[str, Any]) -> None:
                await self._on_app_loop(lambda: patch_handler(patch))

            await asyncio.to_thread(setattr, client, "on_twin_desired_properties_patch_received", on_patch)
        if handlers.on_input is not None:
            input_handler = handlers.on_input

            async def on_message(message: Any) -> None:
                await self._on_app_loop(lambda: input_handler(_to_input(message)))

            await asyncio.to_thread(setattr, client, "on_message_received", on_message)
        if handlers.on_method is not None:
            method_handler = handlers.on_method

            async def on_method(request: Any) -> None:
                response = await self._on_app_loop(
                    lambda: method_handler(
                        MethodRequest(
                            name=request.name, payload=request.payload, request_id=request.request_id
                        )
                    )
                )
                await client.send_method_response(_to_sdk_response(request, response))

            await asyncio.to_thread(setattr, client, "on_method_request_received", on_method)
        await client.connect()

    async def _on_app_loop(self, make: Callable[[], Awaitable[T]]) -> T:
        assert self._loop is not None

        async def run() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return await asyncio.wrap_future(future)

    async def get_twin(self) -> Twin:
        raw = await self._require().get_twin()
        return Twin.model_validate(raw)

    async def patch_reported(self, patch: Mapping[str, Any]) -> None:
        await self._require().patch_twin_reported_properties(dict(patch))

    async def send_output(self, output_name: str, message: OutputMessage) -> None:
        from azure.iot.device import Message

        message_class: Any = Message  # the SDK's constructor is untyped
        sdk_message = message_class(
            message.data,
            message_id=message.message_id,
            content_encoding=message.content_encoding,
            content_type=message.content_type,
        )
        if message.correlation_id is not None:
            sdk_message.correlation_id = message.correlation_id
        sdk_message.custom_properties.update(message.custom_properties)
        await self._require().send_message_to_output(sdk_message, output_name)

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.shutdown()
            except Exception:  # a broken link must not stop the module from exiting
                logger.warning("edgeHub client shutdown failed", exc_info=True)

    def _require(self) -> Any:
        if self._client is None:
            raise RuntimeError("EdgeHub client is not connected")
        return self._client


def _from_edge_environment() -> Any:
    from azure.iot.device.aio import IoTHubModuleClient

    return IoTHubModuleClient.create_from_edge_environment()


def _to_input(message: Any) -> InputMessage:
    data = message.data
    if isinstance(data, str):
        data = data.encode("utf-8")
    return InputMessage(
        input_name=message.input_name or "",
        data=bytes(data or b""),
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        custom_properties={
            str(k): "" if v is None else str(v) for k, v in (message.custom_properties or {}).items()
        },
    )


def _to_sdk_response(request: Any, response: MethodResponse) -> Any:
    from azure.iot.device import MethodResponse as SdkMethodResponse

    return SdkMethodResponse.create_from_method_request(request, response.status, response.payload)
