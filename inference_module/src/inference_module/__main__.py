"""`python -m inference_module`: settings → logging → uvicorn (with `INFERENCE_WORKERS` > 1, the leading
worker of several processes; the model lives in each)."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from edge_shared.logs import configure_logging
from edge_shared.settings import settings_help, settings_problems
from inference_module.settings import InferenceSettings

logger = logging.getLogger("inference_module")


SUMMARY = (
    "python -m inference_module: the inference IoT Edge module. It serves the model the repository's\n"
    "`current` names over HTTP (POST /score with an image: JSON detections) and swaps in the models the\n"
    "loader announces, without failing a request (docs/inference.md)."
)


def main(argv: list[str] | None = None) -> int:
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        sys.stdout.write(settings_help(InferenceSettings, SUMMARY))
        return 0
    try:
        settings = InferenceSettings()
    except ValidationError as exc:
        configure_logging()
        problems = settings_problems(InferenceSettings, exc)
        logger.error("invalid INFERENCE_ settings", extra={"problems": problems})
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # The app is imported only now: with several workers, the metrics must know their shared directory
    # before prometheus_client is first imported.
    from inference_module.access_log import install_access_log_fields

    install_access_log_fields()
    if settings.workers > 1:
        from inference_module.workers.leader import run_leader

        return run_leader(settings)
    import uvicorn

    from inference_module.api import create_app
    from inference_module.server import server_config

    uvicorn.Server(server_config(create_app(settings), settings)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
