"""Config: the example is valid, every broken variant is reported with its key and what is wrong."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from ffctl.commands._config_view import describe_workflows
from ffctl.core.config import (
    Config,
    EscalationStep,
    FrozenDict,
    load_config,
    matches,
    parse_config,
)
from ffctl.core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")

MINIMAL = """
[roles.ops]
members = ["ann"]
[nodes.review]
owner = "ops"
sla = "1h"
[workflows.all]
nodes = ["review"]
"""


def problems(text: str) -> list[str]:
    """Every problem reported for ``text``, as the user sees them."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "ffctl.toml")
    assert caught.value.exit_code == 2
    return [str(p) for p in caught.value.problems]


def broken(old: str, new: str) -> str:
    """The example with one exact snippet replaced (fails loudly if the example changed)."""
    assert EXAMPLE_TEXT.count(old) >= 1, f"snippet not in the example: {old!r}"
    return EXAMPLE_TEXT.replace(old, new, 1)


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(EXAMPLE)


# --- the example -------------------------------------------------------------------------------


def test_the_example_is_valid_and_complete(config: Config) -> None:
    assert config.file == str(EXAMPLE)
    assert config.timezone == "Asia/Shanghai"
    assert [wf.name for wf in config.workflows] == ["pilot", "standard"]
    assert set(config.nodes) == {"credit_review", "tech_confirm", "allocation", "wave_pick", "pack_check", "dispatch"}
    assert [r.name for r in config.rules] == ["low_stock", "stuck_in_dispatch", "supplier_quality"]
    assert set(config.schedule) == {"sla_sweep", "notify_send", "rules_run", "daily_report"}
    assert set(config.kpi_targets) == {
        "order_confirmation_minutes",
        "allocation_minutes",
        "pick_accuracy",
        "on_time_shipping",
        "fill_rate",
        "perfect_order",
        "cycle_time_hours",
        "sla_attainment",
    }
    assert config.roles["admin"].members  # someone can always act
    for user in config.users.values():
        assert user.webhook is None or user.webhook.startswith("http://127.0.0.1")


def test_example_paths_resolve_next_to_the_config_file(tmp_path: Path) -> None:
    target = tmp_path / "site" / "ffctl.toml"
    target.parent.mkdir()
    target.write_text(EXAMPLE_TEXT, encoding="utf-8")
    config = load_config(target)
    assert config.database_url == f"sqlite:///{target.parent / 'ffctl.db'}"
    assert config.database_url.startswith("sqlite:////")
    assert config.notify.log == str(target.parent / "notifications.jsonl")
    assert config.directory == target.parent


def test_example_typed_values(config: Config) -> None:
    review = config.nodes["credit_review"]
    assert review.owner == "finance_reviewer"
    assert review.sla_seconds == 1800
    assert review.calendar == "office"
    assert review.warn_at == 0.75 and review.critical is True and review.auto is None
    assert review.escalation == (
        EscalationStep(0, 0, "remind", (), None),
        EscalationStep(1, 1800, "escalate", (), None),
        EscalationStep(2, 7200, "escalate", (), None),
    )
    assert config.nodes["tech_confirm"].when == {"has_custom_items": (True,)}
    assert config.nodes["tech_confirm"].escalation[0].reason == "no technical confirmation"
    assert config.nodes["allocation"].auto == "allocate" and config.nodes["allocation"].owner is None
    assert config.nodes["dispatch"].auto == "ship"
    assert config.nodes["dispatch"].escalation[0].to == ("warehouse_supervisor", "order.sales_rep")

    office = config.calendars["office"]
    assert office.hours[0] == ((540, 1080),)
    assert office.hours[4] == ((540, 720), (780, 1020))
    assert office.hours[5] == () and office.hours[6] == ()
    assert date(2026, 10, 1) in office.holidays
    assert config.calendars["warehouse"].holidays == frozenset({date(2026, 10, 1)})  # a TOML date

    rules = {r.name: r for r in config.rules}
    assert rules["low_stock"].params == {"action": "purchase_requisition", "include_inbound": False}
    assert rules["stuck_in_dispatch"].params == {
        "node": "dispatch",
        "longer_than_seconds": 172800,
        "clock": "wall",
        "flag": "shipping_exception",
    }
    assert rules["stuck_in_dispatch"].priority == "high"
    assert rules["supplier_quality"].params["qc_pass_rate_below"] == 0.95
    assert rules["supplier_quality"].params["consecutive_batches"] == 3
    assert rules["supplier_quality"].params["avg_delay_days_above"] == 5.0

    email = config.notify.email
    assert email is not None and (email.host, email.port, email.password_env) == (
        "localhost",
        587,
        "FFCTL_SMTP_PASSWORD",
    )
    assert config.notify.max_attempts == 5 and config.notify.webhook_timeout_seconds == 5.0
    assert config.kpi_targets["pick_accuracy"] == 0.999
    assert isinstance(config.kpi_targets["allocation_minutes"], float)


