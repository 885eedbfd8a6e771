"""`ffctl config check` as a user meets it: the tree for a good file, every problem for a bad one."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ffctl.cli import app
from tests.conftest import EXAMPLE_CONFIG

EXAMPLE = EXAMPLE_CONFIG.read_text(encoding="utf-8")


def check(tmp_path, text: str):
    path = tmp_path / "ffctl.toml"
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(app, ["--config", str(path), "config", "check"])


def test_example_passes_and_prints_the_workflows(tmp_path):
    r = check(tmp_path, EXAMPLE)
    assert r.exit_code == 0, r.output
    assert "workflow standard" in r.stdout and "workflow pilot" in r.stdout
    assert "credit_review" in r.stdout and "escalate" in r.stdout
    assert r.stderr.strip().endswith(": OK")


BROKEN = {
    "unknown owner role": (
        'owner = "finance_reviewer"             # the role whose members work this node',
        'owner = "finance_reviwer"',
        ["nodes.credit_review.owner", "finance_reviwer", "did you mean 'finance_reviewer'"],
    ),
    "unknown node in a workflow": (
        'nodes = ["credit_review", "allocation", "dispatch"]',
        'nodes = ["credit_review", "alocation", "dispatch"]',
        ["workflows.pilot.nodes", "alocation", "did you mean 'allocation'"],
    ),
    "unknown calendar": (
        'calendar = "office"                    # counted in office hours (omit for wall-clock time)',
        'calendar = "ofice"',
        ["nodes.credit_review.calendar", "ofice"],
    ),
    "bad duration": (
        'sla = "30m"                            # time allowed from entering the node to completing it',
        'sla = "30 minutes"',
        ["nodes.credit_review.sla", "30 minutes", "1h30m"],
    ),
    "bad cron": (
        'sla_sweep = "*/5 * * * *"',
        'sla_sweep = "*/5 * * *"',
        ["schedule.sla_sweep"],
    ),
    "escalation cycle": (
        'escalate_to = "ops_director"           # the supervisor\'s own escalation',
        'escalate_to = "warehouse"',
        ["escalation cycle"],
    ),
    "auto_approve on a critical node": (
        '  { after = "30m", action = "escalate" },',
        '  { after = "30m", action = "auto_approve" },',
        ["nodes.credit_review", "auto_approve", "critical"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_variant_exits_2_naming_the_key(tmp_path, case):
    old, new, expected = BROKEN[case]
    assert old in EXAMPLE, f"the example changed: {old!r} is gone"
    r = check(tmp_path, EXAMPLE.replace(old, new, 1))
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.stdout == ""
    for text in expected:
        assert text in r.stderr, (text, r.stderr)
    assert "ffctl.toml" in r.stderr


def test_toml_syntax_error_names_the_line(tmp_path):
    lines = EXAMPLE.splitlines()
    line_no = next(i for i, line in enumerate(lines, 1) if line.startswith('sla = "30m"'))
    lines[line_no - 1] = 'sla = "30m'
    r = check(tmp_path, "\n".join(lines))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"ffctl.toml:{line_no}" in r.stderr


def test_all_problems_are_listed_at_once(tmp_path):
    text = EXAMPLE.replace(*BROKEN["unknown owner role"][:2], 1).replace(*BROKEN["bad duration"][:2], 1)
    r = check(tmp_path, text)
    assert r.exit_code == 2
    assert "2 problems" in r.stderr
    assert "finance_reviwer" in r.stderr and "30 minutes" in r.stderr


def test_other_commands_refuse_an_invalid_config_the_same_way(tmp_path):
    path = tmp_path / "ffctl.toml"
    path.write_text(EXAMPLE.replace(*BROKEN["bad duration"][:2], 1), encoding="utf-8")
    r = CliRunner().invoke(app, ["--config", str(path), "task", "list"])
    assert r.exit_code == 2
    assert "nodes.credit_review.sla" in r.stderr and "Traceback" not in r.output


def test_missing_config_says_how_to_make_one(tmp_path):
    r = CliRunner().invoke(app, ["--config", str(tmp_path / "nope.toml"), "config", "check"])
    assert r.exit_code == 2
    assert "ffctl init" in r.stderr


def test_order_recipients_refused_on_rules_without_an_order(tmp_path):
    old = 'notify = ["purchasing"]'
    assert old in EXAMPLE
    r = check(tmp_path, EXAMPLE.replace(old, 'notify = ["purchasing", "order.sales_rep"]', 1))
    assert r.exit_code == 2
    assert "order.sales_rep names no one here" in r.stderr
