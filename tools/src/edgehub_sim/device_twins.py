"""Device twins of the hub's Edge devices: tags and desired properties, settable from the service side,
with IoT Hub's etag / `If-Match` optimistic concurrency. Target conditions are evaluated over them.

Readable from any thread, changed only on the simulator's loop (a lock keeps reads consistent).
"""

import base64
import copy
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from edge_shared.merge_patch import merge_patch
from edgehub_sim.errors import HubRequestError, TwinPatchError, UnknownDevice
from edgehub_sim.store import Store, StoredDeviceTwin
from edgehub_sim.twins import strip_metadata


def twin_etag(version: int) -> str:
    """An etag in IoT Hub's form (base64 of the version, like `AAAAAAAAAAE=`)."""
    return base64.b64encode(version.to_bytes(8, "big")).decode("ascii")


def check_if_match(if_match: str | None, etag: str) -> None:
    """IoT Hub's optimistic concurrency: no header or `*` always passes; otherwise the etag (quoted or
    not, weak or not) must be the current one, else 412 PreconditionFailed."""
    if if_match is None:
        return
    given = if_match.strip().removeprefix("W/").strip('"')
    if given not in ("*", etag):
        raise HubRequestError(412, "PreconditionFailed", "Precondition failed: the etag does not match")


class DeviceTwins:
    """The device twins of every device on the hub."""

    def __init__(self, store: Store, devices: tuple[str, ...]) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._twins = store.load_device_twins()
        for device in devices:
            if device not in self._twins:
                twin = StoredDeviceTwin({}, {}, 1, 1)
                self._twins[device] = twin
                store.save_device_twin(device, twin)

    def get(self, device: str) -> StoredDeviceTwin:
        """A deep copy of a device twin."""
        with self._lock:
            return copy.deepcopy(self._require(device))

    def patch(
        self,
        device: str,
        tags: Mapping[str, Any] | None,
        desired: Mapping[str, Any] | None,
        if_match: str | None,
    ) -> StoredDeviceTwin:
        """Merge-patch tags and desired properties (`null` deletes), after the `If-Match` check."""
        for section in (tags, desired):
            if section is not None and not isinstance(section, Mapping):
                raise TwinPatchError("tags and properties.desired must be JSON objects")
        with self._lock:
            old = self._require(device)
            check_if_match(if_match, twin_etag(old.version))
            twin = replace(old, version=old.version + 1)
            if tags is not None:
                twin = replace(twin, tags=merge_patch(old.tags, strip_metadata(tags)))
            if desired is not None:
                twin = replace(
                    twin,
                    desired=merge_patch(old.desired, strip_metadata(desired)),
                    desired_version=old.desired_version + 1,
                )
            self._store.save_device_twin(device, twin)
            self._twins[device] = twin
            return copy.deepcopy(twin)

    def _require(self, device: str) -> StoredDeviceTwin:
        try:
            return self._twins[device]
        except KeyError:
            raise UnknownDevice(f"no device {device!r} on this hub") from None