def test_config_objects_are_frozen(config: Config) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.nodes["x"] = config.nodes["dispatch"]  # type: ignore[index]
    with pytest.raises(TypeError):
        config.schedule.update(sla_sweep="* * * * *")  # type: ignore[attr-defined]
    # ...yet plain enough to serialise and to hand to other processes
    assert pickle.loads(pickle.dumps(config.nodes)) == config.nodes
    assert isinstance(config.rules[1].params, FrozenDict)
    json.dumps(dataclasses.asdict(config.nodes["credit_review"]))
    hash(config)


# --- every broken variant names the key and the problem -----------------------------------------


BROKEN = {
    "unknown owner role": (
        ('owner = "finance_reviewer"', 'owner = "finance_reviwer"'),
        ["ffctl.toml: nodes.credit_review.owner: unknown role 'finance_reviwer' (did you mean 'finance_reviewer'?)"],
    ),
    "unknown node in a workflow": (
        ('nodes = ["credit_review", "allocation", "dispatch"]', 'nodes = ["credit_review", "alocation", "dispatch"]'),
        ["workflows.pilot.nodes[1]: unknown node 'alocation' (did you mean 'allocation'?)"],
    ),
    "unknown calendar": (
        ('calendar = "office"', 'calendar = "offfice"'),
        ["nodes.credit_review.calendar: unknown calendar 'offfice' (did you mean 'office'?)"],
    ),
    "bad duration": (
        ('sla = "30m"', 'sla = "1.5h"'),
        ["nodes.credit_review.sla: invalid duration '1.5h'", "90s, 30m, 4h, 2d, 1h30m"],
    ),
    "duration that is a number": (
        ('sla = "30m"', "sla = 30"),
        ['nodes.credit_review.sla: expected a duration in quotes such as "30m", got an integer (30)'],
    ),
    "bad cron": (
        ('sla_sweep = "*/5 * * * *"', 'sla_sweep = "*/5 * * *"'),
        ["schedule.sla_sweep: invalid cron expression '*/5 * * *'", "5 fields"],
    ),
    "cron out of range": (
        ('daily_report = "0 8 * * *"', 'daily_report = "0 25 * * *"'),
        ["schedule.daily_report: invalid cron expression '0 25 * * *'"],
    ),
    "escalation cycle": (
        ('members = ["dave"]', 'members = ["dave"]\nescalate_to = "finance_reviewer"'),
        [
            "roles.finance_reviewer.escalate_to: escalation cycle finance_reviewer -> finance_manager -> ops_director -> finance_reviewer"
        ],
    ),
    "auto_approve on a critical node": (
        ('{ after = "2h",  action = "escalate" }', '{ after = "2h",  action = "auto_approve" }'),
        ["nodes.credit_review.escalation[2].action: auto_approve is refused on a critical node"],
    ),
    "unknown key with did-you-mean": (
        ('sla = "30m"', 'slaa = "30m"'),
        ["ffctl.toml: nodes.credit_review: unknown key 'slaa' (did you mean 'sla'?)"],
    ),
    "bad time zone": (
        ('timezone = "Asia/Shanghai"             # for', 'timezone = "Asia/Shangai"             # for'),
        ["defaults.timezone: unknown time zone 'Asia/Shangai' (did you mean 'Asia/Shanghai'?)"],
    ),
    "bad calendar time zone": (
        ('timezone = "Asia/Shanghai"             # hours', 'timezone = "Beijing"             # hours'),
        ["calendars.office.timezone: unknown time zone 'Beijing'"],
    ),
    "bad hour range": (
        ('mon = "09:00-18:00"', 'mon = "9-18"'),
        ["calendars.office.hours.mon: bad hour range '9-18': expected HH:MM-HH:MM"],
    ),
    "hour range ending before it starts": (
        ('tue = "09:00-18:00"', 'tue = "22:00-06:00"'),
        ["calendars.office.hours.tue: bad hour range '22:00-06:00': the start must be before the end"],
    ),
    "overlapping ranges": (
        ('fri = ["09:00-12:00", "13:00-17:00"]', 'fri = ["09:00-12:00", "11:30-17:00"]'),
        ["calendars.office.hours.fri: hour ranges 09:00-12:00 and 11:30-17:00 overlap"],
    ),
    "unknown weekday": (
        ('wed = "09:00-18:00"', 'wednesday = "09:00-18:00"'),
        ["calendars.office.hours: unknown weekday 'wednesday' (did you mean 'wed'?)"],
    ),
    "password in notify.email": (
        ('password_env = "FFCTL_SMTP_PASSWORD"', 'password = "hunter2"'),
        ["notify.email.password: secrets never go in the config file", "password_env"],
    ),
    "unknown rule kind": (
        ('kind = "dwell"', 'kind = "dwel"'),
        ["rules.stuck_in_dispatch.kind: unknown kind 'dwel' (did you mean 'dwell'?)"],
    ),
    "notify to an unknown recipient": (
        ('notify = ["purchasing"]                # who', 'notify = ["purchasin"]                # who'),
        [
            "rules.low_stock.notify[0]: unknown recipient 'purchasin': not a role, a user or order.sales_rep (did you mean 'purchasing'?)"
        ],
    ),
    "escalation to an unknown recipient": (
        ('to = ["warehouse_supervisor", "order.sales_rep"] }', 'to = ["warehouse_supervisor", "order.customer"] }'),
        [
            "nodes.dispatch.escalation[0].to[1]: unknown recipient 'order.customer': order.sales_rep is the only order field that names a person"
        ],
    ),
    "unknown escalate_to role": (
        ('escalate_to = "finance_manager"', 'escalate_to = "finance_mgr"'),
        ["roles.finance_reviewer.escalate_to: unknown role 'finance_mgr'"],
    ),
    "escalation steps out of order": (
        (
            '{ after = "30m", action = "escalate" },                    # next',
            '{ after = "3h", action = "escalate" },                    # next',
        ),
        [
            "nodes.credit_review.escalation[2].after: steps must be in order of 'after': 2h comes after 3h in escalation[1]"
        ],
    ),
    "unknown escalation action": (
        ('{ after = "0m",  action = "remind" },', '{ after = "0m",  action = "remindd" },'),
        ["nodes.credit_review.escalation[0].action: unknown action 'remindd' (did you mean 'remind'?)"],
    ),
    "notify step without recipients": (
        (
            '{ after = "0m", action = "notify", to = ["warehouse_supervisor", "order.sales_rep"] }',
            '{ after = "0m", action = "notify" }',
        ),
        ["nodes.dispatch.escalation[0].to: missing: a notify step needs recipients"],
    ),
    "to on a step that is not notify": (
        ('{ after = "0m",  action = "remind" },', '{ after = "0m",  action = "remind", to = ["carol"] },'),
        ["nodes.credit_review.escalation[0].to: only a notify step takes 'to'"],
    ),
    "warn_at out of range": (
        ("warn_at = 0.75", "warn_at = 75"),
        ["nodes.credit_review.warn_at: must be between 0 and 1 (exclusive), got 75"],
    ),
    "zero sla": (
        ('sla = "30m"', 'sla = "0m"'),
        ["nodes.credit_review.sla: must be longer than 0s"],
    ),
    "unknown auto kind": (
        ('auto = "ship"', 'auto = "shipping"'),
        ["nodes.dispatch.auto: unknown auto 'shipping' (did you mean 'ship'?)"],
    ),
    "manual node without owner": (
        ('owner = "engineering"                  # engineers', "# nobody owns it"),
        ["nodes.tech_confirm.owner: missing: a manual node needs an owner role"],
    ),
    "workflow without nodes": (
        ('nodes = ["credit_review", "allocation", "dispatch"]', "nodes = []"),
        ["workflows.pilot.nodes: a workflow needs at least one node"],
    ),
    "node twice in a workflow": (
        (
            'nodes = ["credit_review", "allocation", "dispatch"]',
            'nodes = ["credit_review", "allocation", "credit_review", "dispatch"]',
        ),
        ["workflows.pilot.nodes[2]: node 'credit_review' appears more than once"],
    ),
    "ship before allocate": (
        ('nodes = ["credit_review", "allocation", "dispatch"]', 'nodes = ["credit_review", "dispatch", "allocation"]'),
        ["workflows.pilot.nodes: the auto = 'ship' node comes before the auto = 'allocate' node"],
    ),
    "unknown match key": (
        ('match = { channel = ["b2b"], region = ["east"] }', 'match = { chanel = ["b2b"], region = ["east"] }'),
        ["workflows.pilot.match: unknown key 'chanel' (did you mean 'channel'?)"],
    ),
    "match flag that is not a boolean": (
        ("when = { has_custom_items = true }", 'when = { has_custom_items = "yes" }'),
        ['nodes.tech_confirm.when.has_custom_items: expected true or false, got a string ("yes")'],
    ),
    "unknown section": (
        ("[schedule]", "[schedules]"),
        ["ffctl.toml: unknown section 'schedules' (did you mean 'schedule'?)"],
    ),
    "unknown schedule job": (
        ("rules_run =", "rule_run ="),
        ["schedule: unknown job 'rule_run' (did you mean 'rules_run'?)"],
    ),
    "unknown kpi": (
        ("perfect_order = 0.95", "perfect_orders = 0.95"),
        ["kpi.targets: unknown KPI 'perfect_orders' (did you mean 'perfect_order'?)"],
    ),
    "kpi rate given as a percentage": (
        ("pick_accuracy = 0.999", "pick_accuracy = 99.9"),
        ["kpi.targets.pick_accuracy: rates are fractions from 0 to 1, got 99.9 (0.999 means 99.9%)"],
    ),
    "rule key of another kind": (
        ("include_inbound = false", 'include_inbound = false\nflag = "low"'),
        ["rules.low_stock: key 'flag' does not apply to kind 'stock_below' (it belongs to kind 'dwell')"],
    ),
    "dwell rule on an unknown node": (
        ('node = "dispatch"                      # the node watched', 'node = "dispach"'),
        ["rules.stuck_in_dispatch.node: unknown node 'dispach' (did you mean 'dispatch'?)"],
    ),
    "dwell rule without a flag": (
        ('flag = "shipping_exception"', "# no flag"),
        ["rules.stuck_in_dispatch.flag: missing"],
    ),
    "supplier rate out of range": (
        ("qc_pass_rate_below = 0.95", "qc_pass_rate_below = 95"),
        ["rules.supplier_quality.qc_pass_rate_below: rates are fractions from 0 to 1"],
    ),
    "stock rule with another action": (
        ('action = "purchase_requisition"', 'action = "email_buyer"'),
        ["rules.low_stock.action: unknown action 'email_buyer' for kind stock_below"],
    ),
    "bad priority": (
        ('priority = "high"                      # notification priority\nnotify', 'priority = "urgent"\nnotify'),
        ["rules.stuck_in_dispatch.priority: unknown priority 'urgent' (expected one of: low, normal, high)"],
    ),
    "wrong type for members": (
        ('members = ["carol"]', 'members = "carol"'),
        ['roles.finance_manager.members: expected a list, e.g. ["carol"], got a string ("carol")'],
    ),
    "wrong type for critical": (
        ("critical = true", 'critical = "yes"'),
        ['nodes.credit_review.critical: expected true or false, got a string ("yes")'],
    ),
    "a node that is not a table": (
        ("[nodes.pack_check]", '[nodes]\npack_check2 = "x"\n[nodes.pack_check]'),
        ["nodes.pack_check2: expected a table, got a string"],
    ),
    "bad holiday": (
        ('holidays = ["2026-10-01", "2026-10-02", "2026-10-05"]', 'holidays = ["2026-10-01", "10/02/2026"]'),
        ['calendars.office.holidays[1]: expected a date (YYYY-MM-DD), got a string ("10/02/2026")'],
    ),
    "password_env holding the password itself": (
        ('password_env = "FFCTL_SMTP_PASSWORD"', 'password_env = "p@ss w0rd!"'),
        ["notify.email.password_env: must be the name of an environment variable"],
    ),
    "a later workflow shadowed by a catch-all": (
        (
            "[workflows.standard]",
            '[workflows.everything]\nmatch = {}\nnodes = ["credit_review", "allocation", "dispatch"]\n[workflows.standard]',
        ),
        [
            "workflows.standard.match: workflow 'standard' is never used: 'everything' comes before it and matches every order"
        ],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_variant_is_reported_with_key_and_problem(case: str) -> None:
    (old, new), expected = BROKEN[case]
    found = problems(broken(old, new))
    assert len(found) == 1, found
    for fragment in expected:
        assert fragment in found[0], found[0]
    assert found[0].startswith("ffctl.toml")


def test_password_value_is_never_echoed() -> None:
    error = pytest.raises(
        ConfigError, parse_config, broken('password_env = "FFCTL_SMTP_PASSWORD"', 'password = "hunter2"')
    )
    assert "hunter2" not in str(error.value)
    error = pytest.raises(
        ConfigError, parse_config, broken('password_env = "FFCTL_SMTP_PASSWORD"', 'password_env = "hunter2 now"')
    )
    assert "hunter2" not in str(error.value)


def test_toml_syntax_error_reports_the_line() -> None:
    text = broken("warn_at = 0.75", "warn_at = = 0.75")
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if row.startswith("warn_at = = 0.75"))
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "ffctl.toml")
    [problem] = caught.value.problems
    assert problem.line == line
    assert str(problem).startswith(f"ffctl.toml:{line}: invalid TOML: ")
    assert "warn_at = = 0.75" in str(problem)


