"""Section 6: the edgeHub simulator's message rates with the real `azure-iot-device` SDK.

Reuses `edgehub_sim.bench` (`python -m edgehub_sim.bench` prints the same figures on their own).
"""

from __future__ import annotations

import argparse
import asyncio

from edge_tools.bench.profile import Profile
from edge_tools.bench.results import SectionResult
from edgehub_sim.bench import _run


def run(profile: Profile) -> SectionResult:
    section = SectionResult(
        key="simulator",
        title="Simulator",
        setup=(
            "`edgehub_sim.bench`: a simulator on loopback (MQTT over TLS), unmodified SDK clients. "
            f"Upstream: {profile.sim_clients} module clients each send {profile.sim_messages} outputs to "
            f"`$upstream`, awaiting each PUBACK. Routed: one module sends {profile.sim_messages} outputs "
            "routed to another module's input, until the receiver's handler has them all. "
            f"{profile.rounds} repetitions."
        ),
    )
    options = argparse.Namespace(
        clients=profile.sim_clients, messages=profile.sim_messages, repeat=profile.rounds, bind="127.0.0.123"
    )
    results = asyncio.run(_run(options))
    section.figure("upstream messages/s (all clients)", "msg/s", results["upstream"], 0)
    section.figure("routed messages/s (module → module)", "msg/s", results["routed"], 0)
    return section
