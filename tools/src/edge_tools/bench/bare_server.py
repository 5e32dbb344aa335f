"""A textbook FastAPI endpoint around the same pipeline: the reference point for our serving overhead.

`python -m edge_tools.bench.bare_server MODEL LABELS RUNTIME PORT` (started by the serving section): awaits
`request.body()`, runs decode + detect + select in `run_in_threadpool`, returns a dict for FastAPI to
serialise, under uvicorn with the same defaults (uvloop + httptools when installed).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from edge_tools.bench.in_process import InProcess
from edge_tools.bench.label_arg import label_path


def bare_app(model: Path, labels: Path | None, runtime: str) -> FastAPI:
    local = InProcess(model, labels, runtime)
    app = FastAPI()

    @app.post("/score")
    async def score(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(local.native, await request.body())

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