def test_multiline_inline_table_is_a_syntax_error_with_a_line() -> None:
    # SPEC §3's sample spreads `hours = {...}` over two lines; TOML 1.0 refuses that.
    text = MINIMAL + '[calendars.c]\nhours = { mon = "09:00-18:00",\n  tue = "09:00-18:00" }\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.problems[0].line is not None


def test_several_problems_are_all_reported_at_once() -> None:
    text = EXAMPLE_TEXT
    for old, new in [
        ('owner = "finance_reviewer"', 'owner = "finance_reviwer"'),
        ('sla = "4h"', 'sla = "4 hours"'),
        ('sla_sweep = "*/5 * * * *"', 'sla_sweep = "every 5 minutes"'),
        ('password_env = "FFCTL_SMTP_PASSWORD"', 'password = "x"'),
        ('kind = "supplier"', 'kind = "vendor"'),
    ]:
        text = text.replace(old, new, 1)
    found = problems(text)
    keys = [p.split(": ")[1] for p in found]
    assert keys == [
        "nodes.credit_review.owner",
        "nodes.tech_confirm.sla",
        "rules.supplier_quality.kind",
        "notify.email.password",
        "schedule.sla_sweep",
    ], found
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "ffctl.toml")
    assert str(caught.value).startswith("invalid config (5 problems):")


