"""The walkthrough of architecture §11: publish v1, detect, publish v2 under load, show the swap, stop.

Every step waits on an observable fact (a reported property, `/model`, a response) with a deadline,
so a broken step fails with a clear message instead of hanging.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx

from edge_tools.fixtures import ensure_fixtures
from edge_tools.fixtures.catalog import FixtureCatalog
from edge_tools.publish.blob import upload_package
from edge_tools.publish.package import load_package
from edge_tools.stack.stack import REPO_ROOT, LocalStack

#: (model id, photograph id, annotated picture's name): real detectors on real photographs. Coral's COCO
#: SSD (Apache-2.0) with the label file it ships with; never the AGPL YOLOv8n, which is for tests only.
REAL_SHOWS = (
    ("face-detector-1.0", "astronaut-png", "demo-face-annotated.jpg"),
    ("coco-ssd-mobilenet-v2", "chelsea-png", "demo-coco-annotated.jpg"),
)


@dataclass(frozen=True)
class Answer:
    """One request's outcome: HTTP status, and for a 200 the model version and detected labels."""

    status: int
    version: str = ""
    labels: tuple[str, ...] = ()


class LoadClients:
    """N threads posting an image in a loop until stopped (bounded by `max_seconds`), each client's
    answers kept in order (so a test can check no client goes back to an older model)."""

    def __init__(self, url: str, image: bytes, *, clients: int = 4, max_seconds: float = 120.0) -> None:
        self.url, self.image, self.max_seconds = url, image, max_seconds
        self.answers: list[list[Answer]] = [[] for _ in range(clients)]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> LoadClients:
        for index, own in enumerate(self.answers):
            thread = threading.Thread(target=self._run, args=(own,), name=f"load-{index}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def count(self, version: str) -> int:
        """Answers from `version` so far."""
        return sum(1 for own in self.answers for answer in list(own) if answer.version == version)

    @property
    def total(self) -> int:
        return sum(len(own) for own in self.answers) + len(self.errors)

    @property
    def failed(self) -> int:
        return self.total - sum(1 for own in self.answers for answer in own if answer.status == 200)

    def went_back(self, version: str) -> bool:
        """True when some client was answered by another version after an answer from `version`."""
        for own in self.answers:
            versions = [answer.version for answer in list(own) if answer.version]
            if versions != sorted(versions, key=lambda v: v == version):
                return True
        return False

    def versions(self) -> dict[str, int]:
        return dict(Counter(answer.version for own in self.answers for answer in own if answer.version))

    def _run(self, own: list[Answer]) -> None:
        # Each client appends only to its own list (list.append is atomic), so no lock is needed.
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.post(
                        self.url, content=self.image, headers={"Content-Type": "image/jpeg"}
                    )
                except httpx.HTTPError as exc:
                    self.errors.append(type(exc).__name__)
                    continue
                if not response.is_success:
                    own.append(Answer(response.status_code))
                    continue
                body = response.json()
                labels = tuple(detection["label"] for detection in body.get("detections", []))
                own.append(Answer(response.status_code, body.get("model", {}).get("version", "?"), labels))


def publish(stack: LocalStack, zip_path: Path, version: str) -> dict[str, Any]:
    """What `edge-model publish` does, in process (same functions)."""
    endpoints = stack.endpoints
    package = load_package(zip_path, version=version)
    url = upload_package(
        endpoints.storage_connection_string,
        "models",
        package,
        sas_ttl=timedelta(hours=1),
        ca_file=str(endpoints.storage_ca_file),
    )
    # A twin PATCH merges: clear what an earlier (signed or delta) publish left.
    desired = package.desired(url, version, clear_unset=True)
    with stack.hub() as hub:
        return hub.patch_module_desired(endpoints.device_id, "loader", desired)


def wait_until_serving(stack: LocalStack, version: str, *, timeout: float = 120.0) -> dict[str, Any]:
    def loader_ready() -> bool:
        update = stack.reported("loader").get("ModelUpdate") or {}
        if update.get("version") == version and update.get("state") in ("failed", "rejected"):
            raise RuntimeError(f"{version} was {update.get('state')}: {update.get('error')}")
        return bool(update.get("version") == version and update.get("state") == "ready")

    stack.wait_for(f"the loader to install {version}", loader_ready, timeout=timeout)

    def serving() -> dict[str, Any] | None:
        response = httpx.get(f"{stack.endpoints.inference_url}/model", timeout=5.0)
        body: dict[str, Any] = response.json() if response.is_success else {}
        return body if body.get("version") == version else None

    result: dict[str, Any] = stack.wait_for(f"inference to serve {version}", serving, timeout=timeout)
    return result


def describe(detections: list[dict[str, Any]]) -> str:
    if not detections:
        return "    (no detections)"
    lines = []
    for det in detections:
        box = det["box"]
        lines.append(
            f"    {det['label']:<10} score {det['score']:.2f}  box left {box['left']:.3f}"
            f" top {box['top']:.3f} width {box['width']:.3f} height {box['height']:.3f}"
        )
    return "\n".join(lines)


def show_real_detector(
    stack: LocalStack,
    catalog: FixtureCatalog,
    artifacts: Path,
    say: Callable[[str], None],
    show: tuple[str, str, str],
) -> None:
    """Publish a real pretrained detector and show what it finds in a real photograph, boxes drawn."""
    model_id, photo_id, picture_name = show
    model = catalog.model(model_id)
    photo = catalog.image(photo_id)
    url = stack.endpoints.inference_url
    say(f"== publishing {model.zip_name} ({', '.join(model.zip_members)}): {model.description}")
    t0 = time.monotonic()
    publish(stack, catalog.path(model.zip_file), model.id)
    served = wait_until_serving(stack, model.id)
    say(f"   serving after {time.monotonic() - t0:.1f} s, class names from the {served['labels_source']}")
    data = catalog.path(photo.file).read_bytes()
    response = httpx.post(f"{url}/score", content=data, headers={"Content-Type": "image/png"}, timeout=30.0)
    response.raise_for_status()
    say(f"== POST /score with the photograph {photo.file} ({photo.width}x{photo.height}):")
    say(describe(response.json()["detections"]))
    annotated = httpx.post(
        f"{url}/score/annotated", content=data, headers={"Content-Type": "image/png"}, timeout=30.0
    )
    annotated.raise_for_status()
    artifacts.mkdir(parents=True, exist_ok=True)
    picture = artifacts / picture_name
    picture.write_bytes(annotated.content)
    say(f"   boxes drawn by /score/annotated: {picture}")


def run_demo(
    workdir: Path, fixtures_root: Path, out: TextIO, *, artifacts: Path = REPO_ROOT / "build" / "artifacts"
) -> int:
    catalog: FixtureCatalog = ensure_fixtures(fixtures_root)
    v1, v2 = catalog.model("tiny-yolo-1"), catalog.model("tiny-yolo-2")
    image = catalog.image("one-square-jpeg")
    image_bytes = catalog.path(image.file).read_bytes()

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    say("== starting Azurite, the edgeHub simulator, loader and inference (logs: %s)" % (workdir / "logs"))
    started = time.monotonic()
    with LocalStack(workdir) as stack:
        url = stack.endpoints.inference_url
        say(f"   up in {time.monotonic() - started:.1f} s; inference at {url}")

        say(f"== publishing {v1.zip_name} as version {v1.id}")
        t0 = time.monotonic()
        publish(stack, catalog.path(v1.zip_file), v1.id)
        model = wait_until_serving(stack, v1.id)
        elapsed = time.monotonic() - t0
        say(f"   installed by the loader and served ({model['runtime']}) after {elapsed:.1f} s")

        truth = image.boxes[0].normalized
        say(
            f"== POST /score with {image.file} (truth: a white square at left {truth.left:.3f}"
            f" top {truth.top:.3f} width {truth.width:.3f} height {truth.height:.3f})"
        )
        response = httpx.post(f"{url}/score", content=image_bytes, headers={"Content-Type": "image/jpeg"})
        response.raise_for_status()
        body = response.json()
        say(f"   model {body['model']['version']}, {body['inference_ms']:.1f} ms:")
        say(describe(body["detections"]))

        say(f"== publishing {v2.id} while 4 clients post images continuously")
        with LoadClients(f"{url}/score", image_bytes) as load:
            t0 = time.monotonic()
            publish(stack, catalog.path(v2.zip_file), v2.id)
            wait_until_serving(stack, v2.id)
            swap_seconds = time.monotonic() - t0
            settle_until = time.monotonic() + 2.0
            while time.monotonic() < settle_until and load.count(v2.id) < 20:
                time.sleep(0.05)
        say(f"   swapped to {v2.id} after {swap_seconds:.1f} s; {load.total} requests during the update,")
        say(f"   {load.failed} failed; answered by version: {load.versions()}")
        response = httpx.post(f"{url}/score", content=image_bytes, headers={"Content-Type": "image/jpeg"})
        say("   the same image on v2:")
        say(describe(response.json()["detections"]))

        if load.failed:
            say(f"!! {load.failed} requests failed during the swap")
            return 1
        if catalog.real:
            for show in REAL_SHOWS:
                show_real_detector(stack, catalog, artifacts, say, show)
        else:
            say("== (the real detectors were not built: fixtures were made with --no-real)")
        say(f"== web page: {url}/  (upload an image to see the boxes; `make up` keeps the stack running)")
    say("== stopped everything; demo complete")
    return 0
