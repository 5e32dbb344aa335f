"""Fleet rollout at scale on one machine: N real loaders, the simulator's layered deployments, Azurite.

Two rollouts per fleet size, driven by the same code as `edge-model rollout` (`edge_tools.rollout`):
- **through**: a new model through rings canary (10 %, at least 2), early (30 %) and all (100 %), with
  one early device whose disk is full (its loader fails every download with `disk_full`); a ring is
  promoted when all but one of its devices are ready, at most one may fail, so it goes through;
- **halt**: the next model, no failure allowed; one canary device is offline until the others have
  installed it, then comes back with a full disk and fails: the rollout halts and every device falls
  back to the model before, which its loader still keeps installed.

Each starts from a baseline rollout of a first model to the whole fleet (the layer devices fall back to).
Reported per size: time per ring (seconds and apply cycles), bytes Blob Storage served per device (as a
share of the ZIP), the fallback's time and bytes, and the simulator's CPU and memory per device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from edge_shared.repository import ModelRepository
from edge_tools.bench.profile import Profile
from edge_tools.bench.results import SectionResult
from edge_tools.fixtures import FixtureCatalog
from edge_tools.publish.package import ModelPackage, load_package
from edge_tools.rollout import runner
from edge_tools.rollout.blob_access import publish_for_rollout
from edge_tools.rollout.decide import Step
from edge_tools.rollout.plan import FailureLimit, Ring, RolloutPlan
from edge_tools.stack.fleet import FleetStack

CONTAINER = "models"


@dataclass(frozen=True)
class FleetBenchOptions:
    devices: int
    #: Devices (the first ones, all in the canary ring) that also run the inference module.
    inference_on: int = 2
    #: The simulator's apply cycle, in seconds (IoT Hub's is about 300).
    deployment_interval: float = 1.0
    #: How often the driver checks the rollout, in seconds.
    poll: float = 0.5
    timeout: float = 600.0


@dataclass
class RingTiming:
    name: str
    devices: int
    seconds: float


@dataclass
class RolloutOutcome:
    rollout_id: str
    state: str
    seconds: float
    rings: list[RingTiming] = field(default_factory=list)
    served_bytes: int = 0
    note: str = ""
    #: `time.monotonic()` when the check that found it done or halted (and halted it) began.
    decided_at: float = 0.0
    #: Bytes storage had served (in all) at that moment.
    served_at_decision: int = 0


@dataclass
class FleetRun:
    devices: int
    zip_bytes: int
    deployment_interval: float
    baseline: RolloutOutcome
    through: RolloutOutcome
    halt: RolloutOutcome
    fallback_seconds: float
    fallback_bytes: int
    #: Healthy devices that had installed the halted model and went back to the one before.
    fell_back: int
    canary: int
    simulator_idle_rss: int
    simulator_cpu_seconds: float


def ring_sizes(devices: int) -> tuple[int, int]:
    """(canary, early) device counts: 10 % and 30 %; the canary has two devices at least (one fails in
    the halt run, the other shows the fallback) and one device is left for `all` alone."""
    if devices < 4:
        raise ValueError("a fleet benchmark needs 4 devices at least")
    canary = max(2, round(devices * 0.1))
    early = max(1, round(devices * 0.3))
    return canary, min(early, devices - canary - 1)


def tag_fleet(stack: FleetStack) -> tuple[list[str], list[str]]:
    """Tag ring membership on the device twins; returns (canary devices, early devices)."""
    canary_count, early_count = ring_sizes(len(stack.device_ids))
    canary = stack.device_ids[:canary_count]
    early = stack.device_ids[canary_count : canary_count + early_count]
    with stack.hub() as hub:
        for device in stack.device_ids:
            ring = "canary" if device in canary else "early" if device in early else "late"
            hub.update_device_tags(device, {"ring": ring, "environment": "prod"})
    return canary, early


def publish_model(stack: FleetStack, package: ModelPackage, version: str) -> dict[str, Any]:
    """Upload once, as `edge-model rollout start` does: the `Model` object the layers carry."""
    return publish_for_rollout(
        stack.storage_connection_string,
        CONTAINER,
        package,
        version,
        valid_for=timedelta(days=1),
        ca_file=str(stack.storage_ca_file),
    )


def drive(
    stack: FleetStack,
    plan: RolloutPlan,
    model: dict[str, Any],
    options: FleetBenchOptions,
    *,
    on_check: Callable[[runner.Advanced], None] | None = None,
) -> RolloutOutcome:
    """Start a rollout and advance it until it is done or halted, timing each ring; `on_check` sees
    every check (a fault can be injected at a chosen point of the rollout)."""
    started = time.monotonic()
    bytes_before = stack.served_bytes()
    with stack.hub() as hub:
        runner.start(hub, plan, model)
        ring_started = started
        timings: list[RingTiming] = []
        deadline = started + options.timeout
        while True:
            checked_at, served_then = time.monotonic(), stack.served_bytes()
            advanced = runner.advance(hub, plan.rollout_id)
            now = time.monotonic()
            if on_check is not None:
                on_check(advanced)
            if advanced.decision.step is Step.PROMOTE and advanced.decision.ring is not None:
                counts = advanced.counts.get(advanced.decision.ring)
                timings.append(
                    RingTiming(
                        plan.rings[advanced.decision.ring].name,
                        counts.targeted if counts else 0,
                        now - ring_started,
                    )
                )
                ring_started = now
            if advanced.record.state in ("done", "halted"):
                return RolloutOutcome(
                    plan.rollout_id,
                    advanced.record.state,
                    now - started,
                    timings,
                    stack.served_bytes() - bytes_before,
                    advanced.record.note,
                    checked_at,
                    served_then,
                )
            if now > deadline:
                raise TimeoutError(
                    f"rollout {plan.rollout_id}: {advanced.decision.reason} after {options.timeout:.0f} s"
                )
            time.sleep(options.poll)


def _plan(
    rollout_id: str, version: str, rings: tuple[Ring, ...], priority: int, limit: FailureLimit, promote: float
) -> RolloutPlan:
    return RolloutPlan(
        rollout_id=rollout_id,
        version=version,
        rings=rings,
        promote_percent=promote,
        failure_limit=limit,
        priority=priority,
    )


RINGS = (
    Ring(name="canary", condition="tags.ring='canary'"),
    Ring(name="early", condition="tags.ring='early'"),
    Ring(name="all", condition="tags.environment='prod'"),
)


def _loader_rows(stack: FleetStack) -> dict[str, tuple[str | None, str | None, str | None]]:
    """Per device: (desired Model version, reported ModelUpdate version, its state)."""
    rows: dict[str, tuple[str | None, str | None, str | None]] = {}
    with stack.hub() as hub:
        for twin in hub.query("SELECT * FROM devices.modules WHERE moduleId='loader'"):
            properties = twin.get("properties") or {}
            model = (properties.get("desired") or {}).get("Model") or {}
            update = (properties.get("reported") or {}).get("ModelUpdate") or {}
            rows[str(twin.get("deviceId"))] = (
                model.get("Version"),
                update.get("version"),
                update.get("state"),
            )
    return rows


def wait_serving(stack: FleetStack, devices: list[str], version: str, timeout: float, since: float) -> float:
    """Seconds from `since` until the hub asks every listed device for `version` and each loader reports
    it `ready` (and, where an inference module runs, it serves it)."""

    def settled() -> bool:
        rows = _loader_rows(stack)
        if any(rows.get(device) != (version, version, "ready") for device in devices):
            return False
        return all(stack.serving(device) == version for device in devices if device in stack.inference_urls)

    stack.wait_for(f"{len(devices)} devices on {version}", settled, timeout=timeout, interval=0.25)
    return time.monotonic() - since


def installed(stack: FleetStack, device: str, version: str) -> bool:
    """Whether a device's loader keeps `version` in its repository."""
    return ModelRepository(stack.model_root(device)).version_dir(version).is_dir()