def test_a_typo_is_not_reported_twice_as_missing() -> None:
    assert problems(MINIMAL.replace('sla = "1h"', 'slq = "1h"')) == [
        "ffctl.toml: nodes.review: unknown key 'slq' (did you mean 'sla'?)"
    ]


def test_missing_file_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "ffctl.toml")
    assert str(caught.value) == f"no config file at {tmp_path / 'ffctl.toml'}"
    assert "ffctl init" in (caught.value.hint or "")


def test_file_not_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ffctl.toml"
    path.write_bytes(MINIMAL.encode() + "# 审核\n".encode("gbk"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert "UTF-8" in problem.message and problem.line == MINIMAL.count("\n") + 1


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ffctl.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(path).nodes["review"].sla_seconds == 3600


# --- small configs and defaults -------------------------------------------------------------


def test_minimal_config_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.timezone == "UTC"
    assert config.database_url is None
    assert config.notify.email is None and config.notify.log is None and config.notify.max_attempts == 5
    assert config.schedule == {} and config.kpi_targets == {} and config.rules == ()
    node = config.nodes["review"]
    assert (node.warn_at, node.critical, node.calendar, node.escalation, node.when, node.auto) == (
        0.75,
        False,
        None,
        (),
        {},
        None,
    )
    assert config.workflows[0].match == {}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///ffctl.db", "sqlite:///{dir}/ffctl.db"),
        ("sqlite:///data/ffctl.db?timeout=5", "sqlite:///{dir}/data/ffctl.db?timeout=5"),
        ("sqlite+pysqlite:///ffctl.db", "sqlite+pysqlite:///{dir}/ffctl.db"),
        ("sqlite:////var/lib/ffctl.db", "sqlite:////var/lib/ffctl.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://ffctl:s3cret@db/ffctl", "postgresql+psycopg://ffctl:s3cret@db/ffctl"),
    ],
)
def test_database_url(tmp_path: Path, url: str, expected: str) -> None:
    config = parse_config(f'[database]\nurl = "{url}"\n' + MINIMAL, str(tmp_path / "ffctl.toml"))
    assert config.database_url == expected.format(dir=tmp_path)


