"""`ffctl config diff OLD NEW`: what changed, in the config's terms; table, JSON, exit codes."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from tests.conftest import EXAMPLE_CONFIG


def run(*args: str):
    from ffctl.cli import app

    return CliRunner().invoke(
        app, ["config", "diff", *map(str, args)], env={"FFCTL_CONFIG": None, "FFCTL_DEBUG": None, "COLUMNS": "200"}
    )


def edited(tmp_path, name: str, *edits: tuple[str, str]):
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_config_diff_names_each_change_in_the_configs_terms(tmp_path):
    new = edited(
        tmp_path,
        "new.toml",
        ('sla = "30m"', 'sla = "45m"'),
        (
            'holidays = ["2026-10-01", "2026-10-02", "2026-10-05"]',
            'holidays = ["2026-10-01", "2026-10-02", "2026-10-05", "2026-10-08"]',
        ),
        ('[roles.finance_manager]\nmembers = ["carol"', '[roles.finance_manager]\nmembers = ["carol", "dave"'),
        ('fri = ["09:00-12:00", "13:00-17:00"]', 'fri = "09:00-17:00"'),
    )
    r = run(EXAMPLE_CONFIG, new, "--format", "json")
    assert r.exit_code == 0, r.output
    texts = [c["text"] for c in json.loads(r.stdout)]
    assert "node credit_review: SLA 30m → 45m" in texts
    assert "calendar office: holiday 2026-10-08 added" in texts
    assert "role finance_manager: members +dave" in texts
    assert "calendar office: hours fri 09:00-12:00, 13:00-17:00 → 09:00-17:00" in texts
    rows = {c["text"]: c for c in json.loads(r.stdout)}
    assert rows["node credit_review: SLA 30m → 45m"] == {
        "section": "node",
        "name": "credit_review",
        "field": "sla",
        "old": 1800,
        "new": 2700,
        "text": "node credit_review: SLA 30m → 45m",
    }
    table = run(EXAMPLE_CONFIG, new, "--format", "table")
    assert table.exit_code == 0 and "node credit_review: SLA 30m → 45m" in table.stdout
    assert run(EXAMPLE_CONFIG, new, "--exit-code").exit_code == 1


def test_the_same_config_elsewhere_has_no_differences(tmp_path):
    """Relative paths (the SQLite store, the notification log) are the same setting in another folder."""
    copy = tmp_path / "copy.toml"
    shutil.copy(EXAMPLE_CONFIG, copy)
    r = run(EXAMPLE_CONFIG, copy, "--exit-code", "--format", "table")
    assert r.exit_code == 0 and r.stdout == "" and "No differences" in r.stderr, r.output
    assert json.loads(run(EXAMPLE_CONFIG, copy, "--format", "json").stdout) == []


def test_workflows_escalations_owners_and_chains(tmp_path):
    new = edited(
        tmp_path,
        "new.toml",
        ('match = { channel = ["b2b"], region = ["east"] }', 'match = { channel = ["b2b"] }'),
        ('owner = "finance_reviewer"', 'owner = "finance_manager"'),
        ('{ after = "2h",  action = "escalate" },', ""),
    )
    texts = [c["text"] for c in json.loads(run(EXAMPLE_CONFIG, new, "-f", "json").stdout)]
    assert any(t.startswith("workflow pilot: match ") for t in texts), texts
    assert "node credit_review: owner finance_reviewer → finance_manager" in texts
    assert any(t.startswith("node credit_review: escalation [") and "+2h escalate" in t for t in texts), texts


def test_an_invalid_config_is_refused_with_its_problems(tmp_path):
    bad = edited(tmp_path, "bad.toml", ('sla = "30m"', 'sla = "soon"'))
    r = run(EXAMPLE_CONFIG, bad)
    assert r.exit_code == 2 and "bad.toml" in r.stderr and "sla" in r.stderr, r.output
    r = run(EXAMPLE_CONFIG, tmp_path / "missing.toml")
    assert r.exit_code == 2 and "missing.toml" in r.stderr
