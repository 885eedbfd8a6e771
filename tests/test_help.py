"""Every --help shows its text as written: nothing swallowed as markup, flags shown as flags."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner


def _commands():
    """(path, click command) for every command and group under ffctl, the root included."""
    import typer

    from ffctl.cli import LazyGroup, app

    root = typer.main.get_command(app)
    found = [((), root)]

    def walk(path, cmd):
        found.append((path, cmd))
        for name in getattr(cmd, "list_commands", lambda ctx: [])(None):
            sub = cmd.get_command(None, name)
            if sub is not None and not sub.hidden:
                walk((*path, name), sub)

    for name in root.list_commands(None):
        walk((name,), LazyGroup.get_command(root, None, name))
    return found


def _flat(text: str) -> str:
    """Words in order, without line breaks or box drawing (help may be wrapped and framed)."""
    return re.sub(r"\s+", " ", re.sub(r"[\u2500-\u257f\b]", " ", text)).strip()


COMMANDS = _commands()


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "ffctl" for p, _ in COMMANDS])
def test_help_shows_every_help_text_whole(path, cmd):
    from ffctl.cli import app

    r = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    shown = _flat(r.stdout)
    texts = [(cmd.help or "").split("\f")[0]]
    texts += [p.help for p in cmd.params if getattr(p, "help", None) and not getattr(p, "hidden", False)]
    for text in texts:
        assert _flat(text) in shown, f"{' '.join(path)} --help lost part of: {text!r}\n{r.stdout}"
    assert "<bool>" not in r.stdout  # a flag takes no value
    for p in cmd.params:
        if getattr(p, "is_flag", False):
            for opt in p.opts:
                line = next(line for line in r.stdout.splitlines() if re.search(rf"{opt}\b", line))
                assert not re.search(rf"{opt}\s+<", line), line