def test_database_password_is_masked_in_the_description() -> None:
    config = parse_config('[database]\nurl = "postgresql+psycopg://ffctl:s3cret@db/ffctl"\n' + MINIMAL)
    text = describe_workflows(config)
    assert "s3cret" not in text and "postgresql+psycopg://ffctl:***@db/ffctl" in text


def test_hours_may_end_at_24_00_and_a_day_may_be_closed() -> None:
    config = parse_config(MINIMAL + '[calendars.c]\nhours = { mon = "00:00-24:00", tue = [], sat = "9:30-12:00" }\n')
    assert config.calendars["c"].hours[0] == ((0, 1440),)
    assert config.calendars["c"].hours[1] == ()
    assert config.calendars["c"].hours[5] == ((570, 720),)
    assert config.calendars["c"].timezone == "UTC"  # [defaults] timezone when the calendar names none


def test_calendar_without_any_hours_is_refused() -> None:
    assert problems(MINIMAL + "[calendars.c]\nhours = {}\n") == [
        "ffctl.toml: calendars.c.hours: no working hours on any day: an SLA on this calendar would never run out"
    ]


def test_supplier_rule_needs_a_threshold() -> None:
    found = problems(MINIMAL + '[rules.s]\nkind = "supplier"\nnotify = ["ops"]\n')
    assert found == ["ffctl.toml: rules.s: a supplier rule needs qc_pass_rate_below, avg_delay_days_above, or both"]


