"""What a fleet costs the simulator: RSS and CPU of a `serve --devices N` process, idle, with layered
configurations on a fast apply cycle, and with every module connected (hand-built MQTT over TLS clients,
so the clients' own cost stays out of the simulator's numbers).

    python -m edge_tools.bench.simulator_cost --manifest deployment.json --devices 10 50 200
        [--configurations] [--connect] [--interval 300] [--seconds 20] [--bind 127.0.0.N]

One JSON line per fleet size. Each run starts its own simulator in a temporary state dir and stops it.
CPU is the process's user + system time over `--seconds`, as a percentage of one core.
"""

import argparse
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from edgehub_sim.__main__ import serve_command
from edgehub_sim.identity import SERVICE_KEY_NAME
from edgehub_sim.manifest import load_manifest
from edgehub_sim.mqtt.codec import Connect, Subscribe, encode_connect, encode_subscribe
from edgehub_sim.sas import make_token
from edgehub_sim.server import DEFAULT_HUB_NAME, numbered_devices
from edgehub_sim.store import Store

START_TIMEOUT_SECS = 120.0
#: Keep-alive of the probe's clients: longer than any measuring window, so no PINGREQ is needed.
KEEPALIVE_SECS = 600


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _free_port(bind: str) -> int:
    with socket.socket() as probe:
        probe.bind((bind, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _simulator(
    manifest: Path, devices: int, bind: str, interval: float
) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    with tempfile.TemporaryDirectory(prefix="edgehub-sim-cost-") as folder:
        state = Path(folder)
        port = _free_port(bind)
        extra = [
            "--service-port",
            str(port),
            "--devices",
            str(devices),
            "--deployment-interval",
            str(interval),
        ]
        command = serve_command(manifest, state, bind, *extra)
        process = subprocess.Popen(command)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECS
            while not (state / "ready").exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the simulator did not start")
                time.sleep(0.05)
            yield process, state, port
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _configure(state: Path, bind: str, port: int, devices: list[str]) -> None:
    """Tag every tenth device canary, the rest `all`; two layers with a custom metric each."""
    key = next(
        p.split("=", 1)[1]
        for p in (state / "service.connstr").read_text().strip().split(";")
        if p.startswith("SharedAccessKey=")
    )
    host = f"{bind}:{port}"
    context = ssl.create_default_context(cafile=str(state / "ca.pem"))
    headers = {"Authorization": make_token(host, key, key_name=SERVICE_KEY_NAME)}
    metric = "SELECT deviceId FROM devices.modules WHERE properties.reported.ModelUpdate.state='ready'"
    with httpx.Client(base_url=f"https://{host}", verify=context, headers=headers, timeout=30) as http:
        for index, device in enumerate(devices):
            ring = "canary" if index % 10 == 0 else "all"
            http.patch(f"/twins/{device}", json={"tags": {"ring": ring}}).raise_for_status()
        for config_id, condition, priority in (
            ("base", "tags.ring='all' OR tags.ring='canary'", 10),
            ("canary", "tags.ring='canary'", 20),
        ):
            body: dict[str, Any] = {
                "content": {
                    "modulesContent": {
                        "$edgeAgent": {},
                        "loader": {"properties.desired.Model": {"version": config_id}},
                    }
                },
                "targetCondition": condition,
                "priority": priority,
                "metrics": {"queries": {"ready": metric}},
            }
            http.put(f"/configurations/{config_id}", json=body).raise_for_status()


def _connect_all(state: Path, bind: str, devices: list[str], modules: list[str]) -> list[ssl.SSLSocket]:
    """One MQTT connection per module of every device, subscribed to desired patches."""
    context = ssl.create_default_context(cafile=str(state / "ca.pem"))
    store = Store(state / "state.db")
    sockets: list[ssl.SSLSocket] = []
    try:
        for device in devices:
            for module in modules:
                key = store.get_meta(f"module-key:{device}/{module}")
                if key is None:
                    raise RuntimeError(f"no key for {device}/{module}")
                token = make_token(f"{DEFAULT_HUB_NAME}/devices/{device}/modules/{module}", key)
                client_id = f"{device}/{module}"
                sock = context.wrap_socket(
                    socket.create_connection((bind, 8883), timeout=30), server_hostname=bind
                )
                sockets.append(sock)
                username = f"{DEFAULT_HUB_NAME}/{client_id}/?api-version=2019-10-01"
                sock.sendall(
                    encode_connect(Connect(client_id, username, token.encode(), False, KEEPALIVE_SECS, 4))
                )
                if sock.recv(4)[3:4] != b"\x00":
                    raise RuntimeError(f"CONNECT of {client_id} refused")
                sock.sendall(encode_subscribe(Subscribe(1, [("$iothub/twin/PATCH/properties/desired/#", 1)])))
                sock.recv(5)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    finally:
        store.close()
    return sockets


def measure(
    manifest: Path,
    devices: int,
    *,
    bind: str,
    interval: float,
    seconds: float,
    configurations: bool,
    connect: bool,
) -> dict[str, Any]:
    """Start a simulator with `devices` devices, set it up as asked, measure, stop it."""
    ids = numbered_devices(devices)
    modules = list(load_manifest(manifest).modules)
    started = time.monotonic()
    with _simulator(manifest, devices, bind, interval) as (process, state, port):
        ready_secs = time.monotonic() - started
        rss_hosted = _rss_kib(process.pid)
        if configurations:
            _configure(state, bind, port, ids)
        sockets = _connect_all(state, bind, ids, modules) if connect else []
        try:
            time.sleep(1.0)  # let start-up work (first cycle, TLS handshakes) finish before measuring
            ticks = _cpu_ticks(process.pid)
            time.sleep(seconds)
            cpu = (_cpu_ticks(process.pid) - ticks) / os.sysconf("SC_CLK_TCK") / seconds * 100
            rss = _rss_kib(process.pid)
        finally:
            for sock in sockets:
                sock.close()
    return {
        "devices": devices,
        "modulesPerDevice": len(modules),
        "connections": len(sockets),
        "configurations": 2 if configurations else 0,
        "intervalSecs": interval,
        "readySecs": round(ready_secs, 2),
        "rssHostedMiB": round(rss_hosted / 1024, 1),
        "rssMiB": round(rss / 1024, 1),
        "cpuPercent": round(cpu, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure each fleet size; one JSON line each on stdout."""
    parser = argparse.ArgumentParser(prog="python -m edge_tools.bench.simulator_cost", description=__doc__)
    parser.add_argument("--manifest", type=Path, required=True, help="deployment.json")
    parser.add_argument("--devices", type=int, nargs="+", required=True, help="fleet sizes to measure")
    parser.add_argument(
        "--configurations", action="store_true", help="two layered configurations with metrics"
    )
    parser.add_argument("--connect", action="store_true", help="connect every module of every device")
    parser.add_argument(
        "--interval", type=float, default=300.0, help="--deployment-interval of the simulator"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="CPU measuring window")
    parser.add_argument("--bind", default=None, help="loopback address (default: a random 127.x.y.z)")
    args = parser.parse_args(argv)
    for devices in args.devices:
        bind = (
            args.bind
            or f"127.{secrets.randbelow(254) + 1}.{secrets.randbelow(256)}.{secrets.randbelow(253) + 2}"
        )
        result = measure(
            args.manifest,
            devices,
            bind=bind,
            interval=args.interval,
            seconds=args.seconds,
            configurations=args.configurations,
            connect=args.connect,
        )
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
