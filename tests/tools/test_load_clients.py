"""The demo's load generator (also used by the system tests): answers in order per client, counts derived."""

from __future__ import annotations

import itertools
import threading
import time

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from edge_tools.stack.demo import Answer, LoadClients
from tests.inference.helpers import serve_in_thread


def flaky_scorer() -> FastAPI:
    """Answers v1 (person), then v2 (car); every third request is a 503."""
    app = FastAPI()
    counter = itertools.count()
    lock = threading.Lock()

    @app.post("/score")
    async def score() -> Response:
        with lock:
            n = next(counter)
        if n % 3 == 2:
            return JSONResponse({"error": {"code": "busy", "message": "busy"}}, status_code=503)
        version, label = ("v1", "person") if n < 30 else ("v2", "car")
        return JSONResponse({"model": {"version": version}, "detections": [{"label": label}]})

    return app


def test_answers_are_kept_per_client_in_order_and_counted() -> None:
    with serve_in_thread(flaky_scorer()) as url, LoadClients(f"{url}/score", b"jpeg", clients=3) as load:
        for _ in range(600):  # poll the condition, at most 30 s
            if load.count("v2") >= 10:
                break
            time.sleep(0.05)
    answers = [answer for own in load.answers for answer in own]
    assert load.count("v2") >= 10 and load.errors == []
    assert load.total == len(answers)
    assert load.failed == sum(1 for a in answers if a.status == 503) > 0
    assert load.versions() == {"v1": 20, "v2": load.count("v2")}
    assert Answer(200, "v1", ("person",)) in answers and Answer(503) in answers
    for own in load.answers:
        versions = [a.version for a in own if a.status == 200]
        assert versions == sorted(versions)  # the server only moves forward, so each client does too
