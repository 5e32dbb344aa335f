"""`edge-model rollout ...` and `edge-model fleet`: one model to many devices, ring by ring.

`rollout start` uploads the package once, creates one layered deployment per ring (docs/fleet.md) and
then drives the rollout: each ring is promoted when enough of it reports `ready` for the new version,
and the whole rollout halts (its devices fall back to the layer below) when failures pass the limit.
Stopping the CLI loses nothing: `rollout advance ID --watch` picks up from what the hub holds.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from edge_tools.publish.blob import ssl_context
from edge_tools.publish.connstr import HubConnection
from edge_tools.publish.options import add_hub_options, add_storage_options
from edge_tools.publish.package import load_package
from edge_tools.publish.signing import sign_digest
from edge_tools.rollout import runner
from edge_tools.rollout.blob_access import DEFAULT_POLICY, publish_for_rollout
from edge_tools.rollout.configurations import RolloutRecord
from edge_tools.rollout.decide import RingCounts, Step
from edge_tools.rollout.fleet import device_rows, render, render_rollouts, summary
from edge_tools.rollout.hub import FleetHub
from edge_tools.rollout.plan import FailureLimit, PlanError, Ring, RolloutPlan

#: Exit codes beyond 0 (done) and 2 (error): the rollout halted, or the wait ran out while it runs.
EXIT_HALTED = 1
EXIT_STILL_RUNNING = 3


def register(commands: Any) -> None:
    """Add `rollout` and `fleet` to the `edge-model` sub-command parser."""
    rollout = commands.add_parser("rollout", help="roll a model out to a fleet in rings (docs/fleet.md)")
    actions = rollout.add_subparsers(dest="rollout_command", required=True)

    start = actions.add_parser("start", help="publish a model once and start rolling it out")
    start.add_argument("source", type=Path, help="model folder or ZIP")
    start.add_argument("--version", required=True, help="version label of the new model")
    start.add_argument(
        "--ring",
        action="append",
        required=True,
        metavar="NAME:CONDITION",
        help="a ring and its device-twin target condition, in order, e.g. canary:\"tags.ring='canary'\"",
    )
    start.add_argument("--id", dest="rollout_id", help="rollout id (default: <version>-<UTC time>)")
    start.add_argument(
        "--promote-at", type=float, default=100.0, metavar="PERCENT", help="share of a ring ready to go on"
    )
    start.add_argument(
        "--max-failed",
        action="append",
        default=[],
        metavar="N|P%",
        help="halt when more devices of a ring fail than this count and/or percentage (default 0)",
    )
    start.add_argument("--priority", type=int, help="layer priority (default: above every earlier rollout)")
    start.add_argument(
        "--file-name", help="blob/ZIP name (default: the ZIP's name or <folder>-<version>.zip)"
    )
    start.add_argument("--container", default="models")
    start.add_argument(
        "--sas-policy", default=DEFAULT_POLICY, help="container stored access policy for reads"
    )
    start.add_argument("--sas-days", type=float, default=365.0, help="how long that policy grants reads")
    start.add_argument("--sign", type=Path, metavar="KEY", help="Ed25519 private key (PEM) to sign with")
    start.add_argument("--no-wait", action="store_true", help="create the rollout and return")
    _drive_options(start)
    add_storage_options(start)
    add_hub_options(start, device=False)
    start.set_defaults(handler=cmd_start)

    advance = actions.add_parser("advance", help="promote or halt a rollout by what its devices report")
    advance.add_argument("rollout_id")
    advance.add_argument("--watch", action="store_true", help="keep going until it is done or halted")
    _drive_options(advance)
    add_hub_options(advance, device=False)
    advance.set_defaults(handler=cmd_advance)

    status = actions.add_parser("status", help="list rollouts, or show one ring by ring")
    status.add_argument("rollout_id", nargs="?")
    add_hub_options(status, device=False)
    status.set_defaults(handler=cmd_status)

    abort = actions.add_parser("abort", help="halt a rollout: its devices fall back to the layer below")
    abort.add_argument("rollout_id")
    abort.add_argument("--reason", default="aborted by the operator")
    add_hub_options(abort, device=False)
    abort.set_defaults(handler=cmd_abort)

    delete = actions.add_parser("delete", help="remove a halted or finished rollout's configurations")
    delete.add_argument("rollout_id")
    add_hub_options(delete, device=False)
    delete.set_defaults(handler=cmd_delete)

    fleet = commands.add_parser("fleet", help="devices per ring, per update state and per version")
    fleet.add_argument("--rollout", help="rollout to show rings of (default: the newest)")
    fleet.add_argument("--devices", action="store_true", help="also list every device")
    fleet.add_argument("--inference-module", default="inference")
    fleet.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS")
    fleet.add_argument("--count", type=int, default=0, help="with --watch: stop after COUNT views (0: never)")
    add_hub_options(fleet, device=False)
    fleet.set_defaults(handler=cmd_fleet)


def _drive_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between checks (default 15)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="stop waiting after this many seconds (the rollout goes on)",
    )


def _hub(args: argparse.Namespace) -> FleetHub:
    if not args.hub_connection_string:
        raise PlanError(
            "no IoT Hub connection string (--hub-connection-string or EDGE_HUB_CONNECTION_STRING)"
        )
    verify: Any = ssl_context(args.hub_ca_file) if args.hub_ca_file else True
    return FleetHub(HubConnection.parse(args.hub_connection_string), verify=verify)


def default_rollout_id(version: str, now: datetime | None = None) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-")[:24] or "model"
    return f"{stem}-{(now or datetime.now(UTC)):%Y%m%d%H%M}"


def build_plan(args: argparse.Namespace, priority: int) -> RolloutPlan:
    try:
        return RolloutPlan(
            rollout_id=args.rollout_id or default_rollout_id(args.version),
            version=args.version,
            module=args.module,
            rings=tuple(Ring.parse(text) for text in args.ring),
            promote_percent=args.promote_at,
            failure_limit=FailureLimit.parse(args.max_failed) if args.max_failed else FailureLimit(count=0),
            priority=priority,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise PlanError(f"invalid rollout: {problems}") from None


def cmd_start(args: argparse.Namespace, out: TextIO) -> int:
    if not args.storage_connection_string:
        raise PlanError(
            "no storage connection string (--storage-connection-string or EDGE_STORAGE_CONNECTION_STRING)"
        )
    build_plan(args, priority=0)  # refuse a bad plan before uploading anything
    package = load_package(args.source, version=args.version, file_name=args.file_name)
    with _hub(args) as hub:
        plan = build_plan(
            args, args.priority if args.priority is not None else runner.next_priority(runner.rollouts(hub))
        )
        signature = sign_digest(args.sign.read_bytes(), package.sha256_bytes) if args.sign else None
        model = publish_for_rollout(
            args.storage_connection_string,
            args.container,
            package,
            args.version,
            policy=args.sas_policy,
            valid_for=timedelta(days=args.sas_days),
            ca_file=args.storage_ca_file,
            signature=signature,
        )
        record = runner.start(hub, plan, model)
        _say(
            out,
            args,
            {"event": "started", "rollout": record.rollout_id, "rings": [r.ring.name for r in record.rings]},
        )
        if args.no_wait:
            return 0
        return drive(hub, record.rollout_id, args, out)


def cmd_advance(args: argparse.Namespace, out: TextIO) -> int:
    with _hub(args) as hub:
        if args.watch:
            return drive(hub, args.rollout_id, args, out)
        advanced = runner.advance(hub, args.rollout_id)
        _report(out, args, advanced)
        return _exit_code(advanced.record)


def drive(
    hub: FleetHub,
    rollout_id: str,
    args: argparse.Namespace,
    out: TextIO,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Advance every `--interval` seconds until the rollout is done or halted, or `--timeout` passes."""
    deadline = clock() + args.timeout
    last = ""
    while True:
        advanced = runner.advance(hub, rollout_id)
        line = f"{advanced.decision.step}:{advanced.decision.reason}"
        if line != last:
            _report(out, args, advanced)
            last = line
        if advanced.decision.step is Step.NOTHING or advanced.record.state in ("done", "halted"):
            return _exit_code(advanced.record)
        if clock() + args.interval > deadline:
            _say(
                out,
                args,
                {
                    "event": "still-running",
                    "rollout": rollout_id,
                    "message": f"stopped waiting; `edge-model rollout advance {rollout_id} --watch` goes on",
                },
            )
            return EXIT_STILL_RUNNING
        sleep(args.interval)


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    with _hub(args) as hub:
        found = runner.rollouts(hub)
        if args.rollout_id is None:
            listing = [
                {
                    "id": r.rollout_id,
                    "version": r.version,
                    "state": r.state,
                    "priority": r.priority,
                    "note": r.note,
                }
                for r in sorted(found.values(), key=lambda r: r.priority)
            ]
            out.write(json.dumps(listing, indent=2) + "\n" if args.json else render_rollouts(listing))
            return 0
        record = runner.find(found, args.rollout_id)
        counts = runner.ring_counts(hub, record)
    view = summary([], record, counts)
    out.write(json.dumps(view["rollout"], indent=2) + "\n" if args.json else render(view, fleet=False))
    return 0


