"""The repository is self-contained for its users: no file sends a reader to a document they do not have
(the team folder beside the repository, or the design notes that became docs/architecture.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"\.\./shared|design §|design\.md|runtimes\.md")


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60)
        .stdout.decode()
        .split("\0")
    )
    offenders: list[str] = []
    for name in filter(None, files):
        path = REPO_ROOT / name
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binaries
        offenders += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert offenders == []


def test_architecture_sections_cited_in_the_code_exist() -> None:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", text, re.MULTILINE)}
    cited = subprocess.run(
        ["git", "grep", "-ho", r"architecture[.a-z]* §[0-9]*"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    numbers = {int(word.lstrip("§")) for word in cited if word.startswith("§") and word[1:].isdigit()}
    assert numbers and numbers <= sections, numbers - sections
