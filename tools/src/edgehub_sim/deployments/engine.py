"""The apply cycle of IoT Hub's automatic deployments: evaluate every configuration's target condition
over the device twins, merge the targeting layers into each module twin (pushing what changed to
connected modules), and recompute system and custom metrics.

IoT Hub runs this "shortly after creation, then every five minutes"; the simulator runs it every
`interval_secs` and at once after a configuration is created, changed or deleted.
"""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgehub_sim.deployments.conditions import Condition, parse_target_condition
from edgehub_sim.deployments.configurations import (
    APPLIED_QUERY,
    SYSTEM_MODULES,
    TARGETED_QUERY,
    layer_of,
)
from edgehub_sim.deployments.layers import Layer, module_layers
from edgehub_sim.deployments.query import parse_query

if TYPE_CHECKING:
    from edgehub_sim.hub import Hub

logger = logging.getLogger(__name__)

#: IoT Hub's documented cycle.
DEFAULT_INTERVAL_SECS = 300.0


@dataclass(frozen=True)
class CycleResult:
    """What one apply cycle did."""

    configurations: int
    twins_changed: int


class DeploymentEngine:
    """Runs apply cycles on the simulator's loop."""

    def __init__(self, hub: "Hub", interval_secs: float = DEFAULT_INTERVAL_SECS) -> None:
        if interval_secs <= 0:
            raise ValueError("the deployment interval must be positive")
        self._hub = hub
        self._interval = interval_secs
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Completed cycles since start (tests wait for the next one instead of sleeping).
        self.cycles = 0

    def start(self) -> None:
        """Start cycling (the first cycle runs at once: state may have changed while stopped)."""
        self._task = asyncio.create_task(self._run(), name="deployment-cycle")

    async def stop(self) -> None:
        """Stop cycling."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def trigger(self) -> None:
        """Run a cycle soon (a configuration was created, changed or deleted)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.apply()
            except Exception:  # a bug in one cycle must not end the cycling
                logger.exception("deployment apply cycle failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval)
            except TimeoutError:
                pass

    def apply(self) -> CycleResult:
        """One apply cycle (synchronous: it only touches in-memory state and the store)."""
        hub = self._hub
        identity = hub.identity
        documents = hub.configurations.snapshot()
        parsed = [
            (document, parse_target_condition(document["targetCondition"]), layer_of(document))
            for document in documents
        ]
        targeted: dict[str, int] = {document["id"]: 0 for document in documents}
        changed = 0
        for device in identity.devices:
            twin = hub.device_twin(device)
            layers: list[Layer] = []
            for document, condition, layer in parsed:
                if condition.matches(twin):
                    layers.append(layer)
                    targeted[document["id"]] += 1
            for module in identity.modules:
                changed += hub.apply_layers(module, device, module_layers(layers, module))
        self._record_metrics(parsed, targeted)
        self.cycles += 1
        hub.feed.bump()
        if changed:
            logger.info(
                "deployment cycle: %d configurations, %d module twins changed", len(documents), changed
            )
        return CycleResult(len(documents), changed)

    def _record_metrics(
        self, parsed: Sequence[tuple[dict[str, Any], Condition, Layer]], targeted: Mapping[str, int]
    ) -> None:
        hub = self._hub
        modules = set(hub.identity.modules)
        module_twins: list[dict[str, Any]] | None = None
        device_twins: list[dict[str, Any]] | None = None
        for document, _, layer in parsed:
            config_id = layer.config_id
            named = {m for m in layer.modules_content if m not in SYSTEM_MODULES}
            applied = targeted[config_id] if named <= modules else 0
            custom: dict[str, int] = {}
            for name, text in document["metrics"].get("queries", {}).items():
                query = parse_query(text)
                if query.collection == "devices.modules":
                    module_twins = hub.module_twins() if module_twins is None else module_twins
                    custom[name] = len(query.run(module_twins))
                else:
                    device_twins = (
                        [hub.device_twin(d) for d in hub.identity.devices]
                        if device_twins is None
                        else device_twins
                    )
                    custom[name] = len(query.run(device_twins))
            condition = document["targetCondition"]
            hub.configurations.set_results(
                config_id,
                {TARGETED_QUERY: targeted[config_id], APPLIED_QUERY: applied},
                custom,
                {
                    TARGETED_QUERY: f"SELECT deviceId FROM devices WHERE {condition}" if condition else "",
                    APPLIED_QUERY: f"SELECT deviceId FROM devices WHERE {condition}"
                    if condition and applied
                    else "",
                },
            )
