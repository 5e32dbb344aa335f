"""Free loopback addresses and ports, so several stacks (and test workers) can run side by side."""

from __future__ import annotations

import random
import socket

# The SDK dials edgeHub on 8883 (MQTT) and 443 (module methods): fixed ports, so each stack takes its
# own 127.x.y.z address instead of its own port.
SIMULATOR_PORTS = (8883, 443)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def pick_loopback_address(ports: tuple[int, ...] = SIMULATOR_PORTS, *, attempts: int = 64) -> str:
    """A 127.0.x.y address on which every port in `ports` is free (Linux routes all of 127/8 to lo)."""
    rng = random.Random()
    for _ in range(attempts):
        host = f"127.0.{rng.randint(1, 254)}.{rng.randint(2, 254)}"
        if all(port_free(host, port) for port in ports):
            return host
    raise RuntimeError(f"no loopback address with ports {ports} free after {attempts} tries")
