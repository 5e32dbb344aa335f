"""`python -m inference_module`: settings → logging → one uvicorn worker (the model lives in this process)."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from edge_shared.logs import configure_logging
from edge_shared.settings import settings_help, settings_problems
from inference_module.access_log import install_access_log_fields
from inference_module.api import create_app
from inference_module.server import server_config
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
    install_access_log_fields()
    config = server_config(create_app(settings), settings)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
