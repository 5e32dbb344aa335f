"""The leading worker's process: the module's port, its followers and their shared metrics directory."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from inference_module.settings import InferenceSettings

logger = logging.getLogger("inference_module")


def run_leader(settings: InferenceSettings) -> int:
    """Serve with `settings.workers` processes until stopped (SIGTERM/SIGINT, as with one)."""
    try:
        metrics_dir = Path(tempfile.mkdtemp(prefix="inference-metrics-"))
    except OSError as exc:
        logger.error(
            "several workers need a writable temporary directory for their shared metrics (TMPDIR): %s",
            exc,
        )
        return 1
    # Read by prometheus_client when first imported, here and in every follower: metrics of all workers
    # are summed on every worker's /metrics.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        from inference_module.api import create_app
        from inference_module.server import server_config
        from inference_module.workers.handoff import HandedServer
        from inference_module.workers.pool import LeaderConnections, WorkerPool

        try:
            listener = socket.create_server((settings.host, settings.port), backlog=2048)
        except OSError as exc:
            logger.error("cannot listen on the port: %s", exc, extra={"port": settings.port})
            return 1
        pool = WorkerPool(settings, metrics_dir=metrics_dir)
        app = create_app(settings, peers=pool)
        server = HandedServer(server_config(app, settings), LeaderConnections(listener, pool))
        logger.info(
            "serving with %d worker processes",
            settings.workers,
            extra={"host": settings.host, "port": listener.getsockname()[1]},
        )
        server.run()
        return 0
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
