"""`python -m edge_tools.images arm64-smoke`: the inference image for linux/arm64, built and served under
QEMU user emulation, as many edge devices are ARM boards.

Debian's `qemu-user-static` is registered with the kernel's binfmt_misc (fix-binary flag, so it works
inside containers) unless already there; debootstrap makes an arm64 Debian root, the bases and the
inference image are built for linux/arm64 (tags suffixed `-arm64`), and the image then serves, with
edgeHub off, a model repository prepared here: `/health/ready`, one `/score` with an ONNX model, then a
swap to a TFLite model through `POST /model/reload` and one more `/score`.

QEMU 7.2 (Debian bookworm) user emulation shows the emulated process the host's x86 `/proc/cpuinfo`;
ONNX Runtime's CPU detection crashes on it (SIGSEGV at `import onnxruntime`; numpy, Pillow and LiteRT
import fine). An arm64 `/proc/cpuinfo` (a Cortex-A76-like one, `ARM_CPUINFO`) is therefore mounted over
it in the build steps and the smoke container. On a real ARM board the kernel's own file is there.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge_shared.repository import ModelRepository
from edge_tools.fixtures import FixtureCatalog, install_fixture_model
from edge_tools.images.build import IMAGES, Timed, build_images
from edge_tools.images.engine import Engine, EngineError, run_command

BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
SUFFIX = "-arm64"
MODELS = ("tiny-yolo-1", "ssd-lite-1")  # one ONNX, one TFLite
IMAGE_FILE = "one-square.jpg"
ARM_CPUINFO = "".join(
    f"processor\t: {cpu}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
    "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
    "CPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
    for cpu in range(2)
)
_PROBE = """
import json, sys, time, urllib.request
base = "http://127.0.0.1:8080"
path, reload = sys.argv[1], sys.argv[2] == "reload"
if reload:
    urllib.request.urlopen(urllib.request.Request(base + "/model/reload", method="POST"), timeout=600)
for _ in range(600):
    try:
        if urllib.request.urlopen(base + "/health/ready", timeout=5).status == 200:
            break
    except OSError:
        time.sleep(1)
request = urllib.request.Request(base + "/score", data=open(path, "rb").read(),
                                 headers={"Content-Type": "image/jpeg"}, method="POST")
print(json.dumps(json.load(urllib.request.urlopen(request, timeout=600))))
"""


class EmulationUnavailable(EngineError):
    """QEMU user emulation of arm64 cannot be had on this machine (the message says exactly why)."""


@dataclass(frozen=True)
class SmokeAnswer:
    version: str
    runtime: str
    labels: list[str]


def ensure_emulation() -> None:
    """qemu-user-static installed and registered for aarch64 ELF binaries in binfmt_misc."""
    if shutil.which("qemu-aarch64-static") is None:
        if os.geteuid() != 0:
            raise EmulationUnavailable("qemu-user-static is not installed and this is not root")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        run_command(["apt-get", "install", "-y", "-qq", "qemu-user-static"], env=env, timeout=900)
    if not (BINFMT / "register").exists():
        try:
            run_command(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], timeout=60)
        except EngineError as exc:
            raise EmulationUnavailable(f"binfmt_misc cannot be mounted here: {exc}") from exc
    if (BINFMT / "qemu-aarch64").exists():
        return
    rule = "".join(line for line in QEMU_CONF.read_text().splitlines() if not line.startswith("#"))
    try:
        (BINFMT / "register").write_text(rule)
    except OSError as exc:
        raise EmulationUnavailable(f"the kernel refused the aarch64 binfmt rule: {exc.strerror}") from exc


def prepare_models(root: Path, catalog: FixtureCatalog) -> None:
    """Install the two fixture models as the loader would (files 0644, manifest), `current` = ONNX."""
    for model_id in MODELS:
        install_fixture_model(root, catalog, model_id, make_current=False, file_mode=0o644)
    ModelRepository(root).set_current(MODELS[0])
    shutil.copyfile(catalog.path(catalog.image("one-square-jpeg").file), root / IMAGE_FILE)
    (root / IMAGE_FILE).chmod(0o644)


def cpuinfo_volume(work_dir: Path) -> str:
    """The `--volume` argument that shows emulated processes an arm64 `/proc/cpuinfo`."""
    path = work_dir / "cpuinfo-arm64"
    work_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(ARM_CPUINFO, encoding="utf-8")
    return f"{path}:/proc/cpuinfo:ro"


def smoke(
    engine: Engine, root: Path, report: Callable[[str], None], *, timeout: float, cpuinfo: str
) -> list[SmokeAnswer]:
    tag = next(spec.tag for spec in IMAGES if spec.name == "inference") + SUFFIX
    run = engine.run(
        ["run", "-d", "--platform", "linux/arm64", "-e", "INFERENCE_EDGEHUB=false",
         "-e", "INFERENCE_LOG_FORMAT=text", "-v", f"{root}:/models:ro", "-v", cpuinfo, tag],
        timeout=120,
    )  # fmt: skip
    container = run.stdout.strip().splitlines()[-1]
    answers: list[SmokeAnswer] = []
    try:
        arch = engine.run(["exec", container, "uname", "-m"], timeout=120).stdout.strip()
        report(f"   the container runs as {arch}")
        if arch != "aarch64":
            raise EngineError(f"expected an aarch64 container, got {arch}")
        for index, model_id in enumerate(MODELS):
            step = "reload" if index else "first"
            if index:  # as the loader would: `current` names the new version, then the reload swaps to it
                ModelRepository(root).set_current(model_id)
            done = engine.run(
                ["exec", container, "python", "-c", _PROBE, f"/models/{IMAGE_FILE}", step], timeout=timeout
            )
            body = json.loads(done.stdout.strip().splitlines()[-1])
            answer = SmokeAnswer(
                body["model"]["version"], body["model"]["runtime"], [d["label"] for d in body["detections"]]
            )
            report(f"   /score by {answer.version} ({answer.runtime}): {answer.labels}")
            if answer.version != model_id or not answer.labels:
                raise EngineError(f"unexpected answer from the arm64 image: {body}")
            answers.append(answer)
    except BaseException:
        logs = engine.run(["logs", "--tail", "40", container], timeout=60, check=False)
        report(f"-- inference log:\n{logs.stdout}{logs.stderr}")
        raise
    finally:
        engine.run(["rm", "-f", container], timeout=120, check=False)
    return answers


def arm64_smoke(
    engine: Engine, catalog: FixtureCatalog, *, work_dir: Path, report: Callable[[str], None], timeout: float
) -> list[Timed]:
    started = time.monotonic()
    ensure_emulation()
    timings = [Timed("binfmt/qemu", time.monotonic() - started)]
    cpuinfo = cpuinfo_volume(work_dir)
    timings += build_images(
        engine,
        names=["inference"],
        platform="linux/arm64",
        tag_suffix=SUFFIX,
        arch="arm64",
        volumes=[cpuinfo],
        work_dir=work_dir,
        report=report,
    )
    root = work_dir / "arm64-models"
    shutil.rmtree(root, ignore_errors=True)
    prepare_models(root, catalog)
    started = time.monotonic()
    smoke(engine, root, report, timeout=timeout, cpuinfo=cpuinfo)
    timings.append(Timed("smoke test (emulated)", time.monotonic() - started))
    return timings
