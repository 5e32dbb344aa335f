"""`python -m edge_tools.stack demo|up`: the local stack (architecture §11)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path

from edge_shared.logs import configure_logging
from edge_tools.stack.demo import run_demo
from edge_tools.stack.processes import ProcessFailed
from edge_tools.stack.stack import REPO_ROOT, LocalStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_tools.stack")
    parser.add_argument("command", choices=["demo", "up"])
    parser.add_argument("--workdir", type=Path, help="where state and logs go (default: a temp folder)")
    parser.add_argument("--fixtures", type=Path, default=REPO_ROOT / "build" / "fixtures")
    parser.add_argument("--echo", action="store_true", help="print every process's log lines")
    args = parser.parse_args(argv)
    configure_logging("WARNING", "text")
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="edge-stack-") as tmp:
        workdir = args.workdir or Path(tmp)
        try:
            if args.command == "demo":
                return run_demo(workdir, args.fixtures, sys.stdout)
            return run_up(workdir, echo=args.echo)
        except ProcessFailed as exc:
            sys.stderr.write(f"stack: {exc}\n")
            return 1
        except KeyboardInterrupt:
            sys.stderr.write("stack: interrupted; everything stopped\n")
            return 130


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM behaves like Ctrl-C, so the stack is torn down either way."""
    raise KeyboardInterrupt


def run_up(workdir: Path, *, echo: bool) -> int:
    with LocalStack(workdir, echo=sys.stdout if echo else None, log_format="text") as stack:
        e = stack.endpoints
        (workdir / "storage.connstr").write_text(e.storage_connection_string + "\n", encoding="utf-8")
        sys.stdout.write(
            "\n".join(
                [
                    "stack is up (Ctrl-C stops everything):",
                    f"  inference API   {e.inference_url}/  (docs: {e.inference_url}/docs)",
                    f"  model root      {e.model_root}",
                    f"  logs            {stack.logs}",
                    f"  device id       {e.device_id}",
                    "  publish with:",
                    f'    export EDGE_HUB_CONNECTION_STRING="$(cat {e.connstr_file})"',
                    f"    export EDGE_HUB_CA_FILE={e.hub_ca_file} EDGE_DEVICE_ID={e.device_id}",
                    f"    export EDGE_STORAGE_CA_FILE={e.storage_ca_file}",
                    f'    export EDGE_STORAGE_CONNECTION_STRING="$(cat {workdir / "storage.connstr"})"',
                    "    .venv/bin/edge-model publish build/fixtures/zips/tiny-yolo-1.zip \\",
                    "        --version tiny-yolo-1",
                    "",
                ]
            )
        )
        sys.stdout.flush()
        stop = threading.Event()
        while not stop.wait(1.0):
            for process in stack.processes.values():
                if not process.running():
                    raise process.failure(f"exited with code {process.returncode()}")
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    raise SystemExit(main())
