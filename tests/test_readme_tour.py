"""README's tour runs as written on a fresh `ffctl init` store, with the CSV files it names.

The commands are read from README.md each time, so the test follows the tour as it changes; a
line the test cannot run (anything but mkdir, cd, cp and ffctl) fails it rather than being skipped.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent


def tour_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## A 10-minute tour", 1)[1].split("\n## ", 1)[0]
    commands = []
    for line in section.splitlines():
        if not line.startswith("    "):
            continue
        words = shlex.split(line, comments=True)
        while words:  # `a && b` runs a, then b
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:cut])
            words = words[cut + 1 :]
    return commands


def test_the_tour_lists_the_commands_a_new_user_needs():
    names = [" ".join(c[:3]) for c in tour_commands()]
    assert names[:2] == ["mkdir shop", "cd shop"] and "ffctl init" in names
    assert any(c[:1] == ["ffctl"] and "ship" in c for c in tour_commands())


def test_readme_tour_runs_as_written(tmp_path, monkeypatch, backend, make_db_url):
    from ffctl.cli import app

    # the repository's root as the tour expects it: a folder holding examples/
    (tmp_path / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    env = {
        "FFCTL_CONFIG": None,
        "FFCTL_NOW": None,
        "FFCTL_USER": None,
        "FFCTL_DEBUG": None,
        "COLUMNS": "200",
        "FFCTL_DB": make_db_url(backend) if backend == "postgresql" else None,
    }
    for command in tour_commands():
        name, args = command[0], command[1:]
        if name == "mkdir":
            for folder in args:
                os.mkdir(folder)
        elif name == "cd":
            (folder,) = args
            monkeypatch.chdir(folder)
        elif name == "cp":
            *sources, target = args
            files = [f for pattern in sources for f in sorted(glob.glob(pattern))]
            assert files, f"cp: nothing matches {sources}"
            for f in files:
                shutil.copy(f, target)
        elif name == "ffctl":
            r = CliRunner().invoke(app, args, env=env)
            assert r.exit_code == 0, f"`{shlex.join(command)}` exited {r.exit_code}:\n{r.stdout}\n{r.stderr}"
        else:
            raise AssertionError(f"the tour runs `{shlex.join(command)}`; this test only knows mkdir, cd, cp, ffctl")

    order = json.loads(CliRunner().invoke(app, ["order", "show", "SO000123", "-f", "json"], env=env).stdout)
    assert (order["status"], order["carrier"], order["tracking"]) == ("shipped", "顺丰", "SF124")
    assert [(s["shipment_id"], s["tracking"], [ln["qty"] for ln in s["lines"]]) for s in order["shipments"]] == [
        ("SO000123/1", "SF123", [25, 100]),
        ("SO000123/2", "SF124", [15]),
    ]
    assert order["waiting_for"] == "waiting for delivery"
    assert (Path.cwd() / "dashboard.html").stat().st_size > 10_000
    requisitions = json.loads(CliRunner().invoke(app, ["requisition", "list", "-f", "json"], env=env).stdout)
    assert [r["sku"] for r in requisitions] == ["SKU-0002"]  # 150 on hand, 100 shipped: under its safety stock