def cmd_abort(args: argparse.Namespace, out: TextIO) -> int:
    with _hub(args) as hub:
        record = runner.abort(hub, args.rollout_id, args.reason)
    _say(out, args, {"event": "halted", "rollout": record.rollout_id, "note": record.note})
    return 0


def cmd_delete(args: argparse.Namespace, out: TextIO) -> int:
    with _hub(args) as hub:
        removed = runner.delete(hub, args.rollout_id)
    _say(out, args, {"event": "deleted", "rollout": args.rollout_id, "configurations": removed})
    return 0


def cmd_fleet(args: argparse.Namespace, out: TextIO, *, sleep: Callable[[float], None] = time.sleep) -> int:
    shown = 0
    with _hub(args) as hub:
        while True:
            view = fleet_view(hub, args)
            if args.json:
                out.write(json.dumps(view) + "\n")
            else:
                if args.watch and out.isatty():
                    out.write("\x1b[2J\x1b[H")
                out.write(render(view, devices=args.devices))
            out.flush()
            shown += 1
            if not args.watch or (args.count and shown >= args.count):
                return 0
            sleep(args.watch)


def fleet_view(hub: FleetHub, args: argparse.Namespace) -> dict[str, Any]:
    found = runner.rollouts(hub)
    record: RolloutRecord | None = None
    if args.rollout:
        record = runner.find(found, args.rollout)
    elif found:
        record = max(found.values(), key=lambda r: r.priority)
    counts: dict[int, RingCounts] = {}
    members: dict[str, set[str]] = {}
    if record is not None:
        by_index = runner.started_members(hub, record)
        counts = runner.ring_counts(hub, record, by_index)
        members = {ring.ring.name: by_index[ring.index] for ring in record.rings if ring.index in by_index}
    loaders = hub.query(f"SELECT * FROM devices.modules WHERE moduleId='{args.module}'")
    inference = hub.query(f"SELECT * FROM devices.modules WHERE moduleId='{args.inference_module}'")
    return summary(device_rows(loaders, inference, members), record, counts)


def _report(out: TextIO, args: argparse.Namespace, advanced: runner.Advanced) -> None:
    _say(
        out,
        args,
        {
            "event": str(advanced.decision.step),
            "rollout": advanced.record.rollout_id,
            "state": advanced.record.state,
            "message": advanced.decision.reason,
            "rings": {ring.ring.name: ring.state.value for ring in advanced.record.rings},
        },
    )


def _say(out: TextIO, args: argparse.Namespace, event: dict[str, Any]) -> None:
    if args.json:
        out.write(json.dumps(event) + "\n")
    else:
        message = event.get("message") or event.get("note") or ""
        extra = {k: v for k, v in event.items() if k not in ("event", "rollout", "message", "note")}
        out.write(
            f"{event['event']} {event['rollout']}: {message} {json.dumps(extra) if extra else ''}".rstrip()
            + "\n"
        )
    out.flush()


def _exit_code(record: RolloutRecord) -> int:
    if record.state == "halted":
        return EXIT_HALTED
    if record.state == "done":
        return 0
    return EXIT_STILL_RUNNING if record.state == "running" else 2