def test_supplier_rule_defaults() -> None:
    config = parse_config(MINIMAL + '[rules.s]\nkind = "supplier"\navg_delay_days_above = 2.5\n')
    assert config.rules[0].params == {
        "qc_pass_rate_below": None,
        "consecutive_batches": 3,
        "avg_delay_days_above": 2.5,
        "window_batches": 10,
        "action": "freeze_inspection_exempt",
    }
    assert config.rules[0].priority == "normal" and config.rules[0].notify == ()


def test_recipients_may_be_roles_users_members_or_the_sales_rep() -> None:
    text = (
        MINIMAL
        + '[users.zoe]\nemail = "zoe@example.com"\n[rules.r]\nkind = "dwell"\nnode = "review"\nlonger_than = "2h"\nflag = "slow"\nnotify = ["ops", "zoe", "ann", "order.sales_rep"]\nclock = "calendar"\n'
    )
    rule = parse_config(text).rules[0]
    assert rule.notify == ("ops", "zoe", "ann", "order.sales_rep")
    assert rule.params["clock"] == "calendar"


def test_auto_approve_on_an_auto_node_is_refused() -> None:
    text = (
        MINIMAL
        + '[nodes.alloc]\nsla = "5m"\nauto = "allocate"\nescalation = [ { after = "1h", action = "auto_approve" } ]\n'
    )
    assert problems(text) == [
        "ffctl.toml: nodes.alloc.escalation[0].action: auto_approve cannot complete an auto = 'allocate' node; `ffctl allocate` completes it"
    ]


def test_escalate_needs_an_owner() -> None:
    text = (
        MINIMAL
        + '[nodes.alloc]\nsla = "5m"\nauto = "allocate"\nescalation = [ { after = "1h", action = "escalate" } ]\n'
    )
    assert problems(text) == [
        "ffctl.toml: nodes.alloc.escalation[0].action: escalate needs the node to have an owner role to escalate from"
    ]


