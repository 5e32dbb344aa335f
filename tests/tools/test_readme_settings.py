"""The README's configuration tables are generated from the settings classes and must stay current."""

from __future__ import annotations

import pytest

from edge_tools.settings_doc import BEGIN, END, render, replace_block, settings_table
from edge_tools.stack.stack import REPO_ROOT
from loader_module.settings import LoaderSettings


def test_readme_configuration_tables_match_the_settings_classes() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == render(), "run: python -m edge_tools.settings_doc --write README.md"


def test_every_setting_is_documented() -> None:
    table = settings_table(LoaderSettings)
    rows = table.splitlines()[2:]
    assert len(rows) == len(LoaderSettings.model_fields)
    assert all(not row.endswith("|  |") for row in rows), "a settings field lacks a description"


def test_replace_block_refuses_a_file_without_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers here", "x")
