"""Start-up: serve what `current` names, or else the newest installed version that loads.

`current` can name a version that never served: the loader switched to it before this module refused it,
and this module restarted since. Serving nothing for good while a version that served is still installed
helps no one; the fallback is reported in `ActiveModel` (`fallbackFrom`, `fallbackReason`) and the refusal
is sent to the loader, which puts `current` back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from edge_shared.errors import RepositoryError
from edge_shared.repository import MANIFEST_FILE, ModelRepository
from inference_module.errors import ModelError, NoCurrentModelError
from inference_module.files import require_regular
from inference_module.service import ModelService
from inference_module.slot import ModelIdentity

logger = logging.getLogger(__name__)


async def load_at_startup(service: ModelService) -> ModelIdentity | None:
    """The identity now serving, or None (nothing installed, or nothing installed loads)."""
    try:
        return await service.load_current("startup")
    except NoCurrentModelError as exc:
        if exc.__cause__ is None:
            logger.info("no model installed yet; not ready until one arrives")
            return None
        # installed but unreadable (a broken manifest, a volume this user may not read): say why
        logger.error("the current model cannot be read: %s", exc, extra={"code": exc.code})
        failure: ModelError = exc
    except ModelError as exc:
        logger.error("the current model could not be loaded: %s", exc, extra={"code": exc.code})
        failure = exc
    return await _fall_back(service, failure)


async def _fall_back(service: ModelService, failure: ModelError) -> ModelIdentity | None:
    current, installed = await asyncio.to_thread(_current_and_installed, service.repository)
    for version in installed:  # newest install first
        if version == current:
            continue
        try:
            identity = await service.load_fallback(version, instead_of=current, reason=failure.code)
        except ModelError:
            continue  # logged and counted by the service; try the next older one
        logger.warning(
            "serving an older installed version because the current one cannot be served",
            extra={"model_version": version, "fallback_from": current, "fallback_reason": failure.code},
        )
        return identity
    logger.error("no installed version could be loaded; not ready until a new one arrives")
    return None


def _current_and_installed(repository: ModelRepository) -> tuple[str | None, list[str]]:
    """What `current` names (None when unreadable) and the installed versions, newest install first.

    Only regular files are read: a FIFO as `current` or as a manifest would block the read for ever.
    """
    try:
        require_regular(repository.current_path)
        current = repository.current_version()
    except (ModelError, RepositoryError):
        current = None
    found: list[tuple[datetime, str]] = []
    if repository.models_dir.is_dir():
        for entry in repository.models_dir.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                require_regular(entry / MANIFEST_FILE)
                manifest = repository.read_manifest(entry.name)
            except (ModelError, RepositoryError, ValueError):
                continue
            found.append((manifest.installed_at, manifest.version))
    return current, [version for _, version in sorted(found, reverse=True)]
