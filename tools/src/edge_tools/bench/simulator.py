"""Section 6: the edgeHub simulator's message rates with the real `azure-iot-device` SDK.

Measured by `edge_tools.bench.simulator_rates` (`python -m edge_tools.bench.simulator_rates` prints the
same figures on their own).
"""

from __future__ import annotations

import asyncio

from edge_tools.bench.profile import Profile
from edge_tools.bench.results import SectionResult
from edge_tools.bench.simulator_rates import SimulatorBenchOptions, measure


def run(profile: Profile) -> SectionResult:
    section = SectionResult(
        key="simulator",
        title="Simulator",
        setup=(
            "`edge_tools.bench.simulator_rates`: a simulator on loopback (MQTT over TLS), unmodified SDK "
            "clients. "
            f"Upstream: {profile.sim_clients} module clients each send {profile.sim_messages} outputs to "
            f"`$upstream`, awaiting each PUBACK. Routed: one module sends {profile.sim_messages} outputs "
            "routed to another module's input, until the receiver's handler has them all. "
            f"{profile.rounds} repetitions."
        ),
    )
    options = SimulatorBenchOptions(
        clients=profile.sim_clients, messages=profile.sim_messages, repeat=profile.rounds
    )
    rates = asyncio.run(measure(options))
    section.figure("upstream messages/s (all clients)", "msg/s", rates.upstream, 0)
    section.figure("routed messages/s (module → module)", "msg/s", rates.routed, 0)
    return section
