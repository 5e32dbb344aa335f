"""Module twins: desired and reported sections with versions, JSON merge patches, persistence.

Readable from any thread (the control API), changed only on the simulator's loop; a lock keeps the
two consistent.
"""

import copy
import threading
from collections.abc import Mapping
from typing import Any

from edge_shared.merge_patch import merge_patch
from edgehub_sim.errors import TwinPatchError, UnknownModule
from edgehub_sim.store import Store, StoredTwin


def strip_metadata(section: Mapping[str, Any]) -> dict[str, Any]:
    """Drop `$`-prefixed keys (`$version`, `$metadata`) a caller may echo back in a patch."""
    return {key: value for key, value in section.items() if not key.startswith("$")}


class TwinRegistry:
    """All module twins of one simulator."""

    def __init__(self, store: Store, initial_desired: Mapping[str, Mapping[str, Any]]) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._twins = store.load_twins()
        for module, desired in initial_desired.items():
            if module not in self._twins:
                twin = StoredTwin(strip_metadata(desired), 1, {}, 1)
                self._twins[module] = twin
                store.save_twin(module, twin)

    def get(self, module: str) -> StoredTwin:
        """A deep copy of a module's twin."""
        with self._lock:
            return copy.deepcopy(self._require(module))

    def patch_reported(self, module: str, patch: Any) -> int:
        """Merge a reported patch; returns the new reported `$version`."""
        return self._patch(module, patch, desired=False)

    def patch_desired(self, module: str, patch: Any) -> int:
        """Merge a desired patch; returns the new desired `$version`."""
        return self._patch(module, patch, desired=True)

    def _patch(self, module: str, patch: Any, *, desired: bool) -> int:
        if not isinstance(patch, Mapping):
            raise TwinPatchError("a twin patch must be a JSON object")
        with self._lock:
            old = self._require(module)
            if desired:
                twin = StoredTwin(
                    merge_patch(old.desired, strip_metadata(patch)),
                    old.desired_version + 1,
                    old.reported,
                    old.reported_version,
                )
                version = twin.desired_version
            else:
                twin = StoredTwin(
                    old.desired,
                    old.desired_version,
                    merge_patch(old.reported, strip_metadata(patch)),
                    old.reported_version + 1,
                )
                version = twin.reported_version
            self._store.save_twin(module, twin)
            self._twins[module] = twin
            return version

    def _require(self, module: str) -> StoredTwin:
        try:
            return self._twins[module]
        except KeyError:
            raise UnknownModule(f"no module {module!r} in the manifest") from None
