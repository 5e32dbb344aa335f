"""Throughput of the edgeHub simulator with the real SDK on loopback.

`python -m edge_tools.bench.simulator_rates [--clients 5] [--messages 500] [--repeat 3]` starts a
simulator on a loopback address in a temp dir and measures, per repetition:
- upstream: N module clients each sending M outputs (one at a time, awaiting PUBACK), routed to
  `$upstream`; messages/s from the first send to the last record.
- routed: one module sends M outputs (awaiting each PUBACK) routed to another module's input;
  messages/s until the receiving SDK handler has them all.
Prints min/median/max; section 6 of `make bench` (`edge_tools.bench.simulator`) runs the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from azure.iot.device import Message
from azure.iot.device.aio import IoTHubModuleClient

from edgehub_sim.server import EdgeHubSimulator


@dataclass(frozen=True, slots=True)
class SimulatorBenchOptions:
    """What one run measures: `clients` senders upstream, `messages` each, `repeat` times, on `bind`."""

    clients: int = 5
    messages: int = 500
    repeat: int = 3
    bind: str = "127.0.0.123"
    """The simulator's loopback address."""


@dataclass(frozen=True, slots=True)
class SimulatorRates:
    """Messages per second, one value per repetition."""

    upstream: list[float] = field(default_factory=list)
    routed: list[float] = field(default_factory=list)


_ROUTE = 'FROM /messages/modules/sender/outputs/Data INTO BrokeredEndpoint("/modules/receiver/inputs/Data")'


def _manifest(clients: int) -> dict[str, Any]:
    modules = ["sender", "receiver", *(f"m{i}" for i in range(clients))]
    return {
        "modulesContent": {
            "$edgeAgent": {"properties.desired": {"modules": {m: {} for m in modules}}},
            "$edgeHub": {
                "properties.desired": {
                    "schemaVersion": "1.1",
                    "routes": {"data": _ROUTE, "telemetry": "FROM /messages/modules/* INTO $upstream"},
                }
            },
        }
    }


def _message(index: int) -> Message:
    return Message(json.dumps({"n": index}))  # type: ignore[no-untyped-call]


def _client(simulator: EdgeHubSimulator, module: str) -> IoTHubModuleClient:
    with mock.patch.dict(os.environ, simulator.env_for(module)):
        return IoTHubModuleClient.create_from_edge_environment()


async def _upstream_rate(simulator: EdgeHubSimulator, clients: int, messages: int) -> float:
    modules = [f"m{i}" for i in range(clients)]
    sdk = [_client(simulator, m) for m in modules]
    await asyncio.gather(*(c.connect() for c in sdk))
    before = len(simulator.upstream_messages())

    async def send(client: IoTHubModuleClient) -> None:
        for index in range(messages):
            await client.send_message_to_output(_message(index), "Telemetry")

    started = time.perf_counter()
    await asyncio.gather(*(send(c) for c in sdk))
    total = clients * messages
    await asyncio.to_thread(
        simulator.wait_for, lambda: len(simulator.upstream_messages()) - before >= total, 60
    )
    elapsed = time.perf_counter() - started
    await asyncio.gather(*(c.shutdown() for c in sdk))
    return total / elapsed


async def _routed_rate(simulator: EdgeHubSimulator, messages: int) -> float:
    sender, receiver = _client(simulator, "sender"), _client(simulator, "receiver")
    done = threading.Event()
    received = 0

    def on_message(_: Message) -> None:
        nonlocal received
        received += 1
        if received == messages:
            done.set()

    receiver.on_message_received = on_message
    await sender.connect()
    started = time.perf_counter()
    for index in range(messages):
        await sender.send_message_to_output(_message(index), "Data")
    if not await asyncio.to_thread(done.wait, 60):
        raise TimeoutError(f"only {received} of {messages} routed messages arrived")
    elapsed = time.perf_counter() - started
    await asyncio.gather(sender.shutdown(), receiver.shutdown())
    return messages / elapsed


async def measure(options: SimulatorBenchOptions) -> SimulatorRates:
    """Start a simulator in a temp dir and measure both paths `options.repeat` times."""
    rates = SimulatorRates()
    with tempfile.TemporaryDirectory(prefix="ehs-bench-") as tmp:
        manifest = Path(tmp) / "deployment.json"
        manifest.write_text(json.dumps(_manifest(options.clients)))
        with EdgeHubSimulator(manifest, Path(tmp) / "state", bind=options.bind) as simulator:
            for _ in range(options.repeat):
                rates.upstream.append(await _upstream_rate(simulator, options.clients, options.messages))
                rates.routed.append(await _routed_rate(simulator, options.messages))
    return rates


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write a small table to stdout."""
    defaults = SimulatorBenchOptions()
    parser = argparse.ArgumentParser(prog="python -m edge_tools.bench.simulator_rates", description=__doc__)
    parser.add_argument("--clients", type=int, default=defaults.clients, help="upstream senders")
    parser.add_argument("--messages", type=int, default=defaults.messages, help="messages per sender")
    parser.add_argument("--repeat", type=int, default=defaults.repeat, help="repetitions")
    parser.add_argument("--bind", default=defaults.bind, help="the simulator's loopback address")
    args = parser.parse_args(argv)
    options = SimulatorBenchOptions(
        clients=args.clients, messages=args.messages, repeat=args.repeat, bind=args.bind
    )
    rates = asyncio.run(measure(options))
    out = sys.stdout
    out.write(f"clients={options.clients} messages/client={options.messages} repeat={options.repeat}\n")
    out.write("| path | min msg/s | median msg/s | max msg/s |\n|---|---|---|---|\n")
    for name, values in (("upstream", rates.upstream), ("routed", rates.routed)):
        out.write(f"| {name} | {min(values):.0f} | {statistics.median(values):.0f} | {max(values):.0f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
