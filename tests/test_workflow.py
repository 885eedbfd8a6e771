"""The workflow engine against the store, on SQLite and PostgreSQL, with the example config.

Office calendar (credit_review, 30m SLA, at risk at 75%): Asia/Shanghai, Mon-Thu 09-18,
Fri 09-12 + 13-17. 2026-11-23 is a Monday.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from helpers import order_events as events
from helpers import seed_workflow_orders as seed
from helpers import workflow_time as t

from ffctl.core import workflow
from ffctl.core.errors import Conflict, PermissionDenied
from ffctl.core.models import Event, Order, Task, TaskAssignee


def order_row(store, order_id: str) -> Order:
    with store.session() as s:
        o = s.get(Order, order_id)
        s.expunge(o)
        return o


def open_task(store, order_id: str) -> Task | None:
    with store.session() as s:
        task = workflow.current_task(s, order_id)
        if task is not None:
            s.expunge(task)
        return task


def test_first_matching_workflow_wins(store, example_config):
    seed(
        store,
        example_config,
        [
            {"id": "PILOT", "customer": "C-EAST", "channel": "b2b"},
            {"id": "EAST-WEB", "customer": "C-EAST", "channel": "web"},
            {"id": "WEST-B2B", "customer": "C-WEST", "channel": "b2b"},
        ],
    )
    assert order_row(store, "PILOT").workflow == "pilot"
    assert order_row(store, "EAST-WEB").workflow == "standard"
    assert order_row(store, "WEST-B2B").workflow == "standard"
    for oid in ("PILOT", "EAST-WEB", "WEST-B2B"):
        assert order_row(store, oid).node == "credit_review"
    assert events(store, "PILOT") == [("created", None), ("entered", "credit_review")]


def test_entering_sets_the_business_time_deadline(store, example_config):
    # Monday 17:50 + 30 min of office time: 10 min today, 20 min Tuesday morning
    seed(store, example_config, [{"id": "O1", "created": "2026-11-23 17:50"}])
    task = open_task(store, "O1")
    assert task.entered_at == t("2026-11-23 17:50")
    assert task.deadline == t("2026-11-24 09:20")
    assert task.risk_at == t("2026-11-24 09:12:30")  # 75% of 30 min = 22.5 min
    assert task.owner == "finance_reviewer"


def test_when_skips_tech_confirm_for_orders_without_custom_items(store, example_config):
    seed(store, example_config, [{"id": "PLAIN"}, {"id": "CUSTOM", "custom": True}])
    at = t("2026-11-23 09:10")
    with store.session(write=True) as s:
        assert workflow.complete(s, example_config, "PLAIN", at=at, actor="alice", manual=True) == "allocation"
        assert workflow.complete(s, example_config, "CUSTOM", at=at, actor="alice", manual=True) == "tech_confirm"
    assert events(store, "PLAIN")[-3:] == [
        ("completed", "credit_review"),
        ("skipped", "tech_confirm"),
        ("entered", "allocation"),
    ]
    assert ("skipped", "tech_confirm") not in events(store, "CUSTOM")
    with store.session() as s:
        skipped = s.execute(sa.select(Task).where(Task.order_id == "PLAIN", Task.node == "tech_confirm")).scalar_one()
        assert (skipped.status, skipped.outcome) == ("skipped", "skipped")
        detail = s.execute(
            sa.select(Event.detail).where(Event.order_id == "PLAIN", Event.event == "skipped")
        ).scalar_one()
    assert "has_custom_items" in detail


def test_complete_records_sla_met_or_breached(store, example_config):
    seed(store, example_config, [{"id": "ON-TIME"}, {"id": "LATE"}])
    with store.session(write=True) as s:
        workflow.complete(s, example_config, "ON-TIME", at=t("2026-11-23 09:30"), actor="alice", manual=True)
        workflow.complete(s, example_config, "LATE", at=t("2026-11-23 10:15"), actor="alice", manual=True)
        details = dict(s.execute(sa.select(Event.order_id, Event.detail).where(Event.event == "completed")).all())
    assert details["ON-TIME"] == "SLA met"
    assert details["LATE"] == "SLA breached by 45m"


def test_manual_complete_is_refused_on_an_auto_node(store, example_config):
    seed(store, example_config, [{"id": "O1"}])
    with store.session(write=True) as s:
        workflow.complete(s, example_config, "O1", at=t("2026-11-23 09:10"), actor="alice", manual=True)
    with pytest.raises(Conflict, match="ffctl allocate"):
        with store.session(write=True) as s:
            workflow.complete(s, example_config, "O1", at=t("2026-11-23 09:11"), actor="judy", manual=True)
    with pytest.raises(Conflict, match="manual nodes only"):
        with store.session(write=True) as s:
            workflow.reject(s, example_config, "O1", at=t("2026-11-23 09:11"), actor="judy", reason="x", manual=True)
    # the allocation engine completes it
    with store.session(write=True) as s:
        assert workflow.complete_auto(
            s, example_config, ["O1"], "allocate", at=t("2026-11-23 09:12"), actor="allocate"
        ) == ["O1"]
    assert order_row(store, "O1").node == "wave_pick"


def test_node_guard(store, example_config):
    seed(store, example_config, [{"id": "O1"}])
    with pytest.raises(Conflict, match="at node credit_review, not tech_confirm"):
        with store.session(write=True) as s:
            workflow.complete(s, example_config, "O1", at=t("2026-11-23 09:10"), actor="alice", node="tech_confirm")
    assert order_row(store, "O1").node == "credit_review"


def test_permission_owner_escalated_role_and_admin(store, example_config):
    seed(store, example_config, [{"id": "O1"}, {"id": "O2"}, {"id": "O3"}])
    at = t("2026-11-23 09:10")
    with pytest.raises(PermissionDenied, match="needs a member of finance_reviewer or admin"):
        with store.session(write=True) as s:
            workflow.complete(s, example_config, "O1", at=at, actor="carol", manual=True)
    # escalated to finance_manager: carol may act now
    with store.session(write=True) as s:
        task = workflow.current_task(s, "O1")
        s.add(TaskAssignee(task_id=task.id, role="finance_manager", reason="escalation", added_at=at))
    with store.session(write=True) as s:
        assert workflow.complete(s, example_config, "O1", at=at, actor="carol", manual=True) == "allocation"
        assert workflow.complete(s, example_config, "O2", at=at, actor="judy", manual=True) == "allocation"
        assert workflow.complete(s, example_config, "O3", at=at, actor="bob", manual=True) == "allocation"


def test_reject_goes_back_to_the_previous_node_with_a_fresh_task(store, example_config):
    seed(store, example_config, [{"id": "O1", "custom": True}])
    with store.session(write=True) as s:
        workflow.complete(s, example_config, "O1", at=t("2026-11-23 09:10"), actor="alice", manual=True)
    with store.session(write=True) as s:
        back = workflow.reject(
            s, example_config, "O1", at=t("2026-11-23 11:00"), actor="erin", reason="drawing missing", manual=True
        )
    assert back == "credit_review"
    task = open_task(store, "O1")
    assert (task.node, task.entered_at, task.deadline) == (
        "credit_review",
        t("2026-11-23 11:00"),
        t("2026-11-23 11:30"),
    )
    with store.session() as s:
        visits = s.execute(sa.select(Task.node, Task.status).where(Task.order_id == "O1").order_by(Task.id)).all()
    assert [tuple(v) for v in visits] == [
        ("credit_review", "done"),
        ("tech_confirm", "rejected"),
        ("credit_review", "open"),
    ]
    assert events(store, "O1")[-2:] == [("rejected", "tech_confirm"), ("entered", "credit_review")]


def test_reject_at_the_first_node_puts_the_order_on_hold(store, example_config):
    seed(store, example_config, [{"id": "O1"}])
    with store.session(write=True) as s:
        assert (
            workflow.reject(
                s,
                example_config,
                "O1",
                at=t("2026-11-23 09:10"),
                actor="alice",
                reason="credit limit exceeded",
                manual=True,
            )
            == "credit_review"
        )
    o = order_row(store, "O1")
    assert (o.status, o.node) == ("on_hold", "credit_review")
    task = open_task(store, "O1")
    assert task.held_at == t("2026-11-23 09:10")
    with store.session() as s:
        assert workflow.task_view(task, example_config, t("2026-11-25 09:00"))["state"] == "on_hold"
    assert events(store, "O1")[-2:] == [("rejected", "credit_review"), ("held", "credit_review")]
    with pytest.raises(Conflict, match="on hold"):
        with store.session(write=True) as s:
            workflow.complete(s, example_config, "O1", at=t("2026-11-23 09:20"), actor="alice", manual=True)


def test_hold_across_a_night_adds_exactly_the_business_time_it_covered(store, example_config):
    # entered Mon 17:50, due Tue 09:20; held at Mon 17:55 with 25 min left
    seed(store, example_config, [{"id": "O1", "created": "2026-11-23 17:50"}])
    cfg = example_config
    with store.session(write=True) as s:
        workflow.hold(s, cfg, "O1", at=t("2026-11-23 17:55"), actor="alice", reason="customer asked to wait")
    held = open_task(store, "O1")
    assert workflow.task_view(held, cfg, t("2026-11-24 12:00")) == {"state": "on_hold", "seconds_left": 25 * 60}
    assert held.next_action_at is None
    # released Tue 10:00: the hold covered 5 min Monday + 60 min Tuesday of office time
    with store.session(write=True) as s:
        workflow.release(s, cfg, "O1", at=t("2026-11-24 10:00"), actor="alice")
    task = open_task(store, "O1")
    assert task.paused_seconds == 65 * 60
    assert task.deadline == t("2026-11-24 10:25")  # the 25 minutes that were left
    assert cfg.calendar("credit_review").between(t("2026-11-23 09:20") + timedelta(days=1), task.deadline) == 65 * 60
    assert workflow.task_view(task, cfg, t("2026-11-24 10:00")) == {"state": "on_track", "seconds_left": 25 * 60}
    assert task.risk_at == t("2026-11-24 10:17:30")  # 5 of the 22.5 min before warning were used
    assert task.next_action_at == task.risk_at
    assert order_row(store, "O1").status == "open"
    assert events(store, "O1")[-2:] == [("held", "credit_review"), ("released", "credit_review")]


def test_hold_over_a_weekend_and_a_holiday(store, example_config):
    # Thursday 2026-10-01 and Friday 10-02 are holidays, Monday 10-05 too. Entered Wed 09-30 17:40:
    # 20 min today, 10 min on Tuesday 10-06 -> due 10-06 09:10.
    seed(store, example_config, [{"id": "O1", "created": "2026-09-30 17:40"}])
    cfg = example_config
    assert open_task(store, "O1").deadline == t("2026-10-06 09:10")
    with store.session(write=True) as s:
        workflow.hold(s, cfg, "O1", at=t("2026-09-30 17:50"), actor="alice", reason="waiting for documents")
    with store.session(write=True) as s:
        workflow.release(s, cfg, "O1", at=t("2026-10-06 09:30"), actor="alice")
    task = open_task(store, "O1")
    # covered: Wed 17:50-18:00 and Tue 09:00-09:30 = 40 min; 20 min were left -> 09:50
    assert task.paused_seconds == 40 * 60
    assert task.deadline == t("2026-10-06 09:50")


def test_hold_pauses_a_wall_clock_node_too(store, example_config):
    seed(store, example_config, [{"id": "O1", "custom": True}])
    cfg = example_config
    with store.session(write=True) as s:
        workflow.complete(s, cfg, "O1", at=t("2026-11-23 09:10"), actor="alice", manual=True)
    before = open_task(store, "O1").deadline  # tech_confirm: 4 h wall clock
    assert before == t("2026-11-23 13:10")
    with store.session(write=True) as s:
        workflow.hold(s, cfg, "O1", at=t("2026-11-23 10:00"), actor="erin", reason="question to customer")
    with store.session(write=True) as s:
        workflow.release(s, cfg, "O1", at=t("2026-11-24 10:00"), actor="erin")
    assert open_task(store, "O1").deadline == before + timedelta(days=1)


def test_hold_and_release_refusals(store, example_config):
    seed(store, example_config, [{"id": "O1"}])
    with pytest.raises(Conflict, match="not on hold"):
        with store.session(write=True) as s:
            workflow.release(s, example_config, "O1", at=t("2026-11-23 09:10"), actor="alice")
    with store.session(write=True) as s:
        workflow.hold(s, example_config, "O1", at=t("2026-11-23 09:10"), actor="alice", reason="r")
    with pytest.raises(Conflict, match="on hold"):
        with store.session(write=True) as s:
            workflow.hold(s, example_config, "O1", at=t("2026-11-23 09:11"), actor="alice", reason="r")


def test_task_view_states(store, example_config):
    seed(store, example_config, [{"id": "O1"}])
    task = open_task(store, "O1")  # due 09:30, at risk from 09:22:30
    view = lambda text: workflow.task_view(task, example_config, t(text))  # noqa: E731
    assert view("2026-11-23 09:00") == {"state": "on_track", "seconds_left": 1800}
    assert view("2026-11-23 09:25")["state"] == "at_risk"
    assert view("2026-11-23 09:30") == {"state": "breached", "seconds_left": 0}
    # business time: Monday 18:00 to Tuesday 09:15 is 8.5 h + 15 min late
    assert view("2026-11-24 09:15") == {"state": "breached", "seconds_left": -(8 * 3600 + 45 * 60)}


def test_the_audit_trail_refuses_update_and_delete(store, example_config):
    seed(store, example_config, [{"id": "O1"}])
    for sql in ("UPDATE event SET actor = 'mallory'", "DELETE FROM event"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with store.session(write=True) as s:
                s.execute(sa.text(sql))
    assert events(store, "O1") == [("created", None), ("entered", "credit_review")]


def test_events_record_effective_and_wall_time(store, example_config):
    seed(store, example_config, [{"id": "O1"}])
    with store.session(write=True) as s:
        workflow.complete(s, example_config, "O1", at=t("2026-11-23 09:10"), actor="alice", manual=True)
    with store.session() as s:
        e = s.execute(sa.select(Event).where(Event.event == "completed")).scalar_one()
    assert e.at == t("2026-11-23 09:10") and e.actor == "alice"
    assert abs(e.wall_at - datetime.now(timezone.utc)) < timedelta(minutes=5)


def _moves_of(store, order_id: str) -> tuple[list, list]:
    """An order's tasks and events, without ids and without the order id (to compare two orders)."""
    with store.session() as s:
        tasks = s.execute(
            sa.select(
                Task.node,
                Task.seq,
                Task.status,
                Task.outcome,
                Task.owner,
                Task.entered_at,
                Task.risk_at,
                Task.deadline,
                Task.next_action_at,
                Task.completed_at,
                Task.completed_by,
                Task.sla_state,
            )
            .where(Task.order_id == order_id)
            .order_by(Task.seq, Task.id)
        ).all()
        trail = s.execute(
            sa.select(Event.event, Event.node, Event.detail, Event.actor, Event.at)
            .where(Event.order_id == order_id)
            .order_by(Event.id)
        ).all()
    return [tuple(r) for r in tasks], [tuple(r) for r in trail]


