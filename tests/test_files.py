"""Files ffctl creates are private (0600 under umask 022) and never written through a symlink;
`demo --dir` wants a new or empty folder; `init` never creates a dangling link's target."""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLE_CONFIG

NOW = "2026-11-23T09:25:00+08:00"


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # the common default: new files world-readable unless ffctl says otherwise
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cli(*args, env=None):
    from ffctl.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"FFCTL_DEBUG": None, "FFCTL_DB": None, **(env or {})})


def test_init_writes_a_private_config_and_store(tmp_path, umask_022):
    config = tmp_path / "ffctl.toml"
    r = cli("--config", config, "init")
    assert r.exit_code == 0, r.output
    assert mode(config) == 0o600 and mode(tmp_path / "ffctl.db") == 0o600
    r = cli("--config", config, "order", "list", env={"FFCTL_NOW": NOW})  # opens the store: -wal, -shm
    assert r.exit_code == 0, r.output
    for extra in ("ffctl.db-wal", "ffctl.db-shm"):
        if (tmp_path / extra).exists():
            assert mode(tmp_path / extra) == 0o600, extra


def test_init_never_follows_a_dangling_config_link(tmp_path):
    target = tmp_path / "elsewhere" / "planted.toml"
    target.parent.mkdir()
    (tmp_path / "ffctl.toml").symlink_to(target)
    r = cli("--config", tmp_path / "ffctl.toml", "init")
    assert r.exit_code == 1 and "is a symbolic link to a file that does not exist" in r.stderr
    assert not target.exists() and not (tmp_path / "ffctl.db").exists()


def test_init_uses_a_config_linked_to_an_existing_file(tmp_path):
    real = tmp_path / "etc" / "ffctl.toml"
    real.parent.mkdir()
    real.write_text(EXAMPLE_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "ffctl.toml").symlink_to(real)
    before = real.read_text(encoding="utf-8")
    r = cli("--config", tmp_path / "ffctl.toml", "init")
    assert r.exit_code == 0 and "exists; leaving it as it is" in r.stderr, r.output
    assert real.read_text(encoding="utf-8") == before


def test_demo_wants_a_new_or_empty_folder_and_writes_private_files(tmp_path, umask_022):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine", encoding="utf-8")
    r = cli("demo", "--dir", busy, "--orders", "10", "--days", "1")
    assert r.exit_code == 1 and "is not a new or empty folder" in r.stderr
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    link = tmp_path / "link"
    link.symlink_to(empty)
    r = cli("demo", "--dir", link, "--orders", "10", "--days", "1")
    assert r.exit_code == 1 and "is not a new or empty folder" in r.stderr and not list(empty.iterdir())

    fresh = tmp_path / "fresh demo's"
    r = cli("--now", NOW, "demo", "--dir", fresh, "--orders", "10", "--days", "1", env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    hint = next(line for line in r.stderr.splitlines() if "task list --all --breached" in line)
    assert shlex.split(hint.split("#")[0]) == [
        "ffctl",
        "--config",
        str(fresh / "ffctl.toml"),
        "--as",
        "judy",
        "task",
        "list",
        "--all",
        "--breached",
    ]
    written = [p for p in fresh.rglob("*") if p.is_file()]
    assert {"ffctl.toml", "ffctl.db", "orders-01.csv", "products.csv"} <= {p.name for p in written}
    assert {oct(mode(p)) for p in written} == {oct(0o600)}, {p.name: oct(mode(p)) for p in written}


def test_notification_log_and_daily_report_are_private(workspace_with_config, umask_022):
    ws = workspace_with_config("""
[defaults]
timezone = "Asia/Shanghai"
[roles.ops]
members = ["ann"]
[workflows.main]
match = {}
nodes = ["review"]
[nodes.review]
owner = "ops"
sla = "1h"
[notify]
log = "notifications.jsonl"
[schedule]
daily_report = "0 8 * * *"
""")
    from ffctl.core import outbox
    from ffctl.core.clock import parse_time
    from ffctl.core.config import load_config

    with ws.store().session(write=True) as s:
        outbox.queue(s, load_config(ws.config_path), ["ann"], subject="hello", body="b", at=parse_time(NOW, "UTC"))
    r = ws.run("notify", "send", now=NOW)
    assert r.exit_code == 0, r.output
    log = ws.path / "notifications.jsonl"
    assert mode(log) == 0o600 and json.loads(log.read_text(encoding="utf-8").splitlines()[0])["recipient"] == "ann"
    r = ws.run("schedule", "tick", now="2026-11-24T08:00:30+08:00")
    assert r.exit_code == 0, r.output
    (report,) = (ws.path / "reports").iterdir()
    assert report.name == "kpi-2026-11-24.json" and mode(report) == 0o600
    assert mode(ws.path / "reports") == 0o700