def run_fleet(catalog: FixtureCatalog, options: FleetBenchOptions, work: Path) -> FleetRun:
    v1, v2, v3 = (
        load_package(catalog.path(f"models/{model}"), version=version)
        for model, version in (
            ("tiny-yolo-1", "fleet-v1"),
            ("tiny-yolo-2", "fleet-v2"),
            ("tiny-yolo-1", "fleet-v3"),
        )
    )
    with FleetStack(
        work / f"fleet-{options.devices}",
        options.devices,
        inference_on=options.inference_on,
        deployment_interval=options.deployment_interval,
    ) as stack:
        idle = stack.simulator_usage()
        canary, early = tag_fleet(stack)
        everyone = RINGS[2:]
        limit_one = FailureLimit(count=1)
        baseline = drive(
            stack,
            _plan("fleet-base", "fleet-v1", everyone, 10, limit_one, 100.0),
            publish_model(stack, v1, "fleet-v1"),
            options,
        )
        # The `through` run: one early device's disk is full (it stays so).
        stack.restart_loader(early[0], disk_full=True)
        cpu_before = stack.simulator_usage().cpu_seconds
        # Promote once all but one device of a ring are ready (the disk-full one never is).
        promote = 100.0 * (len(early) - 1) / len(early) - 0.01
        through = drive(
            stack,
            _plan("fleet-through", "fleet-v2", RINGS, 11, limit_one, promote),
            publish_model(stack, v2, "fleet-v2"),
            options,
        )
        cpu = stack.simulator_usage().cpu_seconds - cpu_before
        # The `halt` run: no failure allowed. One canary device is offline while the others install the
        # new model; it then comes back with a full disk, fails, and the rollout halts.
        failing = canary[-1]
        stack.stop_loader(failing)
        fault: list[str] = []

        def inject(advanced: runner.Advanced) -> None:
            counts = advanced.counts.get(0)
            if not fault and counts is not None and counts.ready >= counts.targeted - 1:
                fault.append(failing)
                stack.restart_loader(failing, disk_full=True)

        halt = drive(
            stack,
            _plan("fleet-halt", "fleet-v3", RINGS, 12, FailureLimit(count=0), 100.0),
            publish_model(stack, v3, "fleet-v3"),
            options,
            on_check=inject,
        )
        healthy = [device for device in stack.device_ids if device not in (failing, early[0])]
        fallback = wait_serving(stack, healthy, "fleet-v2", options.timeout, since=halt.decided_at)
        fell_back = [device for device in healthy if installed(stack, device, "fleet-v3")]
        return FleetRun(
            devices=options.devices,
            zip_bytes=v2.size,
            deployment_interval=options.deployment_interval,
            baseline=baseline,
            through=through,
            halt=halt,
            fallback_seconds=fallback,
            fallback_bytes=stack.served_bytes() - halt.served_at_decision,
            fell_back=len(fell_back),
            canary=len(canary),
            simulator_idle_rss=idle.rss_bytes,
            simulator_cpu_seconds=cpu,
        )