def test_planned_moves_write_what_complete_tasks_writes(store, example_config):
    cfg = example_config
    # O0, O2: standard workflow (allocation -> wave_pick); O1, O3: pilot (allocation -> dispatch)
    seed(
        store,
        cfg,
        [
            {"id": f"O{i}", "channel": "b2b" if i % 2 else "web", "customer": "C-EAST" if i % 2 else "C-WEST"}
            for i in range(4)
        ],
    )
    with store.session(write=True) as s:
        for i in range(4):
            assert (
                workflow.complete(s, cfg, f"O{i}", at=t("2026-11-23 09:10"), actor="alice", manual=True) == "allocation"
            )
    late = t("2026-11-23 10:40")  # past the 10-minute allocation SLA: "SLA breached by ..."
    with store.session(write=True) as s:
        tasks = s.execute(
            sa.select(Task.id, Task.order_id, Task.node, Task.workflow, Task.seq, Task.deadline)
            .where(Task.status == "open")
            .order_by(Task.order_id)
        ).all()
        direct = workflow.complete_tasks(s, cfg, tasks[:2], at=late, actor="allocate")
        assert workflow.plannable(cfg, tasks[2:])
        planned = workflow.PlannedMoves(
            cfg, tasks[2:], at=late, actor="allocate", postgresql=s.get_bind().dialect.name == "postgresql"
        )
        planned.write(s)
    assert direct == {"O0": "wave_pick", "O1": "dispatch"}
    assert planned.moved == {"O2": "wave_pick", "O3": "dispatch"}
    assert order_row(store, "O2").node == "wave_pick" and order_row(store, "O3").node == "dispatch"
    assert _moves_of(store, "O2") == _moves_of(store, "O0")
    assert _moves_of(store, "O3") == _moves_of(store, "O1")
    assert [e for e in events(store, "O2") if e[1] in ("allocation", "wave_pick")] == [
        ("entered", "allocation"),
        ("completed", "allocation"),
        ("entered", "wave_pick"),
    ]


