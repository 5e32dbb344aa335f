"""Run the modules as the users their images run as, without containers.

Root starts each module with `setuid`/`setgid` (subprocess's `user=`/`group=`). The child must be able to
execute an interpreter that imports the project: the venv's own Python is used when that user can run it;
when it cannot (pyenv under a 0700 `/root`, as on our machines), a shadow venv is made around the
system's Python of the same minor version, whose `site-packages` hook adds the project's environment.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from edge_tools.stack.processes import RunAs

REPO_ROOT = Path(__file__).resolve().parents[2]
_PROBE = "import loader_module.__main__, inference_module.__main__"
_SYSTEM_PYTHONS = (
    f"/usr/bin/python3.{sys.version_info.minor}",
    f"/usr/local/bin/python3.{sys.version_info.minor}",
)


class CannotRunAsUser(RuntimeError):
    """No interpreter with the project's packages can be executed by the other user here."""


def image_uid(dockerfile: str) -> int:
    """The `useradd --uid N` of a module's Dockerfile: the tests run each module as its image does."""
    text = (REPO_ROOT / dockerfile).read_text(encoding="utf-8")
    match = re.search(r"useradd\b[^\n]*--uid (\d+)", text)
    if match is None:
        raise AssertionError(f"{dockerfile} creates no user with a fixed --uid")
    return int(match.group(1))


def _probe(python: str, uid: int) -> str | None:
    """None when `uid` can run `python` and import both modules, else why not."""
    try:
        result = subprocess.run(
            [python, "-c", _PROBE],
            user=uid,
            group=uid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError as exc:
        return f"{python}: {exc}"
    if result.returncode == 0:
        return None
    return f"{python}: " + " ".join(result.stderr.strip().splitlines()[-2:])


def _shadow_venv(base: str, where: Path) -> str:
    """A venv around `base` whose site-packages loads this environment's (with its .pth files)."""
    venv = where / "shadow-venv"
    bin_dir = venv / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = bin_dir / "python"
    python.unlink(missing_ok=True)
    python.symlink_to(base)
    (venv / "pyvenv.cfg").write_text(
        f"home = {Path(base).parent}\ninclude-system-site-packages = false\n", encoding="utf-8"
    )
    site = venv / "lib" / f"python3.{sys.version_info.minor}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    ours = sysconfig.get_paths()["purelib"]
    (site / "edge_project.pth").write_text(f"import site; site.addsitedir({ours!r})\n", encoding="utf-8")
    for path in [where, *venv.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return str(python)


def python_for(uids: list[int], where: Path) -> str:
    """An interpreter every uid in `uids` can run with the project importable, or `CannotRunAsUser`."""
    reasons: list[str] = []
    candidates = [sys.executable]
    for base in _SYSTEM_PYTHONS:
        if Path(base).exists():
            candidates.append(_shadow_venv(base, where))
            break
    for python in candidates:
        problems = [reason for uid in uids if (reason := _probe(python, uid)) is not None]
        if not problems:
            return python
        reasons.extend(problems)
    raise CannotRunAsUser("; ".join(reasons))


def module_users(where: Path) -> dict[str, RunAs]:
    """The loader and inference modules as the users of their images, with a Python they can run."""
    uids = {
        "loader": image_uid("loader_module/Dockerfile"),
        "inference": image_uid("inference_module/Dockerfile"),
    }
    python = python_for(sorted(set(uids.values())), where)
    return {module: RunAs(uid, uid, python) for module, uid in uids.items()}
