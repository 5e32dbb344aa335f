"""Module twins: desired and reported sections with versions, JSON merge patches, persistence, and the
values layered deployments set over the desired section.

Readable from any thread (the control API), changed only on the simulator's loop; a lock keeps the
two consistent. Twins are keyed by a string (the hub uses the module's client id, `{device}/{module}`).
"""

import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from edge_shared.merge_patch import merge_patch
from edgehub_sim.deployments.layers import diff, overlay
from edgehub_sim.errors import TwinPatchError, UnknownModule
from edgehub_sim.store import LayerValue, Store, StoredTwin


def strip_metadata(section: Mapping[str, Any]) -> dict[str, Any]:
    """Drop `$`-prefixed keys (`$version`, `$metadata`) a caller may echo back in a patch."""
    return {key: value for key, value in section.items() if not key.startswith("$")}


@dataclass(frozen=True)
class DesiredChange:
    """A change of a desired section: its new `$version` and the patch a module receives."""

    version: int
    patch: dict[str, Any]


class TwinRegistry:
    """All module twins of one simulator."""

    def __init__(self, store: Store, initial_desired: Mapping[str, Mapping[str, Any]]) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._twins = store.load_twins()
        for key, desired in initial_desired.items():
            if key not in self._twins:
                twin = StoredTwin(strip_metadata(desired), 1, {}, 1)
                self._twins[key] = twin
                store.save_twin(key, twin)

    def get(self, key: str) -> StoredTwin:
        """A deep copy of a module twin."""
        with self._lock:
            return copy.deepcopy(self._require(key))

    def keys(self) -> list[str]:
        """Every twin's key."""
        with self._lock:
            return list(self._twins)

    def patch_reported(self, key: str, patch: Any) -> int:
        """Merge a reported patch; returns the new reported `$version`."""
        _require_object(patch)
        with self._lock:
            old = self._require(key)
            twin = replace(
                old,
                reported=merge_patch(old.reported, strip_metadata(patch)),
                reported_version=old.reported_version + 1,
            )
            self._save(key, twin)
            return twin.reported_version

    def patch_desired(self, key: str, patch: Any) -> int:
        """Merge a desired patch; returns the new desired `$version`."""
        return self.update_desired(key, patch).version

    def update_desired(self, key: str, patch: Any) -> DesiredChange:
        """Merge a desired patch into the twin's base; returns the version and what the module gets.

        Without layered deployments that is the patch itself. With them, the patch changes the base
        and the module gets only what changed in the merged section (a layer may hide a base value).
        """
        _require_object(patch)
        clean = strip_metadata(patch)
        with self._lock:
            old = self._require(key)
            version = old.desired_version + 1
            if old.base is None:
                self._save(
                    key, replace(old, desired=merge_patch(old.desired, clean), desired_version=version)
                )
                return DesiredChange(version, clean)
            base = merge_patch(old.base, clean)
            desired = overlay(base, old.layers)
            self._save(key, replace(old, desired=desired, desired_version=version, base=base))
            return DesiredChange(version, diff(old.desired, desired))

    def set_layers(self, key: str, layers: Sequence[LayerValue]) -> DesiredChange | None:
        """Apply what the targeting layered deployments set (lowest precedence first) over the base.

        Returns the change for the module, or None when its desired section did not change.
        """
        with self._lock:
            old = self._require(key)
            if tuple(layers) == old.layers:
                return None
            base = old.desired if old.base is None else old.base
            desired = overlay(base, layers)
            patch = diff(old.desired, desired)
            version = old.desired_version + 1 if patch else old.desired_version
            self._save(
                key,
                replace(
                    old,
                    desired=desired,
                    desired_version=version,
                    base=base if layers else None,
                    layers=tuple(layers),
                ),
            )
            return DesiredChange(version, patch) if patch else None

    def _save(self, key: str, twin: StoredTwin) -> None:
        self._store.save_twin(key, twin)
        self._twins[key] = twin

    def _require(self, key: str) -> StoredTwin:
        try:
            return self._twins[key]
        except KeyError:
            raise UnknownModule(f"no module {key!r} in the manifest") from None


def _require_object(patch: Any) -> None:
    if not isinstance(patch, Mapping):
        raise TwinPatchError("a twin patch must be a JSON object")
