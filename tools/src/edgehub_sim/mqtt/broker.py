"""The MQTT-over-TLS listener: one `Connection` task per client, all stopped on shutdown."""

import asyncio
import logging
import ssl

from edgehub_sim.hub import Hub
from edgehub_sim.mqtt.connection import Connection

logger = logging.getLogger(__name__)

#: The SDK dials this port, hard-coded.
MQTT_TLS_PORT = 8883
#: A client that has not finished the TLS handshake by then is dropped.
HANDSHAKE_TIMEOUT_SECS = 10.0


class MqttListener:
    """Accepts TLS connections on host:port and serves each with a `Connection`."""

    def __init__(self, hub: Hub, context: ssl.SSLContext) -> None:
        self._hub = hub
        self._context = context
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()

    async def start(self, host: str, port: int = MQTT_TLS_PORT) -> None:
        """Bind and start accepting."""
        self._server = await asyncio.start_server(
            self._serve,
            host,
            port,
            ssl=self._context,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECS,
            reuse_address=True,
        )

    async def stop(self) -> None:
        """Stop accepting, then drop every connection."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            await connection.close()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self._hub, reader, writer)
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
