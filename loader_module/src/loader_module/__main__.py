"""`python -m loader_module`: settings → logging → edgeHub client → service, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from pydantic import ValidationError

from edge_shared.azure_edgehub import AzureEdgeHubClient
from edge_shared.edge_env import missing_edge_environment
from edge_shared.logs import configure_logging
from edge_shared.settings import settings_help, settings_problems
from loader_module.edge import run_loader
from loader_module.settings import LoaderSettings

logger = logging.getLogger("loader_module")


async def _main(settings: LoaderSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_loader(settings, AzureEdgeHubClient(), stop)


SUMMARY = (
    "python -m loader_module: the loader IoT Edge module. It follows its module twin's desired properties,\n"
    "downloads, verifies and installs the model ZIP they name into the model repository, and announces it\n"
    "on output DLModelOutput (docs/loader.md)."
)


def main(argv: list[str] | None = None) -> int:
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        sys.stdout.write(settings_help(LoaderSettings, SUMMARY))
        return 0
    try:
        settings = LoaderSettings()  # model_root comes from the environment
    except ValidationError as exc:
        configure_logging()
        logger.error("invalid LOADER_ settings", extra={"problems": settings_problems(LoaderSettings, exc)})
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if (problem := missing_edge_environment(os.environ)) is not None:
        logger.error(problem)
        return 2
    # httpx logs every request URL at INFO, SAS query included; the formatter would redact it, but
    # the line says nothing the loader's own logs do not.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logger.info("loader starting", extra={"model_root": str(settings.model_root)})
    asyncio.run(_main(settings))
    logger.info("loader stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
