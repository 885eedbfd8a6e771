"""Configs that used to pass `config check` and then crash commands are refused by it; config
messages that name the field, suggest real time zones, and warn about workflows that never touch
stock or escalations that reach nobody."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLE_CONFIG

BASE = """
[defaults]
timezone = "Asia/Shanghai"
[calendars.office]
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
[roles.ops]
members = ["ann"]
escalate_to = "lead"
[roles.lead]
members = ["bob"]
[workflows.main]
match = {}
nodes = ["review", "allocation", "dispatch"]
[nodes.review]
owner = "ops"
sla = "4h"
calendar = "office"
escalation = [ { after = "1h", action = "escalate" } ]
[nodes.allocation]
sla = "10m"
auto = "allocate"
[nodes.dispatch]
owner = "ops"
sla = "48h"
auto = "ship"
[schedule]
sla_sweep = "*/5 * * * *"
"""


def check(tmp_path, text: str, *args: str):
    from ffctl.cli import app

    path = tmp_path / "ffctl.toml"
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(
        app,
        ["--config", str(path), *(args or ("config", "check"))],
        env={"FFCTL_DEBUG": None, "FFCTL_DB": f"sqlite:///{tmp_path / 'none.db'}"},
    )


def refused(r, *expected: str) -> None:
    assert r.exit_code == 2, r.output
    for text in expected:
        assert text in r.stderr, (text, r.stderr)
    assert "unexpected" not in r.stderr and "bug" not in r.stderr and "Traceback" not in r.output


def test_the_base_config_passes_without_warnings(tmp_path):
    r = check(tmp_path, BASE)
    assert r.exit_code == 0 and r.stderr.strip().endswith(": OK"), r.output


def test_a_cron_expression_that_never_fires_is_refused(tmp_path):
    text = BASE + 'rules_run = "0 0 30 2 *"\n'
    refused(check(tmp_path, text), "schedule.rules_run: cron expression '0 0 30 2 *' never fires")
    refused(check(tmp_path, text, "schedule", "show"), "never fires")  # every command refuses it the same way
    refused(check(tmp_path, text, "schedule", "tick"), "never fires")


@pytest.mark.parametrize(
    "expression, field",
    [
        ("61 * * * *", "the minute field '61' is out of range (allowed: 0-59"),
        ("0 24 * * *", "the hour field '24' is out of range (allowed: 0-23"),
        ("0 8 * * mon-fro", "the day-of-week field 'mon-fro' is not understood"),
    ],
)
def test_a_cron_field_out_of_range_is_named(tmp_path, expression, field):
    refused(
        check(tmp_path, BASE + f'daily_report = "{expression}"\n'),
        "schedule.daily_report: invalid cron expression",
        field,
    )


def test_a_huge_duration_is_a_config_error_not_an_overflow(tmp_path):
    text = BASE.replace('sla = "48h"', 'sla = "99999999d"')
    refused(check(tmp_path, text), "nodes.dispatch.sla: duration '99999999d' is too long: at most 3653d (10 years)")
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,line_no,customer,sku,qty\nSO-1,1,C1,SKU-1,1\n", encoding="utf-8")
    refused(check(tmp_path, text, "import", "orders", str(orders)), "too long")


def test_a_calendar_that_cannot_hold_an_sla_is_refused_with_the_reason(tmp_path):
    one_minute = BASE.replace(BASE.splitlines()[4], 'hours = { mon = "09:00-09:01" }')
    r = check(tmp_path, one_minute.replace('sla = "4h"', 'sla = "12h"'))
    refused(
        r,
        "nodes.review.calendar: calendar 'office' has 1m of working time a week: the SLA 12h of node 'review' "
        "and its escalation ladder (1h past the deadline) would take about 15 years of it, and ffctl plans "
        "deadlines at most 10 years ahead",
    )
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,line_no,customer,sku,qty\nSO-1,1,C1,SKU-1,1\n", encoding="utf-8")
    refused(
        check(tmp_path, one_minute.replace('sla = "4h"', 'sla = "12h"'), "import", "orders", str(orders)),
        "1m of working time a week",
    )
    # the same calendar holds 4h and its ladder in under six years: allowed, if slow
    assert check(tmp_path, one_minute).exit_code == 0


def test_a_config_nested_thousands_deep_is_a_config_error(tmp_path):
    text = BASE + "[kpi]\ndeep = " + "[" * 5000 + "]" * 5000 + "\n"
    refused(check(tmp_path, text), "invalid TOML: values are nested too deeply")


@pytest.mark.parametrize(
    "zone, suggestion",
    [
        ("CST", "did you mean 'Asia/Shanghai' or 'America/Chicago'?"),
        ("Beijing", "did you mean 'Asia/Shanghai'?"),
        ("UTC+8", "did you mean 'Asia/Shanghai' or 'Etc/GMT-8'?"),
        ("Asia/Shangai", "did you mean 'Asia/Shanghai'?"),
    ],
)
def test_time_zone_abbreviations_suggest_real_zones(tmp_path, zone, suggestion):
    refused(
        check(tmp_path, BASE.replace('timezone = "Asia/Shanghai"', f'timezone = "{zone}"')),
        f"defaults.timezone: unknown time zone '{zone}' ({suggestion})",
    )


def test_config_check_warns_about_workflows_that_never_touch_stock(tmp_path):
    text = BASE.replace(
        "[workflows.main]",
        '[workflows.quick]\nmatch = { channel = "b2b" }\nnodes = ["review"]\n'
        '[workflows.quick_first]\nmatch = { channel = "b2c" }\nnodes = ["review", "allocation"]\n'
        "[workflows.main]",
    )
    r = check(tmp_path, text)
    assert r.exit_code == 0, r.output
    assert (
        "Warning: " + str(tmp_path / "ffctl.toml") + ": workflows.quick.nodes: workflow 'quick' has no auto = "
        '"allocate" node: its orders never reserve stock, so they ship without touching stock'
    ) in r.stderr
    assert "workflow 'quick' has no auto = \"ship\" node" in r.stderr
    assert "workflow 'quick_first' has no auto = \"ship\" node" in r.stderr
    assert "workflow 'quick_first' has no auto = \"allocate\"" not in r.stderr and "workflow 'main'" not in r.stderr
    assert r.stderr.strip().endswith("OK, with 3 warnings")


def test_config_check_warns_when_escalations_reach_nobody(tmp_path):
    r = check(tmp_path, BASE.replace('[roles.lead]\nmembers = ["bob"]', "[roles.lead]\nmembers = []"))
    assert r.exit_code == 0, r.output
    assert (
        "roles.lead.members: role 'lead' (the top of the chain) has no members: escalations from 'ops' reach nobody"
        in r.stderr
    )


def test_the_example_config_has_no_warnings(tmp_path):
    r = check(tmp_path, EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert r.exit_code == 0 and "Warning" not in r.stderr, r.stderr
