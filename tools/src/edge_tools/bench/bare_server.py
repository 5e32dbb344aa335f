"""A textbook FastAPI endpoint around the same pipeline: the reference point for our serving overhead.

`python -m edge_tools.bench.bare_server MODEL LABELS RUNTIME PORT` (started by the serving section): awaits
`request.body()`, runs decode + detect + select in `run_in_threadpool`, returns a dict for FastAPI to
serialise, under uvicorn with the same defaults (uvloop + httptools when installed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from edge_tools.bench.in_process import InProcess
from edge_tools.bench.label_arg import label_path
from inference_module.imaging import decode_image
from inference_module.postprocess import native_body, select_detections


def bare_app(model: Path, labels: Path | None, runtime: str) -> FastAPI:
    local = InProcess(model, labels, runtime)
    loaded = local.slot.current
    if loaded is None:
        raise RuntimeError("the model did not load")
    app = FastAPI()

    def pipeline(data: bytes) -> dict[str, Any]:
        started = time.perf_counter()
        image = decode_image(data, local.limits)
        found = select_detections(
            loaded.detector.detect(image), loaded.labels, threshold=0.5, max_detections=100
        )
        elapsed = (time.perf_counter() - started) * 1000
        return native_body(found, version="bench", runtime=runtime, size=image.size, inference_ms=elapsed)

    @app.post("/score")
    async def score(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(pipeline, await request.body())

    @app.get("/health/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: list[str]) -> int:
    import uvicorn

    model, labels, runtime, port = argv
    app = bare_app(Path(model), label_path(labels), runtime)
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(port), log_config=None)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
