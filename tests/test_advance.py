"""ffctl advance: completing and rejecting manual nodes from the command line, and its refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from helpers import order_events as events
from helpers import seed_workflow_orders as seed
from helpers import workflow_time as t

from ffctl.core import workflow
from ffctl.core.config import load_config
from ffctl.core.models import Event, Order, Task, TaskAssignee

MON_0910 = "2026-11-23T09:10:00+08:00"


@pytest.fixture
def ws(workspace):
    workspace.cfg = load_config(workspace.config_path)
    workspace.db = workspace.store()
    seed(
        workspace.db,
        workspace.cfg,
        [
            {"id": "O1"},  # standard, no custom items
            {"id": "O2", "custom": True},  # standard with tech_confirm
            {"id": "P1", "customer": "C-EAST", "channel": "b2b"},  # pilot
        ],
    )
    yield workspace
    workspace.db.dispose()


def node_of(ws, order_id):
    with ws.db.session() as s:
        o = s.get(Order, order_id)
        return o.status, o.node


def test_advance_to_the_allocation_node(ws):
    r = ws.run("advance", "O1", now=MON_0910, user="alice")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr.strip() == "O1: credit_review completed (SLA met) → now at allocation"
    assert node_of(ws, "O1") == ("open", "allocation")
    assert events(ws.db, "O1")[-3:] == [
        ("completed", "credit_review"),
        ("skipped", "tech_confirm"),
        ("entered", "allocation"),
    ]


def test_advance_through_tech_confirm_with_a_note(ws):
    r = ws.run("advance", "O2", "--node", "credit_review", now=MON_0910, user="bob")
    assert r.stderr.strip() == "O2: credit_review completed (SLA met) → now at tech_confirm"
    r = ws.run("advance", "O2", "--note", "drawing checked", now="2026-11-23T15:00:00+08:00", user="erin")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.strip() == "O2: tech_confirm completed (SLA breached by 1h50m) → now at allocation"
    with ws.db.session() as s:
        detail = s.execute(
            sa.select(Event.detail).where(
                Event.order_id == "O2", Event.node == "tech_confirm", Event.event == "completed"
            )
        ).scalar_one()
    assert detail == "SLA breached by 1h50m; drawing checked"


def test_the_node_guard_refuses_when_the_order_is_elsewhere(ws):
    r = ws.run("advance", "O1", "--node", "tech_confirm", now=MON_0910, user="alice")
    assert r.exit_code == 1
    assert r.stderr.strip() == "Error: order O1 is at node credit_review, not tech_confirm; nothing was changed"
    assert node_of(ws, "O1") == ("open", "credit_review")


def test_an_unknown_node_name_is_a_usage_error(ws):
    r = ws.run("advance", "O1", "--node", "credit_reveiw", now=MON_0910, user="alice")
    assert r.exit_code == 2
    assert "no such node" in r.stderr


def test_refused_for_someone_outside_the_owner_role(ws):
    r = ws.run("advance", "O1", now=MON_0910, user="frank")
    assert r.exit_code == 1
    assert "frank may not complete credit_review of order O1" in r.stderr
    assert "finance_reviewer" in r.stderr
    assert node_of(ws, "O1") == ("open", "credit_review")


def test_members_of_an_escalated_role_and_admins_may_act(ws):
    assert ws.run("advance", "O1", now=MON_0910, user="carol").exit_code == 1
    with ws.db.session(write=True) as s:
        task = workflow.current_task(s, "O1")
        s.add(
            TaskAssignee(task_id=task.id, role="finance_manager", reason="escalation", added_at=t("2026-11-23 09:40"))
        )
    r = ws.run("advance", "O1", now=MON_0910, user="carol")
    assert r.exit_code == 0, r.stderr
    r = ws.run("advance", "O2", now=MON_0910, user="judy")
    assert r.exit_code == 0, r.stderr
    assert node_of(ws, "O2") == ("open", "tech_confirm")


def test_refused_on_an_automatic_node(ws):
    ws.run("advance", "O1", now=MON_0910, user="alice")
    r = ws.run("advance", "O1", now=MON_0910, user="judy")
    assert r.exit_code == 1
    assert "completed by `ffctl allocate`" in r.stderr
    r = ws.run("advance", "O1", "--reject", "--reason", "no", now=MON_0910, user="judy")
    assert r.exit_code == 1
    assert "manual nodes only" in r.stderr


def test_refused_on_hold_and_when_finished(ws):
    assert ws.run("order", "hold", "O1", "--reason", "customer call", now=MON_0910).exit_code == 0
    r = ws.run("advance", "O1", now=MON_0910, user="alice")
    assert r.exit_code == 1
    assert "order O1 is on hold" in r.stderr and "order release O1" in r.stderr
    # the pilot order runs to the end of its workflow
    ws.run("advance", "P1", now=MON_0910, user="alice")
    with ws.db.session(write=True) as s:
        workflow.complete_auto(s, ws.cfg, ["P1"], "allocate", at=t("2026-11-23 09:15"), actor="allocate")
        workflow.complete_auto(s, ws.cfg, ["P1"], "ship", at=t("2026-11-23 16:00"), actor="ship")
    assert node_of(ws, "P1") == ("open", None)
    r = ws.run("advance", "P1", now="2026-11-23T17:00:00+08:00", user="judy")
    assert r.exit_code == 1
    assert "workflow is finished" in r.stderr


def test_no_such_order(ws):
    r = ws.run("advance", "NOPE", now=MON_0910, user="alice")
    assert r.exit_code == 1
    assert r.stderr.strip() == "Error: no order 'NOPE'"


def test_reject_needs_a_reason(ws):
    r = ws.run("advance", "O2", "--reject", now=MON_0910, user="alice")
    assert r.exit_code == 2
    assert "--reject needs --reason" in r.stderr
    r = ws.run("advance", "O2", "--reason", "why", now=MON_0910, user="alice")
    assert r.exit_code == 2
    assert node_of(ws, "O2") == ("open", "credit_review")


def test_reject_back_to_the_previous_node_then_on_hold_at_the_first(ws):
    ws.run("advance", "O2", now=MON_0910, user="alice")
    r = ws.run("advance", "O2", "--reject", "--reason", "drawing missing", now="2026-11-23T10:00:00+08:00", user="erin")
    assert r.exit_code == 0, r.stderr
    assert r.stderr.strip() == "O2: tech_confirm rejected (SLA met) → back at credit_review"
    with ws.db.session() as s:
        task = workflow.current_task(s, "O2")
        assert (task.node, task.entered_at, task.deadline) == (
            "credit_review",
            t("2026-11-23 10:00"),
            t("2026-11-23 10:30"),
        )
    r = ws.run("advance", "O2", "--reject", "--reason", "credit limit", now="2026-11-23T10:05:00+08:00", user="bob")
    assert r.exit_code == 0, r.stderr
    assert "on hold at credit_review (the first node)" in r.stderr
    assert node_of(ws, "O2") == ("on_hold", "credit_review")
    assert ws.run("order", "release", "O2", now="2026-11-23T11:00:00+08:00").exit_code == 0
    assert node_of(ws, "O2") == ("open", "credit_review")


# --- two people at once, as real processes --------------------------------------------------


def _spawn(ws, *args):
    env = {
        **os.environ,
        "FFCTL_CONFIG": str(ws.config_path),
        "FFCTL_DB": ws.db_url,
        "FFCTL_NOW": MON_0910,
        "FFCTL_USER": "judy",
        "FFCTL_DEBUG": "",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ffctl", *args],
        env=env,
        cwd=ws.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("order_id, guard", [("O2", ["--node", "credit_review"]), ("P1", [])])
def test_two_people_advancing_the_same_node_at_once(ws, order_id, guard):
    # O2's next node is manual (tech_confirm): without the guard judy (admin) could complete it too
    procs = [_spawn(ws, "advance", order_id, *guard) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _out, _err in results)
    assert codes == [0, 1], results
    loser = next(err for code, _out, err in results if code == 1)
    assert loser.startswith("Error: ") and len(loser.strip().splitlines()) == 1, loser
    assert "credit_review" in loser or "allocate" in loser, loser
    with ws.db.session() as s:
        completed = s.execute(
            sa.select(sa.func.count()).select_from(Event).where(Event.order_id == order_id, Event.event == "completed")
        ).scalar_one()
        open_tasks = (
            s.execute(sa.select(Task.node).where(Task.order_id == order_id, Task.status == "open")).scalars().all()
        )
    assert completed == 1
    assert open_tasks == (["tech_confirm"] if order_id == "O2" else ["allocation"])


def test_several_orders_at_once_each_in_its_own_transaction(ws):
    seed(ws.db, ws.cfg, [{"id": "O3"}, {"id": "O4"}])
    r = ws.run("advance", "O1", "NOPE", "O3", "O2", "O1", "P1", now=MON_0910, user="alice")
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "O1: credit_review completed (SLA met) → now at allocation",
        "Error: no order 'NOPE'",
        "O3: credit_review completed (SLA met) → now at allocation",
        "O2: credit_review completed (SLA met) → now at tech_confirm",
        "P1: credit_review completed (SLA met) → now at allocation",
        "Refused 1 of 5 orders: NOPE",
    ]
    assert node_of(ws, "O3") == ("open", "allocation") and node_of(ws, "O4") == ("open", "credit_review")
    # a refusal in the middle undoes nothing before or after it, and each refusal is named
    r = ws.run("advance", "O4", "O2", "O1", "--node", "credit_review", now=MON_0910, user="alice")
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        "O4: credit_review completed (SLA met) → now at allocation",
        "Error: order O2 is at node tech_confirm, not credit_review; nothing was changed",
        "Error: order O1 is at node allocation, not credit_review; nothing was changed",
        "Refused 2 of 3 orders: O2, O1",
    ]
    assert node_of(ws, "O4") == ("open", "allocation")
    r = ws.run("advance", "O2", now=MON_0910, user="erin")  # one id: as before, no summary
    assert r.exit_code == 0 and r.stderr.splitlines() == ["O2: tech_confirm completed (SLA met) → now at allocation"]
