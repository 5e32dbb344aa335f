"""MLServer's custom runtime around the same pipeline: a peer row of the serving section.

`edge_tools.bench.peers` writes MLServer's settings (ports, `parallel_workers`, MLServer's own scaling
knob) and runs `mlserver start` in the peers' environment; this class is the model's `implementation`.
A request is the Open Inference Protocol's JSON with one BYTES input (the image, base64); the answer is
one BYTES output holding the native body's JSON. Imports MLServer, which the modules' environment lacks.
"""

from __future__ import annotations

import base64
from pathlib import Path

from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput  # type: ignore[import-not-found]
from pydantic_core import to_json

from edge_tools.bench.in_process import InProcess
from edge_tools.bench.label_arg import label_path


class PipelineRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        parameters = self.settings.parameters
        extra = parameters.extra or {}
        self._local = InProcess(Path(parameters.uri), label_path(extra["labels"]), extra["runtime"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        # MLServer's custom-runtime pattern: the model runs inside `predict`, in a worker process.
        data = base64.b64decode(payload.inputs[0].data.root[0])
        body = to_json(self._local.native(data)).decode()
        output = ResponseOutput(name="detections", shape=[1], datatype="BYTES", data=[body])
        return InferenceResponse(model_name=self.name, outputs=[output])
