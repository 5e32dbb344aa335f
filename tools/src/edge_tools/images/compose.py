"""`make compose-test`: docker-compose.test.yml with the built images, end to end, then torn down.

Up → healthy (each container's own healthcheck, run here where the engine does not run them) → publish
v1 with `edge-model` inside the topology → the loader reports `ready` → the inference module answers
`/score` with v1 → v2 published while four clients post images: no failed request, no client goes back
→ down (containers, network and volumes), also when a stage fails. HTTP checks run inside the
simulator's container (`edge_tools.images.probe`), on the compose network.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_tools.images.build import IMAGES, REPO_ROOT, Timed
from edge_tools.images.engine import Engine, EngineError, run_command

PROJECT = "edge-model-loader-test"
COMPOSE_FILE = REPO_ROOT / "docker-compose.test.yml"
SERVICES = ("azurite", "edgehub", "loader", "inference")
INFERENCE_URL = "http://inference:8080/score"
#: Inside the simulator's container: build/fixtures is mounted at /fixtures.
FIXTURES = "/fixtures"
IMAGE = f"{FIXTURES}/images/one-square.jpg"
MODELS = (("tiny-yolo-1", "zips/tiny-yolo-1.zip"), ("ssd-lite-2", "zips/ssd-lite-2.zip"))
PUBLISH = (
    'EDGE_HUB_CONNECTION_STRING="$(cat /var/lib/edgehub/service.connstr)" '
    "edge-model publish {zip} --version {version} --no-progress"
)
STATUS = 'EDGE_HUB_CONNECTION_STRING="$(cat /var/lib/edgehub/service.connstr)" edge-model status --json'


class ComposeTestFailed(RuntimeError):
    """A stage of the compose test failed; the message says which and why."""


@dataclass
class ComposeTest:
    """One run of the topology; `run()` always tears it down."""

    engine: Engine
    report: Callable[[str], None]
    timeout: float = 180.0
    timings: list[Timed] = field(default_factory=list)
    #: Service → container id, kept once every container is healthy (they do not change afterwards), so
    #: the polling stages do not ask the engine for the list on every exec.
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def compose_env(self) -> dict[str, str]:
        # The Azurite image built from our npm lock instead of mcr.microsoft.com's (unreachable here).
        azurite = next(spec.tag for spec in IMAGES if spec.name == "azurite")
        return {**self.engine.env, "AZURITE_IMAGE": azurite, "COMPOSE_PROJECT_NAME": PROJECT}

    def run(self) -> list[Timed]:
        try:
            self._stage("down (leftovers)", self.down)
            self._stage("up", self.up)
            self._stage("healthy", self.wait_healthy)
            first, second = MODELS
            self._stage(f"publish {first[0]}", lambda: self.publish(*first))
            self._stage("loader ready", lambda: self.wait_loader_ready(first[0]))
            self._stage("POST /score", lambda: self.check_score(first[0]))
            self._stage(f"swap to {second[0]} under load", lambda: self.swap_under_load(first[0], *second))
        except BaseException:
            self._dump_logs()
            raise
        finally:
            self._stage("down", self.down)
        return self.timings

    # --- stages ------------------------------------------------------------------------------------
    def up(self) -> None:
        self._compose("up", "-d", timeout=600)

    def down(self) -> None:
        orphans = ["--remove-orphans"] if self.engine.name == "docker" else []  # podman-compose lacks it
        self._compose("down", *orphans, "-v", timeout=300)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout
        pending = set(SERVICES)
        while pending and time.monotonic() < deadline:
            containers = self.containers()
            for service in sorted(pending):
                if service in containers and self._healthy(containers[service]):
                    pending.discard(service)
            if pending:
                time.sleep(max(0.0, min(2.0, deadline - time.monotonic())))
        if pending:
            raise ComposeTestFailed(f"not healthy within {self.timeout:.0f} s: {', '.join(sorted(pending))}")
        self.ids = self.containers()

    def publish(self, version: str, zip_file: str) -> None:
        self._exec("edgehub", PUBLISH.format(zip=f"{FIXTURES}/{zip_file}", version=version), timeout=120)

    def wait_loader_ready(self, version: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        update: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = json.loads(self._exec("edgehub", STATUS, timeout=60))
            update = loader_update(status)
            if update.get("state") == "ready" and update.get("version") == version:
                return update
            if update.get("state") in ("failed", "rejected") and update.get("version") == version:
                raise ComposeTestFailed(f"the loader {update['state']} {version}: {update.get('error')}")
            time.sleep(1)
        raise ComposeTestFailed(f"the loader did not report {version} ready; last ModelUpdate: {update}")

    def check_score(self, version: str) -> None:
        deadline = time.monotonic() + self.timeout
        answer: dict[str, Any] = {}
        while time.monotonic() < deadline:  # the routed announcement may still be on its way
            answer = self._probe("score", INFERENCE_URL, IMAGE)
            if answer.get("status") == 200 and answer["body"]["model"]["version"] == version:
                detections = answer["body"]["detections"]
                if not detections:
                    raise ComposeTestFailed(f"{version} answered with no detection: {answer}")
                self.report(f"   {version}: {[d['label'] for d in detections]}")
                return
            time.sleep(1)
        raise ComposeTestFailed(f"/score did not answer with {version}: {answer}")

    def swap_under_load(self, old: str, version: str, zip_file: str) -> None:
        argv = [self.engine.name, "exec", self.ids["edgehub"], "python", "-m",
                "edge_tools.images.probe", "load", INFERENCE_URL, IMAGE, "--since", old, "--until", version,
                "--max-seconds", str(self.timeout)]  # fmt: skip
        env = {**os.environ, **self.engine.env}
        with subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as load:
            try:
                assert load.stdout is not None
                warm = load.stdout.readline()  # the old model answered 20 times: requests are flowing
                if warm.strip() != "warm":
                    raise ComposeTestFailed(f"the load probe did not get going: {warm!r}")
                self.publish(version, zip_file)
                self.wait_loader_ready(version)
                out, err = load.communicate(timeout=self.timeout + 30)
            except BaseException:
                load.kill()
                raise
        try:
            summary = json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError) as exc:
            raise ComposeTestFailed(f"the load probe printed no summary: {err.strip()[-1000:]}") from exc
        self.report(
            f"   {summary['total']} requests, {summary['failed']} failed, by version {summary['versions']}"
        )
        if load.returncode != 0 or old not in summary["versions"]:
            raise ComposeTestFailed(f"the swap under load failed: {summary}")

    # --- helpers -----------------------------------------------------------------------------------
    def containers(self) -> dict[str, str]:
        """Service name → container id of this project (labels both engines' compose set)."""
        done = self.engine.run(
            ["ps", "-a", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format",
             '{{.ID}} {{index .Labels "com.docker.compose.service"}}'],
            timeout=60,
        )  # fmt: skip
        return parse_containers(done.stdout)

    def _healthy(self, container: str) -> bool:
        if self.engine.runs_healthchecks:
            done = self.engine.run(
                ["inspect", "--format", "{{.State.Health.Status}}", container], timeout=60, check=False
            )
            return done.stdout.strip() == "healthy"
        return self.engine.run(["healthcheck", "run", container], timeout=60, check=False).returncode == 0

    def _exec(self, service: str, script: str, *, timeout: float) -> str:
        return self.engine.run(["exec", self.ids[service], "sh", "-c", script], timeout=timeout).stdout

    def _probe(self, *args: str) -> dict[str, Any]:
        done = self.engine.run(
            ["exec", self.ids["edgehub"], "python", "-m", "edge_tools.images.probe", *args],
            timeout=60,
            check=False,
        )
        try:
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {"status": None, "error": done.stderr.strip()[-500:]}
        return result

    def _compose(self, *args: str, timeout: float) -> None:
        run_command(
            [*self.engine.compose, "-f", str(COMPOSE_FILE), "-p", PROJECT, *args],
            env=self.compose_env,
            timeout=timeout,
            cwd=REPO_ROOT,
        )

    def _stage(self, name: str, action: Callable[[], object]) -> None:
        self.report(f"== {name}")
        started = time.monotonic()
        try:
            action()
        finally:
            seconds = time.monotonic() - started
            self.timings.append(Timed(name, seconds))
            self.report(f"   {name}: {seconds:.1f} s")

    def _dump_logs(self) -> None:
        try:
            containers = self.containers()
        except EngineError:
            return
        for service, container in sorted(containers.items()):
            done = self.engine.run(["logs", "--tail", "30", container], timeout=60, check=False)
            self.report(f"-- last log lines of {service}:\n{done.stdout}{done.stderr}")


def parse_containers(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        container, _, service = line.strip().partition(" ")
        if container and service:
            found[service] = container
    return found


def loader_update(status: Mapping[str, Any]) -> dict[str, Any]:
    """`ModelUpdate` of the loader in `edge-model status --json` output."""
    loader = status.get("loader") or {}
    update = loader.get("ModelUpdate") if isinstance(loader, dict) else None
    return dict(update) if isinstance(update, dict) else {}
