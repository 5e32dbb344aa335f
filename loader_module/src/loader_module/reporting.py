"""What the loader tells: reported properties and the two output messages (architecture §4-5)."""

from __future__ import annotations

import logging
from typing import Any

from edge_shared.edgehub import EdgeHubClient, OutputMessage
from edge_shared.messages import (
    JSON_CONTENT_TYPE,
    OUTPUT_MODEL,
    OUTPUT_STATUS,
    ModelAnnouncement,
    ModelStatusEvent,
)
from edge_shared.reported import ModelUpdate
from edge_shared.repository import MODELS_DIR, ModelManifest

logger = logging.getLogger(__name__)


class Reporter:
    """Sends reported-property patches and messages. Reporting is best effort: a failed patch is logged
    and superseded by the next one (the update itself must not fail because edgeHub is briefly away)."""

    def __init__(self, edgehub: EdgeHubClient) -> None:
        self._edgehub = edgehub
        self.update = ModelUpdate()

    async def patch(self, patch: dict[str, Any]) -> bool:
        try:
            await self._edgehub.patch_reported(patch)
        except Exception as exc:  # the SDK raises several unrelated types for a lost link
            logger.warning("reported-property patch failed", extra={"error": type(exc).__name__})
            return False
        return True

    async def publish_update(self, **changes: Any) -> None:
        """Apply `changes` to `ModelUpdate` and report the whole object."""
        self.update = self.update.model_copy(update=changes)
        await self.patch({"ModelUpdate": self.update.to_twin()})

    async def announce(self, manifest: ModelManifest) -> bool:
        """Send `DLModelOutput` for an installed version; True when edgeHub accepted it."""
        base = f"{MODELS_DIR}/{manifest.version}"
        body = ModelAnnouncement(
            local_model_path=f"{base}/{manifest.model_file}",
            local_labelmap_path=None if manifest.labels_file is None else f"{base}/{manifest.labels_file}",
            version=manifest.version,
            file_name=manifest.file_name,
            runtime=manifest.runtime,
            sha256=manifest.model_sha256,
        )
        return await self._send(OUTPUT_MODEL, body.to_json_bytes())

    async def status_event(self, event: ModelStatusEvent) -> bool:
        return await self._send(OUTPUT_STATUS, event.to_json_bytes())

    async def _send(self, output: str, data: bytes) -> bool:
        try:
            await self._edgehub.send_output(output, OutputMessage(data=data, content_type=JSON_CONTENT_TYPE))
        except Exception as exc:  # as above: any SDK failure means "not delivered, try again later"
            logger.warning("sending a message failed", extra={"output": output, "error": type(exc).__name__})
            return False
        return True
