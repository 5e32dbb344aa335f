"""`python -m inference_module`: settings → logging → one uvicorn worker (the model lives in this process)."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from edge_shared.logs import configure_logging
from inference_module.access_log import install_access_log_fields
from inference_module.api import create_app
from inference_module.server import server_config
from inference_module.settings import InferenceSettings

logger = logging.getLogger("inference_module")


def main() -> int:
    try:
        settings = InferenceSettings()
    except ValidationError as exc:
        configure_logging()
        logger.error("invalid settings: %s", exc)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    install_access_log_fields()
    config = server_config(create_app(settings), settings)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
