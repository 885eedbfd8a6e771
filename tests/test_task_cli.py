"""ffctl task list: the inbox, most urgent first, in the viewer's time zone."""

from __future__ import annotations

import json

import pytest
from helpers import seed_workflow_orders as seed
from helpers import workflow_time as t

from ffctl.core import workflow
from ffctl.core.config import load_config
from ffctl.core.models import TaskAssignee

NOW = "2026-11-23T09:25:00+08:00"  # a Monday


@pytest.fixture
def ws(workspace):
    workspace.cfg = load_config(workspace.config_path)
    workspace.db = db = workspace.store()
    cfg = workspace.cfg
    seed(
        db,
        cfg,
        [
            {"id": "LATE", "created": "2026-11-20 16:00"},  # credit_review due Fri 16:30: breached
            {"id": "SOON", "created": "2026-11-23 09:00"},  # due 09:30, at risk
            {"id": "LATER", "created": "2026-11-23 09:20"},  # due 09:50, on track
            {"id": "HELD", "created": "2026-11-23 08:00"},  # due 09:30 but held
            {"id": "TECH", "created": "2026-11-23 09:00", "custom": True},
            {"id": "AUTO", "created": "2026-11-23 09:00"},
            {"id": "ESC", "created": "2026-11-20 15:00"},  # due Fri 15:30, escalated to finance_manager
        ],
    )
    with db.session(write=True) as s:
        workflow.hold(s, cfg, "HELD", at=t("2026-11-23 09:05"), actor="alice", reason="waiting")
        workflow.complete(s, cfg, "TECH", at=t("2026-11-23 09:05"), actor="alice", manual=True)  # due 13:05 wall
        workflow.complete(s, cfg, "AUTO", at=t("2026-11-23 09:21"), actor="alice", manual=True)  # allocation 09:31
        task = workflow.current_task(s, "ESC")
        s.add(
            TaskAssignee(task_id=task.id, role="finance_manager", reason="escalation", added_at=t("2026-11-20 16:00"))
        )
    yield workspace
    db.dispose()


def inbox(ws, *args, user="judy", now=NOW):
    """The inbox as JSON; judy is in admin, so --all shows her every open task."""
    r = ws.run("task", "list", "-f", "json", *args, now=now, user=user)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_sorted_by_urgency(ws):
    rows = inbox(ws, "--all")
    # breached first (most overdue first), then by deadline; held last
    assert [r["order_id"] for r in rows] == ["ESC", "LATE", "SOON", "AUTO", "LATER", "TECH", "HELD"]
    assert [r["state"] for r in rows] == [
        "breached",
        "breached",
        "at_risk",
        "on_track",
        "on_track",
        "on_track",
        "on_hold",
    ]


def test_json_shape_times_and_business_seconds(ws):
    rows = {r["order_id"]: r for r in inbox(ws, "--all")}
    assert rows["SOON"] == {
        "order_id": "SOON",
        "node": "credit_review",
        "owner": "finance_reviewer",
        "assignees": ["finance_reviewer"],
        "entered_at": "2026-11-23T09:00:00+08:00",
        "deadline": "2026-11-23T09:30:00+08:00",
        "state": "at_risk",
        "seconds_left": 300,
        "auto": None,
        "customer": "C-WEST",
        "escalation_level": 0,
        "customer_name": "Western Goods",
        "priority": 0,
        "promised_ship_date": None,
        "p_breach": None,
        "p_breach_reason": "fewer than 20 completed visits in the last 30d (has 2)",
    }
    # Friday 16:30 -> Monday 09:25 is 30 min + 25 min of office time
    assert rows["LATE"]["seconds_left"] == -55 * 60
    assert rows["ESC"]["assignees"] == ["finance_reviewer", "finance_manager"]
    assert (rows["AUTO"]["node"], rows["AUTO"]["owner"], rows["AUTO"]["auto"]) == ("allocation", None, "allocate")
    assert rows["TECH"]["seconds_left"] == 3 * 3600 + 40 * 60  # wall clock
    assert rows["HELD"]["seconds_left"] == 25 * 60  # frozen at the hold


def test_mine_follows_roles_and_escalations(ws):
    assert [r["order_id"] for r in inbox(ws, "--mine", user="alice")] == ["ESC", "LATE", "SOON", "LATER", "HELD"]
    assert [r["order_id"] for r in inbox(ws, "--mine", user="carol")] == ["ESC"]  # escalated to her role
    assert [r["order_id"] for r in inbox(ws, "--mine", user="erin")] == ["TECH"]
    # without options, your own tasks
    assert inbox(ws, user="alice") == inbox(ws, "--mine", user="alice")
    assert [r["order_id"] for r in inbox(ws, user="carol")] == ["ESC"]
    # judy (admin) may act everywhere, but nothing is hers; --all shows her everything
    assert inbox(ws, "--mine", user="judy") == [] and inbox(ws, user="judy") == []
    assert len(inbox(ws, "--all", user="judy")) == 7


