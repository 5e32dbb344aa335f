"""LitServe around the same pipeline: a peer row of the serving section (run in the peers' environment).

`python -m edge_tools.bench.peer_litserve MODEL LABELS RUNTIME PORT WORKERS` (started by
`edge_tools.bench.peers`): LitServe's API server takes `POST /predict` with `{"image": <base64>}`, its
worker processes (WORKERS, LitServe's own scaling knob) decode, detect and select, and LitServe
serialises the native body. Imports LitServe, which the modules' environment does not have. (No
`from __future__ import annotations`: LitServe reads `decode_request`'s annotation as a class.)
"""

import base64
import sys
from pathlib import Path
from typing import Any

import litserve as ls  # type: ignore[import-not-found]
from pydantic import BaseModel

from edge_tools.bench.in_process import InProcess
from edge_tools.bench.label_arg import label_path


class ImageRequest(BaseModel):
    image: str
    """The image file, base64."""


class PipelineAPI(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, model: Path, labels: Path | None, runtime: str) -> None:
        super().__init__()
        self._model, self._labels, self._runtime = model, labels, runtime
        self._local: InProcess | None = None

    def setup(self, device: str) -> None:
        del device
        self._local = InProcess(self._model, self._labels, self._runtime)

    def decode_request(self, request: ImageRequest) -> bytes:
        return base64.b64decode(request.image)

    def predict(self, x: bytes) -> dict[str, Any]:
        assert self._local is not None
        return self._local.native(x)

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def main(argv: list[str]) -> int:
    model, labels, runtime, port, workers = argv
    api = PipelineAPI(Path(model), label_path(labels), runtime)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=int(workers), timeout=False)
    server.run(host="127.0.0.1", port=int(port), generate_client_file=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
