"""`python -m edge_tools.images build|compose-test|sizes|arm64-smoke` (`make images`, `make compose-test`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_tools.fixtures import ensure_fixtures
from edge_tools.images.arm64 import arm64_smoke
from edge_tools.images.build import IMAGES, REPO_ROOT, Timed, build_images
from edge_tools.images.compose import ComposeTest, ComposeTestFailed
from edge_tools.images.engine import EngineError, select_engine
from edge_tools.images.sizes import markdown, measure

logger = logging.getLogger("edge_tools.images")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def print_timings(title: str, timings: Sequence[Timed]) -> None:
    say(f"== {title}")
    for timed in timings:
        say(f"   {timed.name:<28} {timed.seconds:7.1f} s")
    say(f"   {'total':<28} {sum(t.seconds for t in timings):7.1f} s")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m edge_tools.images", description=__doc__)
    root.add_argument(
        "--engine",
        choices=["podman", "docker"],
        default=None,
        help="container engine (default: Docker when its daemon answers, else podman, installed from "
        "Debian when missing)",
    )
    root.add_argument(
        "--build-dir", type=Path, default=REPO_ROOT / "build", help="work folder (default: build/)"
    )
    commands = root.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the images (make images)")
    names = ", ".join(spec.name for spec in IMAGES)
    build.add_argument("images", nargs="*", metavar="IMAGE", help=f"{names} (default: all)")
    build.add_argument(
        "--official-base",
        action="store_true",
        help="build on the Dockerfiles' default bases from a registry instead of the local Debian ones",
    )
    compose = commands.add_parser(
        "compose-test",
        help="run docker-compose.test.yml end to end with the built images (make compose-test)",
    )
    compose.add_argument(
        "--timeout", type=float, default=180.0, help="seconds each waiting stage may take (default 180)"
    )
    commands.add_parser("sizes", help="print the images' sizes and largest layers as a Markdown table")
    arm = commands.add_parser(
        "arm64-smoke",
        help="build the inference image for linux/arm64 under QEMU and serve two models with it",
    )
    arm.add_argument(
        "--timeout", type=float, default=900.0, help="seconds for each emulated /score (default 900)"
    )
    return root


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    unknown = sorted(set(getattr(args, "images", [])) - {spec.name for spec in IMAGES})
    if unknown:
        cli.error(f"unknown image(s) {', '.join(unknown)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        engine = select_engine(args.engine, args.build_dir)
        say(f"== container engine: {engine.name}")
        if args.command == "build":
            timings = build_images(
                engine,
                names=args.images or None,
                local_base=not args.official_base,
                work_dir=args.build_dir / "images",
                report=say,
            )
            print_timings("build times", timings)
        elif args.command == "arm64-smoke":
            catalog = ensure_fixtures(args.build_dir / "fixtures")
            timings = arm64_smoke(
                engine, catalog, work_dir=args.build_dir / "images", report=say, timeout=args.timeout
            )
            print_timings("arm64 build and smoke test", timings)
            say("== arm64 smoke test passed")
        elif args.command == "sizes":
            say(markdown([measure(engine, spec.tag) for spec in IMAGES]))
        elif args.command == "compose-test":
            test = ComposeTest(engine, say, timeout=args.timeout)
            try:
                test.run()
            finally:
                print_timings("compose test stages", test.timings)
            say("== compose test passed")
    except (EngineError, ComposeTestFailed) as exc:
        logger.error("%s", exc)
        return 1
    return 0
