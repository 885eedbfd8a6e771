"""The SLA sweep on both backends: states, the escalation ladder, auto actions, dry runs, status."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from helpers import REVIEW_LADDER, REVIEW_MESSAGES
from helpers import SWEEP_CONFIG as CONFIG
from helpers import SWEEP_T0 as T0
from helpers import add_sweep_orders as add_orders
from helpers import complete_task_of as advance
from helpers import store_scalar as scalar
from helpers import sweep_config as load

# --- helpers -----------------------------------------------------------------------------------------


def sweep(store, cfg, at: datetime, **kw):
    from ffctl.core import sla

    return sla.sweep(store, cfg, now=at, rules=False, **kw)


def rows(store, sql: str, **params) -> list:
    with store.session() as s:
        return [tuple(r) for r in s.execute(sa.text(sql), params).all()]


def task_of(store, order_id: str, status: str = "open"):
    from ffctl.core.models import Task

    with store.session() as s:
        return (
            s.execute(sa.select(Task).where(Task.order_id == order_id, Task.status == status).order_by(Task.id.desc()))
            .scalars()
            .first()
        )


def snapshot(store) -> dict:
    """Everything a sweep may write, to prove a dry run wrote nothing."""
    tables = {
        "event": "SELECT count(*) FROM event",
        "task_step": "SELECT count(*) FROM task_step",
        "notification": "SELECT count(*) FROM notification",
        "task_assignee": "SELECT count(*) FROM task_assignee",
        "tasks": "SELECT id, status, sla_state, next_step, escalation_level, next_action_at FROM task ORDER BY id",
        "orders": "SELECT order_id, status, node FROM orders ORDER BY order_id",
    }
    return {name: rows(store, sql) for name, sql in tables.items()}


@pytest.fixture
def cfg(tmp_path):
    return load(tmp_path)


# --- states and the ladder -------------------------------------------------------------------------


def test_on_track_then_at_risk_then_breached_each_recorded_once(store, cfg):
    (oid,) = add_orders(store, cfg, 1)
    assert sweep(store, cfg, T0 + timedelta(minutes=29)).items == []
    r = sweep(store, cfg, T0 + timedelta(minutes=30))
    assert (r.at_risk, r.breached, r.notifications_queued) == (1, 0, 1)
    assert task_of(store, oid).sla_state == "at_risk"
    assert task_of(store, oid).next_action_at == T0 + timedelta(hours=1)
    assert sweep(store, cfg, T0 + timedelta(minutes=59)).items == []
    r = sweep(store, cfg, T0 + timedelta(hours=1))
    assert (r.at_risk, r.breached, r.actions["remind"]) == (0, 1, 1)  # after = 0m: due at the deadline
    assert sweep(store, cfg, T0 + timedelta(hours=1)).items == []
    assert rows(store, "SELECT event FROM event WHERE task_id IS NOT NULL ORDER BY id") == [
        ("at_risk",),
        ("breached",),
        ("reminded",),
    ]
    note = rows(store, "SELECT recipient, channel, subject FROM notification ORDER BY id")[0]
    assert note == ("ann", "email", f"[ffctl] {oid} review: at risk, due 2026-03-02 10:00")


def test_a_late_sweep_fires_every_due_step_once_in_ladder_order(store, cfg):
    oids = add_orders(store, cfg, 3)
    late = T0 + timedelta(hours=10)
    r = sweep(store, cfg, late)
    assert (r.at_risk, r.breached) == (3, 3)
    assert r.actions == {"remind": 3, "escalate": 9, "notify": 3, "auto_approve": 0, "auto_reject": 0}
    assert r.notifications_queued == len(REVIEW_MESSAGES)  # one digest per person and channel
    assert sorted(rows(store, "SELECT recipient, channel FROM notification")) == REVIEW_MESSAGES
    task = task_of(store, oids[0])
    from ffctl.core.models import Event

    with store.session() as s:
        events = s.execute(
            sa.select(Event.event, Event.at, Event.actor).where(Event.task_id == task.id).order_by(Event.id)
        ).all()
    assert [e[0] for e in events] == [event for _, event in REVIEW_LADDER]
    assert {(e[1], e[2]) for e in events} == {(late, "sla-sweep")}  # `at` is the sweep's clock
    steps = rows(store, "SELECT step FROM task_step WHERE task_id = :t ORDER BY step", t=task.id)
    assert sorted(s for (s,) in steps) == sorted(step for step, _ in REVIEW_LADDER)
    assert (task.sla_state, task.next_step, task.escalation_level, task.next_action_at) == ("breached", 5, 2, None)
    # the items say when each step became due, in ladder order
    mine = [i for i in r.items if i["task_id"] == task.id]
    assert [i["due_at"] for i in mine] == [
        T0 + timedelta(minutes=30),
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=1, minutes=30),
        T0 + timedelta(hours=2),
        T0 + timedelta(hours=3),
        T0 + timedelta(hours=4),
    ]
    # nothing fires twice, whenever the next sweeps run
    for later in (late, late + timedelta(days=3)):
        again = sweep(store, cfg, later)
        assert again.items == [] and again.notifications_queued == 0
    assert scalar(store, "SELECT count(*) FROM task_step") == 3 * len(REVIEW_LADDER)


def test_escalate_adds_the_next_role_up_and_says_how_late_and_who_had_it(store, cfg):
    from ffctl.core import workflow

    (oid,) = add_orders(store, cfg, 1)
    r = sweep(store, cfg, T0 + timedelta(hours=1, minutes=30))
    esc = [i for i in r.items if i["what"] == "escalate"]
    assert len(esc) == 1
    assert "escalated to lead" in esc[0]["detail"] and "30m late" in esc[0]["detail"]
    assert "had by clerk (ann)" in esc[0]["detail"]
    with store.session() as s:
        task = workflow.current_task(s, oid)
        assert workflow.assignees(s, task) == ["clerk", "lead"]
        assert workflow.may_act(s, cfg, task, "ben") and not workflow.may_act(s, cfg, task, "cat")
    body, recipient, priority = rows(store, "SELECT body, recipient, priority FROM notification ORDER BY id DESC")[0]
    assert (recipient, priority) == ("ben", "high")
    assert "30m past its deadline" in body and "clerk (ann)" in body
    # up the chain: boss, then the top of the chain says so and tells the top role again
    r = sweep(store, cfg, T0 + timedelta(hours=3))
    details = [i["detail"] for i in r.items if i["what"] == "escalate"]
    assert "escalated to boss" in details[0] and "had by clerk (ann), lead (ben)" in details[0]
    assert "no role above boss, told boss again" in details[1]
    assert task_of(store, oid).escalation_level == 2
    # both reach cat in one message about the order
    ((subject, body),) = rows(store, "SELECT subject, body FROM notification WHERE recipient = 'cat'")
    assert subject == f"[ffctl] {oid} review: escalated, 2h late"
    assert "escalated to you (boss)" in body and "no role above boss" in body


def test_escalations_caught_up_in_one_sweep_keep_the_chain_order(store, cfg):
    """A sweep after an outage fires both escalate steps at once: the task is with clerk, then lead,
    then boss (the chain's order, not the alphabet's), wherever assignees are listed."""
    from ffctl.core import inbox, workflow

    (oid,) = add_orders(store, cfg, 1)
    r = sweep(store, cfg, T0 + timedelta(hours=3))
    escalations = [i["detail"] for i in r.items if i["what"] == "escalate"]
    assert "escalated to lead" in escalations[0] and "escalated to boss" in escalations[1]
    with store.session() as s:
        task = workflow.current_task(s, oid)
        assert workflow.assignees(s, task) == ["clerk", "lead", "boss"]
        (listed,) = [t for t in inbox.list_tasks(s, cfg, T0 + timedelta(hours=3))[0] if t["order_id"] == oid]
    assert listed["assignees"] == ["clerk", "lead", "boss"]


def test_notify_step_reaches_its_recipients_and_the_orders_sales_rep(store, cfg):
    add_orders(store, cfg, 1)
    r = sweep(store, cfg, T0 + timedelta(hours=4))
    (item,) = [i for i in r.items if i["what"] == "notify"]
    assert "notified boss, order.sales_rep: customer waiting" in item["detail"]
    last = rows(store, "SELECT recipient, channel FROM notification ORDER BY id DESC LIMIT 2")
    assert sorted(last) == [("cat", "log"), ("oscar", "email")]
    assert rows(store, "SELECT event FROM event ORDER BY id DESC LIMIT 1") == [("notified",)]


def test_auto_approve_completes_the_node(store, cfg):
    (oid,) = add_orders(store, cfg, 1)
    advance(store, cfg, oid, T0 + timedelta(minutes=10))  # review done; approve entered at 09:10
    r = sweep(store, cfg, T0 + timedelta(hours=2))  # approve: deadline 10:10, auto_approve at 10:40
    assert r.actions["auto_approve"] == 1
    done = task_of(store, oid, status="done")
    assert (done.node, done.outcome, done.completed_by, done.sla_state) == (
        "approve",
        "auto_approved",
        "sla-sweep",
        "breached",
    )
    assert task_of(store, oid).node == "pack"
    events = [e for (e,) in rows(store, "SELECT event FROM event WHERE order_id = :o ORDER BY id", o=oid)]
    assert events[-4:] == ["at_risk", "breached", "auto_approved", "entered"]
    (item,) = [i for i in r.items if i["what"] == "auto_approve"]
    assert "auto-approved after 50m late; order now at pack" in item["detail"]


def test_auto_approve_is_skipped_when_a_person_completed_the_task_first(store, cfg):
    (oid,) = add_orders(store, cfg, 1)
    advance(store, cfg, oid, T0 + timedelta(minutes=10))
    advance(store, cfg, oid, T0 + timedelta(hours=1))  # a person approves, late but before the sweep
    r = sweep(store, cfg, T0 + timedelta(hours=2))
    assert r.actions["auto_approve"] == 0
    assert rows(store, "SELECT outcome FROM task WHERE node = 'approve'") == [("completed",)]


def test_auto_approve_rechecks_under_lock_and_skips_quietly(store, cfg, monkeypatch):
    """The race: the sweep claimed the task, then found it closed by someone else."""
    from ffctl.core import sla, workflow

    (oid,) = add_orders(store, cfg, 1)
    advance(store, cfg, oid, T0 + timedelta(minutes=10))
    claim = sla._claim

    def claim_then_lose_the_race(session, now, limit, order_ids=None):
        claimed = claim(session, now, limit, order_ids)
        if claimed:
            workflow.complete(session, cfg, oid, at=now, actor="root")
        return claimed

    monkeypatch.setattr(sla, "_claim", claim_then_lose_the_race)
    r = sweep(store, cfg, T0 + timedelta(hours=2))
    assert r.actions["auto_approve"] == 0
    assert rows(store, "SELECT outcome, completed_by FROM task WHERE node = 'approve'") == [("completed", "root")]
    assert task_of(store, oid).node == "pack"
    assert scalar(store, "SELECT count(*) FROM event WHERE event = 'auto_approved'") == 0


def test_auto_reject_sends_the_order_back_with_the_reason(store, cfg):
    (oid,) = add_orders(store, cfg, 1)
    advance(store, cfg, oid, T0 + timedelta(minutes=10))
    advance(store, cfg, oid, T0 + timedelta(minutes=20))  # pack entered 09:20: deadline 10:20, reject 11:20
    assert sweep(store, cfg, T0 + timedelta(hours=2, minutes=19)).actions["auto_reject"] == 0
    r = sweep(store, cfg, T0 + timedelta(hours=2, minutes=20))
    assert r.actions["auto_reject"] == 1
    assert rows(store, "SELECT outcome, note FROM task WHERE node = 'pack'") == [("auto_rejected", "nobody packed")]
    back = task_of(store, oid)
    assert (back.node, back.entered_at) == ("approve", T0 + timedelta(hours=2, minutes=20))
    assert rows(store, "SELECT detail FROM event WHERE event = 'auto_rejected'") == [("nobody packed",)]


def test_auto_reject_at_the_first_node_puts_the_order_on_hold(store, cfg):
    (oid,) = add_orders(store, cfg, 1, channel="rush")
    r = sweep(store, cfg, T0 + timedelta(hours=5))
    assert r.actions["auto_reject"] == 1
    assert rows(store, "SELECT status, node FROM orders") == [("on_hold", "triage")]
    assert rows(store, "SELECT note FROM task WHERE outcome = 'auto_rejected'") == [("SLA timeout",)]
    assert task_of(store, oid).held_at is not None
    (item,) = [i for i in r.items if i["what"] == "auto_reject"]
    assert "order on hold at triage" in item["detail"]
    assert sweep(store, cfg, T0 + timedelta(days=5)).items == []  # a held task is never due


def test_a_hold_stops_the_ladder_and_release_resumes_it_stretched(store, cfg):
    from ffctl.core import workflow

    (oid,) = add_orders(store, cfg, 1)
    with store.session(write=True) as s:
        workflow.hold(s, cfg, oid, at=T0 + timedelta(minutes=20), actor="root", reason="customer call")
    assert sweep(store, cfg, T0 + timedelta(days=2)).items == []
    with store.session(write=True) as s:
        workflow.release(s, cfg, oid, at=T0 + timedelta(hours=3, minutes=20), actor="root")  # held 3h
    assert sweep(store, cfg, T0 + timedelta(hours=3, minutes=29)).items == []
    r = sweep(store, cfg, T0 + timedelta(hours=3, minutes=30))  # risk_at 09:30 + 3h
    assert r.at_risk == 1 and r.breached == 0
    r = sweep(store, cfg, T0 + timedelta(hours=4))
    assert r.breached == 1


def test_cost_follows_the_due_work_through_the_due_index(store, cfg):
    from sqlalchemy.dialects import postgresql, sqlite

    from ffctl.core import sla

    with store.session() as s:
        if store.is_sqlite:
            compiled = (
                sa.select(sla.TASK.c.id)
                .where(sla.TASK.c.status == "open", sla.TASK.c.next_action_at <= T0)
                .order_by(sla.TASK.c.next_action_at)
                .limit(200)
                .compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
            )
            plan = " ".join(str(r) for r in s.execute(sa.text(f"EXPLAIN QUERY PLAN {compiled}")).all())
            assert "ix_task_due" in plan and "SCAN task" not in plan, plan
        else:
            s.execute(sa.text("SET LOCAL enable_seqscan = off"))  # an empty table would be scanned anyway
            compiled = (
                sa.select(sla.TASK.c.id)
                .where(sla.TASK.c.status == "open", sla.TASK.c.next_action_at <= T0)
                .order_by(sla.TASK.c.next_action_at)
                .limit(200)
                .compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            )
            plan = " ".join(str(r) for r in s.execute(sa.text(f"EXPLAIN {compiled}")).all())
            assert "ix_task_due" in plan, plan


# --- dry run ---------------------------------------------------------------------------------------


def test_dry_run_writes_nothing_and_reports_what_the_real_run_then_does(store, cfg):
    oids = add_orders(store, cfg, 4)
    advance(store, cfg, oids[0], T0 + timedelta(minutes=10))  # at approve: auto_approve due
    add_orders(store, cfg, 1, channel="rush", prefix="R")  # auto_reject at the first node
    at = T0 + timedelta(hours=5)
    before = snapshot(store)
    dry = sweep(store, cfg, at, dry_run=True)
    assert snapshot(store) == before
    assert dry.actions["auto_approve"] == 1 and dry.actions["auto_reject"] == 1 and dry.notifications_queued > 0
    real = sweep(store, cfg, at)
    assert {**dry.as_dict(), "dry_run": False} == real.as_dict()
    assert snapshot(store) != before


def test_dry_run_after_a_partial_real_run_reports_only_the_rest(store, cfg):
    add_orders(store, cfg, 2)
    sweep(store, cfg, T0 + timedelta(minutes=45))
    dry = sweep(store, cfg, T0 + timedelta(hours=2), dry_run=True)
    assert (dry.at_risk, dry.breached, dry.actions["remind"], dry.actions["escalate"]) == (0, 2, 2, 4)


# --- batches ---------------------------------------------------------------------------------------


def test_small_batches_do_the_same_work(store, cfg):
    add_orders(store, cfg, 7)
    r = sweep(store, cfg, T0 + timedelta(hours=10), batch=3)
    assert r.actions["escalate"] == 21 and r.notifications_queued == len(REVIEW_MESSAGES)
    assert sorted(rows(store, "SELECT recipient, channel FROM notification")) == REVIEW_MESSAGES
    assert scalar(store, "SELECT count(*) FROM task_step") == 7 * len(REVIEW_LADDER)


def test_a_task_whose_node_left_the_config_is_set_aside(store, cfg, tmp_path):
    add_orders(store, cfg, 1)
    smaller = load(
        tmp_path,
        CONFIG.replace('nodes = ["review", "approve", "pack"]', 'nodes = ["approve", "pack"]').replace(
            "[nodes.review]", "[nodes.unused_review]"
        ),
    )
    r = sweep(store, smaller, T0 + timedelta(hours=10))
    assert r.items == []
    assert rows(store, "SELECT next_action_at FROM task") == [(None,)]


# --- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def ws(workspace_with_config):
    ws = workspace_with_config(CONFIG)
    from ffctl.core.config import load_config

    store = ws.store()
    add_orders(store, load_config(ws.config_path), 2)
    store.dispose()
    return ws


def test_sweep_json_shape_and_exit_code_zero_with_breaches(ws):
    r = ws.run("sla", "sweep", "--format", "json", "--no-send", now="2026-03-02T12:00:00Z")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc) >= {"now", "at_risk", "breached", "actions", "rule_hits", "notifications_queued", "items"}
    assert doc["now"] == "2026-03-02T12:00:00+00:00"
    assert set(doc["actions"]) == {"remind", "escalate", "notify", "auto_approve", "auto_reject"}
    assert (doc["at_risk"], doc["breached"], doc["actions"]["escalate"]) == (2, 2, 6)
    assert all(set(i) >= {"order_id", "node", "task_id", "what", "detail"} for i in doc["items"])
    assert isinstance(doc["rule_hits"], int)
    assert "notifications_sent" not in doc


def test_sweep_sends_at_the_end_unless_no_send(ws):
    r = ws.run("sla", "sweep", "--format", "json", now="2026-03-02T09:31:00Z")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    # both orders at risk: one digest to ann, whose only channel is email; no server is configured:
    # queued, tried, kept for a retry
    assert doc["notifications_queued"] == 1 and doc["notifications_sent"] == 0
    assert "could not be delivered" in r.stderr


def test_sweep_dry_run_and_table(ws):
    r = ws.run("sla", "sweep", "--dry-run", "--format", "table", now="2026-03-02T12:00:00Z")
    assert r.exit_code == 0, r.output
    assert "newly breached" in r.stdout and "escalated to lead" in r.stdout
    assert "Dry run: nothing was changed." in r.stderr
    r = ws.run("sla", "sweep", "--format", "json", "--no-send", now="2026-03-02T12:00:00Z")
    assert json.loads(r.stdout)["breached"] == 2  # the dry run left it all to do


def test_sla_status_counts_from_the_clocks_before_any_sweep(ws):
    from ffctl.core import workflow
    from ffctl.core.config import load_config

    cfg = load_config(ws.config_path)
    store = ws.store()
    add_orders(store, cfg, 3, prefix="LATE", at=T0 - timedelta(hours=3))
    add_orders(store, cfg, 1, prefix="RISK", at=T0 - timedelta(minutes=40))
    with store.session(write=True) as s:
        workflow.hold(s, cfg, "LATE-000000", at=T0 - timedelta(hours=2), actor="root", reason="x")
    store.dispose()

    def status():
        return {r["node"]: r for r in json.loads(ws.run("sla", "status", "-f", "json", now=T0.isoformat()).stdout)}

    board = status()
    assert list(board) == ["review", "approve", "pack", "triage"]
    assert board["review"] == {
        "node": "review",
        "owner": "clerk",
        "open": 6,
        "on_hold": 1,
        "at_risk": 1,
        "breached": 2,
        "escalated": 0,
    }
    assert ws.run("sla", "sweep", "--no-send", now=T0.isoformat()).exit_code == 0
    assert status()["review"] == {**board["review"], "escalated": 2}
    r = ws.run("sla", "status", "-f", "csv", now=T0.isoformat())
    assert r.stdout.splitlines()[0] == "node,owner,open,on_hold,at_risk,breached,escalated"


def test_sweep_runs_the_rules(workspace_with_config):
    ws = workspace_with_config(
        CONFIG
        + """
[rules.stuck]
kind = "dwell"
node = "review"
longer_than = "2h"
flag = "stuck_in_review"
notify = ["boss"]
"""
    )
    from ffctl.core.config import load_config

    store = ws.store()
    add_orders(store, load_config(ws.config_path), 1)
    store.dispose()
    r = ws.run("sla", "sweep", "-f", "json", "--no-send", now="2026-03-02T12:00:00Z")
    doc = json.loads(r.stdout)
    assert doc["rule_hits"] == 1
    assert [i["what"] for i in doc["items"] if i["what"].startswith("rule")] == ["rule stuck"]
    r = ws.run("sla", "sweep", "-f", "json", "--no-send", "--no-rules", now="2026-03-02T13:00:00Z")
    assert json.loads(r.stdout)["rule_hits"] == 0
