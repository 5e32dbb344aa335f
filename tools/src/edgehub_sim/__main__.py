"""`python -m edgehub_sim serve --manifest deployment.json --state-dir DIR [--bind IP] [--service-port N]
[--devices N | --device-list FILE] [--deployment-interval SECONDS]`.

Writes `DIR/env/<module>.env` (a fleet: `DIR/devices.txt` and `DIR/devices/<id>/env/<module>.env`),
`DIR/ca.pem`, `DIR/service.connstr`, then `DIR/ready`; runs until SIGTERM or SIGINT, then stops cleanly
(well within 2 s).
"""

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from edge_shared.logs import configure_logging
from edgehub_sim.deployments.engine import DEFAULT_INTERVAL_SECS
from edgehub_sim.errors import SimulatorError
from edgehub_sim.server import (
    DEFAULT_DEVICE_ID,
    DEFAULT_HUB_NAME,
    DEFAULT_SERVICE_PORT,
    EdgeHubSimulator,
    numbered_devices,
)

logger = logging.getLogger("edgehub_sim")


def serve_command(manifest: Path, state_dir: Path, bind: str, *extra: str) -> list[str]:
    """The argv that runs `serve` in a child process (tests, the cost probe), logging warnings only."""
    command = [sys.executable, "-m", "edgehub_sim", "serve", "--manifest", str(manifest)]
    return [*command, "--state-dir", str(state_dir), "--bind", bind, "--log-level", "WARNING", *extra]


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    parser = argparse.ArgumentParser(prog="python -m edgehub_sim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the simulator until SIGTERM")
    serve.add_argument("--manifest", type=Path, required=True, help="deployment.json")
    serve.add_argument("--state-dir", type=Path, required=True, help="state, env files, ready")
    serve.add_argument(
        "--bind",
        default="127.0.0.1",
        help="IP address to listen on, named in the server certificate and in the modules' "
        "IOTEDGE_GATEWAYHOSTNAME (a loopback address locally, the container's address in compose)",
    )
    serve.add_argument(
        "--service-port",
        type=int,
        default=DEFAULT_SERVICE_PORT,
        help="HTTPS service API port (443 also serves module invoke_method)",
    )
    serve.add_argument(
        "--workload-port",
        type=int,
        default=None,
        help="also serve the workload API over HTTP on this port (env files then use it)",
    )
    serve.add_argument(
        "--workload-socket-mode",
        type=lambda text: int(text, 8),
        default=0o600,
        help="octal permissions of the per-module workload sockets (default 600: owner only; 666 where "
        "each module runs as its own user, as in containers)",
    )
    serve.add_argument("--hub-name", default=DEFAULT_HUB_NAME, help="IoT Hub host name")
    serve.add_argument("--device-id", default=DEFAULT_DEVICE_ID, help="Edge device id (single device)")
    fleet = serve.add_mutually_exclusive_group()
    fleet.add_argument(
        "--devices",
        type=int,
        default=None,
        help="host a fleet of N Edge devices dev-001.. (ids in DIR/devices.txt, env files in "
        "DIR/devices/<id>/env/)",
    )
    fleet.add_argument(
        "--device-list", type=Path, default=None, help="host a fleet of the device ids in FILE, one a line"
    )
    serve.add_argument(
        "--deployment-interval",
        type=float,
        default=DEFAULT_INTERVAL_SECS,
        help="seconds between apply cycles of automatic deployments (IoT Hub: 300; also run right after "
        "a configuration changes)",
    )
    serve.add_argument(
        "--configuration-writes-per-minute",
        type=int,
        default=None,
        help="answer configuration PUT/DELETE past N a minute with 429 ThrottlingException and Retry-After, "
        "as IoT Hub does past 20 a minute per unit (default: never throttle)",
    )
    serve.add_argument("--log-level", default="INFO", help="logging level")
    serve.add_argument("--log-format", choices=["json", "text"], default="json", help="log lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level.upper(), args.log_format)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        simulator = EdgeHubSimulator(
            args.manifest,
            args.state_dir,
            bind=args.bind,
            service_port=args.service_port,
            workload_port=args.workload_port,
            workload_socket_mode=args.workload_socket_mode,
            hub_name=args.hub_name,
            device_id=args.device_id,
            devices=_fleet(args),
            deployment_interval=args.deployment_interval,
            configuration_writes_per_minute=args.configuration_writes_per_minute,
        )
        simulator.start()
    except (SimulatorError, ValueError, OSError) as exc:  # ManifestError is a ValueError
        logger.error("cannot start the simulator: %s", exc)
        return 1
    try:
        stop.wait()
    finally:
        simulator.stop()
    logger.info("stopped")
    return 0


def _fleet(args: argparse.Namespace) -> list[str] | None:
    """The fleet's device ids from --devices or --device-list (blank lines and # comments skipped)."""
    if args.devices is not None:
        return numbered_devices(args.devices)
    if args.device_list is not None:
        lines = Path(args.device_list).read_text(encoding="utf-8").splitlines()
        return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return None


if __name__ == "__main__":
    sys.exit(main())