def test_self_escalation_is_a_cycle() -> None:
    text = MINIMAL.replace('members = ["ann"]', 'members = ["ann"]\nescalate_to = "ops"')
    assert problems(text) == ["ffctl.toml: roles.ops.escalate_to: escalation cycle ops -> ops"]


def test_role_and_user_with_one_name_is_ambiguous() -> None:
    assert problems(MINIMAL + '[users.ops]\nemail = "ops@example.com"\n') == [
        "ffctl.toml: users.ops: 'ops' is both a role and a user; recipients would be ambiguous, rename one"
    ]


# --- the API others code against ------------------------------------------------------------


def test_workflow_for_picks_the_pilot_then_standard(config: Config) -> None:
    pilot = {
        "channel": "b2b",
        "region": "east",
        "tier": "gold",
        "category": {"pumps"},
        "sku": ["P-1"],
        "has_custom_items": False,
    }
    assert config.workflow_for(pilot).name == "pilot"
    assert config.workflow_for({**pilot, "channel": "B2B"}).name == "pilot"  # case-insensitive
    assert config.workflow_for({**pilot, "region": "west"}).name == "standard"
    assert config.workflow_for({**pilot, "channel": "b2c"}).name == "standard"
    assert config.workflow_for({"channel": "b2b"}).name == "standard"  # no region: the pilot doesn't fit
    assert config.workflow_for({}).name == "standard"


def test_workflow_for_none_when_nothing_matches() -> None:
    config = parse_config(MINIMAL.replace("[workflows.all]", '[workflows.all]\nmatch = { region = "east" }'))
    assert config.workflow_for({"region": "west"}) is None


def test_matches_with_line_attributes_and_lists() -> None:
    spec = {"category": ("pumps", "valves"), "region": ("east",)}
    assert matches(spec, {"category": {"pumps", "seals"}, "region": "east"})
    assert matches(spec, {"category": ["seals", "Valves"], "region": "EAST"})
    assert not matches(spec, {"category": ["seals"], "region": "east"})
    assert not matches(spec, {"category": [], "region": "east"})
    assert not matches(spec, {"category": ("pumps",)})  # region missing
    assert not matches(spec, {"category": ("pumps",), "region": None})
    assert matches({}, {})
    assert matches({"has_custom_items": (True,)}, {"has_custom_items": True})
    assert not matches({"has_custom_items": (True,)}, {"has_custom_items": False})
    assert matches({"has_custom_items": (False,)}, {"has_custom_items": 0})
    assert matches({"priority": (2, "high")}, {"priority": "2"})
    assert matches({"priority": (2,)}, {"priority": 2})
    assert matches({"sku": ("A-1",)}, {"sku": ("a-1", "b-2")})


def test_match_values_from_toml(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "[workflows.all]",
        '[workflows.big]\nmatch = { tier = "gold", category = ["pumps", "valves"], priority = [1, 2] }\nnodes = ["review"]\n[workflows.all]',
    )
    config = parse_config(text)
    assert config.workflows[0].match == {"tier": ("gold",), "category": ("pumps", "valves"), "priority": (1, 2)}
    assert config.workflow_for({"tier": "gold", "category": {"valves"}, "priority": 2}).name == "big"
    assert config.workflow_for({"tier": "gold", "category": {"valves"}, "priority": 3}).name == "all"


def test_escalation_chain(config: Config) -> None:
    assert config.escalation_chain("finance_reviewer") == ("finance_manager", "ops_director")
    assert config.escalation_chain("warehouse") == ("warehouse_supervisor", "ops_director")
    assert config.escalation_chain("ops_director") == ()
    assert config.escalation_chain("no_such_role") == ()
    assert config.escalation_chain(None) == ()


def test_members(config: Config) -> None:
    assert config.members("finance_reviewer") == ("alice", "bob")
    assert config.members("oscar") == ("oscar",)  # a user in no role
    assert config.members("alice") == ("alice",)
    assert config.members("order.sales_rep") == ()  # resolved from the order by the caller
    assert config.members("nobody") == ()


