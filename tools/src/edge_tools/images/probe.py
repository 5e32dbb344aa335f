"""`python -m edge_tools.images.probe`: HTTP checks run inside the compose network (in the simulator's
container, which carries edge-tools), so the host never needs a published port or a bridge address.

    score URL IMAGE            one POST /score; prints the JSON answer, exit 1 unless 200
    load URL IMAGE --since OLD --until NEW
                               4 clients post; `warm` after 20 answers from OLD, then on until 20
                               from NEW; prints a JSON summary
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from edge_tools.stack.demo import LoadClients


def score(url: str, image: Path) -> int:
    response = httpx.post(url, content=image.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30)
    sys.stdout.write(json.dumps({"status": response.status_code, "body": response.json()}) + "\n")
    return 0 if response.status_code == 200 else 1


def load(url: str, image: Path, *, since: str, until: str, after: int, max_seconds: float) -> int:
    """Post continuously: print `warm` once `after` answers came from version `since` (the caller then
    publishes), and stop once `after` answers came from version `until` (the swap happened meanwhile)."""
    deadline = time.monotonic() + max_seconds
    with LoadClients(url, image.read_bytes(), clients=4, max_seconds=max_seconds) as clients:
        for version in (since, until):
            while clients.count(version) < after and time.monotonic() < deadline:
                time.sleep(0.05)
            if version == since:
                sys.stdout.write("warm\n")
                sys.stdout.flush()
    summary = {
        "total": clients.total,
        "failed": clients.failed,
        "errors": clients.errors[:10],
        "versions": clients.versions(),
        "reached": clients.count(until) >= after,
        "went_back": clients.went_back(until),
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0 if summary["reached"] and not summary["failed"] and not summary["went_back"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    root = argparse.ArgumentParser(prog="python -m edge_tools.images.probe", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    one = commands.add_parser("score")
    many = commands.add_parser("load")
    for command in (one, many):
        command.add_argument("url")
        command.add_argument("image", type=Path)
    many.add_argument("--since", required=True, help="the serving version: `warm` after its answers")
    many.add_argument("--until", required=True, help="version whose answers end the run")
    many.add_argument("--after", type=int, default=20, help="answers of each version to wait for")
    many.add_argument("--max-seconds", type=float, default=180.0)
    args = root.parse_args(argv)
    if args.command == "score":
        return score(args.url, args.image)
    return load(
        args.url,
        args.image,
        since=args.since,
        until=args.until,
        after=args.after,
        max_seconds=args.max_seconds,
    )


if __name__ == "__main__":
    sys.exit(main())
