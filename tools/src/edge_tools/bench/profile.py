"""How much each section measures in the three modes: full (`make bench`), quick, and the CI smoke run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["full", "quick", "smoke"]


@dataclass(frozen=True, slots=True)
class Profile:
    mode: Mode
    rounds: int
    """Repetitions behind every min/median/max."""
    light_requests: int
    """Requests per round and side at concurrency 1 for a light model."""
    heavy_requests: int
    """The same for the ~5.5 GFLOPs model."""
    concurrent_requests: int
    """Requests per round and side at concurrency 4 (light models; a quarter of it for the heavy one)."""
    reference_requests: int
    """Requests per round for the reference architecture's session-per-request row."""
    swaps: int
    swap_steady_requests: int
    download_mib: int
    download_rss_mib: tuple[int, int]
    download_runs: int
    updates: int
    cold_starts: int
    sim_clients: int
    sim_messages: int
    delta: bool
    serving_models: int = 6
    """How many of the serving section's models (light ONNX, heavy ONNX, TFLite, BlazeFace, real COCO
    SSD, real YOLOv8n) to run."""
    cold_start_models: int = 3
    peers: bool = True
    """Measure LitServe and MLServer beside ours (installs them in `build/bench-peers` on first use)."""
    fleet_sizes: tuple[int, ...] = (10, 50, 100)
    """Devices per run of the fleet section (`--only fleet`: it is not part of the default run)."""


PROFILES: dict[Mode, Profile] = {
    "full": Profile(
        mode="full",
        rounds=5,
        light_requests=200,
        heavy_requests=30,
        concurrent_requests=200,
        reference_requests=20,
        swaps=20,
        swap_steady_requests=400,
        download_mib=256,
        download_rss_mib=(64, 512),
        download_runs=3,
        updates=5,
        cold_starts=5,
        sim_clients=5,
        sim_messages=500,
        delta=True,
    ),
    "quick": Profile(
        mode="quick",
        rounds=3,
        light_requests=40,
        heavy_requests=6,
        concurrent_requests=40,
        reference_requests=5,
        swaps=6,
        swap_steady_requests=80,
        download_mib=32,
        download_rss_mib=(16, 64),
        download_runs=2,
        updates=2,
        cold_starts=2,
        sim_clients=3,
        sim_messages=100,
        delta=False,
        fleet_sizes=(5, 10),
    ),
    "smoke": Profile(
        mode="smoke",
        rounds=1,
        light_requests=8,
        heavy_requests=2,
        concurrent_requests=8,
        reference_requests=2,
        swaps=2,
        swap_steady_requests=16,
        download_mib=4,
        download_rss_mib=(2, 8),
        download_runs=1,
        updates=1,
        cold_starts=1,
        sim_clients=2,
        sim_messages=20,
        delta=False,
        serving_models=2,
        cold_start_models=1,
        peers=False,
        fleet_sizes=(5,),
    ),
}
