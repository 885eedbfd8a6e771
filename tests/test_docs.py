"""The docs stay true: README's set-up commands are what CI runs, docs/cli.md matches --help."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ")]


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert "pip install ." in commands[0] and "ffctl" in commands[0]
    assert "'.[test]'" in commands[1] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert readme_commands()[1] in ci


def test_cli_reference_is_current_and_every_command_has_help():
    from ffctl.commands._clidoc import generate

    text, missing = generate()
    assert missing == [], f"commands without help text: {missing}"
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == text, "docs/cli.md is out of date: python -m ffctl.commands._clidoc > docs/cli.md"


def test_every_registered_command_exists():
    from ffctl.cli import COMMANDS, _available

    missing = [name for name in COMMANDS if not _available(name)]
    assert missing == [], f"registered but not built: {missing}"


def test_docs_exist():
    for name in ("architecture.md", "operations.md", "performance.md", "cli.md"):
        assert (REPO / "docs" / name).exists(), name
    assert re.search(r"schedule tick", (REPO / "docs" / "operations.md").read_text(encoding="utf-8"))
