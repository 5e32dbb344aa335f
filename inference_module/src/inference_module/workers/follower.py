"""`python -m inference_module.workers.follower`: a worker the leader started (never run by hand).

It reads the same `INFERENCE_` settings, serves the connections the leader hands it, builds and
switches models when the leader says so, and asks the leader for reloads. It has no edgeHub connection
and loads nothing by itself. When the leader goes away it shuts down.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from edge_shared.logs import configure_logging, log_context
from inference_module.access_log import install_access_log_fields
from inference_module.api import create_app
from inference_module.errors import InferenceError, ModelError, WorkerFailedError
from inference_module.server import server_config
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import LoadedModel, ModelIdentity, ModelSlot
from inference_module.workers.channel import ANSWER_SLACK_SECONDS, Channel, ChannelClosedError
from inference_module.workers.handoff import HandedConnections, HandedServer
from inference_module.workers.messages import Abort, Commit, Ping, Prepare, Refused, Reload, Reply, Request

logger = logging.getLogger("inference_module")

_RELOAD_ALLOWANCE = 30.0


class FollowerLink:
    """The follower's half of the channel: the leader's requests land here, ours go out from here."""

    def __init__(self, sock: socket.socket) -> None:
        self.channel = Channel(sock, self._answer, name="leader")
        self._service: ModelService | None = None
        self._slot: ModelSlot | None = None
        self._prepared: LoadedModel | None = None
        self._reload_within = _RELOAD_ALLOWANCE

    async def start(self, service: ModelService, slot: ModelSlot, load_timeout: float, workers: int) -> None:
        self._service, self._slot = service, slot
        # The leader's build, then every follower's in turn (each bounded by the load timeout).
        self._reload_within = (workers + 1) * (load_timeout + ANSWER_SLACK_SECONDS) + _RELOAD_ALLOWANCE
        service.delegate_reloads(self.reload)
        service.add_refused_listener(self.refused)
        await self.channel.start()

    async def stop(self) -> None:
        self._drop_prepared()
        await self.channel.close()

    async def reload(self) -> ModelIdentity:
        """`POST /model/reload` here: the leader swaps every worker, this one included."""
        try:
            reply = await self.channel.call(Reload(), self._reload_within)
        except (ChannelClosedError, TimeoutError) as exc:
            raise WorkerFailedError(
                f"the leading worker did not answer the reload: {type(exc).__name__}"
            ) from exc
        if not reply.ok:
            raise reply.error()
        assert self._slot is not None
        model = self._slot.current  # committed here before the leader answered
        if model is None:
            raise WorkerFailedError("the reload succeeded but this worker serves no model")
        return model.identity

    async def refused(self, version: str, exc: InferenceError) -> None:
        """The serving model failed too many requests here: the leader tells the loader."""
        try:
            await self.channel.call(
                Refused(version=version, code=exc.code, message=str(exc)[:512]), _RELOAD_ALLOWANCE
            )
        except (ChannelClosedError, TimeoutError):
            logger.exception("could not tell the leading worker of a failing model")

    async def _answer(self, request: Request) -> Reply:
        assert self._service is not None
        if isinstance(request, Prepare):
            self._drop_prepared()
            with log_context(model_version=request.load.version):  # `worker` is set for the whole process
                try:
                    self._prepared = await self._service.build(request.load.request())
                except ModelError as exc:
                    logger.error("model refused in this worker: %s", exc, extra={"code": exc.code})
                    return Reply.failed(exc)
            return Reply(ok=True, version=request.load.version)
        if isinstance(request, Commit):
            prepared, self._prepared = self._prepared, None
            if prepared is None:
                return Reply.failed(WorkerFailedError("nothing was prepared to commit"))
            self._service.serve(prepared)
            return Reply(ok=True, version=prepared.identity.version)
        if isinstance(request, Abort):
            self._drop_prepared()
            return Reply(ok=True)
        if isinstance(request, Ping):
            return Reply(ok=True)
        return Reply(ok=False, code="bad_request", message=f"the leader cannot ask for {request.op}")

    def _drop_prepared(self) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            prepared.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--handoff-fd", type=int, required=True)
    args = parser.parse_args(argv)
    channel = socket.socket(fileno=args.channel_fd)
    handoff = socket.socket(fileno=args.handoff_fd)
    try:
        settings = InferenceSettings()
    except ValidationError:
        return 2  # the leader read the same settings; it has logged why
    configure_logging(settings.log_level, settings.log_format)
    install_access_log_fields()
    link = FollowerLink(channel)
    app = create_app(settings, follower=link)
    config = server_config(app, settings)
    server: HandedServer

    def leader_gone() -> None:
        logger.info("the leading worker has gone; stopping")
        server.should_exit = True

    server = HandedServer(config, HandedConnections(handoff, leader_gone))
    with log_context(worker=args.index):
        server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