def test_all_is_for_admins(ws):
    r = ws.run("task", "list", "--all", now=NOW, user="alice")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "Error: alice is not in the admin role; --all lists every open task for admins only",
        "Hint: --role ROLE lists a role's tasks; without options you see your own.",
    ]
    r = ws.run("task", "list", "--all", "--mine", now=NOW, user="judy")
    assert r.exit_code == 2 and "--all and --mine contradict" in r.stderr


def test_mine_for_someone_without_a_role(ws):
    r = ws.run("task", "list", "--mine", "-f", "json", now=NOW, user="mallory")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == []
    assert "mallory is not a member of any role" in r.stderr


def test_role_and_state_filters(ws):
    assert [r["order_id"] for r in inbox(ws, "--role", "finance_manager", user="erin")] == ["ESC"]  # anyone may look
    assert [r["order_id"] for r in inbox(ws, "--role", "engineering")] == ["TECH"]
    assert [r["order_id"] for r in inbox(ws, "--all", "--breached")] == ["ESC", "LATE"]
    assert [r["order_id"] for r in inbox(ws, "--all", "--at-risk")] == ["SOON"]
    assert [r["order_id"] for r in inbox(ws, "--all", "--at-risk", "--breached")] == ["ESC", "LATE", "SOON"]
    assert [r["order_id"] for r in inbox(ws, "--mine", "--breached", user="carol")] == ["ESC"]
    r = ws.run("task", "list", "--role", "nobody", now=NOW)
    assert r.exit_code == 2 and "no such role" in r.stderr


def test_limit_keeps_the_most_urgent(ws):
    r = ws.run("task", "list", "--all", "-f", "csv", "--limit", "2", now=NOW, user="judy")
    assert r.stdout.splitlines()[0] == (
        "order_id,customer,priority,node,owner,assignees,entered_at,promised_ship_date,"
        "deadline,state,seconds_left,p_breach,p_breach_reason"
    )
    assert [line.split(",")[0] for line in r.stdout.splitlines()[1:]] == ["ESC", "LATE"]
    assert r.stderr == "Showing 2 of 7 tasks; --limit 0 for all.\n"
    r = ws.run("task", "list", "--all", "-f", "table", "--limit", "3", now=NOW, user="judy")
    assert r.stderr.splitlines() == ["Showing 3 of 7 tasks; --limit 0 for all.", "7 tasks, 2 breached"]
    r = ws.run("task", "list", "-f", "table", now=NOW, user="alice")
    assert r.stderr.splitlines() == ["5 tasks, 2 breached"]
    r = ws.run("task", "list", "-f", "table", "--role", "finance_manager", now=NOW, user="alice")
    assert r.stderr.splitlines() == ["1 task, 1 breached"]


def test_table_in_the_viewers_zone(ws):
    r = ws.run("task", "list", "--all", "-f", "table", now=NOW, user="judy")
    assert r.exit_code == 0
    assert "2026-11-23 09:30" in r.stdout  # SOON's deadline, local time
    assert "auto (allocate)" in r.stdout and "paused" in r.stdout and "55m late" in r.stdout
    # another viewer's zone
    ws.config_path.write_text(
        ws.config_path.read_text().replace(
            'timezone = "Asia/Shanghai"             # for times shown',
            'timezone = "Europe/Berlin"             # for times shown',
        )
    )
    r = ws.run("task", "list", "--all", "-f", "json", now=NOW, user="judy")
    soon = next(x for x in json.loads(r.stdout) if x["order_id"] == "SOON")
    assert soon["deadline"] == "2026-11-23T02:30:00+01:00"


def test_table_has_customer_priority_and_promised_and_one_assignee_column(ws):
    r = ws.run("task", "list", "--all", "-f", "table", now=NOW, user="judy", columns=200)
    header = next(line for line in r.stdout.splitlines() if "order" in line and "deadline" in line).split("┃")
    header = [h.strip() for h in header if h.strip()]
    assert header == [
        "order",
        "customer",
        "priority",
        "node",
        "assigned to",
        "entered",
        "promised",
        "deadline",
        "state",
        "time left",
        "p(breach)",
    ]
    esc = next(line for line in r.stdout.splitlines() if "ESC" in line)
    assert "finance_reviewer, finance_manager" in esc and "normal" in esc and "C-WEST" in esc
    assert "auto (allocate)" in r.stdout
    r = ws.run("task", "list", "--all", "-f", "table", now=NOW, user="judy", columns=80)
    assert r.exit_code == 0
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    assert r.stderr.splitlines()[0].startswith("Not shown, for the terminal's width: entered")
    assert "ESC" in r.stdout.split() and "credit_review" in r.stdout.split()
