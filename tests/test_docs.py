"""The README and the docs stay true to the repository: links resolve, the API reference
lists every public name, and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import catlog

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_api_reference_renders_every_public_name() -> None:
    """Adding a public name means one ``::: catlog.NAME`` line in docs/reference.md."""
    rendered = re.findall(r"^::: catlog\.(\w+)$", (ROOT / "docs" / "reference.md").read_text(), re.MULTILINE)
    assert sorted(rendered) == sorted(catlog.__all__)


def test_readme_links_resolve() -> None:
    links = LINK.findall((ROOT / "README.md").read_text())
    relative = [link.split("#")[0] for link in links if not link.startswith("https://")]
    assert relative, "the README links to the docs"
    assert [link for link in relative if not (ROOT / link).exists()] == []


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.endswith("python -m pytest -q")]
    assert len(commands) == 1, commands
    assert commands[0] in (ROOT / ".ci" / "run").read_text().splitlines()