def test_planned_moves_refuse_a_task_closed_meanwhile(store, example_config):
    cfg = example_config
    seed(store, cfg, [{"id": "O1"}])
    with store.session(write=True) as s:
        workflow.complete(s, cfg, "O1", at=t("2026-11-23 09:10"), actor="alice", manual=True)
    with store.session(write=True) as s:
        tasks = s.execute(
            sa.select(Task.id, Task.order_id, Task.node, Task.workflow, Task.seq, Task.deadline).where(
                Task.status == "open"
            )
        ).all()
        planned = workflow.PlannedMoves(
            cfg, tasks, at=t("2026-11-23 09:12"), actor="allocate", postgresql=s.get_bind().dialect.name == "postgresql"
        )
    with store.session(write=True) as s:  # someone else completes it first
        assert workflow.complete_auto(s, cfg, ["O1"], "allocate", at=t("2026-11-23 09:11"), actor="cron") == ["O1"]
    with pytest.raises(Conflict, match="closed by someone else"):
        with store.session(write=True) as s:
            planned.write(s)
    assert order_row(store, "O1").node == "wave_pick"
    assert [e for e in events(store, "O1") if e[0] == "completed"] == [
        ("completed", "credit_review"),
        ("completed", "allocation"),
    ]


def test_moves_past_a_when_node_are_not_plannable(store, example_config):
    seed(store, example_config, [{"id": "O1"}])
    with store.session() as s:
        task = s.execute(
            sa.select(Task.id, Task.order_id, Task.node, Task.workflow, Task.seq, Task.deadline).where(
                Task.status == "open"
            )
        ).one()
    assert task.node == "credit_review"  # tech_confirm, next, has a `when`: the order's facts decide
    assert not workflow.plannable(example_config, [task])