def run(catalog: FixtureCatalog, profile: Profile, work: Path) -> SectionResult:
    """The report section: each fleet size of the profile, smallest first."""
    return report([run_fleet(catalog, FleetBenchOptions(devices=size), work) for size in profile.fleet_sizes])


def report(runs: list[FleetRun]) -> SectionResult:
    """Figures and goals of fleet runs, smallest first (growth is read from the first to the last)."""
    sizes = [result.devices for result in runs]
    section = SectionResult(
        key="fleet",
        title="Fleet rollout",
        setup=(
            "`edge_tools.bench.fleet`: the simulator with `--devices N` and a 1 s apply cycle, a real "
            "`python -m loader_module` per device (the inference module on 2 canary devices), Azurite "
            "behind a counting proxy, rollouts driven by `edge_tools.rollout` polling every 0.5 s. A "
            "baseline rollout of tiny-yolo-1 to all; then **through**: tiny-yolo-2 via canary (10 %, at "
            "least 2) / early (30 %) / all, a ring promoted when all but one of its devices are ready, at "
            "most 1 failed, one early device with a full disk; then **halt**: a third model, promoted at "
            "100 %, no failure allowed, one canary device offline until the others have installed it, then "
            "back with a full disk. "
            f"Fleet sizes: {', '.join(map(str, sizes))}. One run per size."
        ),
    )
    for result in runs:
        n = result.devices
        for timing in result.through.rings:
            section.figure(
                f"{n} devices, through: ring {timing.name} ({timing.devices} devices)",
                "s",
                [timing.seconds],
                1,
            )
        section.figure(f"{n} devices, through: whole rollout", "s", [result.through.seconds], 1)
        section.figure(
            f"{n} devices, through: apply cycles",
            "cycles",
            [result.through.seconds / result.deployment_interval],
            1,
        )
        per_device = result.through.served_bytes / n
        section.figure(
            f"{n} devices, through: bytes served per device / ZIP", "×", [per_device / result.zip_bytes], 3
        )
        section.figure(f"{n} devices, halt: start to halted", "s", [result.halt.seconds], 1)
        section.figure(
            f"{n} devices, halt: fallback until every healthy device is ready again",
            "s",
            [result.fallback_seconds],
            1,
        )
        section.figure(
            f"{n} devices, halt: bytes served during the fallback", "B", [result.fallback_bytes], 0
        )
        section.figure(
            f"{n} devices: simulator RSS idle, per device", "KiB", [result.simulator_idle_rss / n / 1024], 0
        )
        section.figure(
            f"{n} devices: simulator CPU during the through rollout, per device",
            "ms",
            [result.simulator_cpu_seconds / n * 1000],
            1,
        )
        section.goal(
            f"{n} devices: through rollout", "done", result.through.state, result.through.state == "done"
        )
        section.goal(
            f"{n} devices: halt run",
            "halted, canary failure",
            result.halt.state,
            result.halt.state == "halted" and "canary" in result.halt.note,
        )
        section.goal(
            f"{n} devices: halt sends the canary back",
            "every healthy canary device",
            f"{result.fell_back} of {result.canary - 1}",
            result.fell_back >= result.canary - 1,
        )
        section.goal(
            f"{n} devices: fallback downloads nothing",
            "≤ 1 % of one ZIP",
            f"{result.fallback_bytes} B",
            result.fallback_bytes <= result.zip_bytes / 100,
        )
        section.goal(
            f"{n} devices: bytes served per device",
            "≤ 1.05 × ZIP",
            f"{per_device / result.zip_bytes:.3f}×",
            per_device <= 1.05 * result.zip_bytes,
        )
    if len(runs) > 1:
        small, large = runs[0], runs[-1]
        added = large.devices - small.devices
        marginal_rss = (large.simulator_idle_rss - small.simulator_idle_rss) / added / 1024
        cpu_ratio = (large.simulator_cpu_seconds / large.devices) / max(
            small.simulator_cpu_seconds / small.devices, 1e-9
        )
        section.figure(
            f"simulator RSS per added device ({small.devices} → {large.devices})", "KiB", [marginal_rss], 0
        )
        section.notes.append(
            f"From {small.devices} to {large.devices} devices: the simulator holds {marginal_rss:.0f} KiB "
            "more per added device (idle: its identities, twins, sessions and TLS connections); its CPU "
            f"per device during a rollout changes ×{cpu_ratio:.2f}; the whole rollout takes "
            f"×{large.through.seconds / small.through.seconds:.2f} the time. Rings take about one apply "
            "cycle each because the simulator, like IoT Hub, applies a changed deployment shortly after "
            "the change rather than at the next cycle."
        )
    return section