def test_calendar_returns_a_working_clock(config: Config) -> None:
    calendar_module = pytest.importorskip("ffctl.core.calendar")
    office = config.calendar("credit_review")
    assert isinstance(office, calendar_module.BusinessCalendar)
    assert config.calendar("credit_review") is office  # cached per calendar
    assert config.calendar("allocation") is calendar_module.WALL_CLOCK
    # Monday 2026-06-01 17:50 in Shanghai + 30 business minutes -> Tuesday 09:20 (01:20 UTC)
    start = datetime(2026, 6, 1, 9, 50, tzinfo=timezone.utc)
    assert office.add(start, 1800) == datetime(2026, 6, 2, 1, 20, tzinfo=timezone.utc)
    with pytest.raises(KeyError):
        config.calendar("no_such_node")


def test_describe_workflows_reads_like_the_spec(config: Config) -> None:
    text = describe_workflows(config)
    assert "workflow pilot  (matches channel = b2b and region = east)" in text
    assert "workflow standard  (matches every order)" in text
    assert text.index("workflow pilot") < text.index("workflow standard")
    assert (
        "1. credit_review  manual, owner finance_reviewer   SLA 30m (office hours), at risk at 75%   critical" in text
    )
    assert "ladder: +0m remind finance_reviewer · +30m escalate → finance_manager · +2h escalate → ops_director" in text
    assert "only when has_custom_items = true" in text
    assert '+1h auto-reject → back to credit_review ("no technical confirmation")' in text
    assert "auto: allocate   SLA 10m (wall clock)" in text
    assert "office     Asia/Shanghai   Mon-Thu 09:00-18:00 · Fri 09:00-12:00, 13:00-17:00 · closed Sat-Sun" in text
    assert "stuck_in_dispatch  dwell: orders at dispatch longer than 2d (wall clock) → flag shipping_exception" in text
    assert "sla_sweep     */5 * * * *   every 5 minutes" in text
    assert "pick_accuracy               ≥ 99.9%" in text


def test_describe_says_when_the_chain_runs_out() -> None:
    text = MINIMAL.replace('sla = "1h"', 'sla = "1h"\nescalation = [ { after = "0m", action = "escalate" } ]')
    assert "escalate → (no role above ops: nobody new is added)" in describe_workflows(parse_config(text))


def test_loading_config_stays_light() -> None:
    code = (
        "import sys, ffctl.core.config as c; c.load_config(sys.argv[1]); "
        "heavy = [m for m in ('typer', 'rich', 'sqlalchemy', 'sqlmodel', 'click', 'ffctl.core.calendar') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLE)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_a_narrower_workflow_after_a_broader_one_is_never_used() -> None:
    text = MINIMAL.replace(
        "[workflows.all]",
        '[workflows.east]\nmatch = { region = ["east", "north"] }\nnodes = ["review"]\n[workflows.east_b2b]\nmatch = { region = "east", channel = "b2b" }\nnodes = ["review"]\n[workflows.all]',
    )
    assert problems(text) == [
        "ffctl.toml: workflows.east_b2b.match: workflow 'east_b2b' is never used: 'east' comes before it and matches every order this one would (the first match wins; move 'east_b2b' above it)"
    ]
    # the other way round is the intended pilot pattern
    text = MINIMAL.replace(
        "[workflows.all]",
        '[workflows.east_b2b]\nmatch = { region = "east", channel = "b2b" }\nnodes = ["review"]\n[workflows.east]\nmatch = { region = ["east", "north"] }\nnodes = ["review"]\n[workflows.all]',
    )
    assert [wf.name for wf in parse_config(text).workflows] == ["east_b2b", "east", "all"]


def test_problems_come_in_file_order() -> None:
    text = EXAMPLE_TEXT.replace(
        'nodes = ["credit_review", "allocation", "dispatch"]', 'nodes = ["credit_reviews", "allocation", "dispatch"]', 1
    )
    text = text.replace('owner = "engineering"', 'owner = "engineers"', 1).replace(
        "[calendars.office]", '[calendars.office]\nzone = "UTC"', 1
    )
    keys = [p.split(": ")[1] for p in problems(text)]
    assert keys == ["calendars.office", "workflows.pilot.nodes[0]", "nodes.tech_confirm.owner"]
